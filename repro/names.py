"""A strict name -> object table (after fairseq's registry.py): registering a name twice
fails, and an unknown name lists the known ones. Papers (repro.registry) and metrics
(repro.metrics) are each one of these."""
from repro.errors import ReproError


class Registry:
    def __init__(self, kind):
        self.kind = kind
        self._items = {}

    def register(self, name, obj):
        if name in self._items:
            raise ReproError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj
        return obj

    def get(self, name):
        if name not in self._items:
            known = ", ".join(sorted(self._items)) or "none"
            raise ReproError(f"unknown {self.kind} {name!r}; registered: {known}")
        return self._items[name]

    def names(self):
        return sorted(self._items)

    def __contains__(self, name):
        return name in self._items
