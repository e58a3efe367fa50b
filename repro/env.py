"""What a run was: environment and code identity, recorded in its header."""
import fnmatch
import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys

from repro import __version__

try:  # a wheel's build wrote the commit it was built from (setup.py); a checkout has git instead
    from repro import _build
except ImportError:
    _build = None
from repro.boundary import identity
from repro.boundary.identity import digest  # noqa: F401 (env.digest: one implementation, in repro.boundary.identity)
from repro.errors import ReproError
from repro.machine import cpu, mkl_path_in_effect
from repro.strict import sha256_file

HARNESS = os.path.dirname(os.path.abspath(__file__))  # the repro package


def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(where, *args):
    try:
        out = subprocess.run(["git", "-C", where, *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def _files(folder):
    """Every file under folder, caches and dot-folders excluded, as sorted absolute paths."""
    paths = []
    for dirpath, dirnames, files in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        paths += [os.path.join(dirpath, f) for f in files if not f.endswith((".pyc", ".pyo"))]
    return sorted(paths)


def file_hashes(base, folders):
    """{path relative to base: sha256} of every file under the folders (given relative to base)."""
    out = {}
    for folder in folders:
        for path in _files(os.path.join(base, folder)):
            out[os.path.relpath(path, base).replace(os.sep, "/")] = sha256_file(path)
    return out


def _repository(path, folders):
    """(root, commit, dirty, sha256 of the changes) of the git repository holding
    path, where dirty means the folders differ from the commit (edited, added or
    deleted files); (None, None, None, None) outside git."""
    top = _git(path, "rev-parse", "--show-toplevel")
    if not top:
        return None, None, None, None
    top = top.strip()
    commit = _git(top, "rev-parse", "HEAD")
    status = _git(top, "status", "--porcelain", "--untracked-files=all", "--", *folders)
    diff = _git(top, "diff", "HEAD", "--", *folders)
    dirty = bool(status) if status is not None else None
    changes = hashlib.sha256(((status or "") + (diff or "")).encode()).hexdigest() if dirty else None
    return top, commit.strip() if commit else None, dirty, changes


def git_changes(top):
    """[(git's two status letters, path)] of the files of the repository at top that its
    identity covers and that differ from the commit: edited, added, deleted, untracked
    or git-ignored, leaving out what identity.excluded() excludes (one rule, also for
    what is inside an excluded folder); None where git cannot say."""
    spec = [f":(top,exclude,literal){name}" for name in identity.top_folders()]
    status = _git(top, "status", "--porcelain", "-z", "--untracked-files=all", "--ignored", "--", ".", *spec)
    if status is None:
        return None
    entries, tokens = [], iter(status.split("\0"))
    for token in tokens:
        if len(token) < 4:
            continue
        xy, path = token[:2], token[3:]
        if "R" in xy or "C" in xy:
            next(tokens, None)  # the path it was renamed or copied from
        if not identity.excluded(path.rstrip("/"), path.endswith("/")):
            entries.append((xy, path))
    return sorted(entries, key=lambda e: e[1])


def _git_state(top):
    """(commit, dirty, sha256 of the changes) of the repository at top, where dirty
    means git_changes(top) lists something."""
    commit = _git(top, "rev-parse", "HEAD")
    commit = commit.strip() if commit else None
    entries = git_changes(top)
    if entries is None:
        return commit, None, None
    if not entries:
        return commit, False, None
    tracked = sorted({p for xy, p in entries if xy not in ("??", "!!")})
    diff = _git(top, "diff", "HEAD", "--", *tracked) if tracked else ""
    text = "".join(f"{xy} {p}\n" for xy, p in entries) + (diff or "")
    return commit, True, hashlib.sha256(text.encode()).hexdigest()


def _under(path, folder):
    return os.path.commonpath([path, folder]) == folder


def _builtin(package):
    """Whether a paper's package is the harness's own (papers/ of this checkout, or
    installed beside the harness, as an entry-point plugin installed with pip is):
    such code is identified by its package and configs; anything else by its repository."""
    return _under(os.path.realpath(package), os.path.realpath(os.path.dirname(HARNESS)))


def paper_code(paper, exp=None):
    """The identity of a paper's own code (docs/log-format.md, `code`).

    A built-in paper: its package and configs folders, file by file, relative to
    the repository that holds them. A plugin from elsewhere: the whole repository
    holding it (its git top level; without git, the package's parent folder) as
    repro.boundary.identity identifies it, under "repository"; a ReproError (one line)
    if that repository holds what cannot be identified, so no run starts from code
    that cannot be checked. Both name the package, the configs folder and the
    experiment's config file relative to that repository."""
    package = os.path.realpath(paper.root)
    configs = os.path.normpath(os.path.join(package, paper.config_dir))
    if _builtin(package):
        folders = [package] + ([configs] if os.path.commonpath([package, configs]) != package else [])
        top, commit, dirty, changes = _repository(package, folders)
        base = top or os.path.dirname(package)
        rel = [os.path.relpath(f, base).replace(os.sep, "/") for f in folders]
        hashes = file_hashes(base, rel)
        config = (os.path.relpath(os.path.realpath(paper.config_path(exp)), base).replace(os.sep, "/")
                  if exp is not None else None)
        return {"package": rel[0], "configs": rel[-1], "config_file": config, "sha256": digest(hashes),
                "files": hashes, "git_commit": commit, "git_dirty": dirty, "git_changes_sha256": changes}
    top = _git(package, "rev-parse", "--show-toplevel")
    base = os.path.realpath(top.strip()) if top else os.path.dirname(package)
    where = f"paper {paper.name}: the repository {base}"
    config = os.path.realpath(paper.config_path(exp)) if exp is not None else None
    for what, path in (("its package", package), ("its configs folder", os.path.realpath(configs)),
                       ("the experiment's config", config)):
        if path is not None and not _under(path, base):
            raise ReproError(f"{where} does not hold {what} {path}, so the code of a run could not be identified")
    rel = lambda p: os.path.relpath(p, base).replace(os.sep, "/") if p is not None else None  # noqa: E731
    repo, problems = identity.identify(base)
    if problems:
        raise ReproError(f"{where} holds what cannot be identified as code, so no run starts from it: "
                         f"{identity.summary(problems)} (python -m repro.selfcheck lists every problem)")
    for what, name in (("package", f"{rel(package)}/__init__.py"), ("experiment's config", rel(config))):
        if name is not None and name not in repo["files"]:
            raise ReproError(f"{where}: the plugin's {what} {name} is excluded from the code identity "
                             f"({', '.join(identity.EXCLUDED)})")
    commit, dirty, changes = _git_state(base) if top else (None, None, None)
    return {"package": rel(package), "configs": rel(os.path.realpath(configs)), "config_file": rel(config),
            "sha256": repo["sha256"], "repository": repo,
            "git_commit": commit, "git_dirty": dirty, "git_changes_sha256": changes}


# the checkout's folders and the names a wheel installs them under (pyproject.toml's package-dir)
INSTALLED_AS = (("repro", "repro"), ("metrics", "repro/metrics"), ("papers", "repro/papers"),
                ("configs", "repro/configs"), ("templates", "repro/templates"))
# pyproject.toml's package-data of repro.templates (the contestant template), "*" within one folder
TEMPLATE_DATA = ("contestant/.gitignore", "contestant/*.txt", "contestant/*.md", "contestant/logs/README.md",
                 "contestant/*/*.py", "contestant/*/configs/*.yaml")
BUILD_FILE = "repro/_build.py"  # what the wheel's build wrote about it, not its code (setup.py)


def _matches(rel, pattern):
    parts, pats = rel.split("/"), pattern.split("/")
    return len(parts) == len(pats) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, pats))


def _shipped(name):
    """Whether a wheel ships the file it installs as name (pyproject.toml: the .py
    files of its packages, and its package-data papers/*/README.md, configs/*/*.yaml
    and the template)."""
    parts = name.split("/")
    if parts[:2] == ["repro", "templates"]:
        return any(_matches("/".join(parts[2:]), p) for p in TEMPLATE_DATA)
    return ((name.endswith(".py") and name != BUILD_FILE)
            or (len(parts) == 4 and parts[:2] == ["repro", "papers"] and parts[3] == "README.md")
            or (len(parts) == 4 and parts[:2] == ["repro", "configs"] and parts[3].endswith(".yaml")))


def _installed(root):
    """Whether root (the folder holding the repro package) is an installation
    rather than a checkout: installed, metrics/ is inside the package."""
    return os.path.isdir(os.path.join(root, "repro", "metrics"))


def harness_files(root):
    """{name as installed: sha256} of the files a wheel of the harness ships, found
    under root: site-packages (or an unpacked wheel) holding repro/, or a checkout
    holding repro/, metrics/, papers/ and configs/, whose files are named as the
    wheel installs them (metrics/x.py is repro/metrics/x.py). The same commit gives
    the same map either way."""
    sources = [("repro", "repro")] if _installed(root) else INSTALLED_AS
    out = {}
    for folder, prefix in sources:
        start = os.path.join(root, folder)
        for path in _files(start) if os.path.isdir(start) else ():
            if os.path.islink(path):
                continue
            name = f"{prefix}/{os.path.relpath(path, start).replace(os.sep, '/')}"
            if _shipped(name):
                out[name] = sha256_file(path)
    return dict(sorted(out.items()))


def harness_sha256(root):
    """One sha256 of harness_files(root)."""
    return digest(harness_files(root))


def harness_code():
    """The identity of the harness that ran: its version, the sha256 of the files a
    wheel of it ships (the same for a checkout and an installation of one commit),
    and its commit: a checkout's from git, with whether those files differ from it;
    an installation's as its wheel's build recorded it (repro/_build.py, written by
    setup.py), whose files then are those of that commit unless it was dirty."""
    root = os.path.dirname(HARNESS)
    commit = dirty = changes = None
    if not _installed(root):  # an installation's git (a venv inside a repository) is not the harness's
        folders = [os.path.join(root, f) for f, _ in INSTALLED_AS if os.path.isdir(os.path.join(root, f))]
        _, commit, dirty, changes = _repository(HARNESS, folders)
    elif _build is not None:
        commit, dirty = getattr(_build, "GIT_COMMIT", None), getattr(_build, "GIT_DIRTY", None)
    return {"version": __version__, "sha256": harness_sha256(root),
            "git_commit": commit, "git_dirty": dirty, "git_changes_sha256": changes}


def code_identity(paper, exp=None):
    """What code ran: the paper's own (its repository, or a built-in paper's package
    and configs) and the harness's, apart."""
    return {"paper": paper_code(paper, exp), "harness": harness_code()}


def command():
    """The command line as a user would retype it: the module instead of the
    script's path, and paths under the working directory made relative to it,
    so a shipped log names no folder of the machine that made it."""
    argv = list(sys.argv)
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    head = ["python", "-m", spec.name] if spec is not None and spec.name else ["python", os.path.basename(argv[0])]
    cwd = os.getcwd()
    out = []
    for arg in argv[1:]:
        key, eq, value = arg.partition("=") if arg.startswith("-") is False and "=" in arg else ("", "", arg)
        if os.path.isabs(value) and os.path.commonpath([cwd, os.path.abspath(value)]) == cwd:
            value = os.path.relpath(value, cwd)
        out.append(f"{key}{eq}{value}")
    return head + out


def environment(threads=1):
    import paddle

    return {
        "python": platform.python_version(),
        "paddlepaddle": paddle.__version__,
        "paddlenlp": _version("paddlenlp"),
        "ppdiffusers": _version("ppdiffusers"),
        "numpy": _version("numpy"),
        "cuda": paddle.version.cuda() if paddle.is_compiled_with_cuda() else None,
        "cudnn": paddle.version.cudnn() if paddle.is_compiled_with_cuda() else None,
        "device": paddle.device.get_device(),
        "cpu": cpu()[0],
        "cpu_isa": cpu()[1],
        "cpu_count": os.cpu_count(),
        "os": platform.platform(),
        "world_size": int(os.environ.get("PADDLE_TRAINERS_NUM", "1")),
        "threads": threads,
        "mkl_path": mkl_path_in_effect(),
        "command": command(),
    }
