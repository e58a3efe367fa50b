"""Strict name registries (after fairseq's registry.py), and paper discovery.

Registering a name twice fails; an unknown name lists the known ones. Papers
are discovered by importing each package listed in ``papers.PAPER_PACKAGES``
explicitly, so whether a paper is registered never depends on an import side
effect elsewhere. A plugin that fails to import is reported as that failure,
and the registry is filled all at once or not at all.
"""
import importlib

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


PAPERS = Registry("paper")
_loaded = False


def plugin_paper(module, where):
    """The PAPER of an imported plugin module, checked."""
    from repro.paper import ClassificationPaper, GenerativePaper, Paper
    paper = getattr(module, "PAPER", None)
    if not isinstance(paper, Paper):
        raise ReproError(f"{where} defines no PAPER that is a repro.paper.Paper (got {type(paper).__name__})")
    if not isinstance(paper, (ClassificationPaper, GenerativePaper)):
        raise ReproError(f"{where}: PAPER must be a ClassificationPaper or a GenerativePaper")
    if paper.name != module.__name__.rpartition(".")[2]:
        raise ReproError(f"{where} declares paper name {paper.name!r}; it must match its package name")
    if paper.default_experiment and paper.default_experiment not in [e.name for e in paper.experiments]:
        raise ReproError(f"{where}: default_experiment {paper.default_experiment!r} is not one of its experiments")
    return paper


def _import(name):
    try:
        return importlib.import_module(name)
    except ReproError:
        raise
    except Exception as e:  # the plugin's own import failed: report that, not "unknown paper" later
        raise ReproError(f"paper plugin {name} failed to import: {type(e).__name__}: {e}") from None


def load_papers():
    """Import every listed paper package and register its PAPER (once per process)."""
    global _loaded
    if _loaded:
        return PAPERS
    found = Registry("paper")
    listing = _import("papers")
    for pkg in listing.PAPER_PACKAGES:
        name = f"papers.{pkg}"
        found.register(pkg, plugin_paper(_import(name), f"papers/{pkg}"))
    PAPERS._items, _loaded = found._items, True
    return PAPERS


def get_paper(name):
    return load_papers().get(name)
