"""Paper discovery: the registry of papers (a repro.names.Registry). Papers
come from three places, each explicit, so whether a paper is registered never
depends on an import side effect elsewhere:

  built in     the packages listed in repro.papers.PAPER_PACKAGES
  installed    packages that declare an entry point in the group "repro.papers"
               (name = the paper's name, value = its package), as pytest and
               timm plugins do
  a folder     a plugin package folder named by --papers PATH or in REPRO_PAPERS
               (several joined with the path separator), as fairseq's --user-dir

A plugin that fails to import is reported as that failure; a name registered
twice names both plugins; the registry is filled all at once or not at all.
"""
import importlib
import importlib.util
import os
import sys

from repro.config import TextDataConfig
from repro.errors import ReproError
from repro.names import Registry
from repro.paper import ClassificationPaper, GenerativePaper, Paper, TextClassificationPaper

PAPERS = Registry("paper")
_loaded = False
_folders = {}  # paper name -> the plugin folder (absolute) it was loaded from, for papers from a folder


def plugin_paper(module, where):
    """The PAPER of an imported plugin module, checked."""
    paper = getattr(module, "PAPER", None)
    if not isinstance(paper, Paper):
        raise ReproError(f"{where} defines no PAPER that is a repro.paper.Paper (got {type(paper).__name__})")
    if not isinstance(paper, (ClassificationPaper, GenerativePaper)):
        raise ReproError(f"{where}: PAPER must be a ClassificationPaper or a GenerativePaper")
    if paper.name != module.__name__.rpartition(".")[2]:
        raise ReproError(f"{where} declares paper name {paper.name!r}; it must match its package name")
    if isinstance(paper, TextClassificationPaper):
        import dataclasses
        data = next((f for f in dataclasses.fields(paper.config_class or object) if f.name == "data"), None) \
            if dataclasses.is_dataclass(paper.config_class) else None
        made = data.default_factory() if data is not None and data.default_factory is not dataclasses.MISSING else None
        if not isinstance(made, TextDataConfig):
            raise ReproError(f"{where}: a TextClassificationPaper's config needs a `data` section that subclasses "
                             f"repro.config.TextDataConfig")
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


ENV = "REPRO_PAPERS"
ONLY = "REPRO_PAPERS_ONLY"  # "1": only the plugin folders in REPRO_PAPERS, nothing built in or installed
GROUP = "repro.papers"


def _import_folder(path):
    """A plugin package from its folder, imported under the folder's name."""
    folder = os.path.abspath(os.path.expanduser(path))
    name = os.path.basename(folder.rstrip(os.sep))
    init = os.path.join(folder, "__init__.py")
    if not os.path.isfile(init):
        raise ReproError(f"paper plugin {path}: not a Python package folder (no __init__.py)")
    if not name.isidentifier():
        raise ReproError(f"paper plugin {path}: {name!r} is not a valid package name")
    known = sys.modules.get(name)
    if known is not None:
        if os.path.abspath(getattr(known, "__file__", "") or "") == init:
            return known
        raise ReproError(f"paper plugin {path}: a module named {name!r} is already imported "
                         f"({getattr(known, '__file__', None) or 'built in'}); rename the plugin's package")
    # no __pycache__ in a plugin's repository: its code identity (repro.boundary.identity) refuses bytecode,
    # so this process writes none from here on (a process it starts imports the plugin here too)
    sys.dont_write_bytecode = True
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[folder])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except ReproError:
        del sys.modules[name]
        raise
    except Exception as e:
        del sys.modules[name]
        raise ReproError(f"paper plugin {path} failed to import: {type(e).__name__}: {e}") from None
    return module


def _entry_points():
    from importlib.metadata import entry_points
    return list(entry_points(group=GROUP))


def load_papers():
    """Discover and register every paper (once per process; again after use_folders)."""
    global _loaded, _folders
    if _loaded:
        return PAPERS
    found, origin, folders = Registry("paper"), {}, {}

    def add(paper, where):
        if paper.name in origin:
            raise ReproError(f"paper {paper.name!r} is registered twice: by {origin[paper.name]} and by {where}")
        found.register(paper.name, paper)
        origin[paper.name] = where

    listing = _import("repro.papers")
    builtin = os.environ.get(ONLY) != "1"  # a contest review loads the submitted plugin alone
    for pkg in listing.PAPER_PACKAGES if builtin else ():
        add(plugin_paper(_import(f"repro.papers.{pkg}"), f"papers/{pkg}"), f"repro.papers.{pkg}")
    for ep in _entry_points() if builtin else ():
        module = _import(ep.value)
        paper = plugin_paper(module, f"entry point {ep.name} = {ep.value}")
        if paper.name != ep.name:
            raise ReproError(f"entry point {ep.name} = {ep.value} registers paper {paper.name!r}; the names must match")
        add(paper, f"the installed entry point {ep.name} = {ep.value}")
    for path in filter(None, os.environ.get(ENV, "").split(os.pathsep)):
        paper = plugin_paper(_import_folder(path), path)
        add(paper, path)
        folders[paper.name] = os.path.abspath(os.path.expanduser(path))
    PAPERS._items, _folders, _loaded = found._items, folders, True
    return PAPERS


def paper_folder(name):
    """The plugin folder paper `name` was loaded from (--papers, REPRO_PAPERS), or None
    for a built-in or installed paper: a printed command needs --papers for it."""
    load_papers()
    return _folders.get(name)


def use_folders(paths):
    """Add plugin folders (--papers) for this process and the processes it starts."""
    global _loaded
    if not paths:
        return
    known = [p for p in os.environ.get(ENV, "").split(os.pathsep) if p]
    os.environ[ENV] = os.pathsep.join(known + [os.path.abspath(p) for p in paths if os.path.abspath(p) not in known])
    _loaded = False


def add_papers_option(ap):
    ap.add_argument("--papers", action="append", default=[], metavar="PATH",
                    help=f"a paper plugin's package folder to register (repeatable; also ${ENV})")


def parse_with_papers(ap, argv):
    """A command's arguments, with --papers added to its parser and the plugin folders it names
    registered for this process and the processes it starts."""
    add_papers_option(ap)
    args = ap.parse_args(argv)
    use_folders(args.papers)
    return args


def get_paper(name):
    return load_papers().get(name)
