"""The code identity of a submitted repository: the one place that says which
files a contestant's code is, and with what bytes.

A paper plugin that lives outside the harness is identified by the whole
repository holding it (its git top level; without git, the package's parent
folder): every file at any depth, tracked, untracked or git-ignored, hidden
folders included, except what EXCLUDED declares:

    /.git       git's own data (at the top)
    /logs       the runs (at the top): a run cannot be part of the code that made it
    /.venv, /venv
                a virtual environment at the top: the sandbox runs the harness's own
                Python and packages, never the submission's, so nothing in it can take
                part in a review's run (and a venv is full of links, which are refused)
    /contest*.yaml, /contest*.yml
                a contest file saved at the top (the maintainers' terms, which
                repro.selfcheck --contest reads): it is the judge's input, not the
                submission's code, so saving it there changes no run's identity
    .pytest_cache/, .mypy_cache/, .ruff_cache/, .ipynb_checkpoints/
                tools' caches, at any depth: they hold no code a run imports
    *.md, *.rst, README*, LICENSE*, LICENCE*, COPYING*, CHANGELOG*
                documentation, at any depth, so a README written after training
                does not change the identity
    .gitignore, .gitattributes
                git's settings, at any depth: they decide nothing a run computes
    !*.py       a Python module is code whatever its name (license_utils.py counts)

A pattern starting with "/" matches an entry (file or folder) at the top by its
name, case-sensitively; one ending in "/" matches a folder at any depth by its
name; any other matches the name of a file at any depth, case-insensitively. A
later "!" pattern keeps what an earlier one excluded. Whatever lies inside an
excluded folder is excluded with it (excluded(rel) tests every folder on the
way). This is the one rule of what is not the submission's code: the identity,
a run's git_dirty (repro.env) and repro.selfcheck all ask excluded(). An
excluded file is never read, never compared and never mounted for the sandbox:
code that needs it at run time fails there.

What cannot be identified is refused, one line each naming its path, never
followed or read: __pycache__ folders and .pyc/.pyo files (bytecode is not
reviewed source: an unchecked-hash .pyc runs instead of the .py beside it),
symbolic links, FIFOs, sockets and devices, a file over max_file_bytes (from
its size alone: a sparse 100 GB file is never read), more than max_files files
or max_total_bytes in all. Files are opened relative to their folder's
descriptor with O_NOFOLLOW|O_NONBLOCK and checked to still be the regular file
that was listed, then hashed in 1 MiB chunks.

    scan(root)                 -> ({path: sha256}, problems)
    identify(root)             -> ({"files", "sha256", "excluded"}, problems): what a run header records
    digest(files)              -> one sha256 of a {path: sha256} map
    snapshot(root, files, dest) a copy of exactly the identified files (the sandbox mounts it read-only)
    check_tree(header, tree)   -> problems: the run's recorded identity against a tree
    check_logged(header, files) -> problems: a logged run's code against identified files (repro.selfcheck)
"""
import fnmatch
import hashlib
import os
import stat

from repro.errors import ReproError
from repro.strict import hash_read as _hash_read, kind_of

MAX_FILE_BYTES = 64 << 20
MAX_FILES = 10_000
MAX_TOTAL_BYTES = 256 << 20
MAX_DEPTH = 32

EXCLUDED = ("/.git", "/logs", "/.venv", "/venv", "/contest*.yaml", "/contest*.yml",
            ".pytest_cache/", ".mypy_cache/", ".ruff_cache/", ".ipynb_checkpoints/",
            "*.md", "*.rst", "README*", "LICENSE*", "LICENCE*", "COPYING*", "CHANGELOG*",
            ".gitignore", ".gitattributes", "!*.py")

BYTECODE = "bytecode is not reviewed source (delete it; PYTHONDONTWRITEBYTECODE=1 keeps Python from writing it)"
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC

class _Changed(Exception):
    """A file was not, when opened or read, the regular file that was listed."""


# ------------------------------------------------------------------ hashing

def digest(files):
    """One sha256 for a {path: sha256} map."""
    return hashlib.sha256("".join(f"{k}\0{v}\n" for k, v in sorted(files.items())).encode()).hexdigest()


def _open_file(dir_fd, name, listed=None):
    """A descriptor of the regular file name in the folder dir_fd, never through a
    link and never blocking on a FIFO; with listed (an lstat), it must be that file."""
    try:
        fd = os.open(name, _FILE, dir_fd=dir_fd)
    except OSError as e:
        raise _Changed(e.strerror or str(e)) from None
    st = os.fstat(fd)
    same = listed is None or (st.st_dev, st.st_ino, st.st_size) == (listed.st_dev, listed.st_ino, listed.st_size)
    if not stat.S_ISREG(st.st_mode) or not same:
        os.close(fd)
        raise _Changed("it is no longer the regular file that was listed")
    return fd, st


def _hash_at(dir_fd, name, listed):
    fd, st = _open_file(dir_fd, name, listed)
    try:
        sha, n = _hash_read(lambda k: os.read(fd, k), st.st_size)
        if n != st.st_size or os.fstat(fd).st_mtime_ns != st.st_mtime_ns:
            raise _Changed("it changed while it was read")
        return sha
    finally:
        os.close(fd)


# ------------------------------------------------------------------ what counts

def _excluded_entry(rel, is_dir):
    name = rel.rpartition("/")[2]
    out = False
    for rule in EXCLUDED:
        keep = rule.startswith("!")
        pattern = rule[1:] if keep else rule
        if pattern.startswith("/"):
            hit = "/" not in rel and fnmatch.fnmatchcase(rel, pattern[1:])
        elif pattern.endswith("/"):
            hit = is_dir and name == pattern[:-1]
        else:
            hit = not is_dir and fnmatch.fnmatchcase(name.lower(), pattern.lower())
        if hit:
            out = not keep
    return out


def excluded(rel, is_dir=False):
    """Whether the entry at rel (a posix path relative to the repository's top) is
    left out of the identity by EXCLUDED: it, or a folder holding it, is excluded."""
    parts = rel.strip("/").split("/")
    return any(_excluded_entry("/".join(parts[:i + 1]), is_dir or i < len(parts) - 1) for i in range(len(parts)))


def top_folders():
    """The folders at the top that EXCLUDED leaves out whole, by their literal names
    (for a git pathspec: git need not list the thousands of files of a .venv)."""
    return [r[1:] for r in EXCLUDED if r.startswith("/") and not any(c in r for c in "*?[")]


def _refused(rel, st, name, dir_fd, max_file_bytes):
    """Why an entry that is not a folder cannot be identified: a link, not a regular file, or too big."""
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(name, dir_fd=dir_fd)
        except OSError:
            target = "?"
        return (f"{rel}: a symbolic link (to {target!r}): links are not followed; "
                f"put the file itself there or move it out of the repository")
    if not stat.S_ISREG(st.st_mode):
        return f"{rel}: {kind_of(st.st_mode)}: only regular files can be identified"
    return (f"{rel}: {st.st_size:,} bytes, over the {max_file_bytes:,} a file may have "
            f"(keep data and weights outside the repository)")


def scan(root, max_file_bytes=MAX_FILE_BYTES, max_files=MAX_FILES, max_total_bytes=MAX_TOTAL_BYTES):
    """({relative posix path: sha256}, [problem, one line each]) of the repository at
    root, in sorted order. Nothing is followed through a link; see the module's doc
    for what counts and what is refused."""
    files, problems = {}, []
    state = {"total": 0, "stop": False}
    try:
        top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    except OSError as e:
        return {}, [f"{root}: cannot be read as a folder ({e.strerror or e})"]

    def walk(dir_fd, prefix, depth):
        try:
            with os.scandir(dir_fd) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            problems.append(f"{prefix or './'}: cannot be listed ({e.strerror or e})")
            return
        for entry in entries:
            if state["stop"]:
                return
            rel = prefix + entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as e:
                problems.append(f"{rel}: cannot be read ({e.strerror or e})")
                continue
            mode = st.st_mode
            is_dir = stat.S_ISDIR(mode)
            if is_dir and entry.name == "__pycache__":
                problems.append(f"{rel}/: a __pycache__ folder: {BYTECODE}")
            elif entry.name.endswith((".pyc", ".pyo")):
                problems.append(f"{rel}: a {entry.name.rpartition('.')[2]} file: {BYTECODE}")
            elif excluded(rel, is_dir):
                continue
            elif is_dir:
                if depth >= MAX_DEPTH:
                    problems.append(f"{rel}/: folders nested deeper than {MAX_DEPTH}")
                    continue
                try:
                    sub = os.open(entry.name, _DIR, dir_fd=dir_fd)
                except OSError as e:
                    problems.append(f"{rel}/: cannot be opened ({e.strerror or e})")
                    continue
                try:
                    walk(sub, rel + "/", depth + 1)
                finally:
                    os.close(sub)
            elif not stat.S_ISREG(mode) or st.st_size > max_file_bytes:
                problems.append(_refused(rel, st, entry.name, dir_fd, max_file_bytes))
            elif len(files) >= max_files:
                problems.append(f"{rel}: more than {max_files:,} files to identify; stopped here "
                                f"(keep data, environments and caches outside the repository)")
                state["stop"] = True
            elif state["total"] + st.st_size > max_total_bytes:
                problems.append(f"{rel}: the files reach more than the {max_total_bytes:,} bytes the identified "
                                f"code may have in all; stopped here")
                state["stop"] = True
            else:
                try:
                    files[rel] = _hash_at(dir_fd, entry.name, st)
                except _Changed as e:
                    problems.append(f"{rel}: cannot be identified: {e}")
                    continue
                state["total"] += st.st_size

    try:
        walk(top, "", 0)
    finally:
        os.close(top)
    return dict(sorted(files.items())), problems


def identify(root, **limits):
    """(the repository identity a run header records: {"files", "sha256", "excluded"},
    problems) of the repository at root."""
    files, problems = scan(root, **limits)
    return {"files": files, "sha256": digest(files), "excluded": list(EXCLUDED)}, problems


def summary(problems, limit=3):
    """Problems as one line: the first few and how many more."""
    more = len(problems) - limit
    return "; ".join(problems[:limit]) + (f" (and {more} more)" if more > 0 else "")


# ------------------------------------------------------------------ the copy the sandbox mounts

def _parts(rel):
    parts = rel.split("/")
    if not rel or rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts) or "\0" in rel:
        raise ReproError(f"{rel!r} is not a path inside a repository")
    return parts


def snapshot(root, files, dest):
    """Copy exactly the files of the map (from scan(root)) into dest (new or empty),
    hashing them again on the way: a ReproError if one changed since it was
    identified. The copies are read-only. Returns dest."""
    if os.path.lexists(dest) and (not os.path.isdir(dest) or os.path.islink(dest) or os.listdir(dest)):
        raise ReproError(f"{dest}: a snapshot goes into a new or empty folder")
    os.makedirs(dest, exist_ok=True)
    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    try:
        for rel, want in sorted(files.items()):
            parts = _parts(rel)
            fds = [top]
            try:
                for part in parts[:-1]:
                    fds.append(os.open(part, _DIR, dir_fd=fds[-1]))
                fd, st = _open_file(fds[-1], parts[-1])
            except (OSError, _Changed) as e:
                raise ReproError(f"{rel} changed since the code was identified ({e})") from None
            finally:
                for d in fds[1:]:
                    os.close(d)
            try:
                os.makedirs(os.path.join(dest, *parts[:-1]), exist_ok=True)
                out = os.open(os.path.join(dest, *parts), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                              | _CLOEXEC, 0o600)
                try:
                    def read(k):
                        chunk = os.read(fd, k)
                        _write_all(out, chunk)
                        return chunk
                    sha, n = _hash_read(read, MAX_FILE_BYTES)
                    os.fchmod(out, 0o555 if st.st_mode & 0o111 else 0o444)
                finally:
                    os.close(out)
            finally:
                os.close(fd)
            if sha != want:
                raise ReproError(f"{rel} changed since the code was identified (sha256 {sha[:12]}..., "
                                 f"identified as {str(want)[:12]}...)")
    finally:
        os.close(top)
    return dest


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# ------------------------------------------------------------------ checking a run against a tree

def _compare(code, here):
    """Problems of a run header's paper code (code) against a tree's files (here)."""
    repo = code.get("repository")
    if not isinstance(repo, dict) or not isinstance(repo.get("files"), dict):
        return ["the log records its plugin's package and configs, not the whole repository holding them "
                "(a harness before repro.boundary.identity made it), so it cannot be tied to the submitted tree"]
    logged = repo["files"]
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in logged.items()):
        return ["the log's repository identity is malformed (its files must map paths to sha256 strings)"]
    problems = []
    if repo.get("sha256") != digest(logged):
        problems.append("the log's repository sha256 is not the hash of the files it lists")
    config = code.get("config_file")
    if config is not None and config not in logged:
        problems.append(f"the run's experiment config {str(config)[:200]!r} is not among its identified files")
    differ = sorted(k for k in set(here) & set(logged) if here[k] != logged[k])
    missing = sorted(set(logged) - set(here))
    extra = sorted(set(here) - set(logged))
    if differ or missing or extra:
        parts = [f"{what}: {', '.join(names[:4])}{'...' if len(names) > 4 else ''}"
                 for what, names in (("differ", differ), ("missing here", missing), ("not in the run's code", extra))
                 if names]
        rules = repo.get("excluded")
        note = "" if rules in (None, list(EXCLUDED)) else f"; the run was identified under other exclusions: {rules!r}"
        problems.append(f"the log was produced by other code than the submitted tree ({'; '.join(parts)}){note}")
    return problems


def _paper_code(header):
    code = header.get("code") if isinstance(header, dict) else None
    paper = code.get("paper") if isinstance(code, dict) else None
    return paper if isinstance(paper, dict) else None


def check_tree(header, tree):
    """Problems (one line each) tying a run to the submitted tree: the header's
    recorded repository identity must be exactly scan(tree), and the tree must be
    identifiable. [] when the run came from the code in tree."""
    code = _paper_code(header)
    if code is None:
        return ["the log does not record its paper's code, so it cannot be tied to the submitted code"]
    here, problems = scan(tree)
    return [f"the submitted tree: {p}" for p in problems] + _compare(code, here)


def check_logged(header, files):
    """Problems of a run's recorded code against a repository's identified files ({path: sha256}, from
    identify): what selfcheck reports for each run under a repository's logs/ before it is submitted."""
    code = _paper_code(header)
    if code is None:
        return ["the log does not record its paper's code"]
    return _compare(code, files)
