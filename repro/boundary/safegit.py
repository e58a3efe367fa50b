"""git, running nothing the repository names: read-only plumbing on a submitted checkout (its
HEAD, its tree, its history's roots and remotes), and its working files compared with the
commit's blobs by hashing them here."""
import hashlib
import os
import re
import stat
import subprocess
import tempfile
from urllib.parse import urlsplit

from repro import strict
from repro.boundary.tree import MAX_ENTRIES, printable, scan_tree
from repro.errors import ReproError
from repro.strict import sha256_file, short

GIT_TIMEOUT = 60


# Command-line settings override the repository's own .git/config; with the system and global
# files off, what is left of that config can run nothing here: the commands used are plumbing
# that reads objects and refs (rev-parse, ls-tree, cat-file blob), which never refresh the
# index (core.fsmonitor), run clean/smudge filters or textconv (filter.*, diff.*), a pager,
# hooks, aliases, or the network (core.sshCommand, protocol.*). The working files are compared
# with the commit by hashing them here (git_clean), never with `git status` (which runs
# fsmonitor and, on racily-clean files, the clean filter).
GIT_SAFETY = ("-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-c", "core.untrackedCache=false",
              "-c", "protocol.allow=never", "-c", "core.pager=cat", "-c", "core.sshCommand=false",
              "-c", "core.askPass=false", "-c", "credential.helper=", "-c", "diff.external=",
              "-c", "gc.auto=0", "-c", "maintenance.auto=false", "-c", "core.alternateRefsCommand=false")


def _git_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0",
               GIT_OPTIONAL_LOCKS="0", GIT_NO_REPLACE_OBJECTS="1", GIT_ATTR_NOSYSTEM="1", GIT_ASKPASS="false",
               SSH_ASKPASS="false", LC_ALL="C", HOME=tempfile.gettempdir(), GIT_PAGER="cat", PAGER="cat")
    return env


def git(gitdir, *args, binary=False):
    """stdout of a read-only git plumbing command on gitdir, or None (its stderr's first line in .error)."""
    try:
        p = subprocess.run(["git", "--no-pager", f"--git-dir={gitdir}", *GIT_SAFETY, *args], capture_output=True,
                           timeout=GIT_TIMEOUT, env=_git_env(), cwd=tempfile.gettempdir(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        git.error = f"git {args[0]} took over {GIT_TIMEOUT} s"
        return None
    except OSError as e:
        git.error = f"git cannot be run ({e.strerror or e})"
        return None
    if p.returncode != 0:
        git.error = (p.stderr.decode("utf-8", "replace").strip().splitlines() or [f"exit status {p.returncode}"])[0]
        return None
    return p.stdout if binary else p.stdout.decode("utf-8", "replace").strip()


git.error = ""


def git_state(repo):
    """({'head', 'tree', 'format'}, problems) of the repository's HEAD."""
    gitdir = os.path.join(repo, ".git")
    try:
        st = os.lstat(gitdir)
    except OSError:
        return {}, ["it is not a git checkout (no .git folder), so its commit cannot be checked"]
    if not stat.S_ISDIR(st.st_mode):
        return {}, [".git is not a folder (a link, or a file naming another repository): review a plain clone"]
    entries, problems = scan_tree(gitdir)
    special = sorted(p for p, (kind, _) in entries.items() if kind not in ("file", "dir"))
    if special or "." in problems:
        what = (f".git/{printable(special[0])} is {entries[special[0]][0]}" if special else problems["."])
        return {}, [f"{what}: git is not run on this repository (it could hang or read outside it)"]
    fmt = git(gitdir, "rev-parse", "--show-object-format") or "sha1"
    head = git(gitdir, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    tree = git(gitdir, "rev-parse", "--verify", "--quiet", "HEAD^{tree}") if head else None
    if not head or not tree:
        return {}, [f"its git HEAD cannot be read ({git.error[:200] or 'no commit'}), so its commit cannot be checked"]
    return {"head": head, "tree": tree, "format": fmt if fmt in ("sha1", "sha256") else "sha1"}, []


def _blob_hash(path, size, fmt):
    """git's object id of the file's bytes as a blob (no filter applied), reading exactly size bytes."""
    h = hashlib.new(fmt)
    h.update(b"blob %d\0" % size)
    try:
        fd, st = strict.open_regular(path, path)
    except ReproError:
        return None
    try:
        if st.st_size != size:
            return None
        left = size
        while left:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                return None
            h.update(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def _lfs_matches(gitdir, oid, path, size):
    """Whether a Git LFS pointer blob names exactly this file (its sha256 and size)."""
    text = git(gitdir, "cat-file", "blob", oid, binary=True) or b""
    m = re.fullmatch(rb"version https://git-lfs\.github\.com/spec/v1\noid sha256:([0-9a-f]{64})\nsize (\d+)\n", text)
    if not m or int(m.group(2)) != size:
        return False
    return sha256_file(path, follow=False) == m.group(1).decode()


def git_clean(repo, state, entries):
    """Problems where the working files are not exactly the commit's: compared file by file
    with `git ls-tree` (sizes first, then blob hashes computed here; nothing is filtered)."""
    gitdir = os.path.join(repo, ".git")
    listing = git(gitdir, "ls-tree", "-r", "-z", "-l", "--full-tree", "HEAD", binary=True)
    if listing is None:
        return [f"the commit's files cannot be listed ({git.error[:200]})"]
    tracked, submodules = {}, []
    for rec in listing.split(b"\0"):
        if not rec:
            continue
        meta, _, name = rec.partition(b"\t")
        mode, kind, oid, size = meta.decode().split()
        name = name.decode("utf-8", "surrogateescape")
        if kind == "commit":
            submodules.append(name)
        else:
            tracked[name] = (mode, oid, int(size) if size.isdigit() else -1)
        if len(tracked) > MAX_ENTRIES:
            return [f"the commit holds more than {MAX_ENTRIES:,} files: not compared"]
    files = {rel: size for rel, (kind, size) in entries.items() if kind == "file"}
    changed, missing = [], []
    for rel, (mode, oid, size) in sorted(tracked.items()):
        if mode == "120000":
            continue  # a link in the commit: scan_tree refuses what is there in its place
        if rel not in files:
            missing.append(rel)
        elif files[rel] != size:
            if not (0 <= size < 1024 and _lfs_matches(gitdir, oid, os.path.join(repo, rel), files[rel])):
                changed.append(rel)
        elif _blob_hash(os.path.join(repo, rel), size, state["format"]) != oid:
            changed.append(rel)
    extra = sorted(set(files) - set(tracked))
    problems = [f"it holds a git submodule ({', '.join(map(printable, submodules[:3]))}): submodules are not reviewed"] \
        if submodules else []
    parts = [f"{len(names)} {what} ({', '.join(map(printable, names[:3]))}{', ...' if len(names) > 3 else ''})"
             for what, names in (("changed", changed), ("not in the commit", extra), ("missing", missing)) if names]
    if parts:
        problems.append(f"the checkout has local changes against its commit {state['head'][:12]}: "
                        f"{'; '.join(parts)}: review a clean checkout")
    return problems


def check_commit(repo, commit, entries=None):
    """(state, problems): HEAD against the announced commit, and the working files against HEAD."""
    state, problems = git_state(repo)
    if not state:
        return state, problems
    if len(commit) < 7 or not state["head"].startswith(commit.lower()):
        return state, [f"the checkout is at {state['head'][:12]}, not the announced commit {short(commit)}"]
    if entries is None:
        entries, _ = scan_tree(repo)
    return state, git_clean(repo, state, entries)


def repository_of(repo):
    """{'roots': the root commits of HEAD's history, 'remotes': its remote URLs (host/path, no
    user or password)}: what tells one repository from another recorded under the same team
    name. Read with the same plumbing and settings as git_state (the config file is read as
    data by `git config --file`, which follows no include and runs nothing); call it only where
    git_state found a readable HEAD."""
    gitdir = os.path.join(repo, ".git")
    roots = (git(gitdir, "rev-list", "--max-parents=0", "HEAD") or "").split()
    urls = git(gitdir, "config", "--file", os.path.join(gitdir, "config"), "--get-regexp", r"^remote\..*\.url$")
    remotes = [_remote_key(line.partition(" ")[2]) for line in (urls or "").splitlines()]
    return {"roots": sorted(set(roots)), "remotes": sorted({r for r in remotes if r})}


def _remote_key(url):
    """A remote URL as host/path, lower-case, without user, password, port, scheme or .git, so that
    https://github.com/a/b.git and git@github.com:a/b are the same remote."""
    url = url.strip()
    scp = re.fullmatch(r"(?:[^@/]+@)?([^:/]+):(?!//)(.+)", url)
    if scp:
        host, path = scp.groups()
    else:
        parts = urlsplit(url)
        host, path = (parts.hostname or "", parts.path) if parts.scheme else ("", url)
    path = path.strip().rstrip("/")
    path = path[:-4] if path.endswith(".git") else path
    return f"{host}/{path.strip('/')}".lower() if path.strip("/") else ""
