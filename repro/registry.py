"""Strict name registries (after fairseq's registry.py).

Registering a name twice fails; an unknown name lists the known ones. Papers are
discovered by importing each package listed in ``papers.PAPER_PACKAGES``
explicitly, so whether a paper is registered never depends on an import side
effect elsewhere.
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


def load_papers():
    """Import every package listed in papers.PAPER_PACKAGES and register its PAPER."""
    if PAPERS.names():
        return PAPERS
    listing = importlib.import_module("papers")
    for pkg in listing.PAPER_PACKAGES:
        module = importlib.import_module(f"papers.{pkg}")
        paper = module.PAPER
        if paper.name != pkg:
            raise ReproError(f"papers/{pkg} declares paper name {paper.name!r}; it must match its folder")
        PAPERS.register(paper.name, paper)
    return PAPERS


def get_paper(name):
    return load_papers().get(name)
