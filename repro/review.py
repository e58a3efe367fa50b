"""Review a reproduction contest's submissions: python -m repro.review CONTEST SUBMISSIONS [--out DIR]

CONTEST is a contest file (configs/contests/, repro/judge/contest.py); SUBMISSIONS
lists what the maintainers received (its format: `--help`, or EPILOG below).

Every submission is reviewed on its own: whatever one of them holds (links out
of it, FIFOs, a 100 GB file, a hostile .git/config, a name that breaks a
table, a NUL byte in its listing), it gets that as its reason in one line and the others are reviewed as
if it were not there; status.md is always written. For each submission: its
files are listed without following links or opening anything that is not a
regular file; the layout (README, requirements.txt naming paddlepaddle, the
plugin package, logs/); the checkout against the announced commit, read with
git plumbing that runs nothing the repository's config names, the working
files compared with the commit's blobs by this module's own hashing; its
receipt (the commit and tree recorded at its first review) against what is
there now; the code identity of every run; then verify against the contest's
targets (never the plugin's own) with recompute and the contest's replay
coverage, paper code running only in sandboxed workers. Runs whose final or
kept weights are another submission's are copies of the earlier-recorded one,
unless both are one team's submissions of one repository (same_repository); two
repositories recorded under one team name are flagged for a human.
The first submission, in the maintainers' time order, that passes the full
review before the deadline reproduces its paper; a --logs-only review names no
winner (every pass is "pending full review").

A text-to-image paper's submission (a contest entry of kind text_to_image) is
a repository holding a bundle repro.diffusion.submit wrote: after the same
file, commit and receipt checks, repro.diffusion.judge checks its SHA256SUMS,
model card, works and declared base model, has every work drawn again from its
weights in the sandbox, compares the pixels and computes the scores; a bundle
with another team's weights is a copy.

Writes into --out (default ./review): status.md (the table for the pinned
issue), review.json, index.html, receipts.json (never overwritten: entries are
only added) and one review page per submission. No path of the maintainer's
machine appears in them: runs are named by their path inside the submission.
What failed workers wrote in full goes to workers.log (write_worker_log: 0600,
the maintainers' own, linked from none of them).
"""
import argparse
import hashlib
import html
import json
import math
import os
import re
import secrets
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime
from urllib.parse import urlsplit

import numpy as np

from repro import strict
from repro.boundary.sandbox import Sandbox
from repro.errors import ReproError, run_cli
from repro.judge import exchange
from repro.judge.contest import parse_time, protocol_of, read_contest
from repro.page import CSS, render
from repro.strict import sha256_file
from repro.verify import Options, private_of, verify

EPILOG = """submissions file (YAML), in the order the maintainers recorded them:

  submissions:
    - team: alpha                # printable, at most 64 characters, no newline
      paper: mnist1d_repro       # a paper (plugin) of the contest
      repo: subs/alpha           # the checked-out repository (relative to this file)
      commit: 3f2a9c1            # the commit the team announced: 7 to 40 hex digits
      time: "2027-01-05T10:00:00+08:00"   # when the maintainers recorded it (with its
                                          # time zone); never a time from the logs

For a text-to-image paper (a contest entry of kind text_to_image), repo holds
the bundle python -m repro.diffusion.submit wrote, at its top or in one folder.

Every value is short printable text (repo at most 4096 characters). A listing
that cannot be used (a control character, a value that is not text, a missing
or unknown key, a paper the contest lacks, a second listing of one submission)
is that submission's own one-line reason; the others are reviewed.

The review orders submissions by time. Each leaves a receipt at its first
review (its commit and git tree) in DIR/receipts.json, keyed by team, paper and
time: a later review that finds another commit or tree there reports the
submission as changed, and it cannot win. Without --logs-only, recompute and
the replay audit run the submitted code in the bubblewrap sandbox (refused
where bubblewrap is missing, unless --no-sandbox, which every page then states).
"""

MAX_TEAM = 64
COMMIT = re.compile(r"[0-9a-fA-F]{7,40}|[0-9a-fA-F]{64}")
MAX_REQUIREMENTS_BYTES = 64 << 10
MAX_ENTRIES = 200_000          # files and folders a submission may hold
MAX_FILE_BYTES = 16 << 30      # any one file of a submission (from its size: never read to find out)
GIT_TIMEOUT = 60
MAX_WHY = 700                  # characters of reasons in one status.md cell (whole reasons, never cut paths)
RECEIPTS = "receipts.json"
WORKER_LOG = "workers.log"     # the maintainers' own: what workers said in full (write_worker_log)
READMES = ("README.md", "README.rst", "README.txt", "README")
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


@dataclass
class ReviewOptions:
    """How far the review goes. recompute/replay: run the submitted code (False: --logs-only);
    sandbox: 'required' or 'off' (--no-sandbox); challenge: one secret for every submission."""
    recompute: bool = True
    replay: bool = True
    challenge: str = None
    jobs: int = 1
    timeout: int = 3600
    progress: object = None
    sandbox: str = "required"
    private: dict = None  # {(paper, experiment): repro.judge.private.PrivateEval}, built once for every submission
    cache: dict = None    # what one review computes once for several submissions (text-to-image redraws)

    @property
    def runs_code(self):
        return self.recompute or self.replay


# ------------------------------------------------------------------ the submissions file

def read_submissions(path, contest):
    """[submission] in the maintainers' time order. A file that is not a list of submissions is
    one ReproError line; whatever is wrong with one submission (a missing or unknown key, a value
    that is not short printable text, a paper the contest lacks, a time without its zone) is that
    submission's own reason (sub["invalid"]), and the others are read as if it were not there."""
    data = strict.read_yaml(path, "submissions file")
    where = f"submissions file {path}"
    items = data.get("submissions") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ReproError(f"{where}: needs a list under 'submissions'")
    base = os.path.dirname(os.path.abspath(path))
    out = [_submission(item, i, base, contest) for i, item in enumerate(items)]
    seen = set()
    for s in out:
        key = (s["team"], s["paper"], s["time"])
        if key in seen and not s["invalid"]:
            s["invalid"].append(f"{_short(s['team'])} / {s['paper']} at {s['time']} is listed twice in the "
                                f"submissions file (a receipt names one submission by team, paper and time): "
                                f"the earlier listing is reviewed")
            s["repo"] = None
        seen.add(key)
    # the maintainers' order, never the logs'; a submission without a readable time goes last
    return sorted(out, key=lambda s: (s["recorded"] is None, s["recorded"] or contest.deadline, s["listed"]))


SUBMISSION_KEYS = ("team", "paper", "repo", "commit", "time")
MAX_FIELD = {"team": MAX_TEAM, "paper": 100, "repo": 4096, "commit": 64, "time": 64}  # characters


def _submission(item, i, base, contest):
    """One listing of the submissions file: a submission whose repo is None is not reviewed (its
    invalid reasons say why); an invalid team name or commit is said, and the repository still reviewed."""
    sub = {"team": f"(submissions[{i}])", "paper": "-", "commit": "-", "time": "-", "repo": None, "recorded": None,
           "listed": i, "invalid": []}
    if not isinstance(item, dict):
        sub["invalid"].append(f"submissions[{i}] is {type(item).__name__} {_short(item)}, not a mapping of "
                              f"{', '.join(SUBMISSION_KEYS)}")
        return sub
    bad = {}
    for key in SUBMISSION_KEYS:
        if key not in item:
            bad[key] = f"it has no {key}"
            continue
        why = _field_problem(key, item[key])
        if why:
            bad[key] = f"its {key} {why}"
        if key != "repo":  # a repository is named only once it can be read (below)
            sub[key] = _short(item[key]) if why else item[key]
    unknown = sorted(map(_short, set(item) - set(SUBMISSION_KEYS)))
    if unknown:
        bad["unknown"] = f"it has an unknown key {unknown[0]} (known: {', '.join(SUBMISSION_KEYS)})"
    _check_values(sub, contest, bad)
    sub["invalid"] = list(bad.values())
    if not set(bad) - {"team", "commit"}:  # what the review needs is there: the repository is read
        sub["repo"] = os.path.normpath(os.path.join(base, item["repo"]))
    return sub


def _check_values(sub, contest, bad):
    """What the listing's text fields mean, each not already in bad: a paper of the contest, a time
    with its zone (sub["recorded"]), a plain team name, an announced commit. Adds to bad."""
    if "paper" not in bad and not any(e.plugin == sub["paper"] for e in contest.papers):
        bad["paper"] = f"its paper {_short(sub['paper'])} is not in the contest {contest.name!r}"
    if "time" not in bad:
        try:
            sub["recorded"] = parse_time(sub["time"], "its time")
            sub["time"] = sub["recorded"].isoformat()
        except ReproError as e:
            bad["time"] = str(e)
    if "team" not in bad and (not sub["team"].isprintable() or sub["team"] != sub["team"].strip()):
        bad["team"] = (f"the team name {_short(sub['team'])} is not a name (printable, at most {MAX_TEAM} "
                       f"characters, no newline or surrounding spaces): the maintainers must record a plain one")
    if "commit" not in bad and not COMMIT.fullmatch(sub["commit"]):
        bad["commit"] = f"the announced commit {_short(sub['commit'])} is not 7 to 40 hex digits"


def _field_problem(key, value):
    """Why a submission's field cannot be used (None when it can): text, printable, not too long."""
    if not isinstance(value, str) or not value:
        return f"must be non-empty text, not {type(value).__name__} {_short(value)}"
    if len(value) > MAX_FIELD[key]:
        return f"is {len(value):,} characters long, over the {MAX_FIELD[key]} it may have"
    if key != "team" and not value.isprintable():  # the team's own check below says more
        return f"{_short(value)} holds a control character"
    return None


def printable(text):
    """Text on one line with nothing a terminal or a page would act on: other characters
    (new lines, controls, bytes that are not UTF-8) written as escapes."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else
                   (f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else repr(c)[1:-1]) for c in text)


def _short(text, n=40):
    text = repr(text)
    return text if len(text) <= n else text[:n - 3] + "..."


# ------------------------------------------------------------------ the files of a submission

def scan_tree(repo):
    """(entries, problems): {relative path: (kind, size)} of everything under repo except
    the top .git folder, from lstat alone (nothing is followed or opened); kind is 'file',
    'dir' or what else it is. problems: {path: reason} of what a submission may not hold."""
    entries, problems, stack = {}, {}, [""]
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(os.path.join(repo, rel) if rel else repo) as it:
                items = sorted(it, key=lambda e: e.name)
        except OSError as e:
            problems[rel or "."] = f"{rel or 'the repository'} cannot be listed ({e.strerror or e})"
            continue
        for item in items:
            path = f"{rel}/{item.name}" if rel else item.name
            if path == ".git":
                continue
            if len(entries) >= MAX_ENTRIES:
                problems["."] = f"the repository holds more than {MAX_ENTRIES:,} files and folders: not read further"
                return entries, problems
            shown = printable(path)
            try:
                st = item.stat(follow_symlinks=False)
            except OSError as e:
                problems[path] = f"{shown} cannot be read ({e.strerror or e})"
                continue
            if stat.S_ISDIR(st.st_mode):
                entries[path] = ("dir", 0)
                stack.append(path)
            elif stat.S_ISREG(st.st_mode):
                entries[path] = ("file", st.st_size)
                if st.st_size > MAX_FILE_BYTES:
                    problems[path] = (f"{shown} is {st.st_size:,} bytes, over the {MAX_FILE_BYTES >> 30} GiB a file of "
                                      f"a submission may have (not read)")
            else:
                kind = next((what for test, what in _KINDS if test(st.st_mode)), "not a regular file")
                entries[path] = (kind, 0)
                problems[path] = (f"{shown} is {kind}: a submission holds regular files and folders only "
                                  f"(never followed or opened)")
    return entries, problems


def _open_regular(path, max_bytes):
    """The bytes of a regular file (never a link, never a FIFO), at most max_bytes; None if bigger."""
    fd = os.open(path, _FILE)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ReproError(f"{path} is not a regular file")
        data = os.read(fd, max_bytes + 1)
        return None if len(data) > max_bytes else data
    finally:
        os.close(fd)


def check_layout(repo, plugin, entries=None):
    """(problems, plugin package folder or None) of a submitted repository; entries: scan_tree's."""
    if not os.path.isdir(repo):
        return ["the repository is not there (check it out first)"], None
    if entries is None:
        entries, _ = scan_tree(repo)
    kind = lambda rel: entries.get(rel, (None, 0))[0]
    problems = []

    def wrong(rel, want):
        got = kind(rel)
        return got is not None and got != want and f"{rel} is {got}, not a {'folder' if want == 'dir' else 'regular file'}"

    if not any(kind(n) == "file" for n in READMES):
        problems.append(next((w for w in (wrong(n, "file") for n in READMES) if w), "no README"))
    req = "requirements.txt"
    if kind(req) != "file":
        problems.append(wrong(req, "file") or "no requirements.txt")
    else:
        try:
            data = _open_regular(os.path.join(repo, req), MAX_REQUIREMENTS_BYTES)
        except (OSError, ReproError) as e:
            data, problems = b"", problems + [f"requirements.txt cannot be read ({getattr(e, 'strerror', None) or e})"]
        if data is None:
            problems.append(f"requirements.txt is over {MAX_REQUIREMENTS_BYTES >> 10} KiB")
        else:
            names = [ln.split("#")[0].strip().lower() for ln in data.decode("utf-8", "replace").splitlines()]
            if not any(n.startswith(("paddlepaddle", "paddlepaddle-gpu")) for n in names):
                problems.append("requirements.txt does not name paddlepaddle")
    package = None
    for rel in (plugin, f"src/{plugin}"):
        if kind(rel) == "dir" and kind(f"{rel}/__init__.py") == "file":
            package = os.path.join(repo, rel)
            break
    if package is None:
        problems.append(next((w for w in (wrong(plugin, "dir"), wrong(f"{plugin}/__init__.py", "file")) if w),
                             f"no plugin package {plugin}/ (with __init__.py) at the repository's top or under src/"))
    if kind("logs") != "dir":
        problems.append(wrong("logs", "dir") or "no logs/ folder with the training runs")
    return problems, package


# ------------------------------------------------------------------ git, running nothing the repository names

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
    fd = os.open(path, _FILE)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
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
        return state, [f"the checkout is at {state['head'][:12]}, not the announced commit {_short(commit)}"]
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


def same_repository(a, b):
    """Whether two reviewed submissions are one repository: a root commit in common and, where both
    name remotes, a remote in common. False where either could not be read (no git checkout)."""
    ia, ib = a.get("_repository"), b.get("_repository")
    if not ia or not ib or not set(ia["roots"]) & set(ib["roots"]):
        return False
    return not (ia["remotes"] and ib["remotes"] and not set(ia["remotes"]) & set(ib["remotes"]))


def _why_other_repository(a, b):
    ia, ib = a.get("_repository"), b.get("_repository")
    if not ia or not ib:
        return "one of them is not a readable git checkout"
    if not set(ia["roots"]) & set(ib["roots"]):
        return (f"another root commit: {', '.join(r[:12] for r in ia['roots'][:3])} against "
                f"{', '.join(r[:12] for r in ib['roots'][:3])}")
    return "another remote URL in its git config"


# ------------------------------------------------------------------ receipts

def read_receipts(out_dir):
    """The receipts of earlier reviews ([] when none); a damaged file stops the review (it is never replaced)."""
    path = os.path.join(out_dir, RECEIPTS)
    if not os.path.lexists(path):
        return []
    data = strict.read_json(path, "receipts file")
    items = data.get("receipts") if isinstance(data, dict) else None
    if not isinstance(items, list) or not all(isinstance(r, dict) and {"team", "paper", "time"} <= set(r)
                                              for r in items):
        raise ReproError(f"receipts file {path} is not a list of receipts: restore it (it is never overwritten)")
    return items


def write_receipts(out_dir, receipts):
    path = os.path.join(out_dir, RECEIPTS)
    before = read_receipts(out_dir)  # written since we read them: keep those too (entries are only added)
    keys = {_receipt_key(r) for r in receipts}
    merged = receipts + [r for r in before if _receipt_key(r) not in keys]
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"note": "one receipt per submission, recorded at its first review; never edited",
                   "receipts": merged}, f, indent=1)
    os.replace(tmp, path)


def _receipt_key(r):
    return (r["team"], r["paper"], r["time"])


def check_receipt(sub, state, receipts):
    """Problems where the submission is not what its receipt recorded; adds its receipt at the first review."""
    key = (sub["team"], sub["paper"], sub["time"])
    found = next((r for r in receipts if _receipt_key(r) == key), None)
    if found is None:
        if state:
            receipts.append({"team": sub["team"], "paper": sub["paper"], "time": sub["time"],
                             "commit": state["head"], "tree": state["tree"],
                             "first_reviewed": now_iso()})
        return []
    now = (state.get("head"), state.get("tree"))
    if now != (found.get("commit"), found.get("tree")):
        return [f"it changed since its receipt of {found.get('first_reviewed', 'its first review')} (commit "
                f"{str(found.get('commit'))[:12]}, tree {str(found.get('tree'))[:12]} then; now "
                f"{str(now[0])[:12]}, {str(now[1])[:12]}): a recorded submission cannot change, so it cannot win"]
    return []


# ------------------------------------------------------------------ reviewing one submission

def _replay_of(entries):
    """One replay setting for a paper's entries: theirs when they agree, else every segment."""
    settings = {e.replay for e in entries}
    return settings.pop() if len(settings) == 1 else "all"


class _Scrub:
    """Text for the outputs: paths of this machine replaced by paths inside the submission."""

    def __init__(self, repo=None, extra=()):
        roots = []
        for path, label in ((repo, ""), *extra):
            if path:
                for p in dict.fromkeys((os.path.abspath(path), os.path.realpath(path))):
                    roots.append((p, label))
        harness = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        roots += [(harness, "<harness>"), (sys.prefix, "<python>"), (os.path.realpath(tempfile.gettempdir()), "<tmp>"),
                  (tempfile.gettempdir(), "<tmp>"), (os.path.expanduser("~"), "~")]
        self.roots = sorted(((p.rstrip(os.sep), label) for p, label in roots if len(p) > 1), key=lambda r: -len(r[0]))

    def __call__(self, text):
        text = printable(text)
        for root, label in self.roots:
            if root in text:
                text = re.sub(re.escape(root) + r"(?:/|(?![\w.-]))",
                              lambda m: (f"{label}/" if label else "") if m.group(0).endswith("/") else (label or "."),
                              text)
        return text


def review_one(sub, contest, out_dir, options, receipts=None, scrub_extra=()):
    """One submission's result (a dict); nothing it holds can raise out of here."""
    result = {"team": sub["team"], "paper": sub["paper"], "commit": sub["commit"], "time": sub["time"],
              "late": sub["recorded"] is not None and sub["recorded"] > contest.deadline, "problems": [],
              "ok": False, "head": None, "tree": None, "checks": [], "runs": [], "targets": [], "full_review": False,
              "flags": []}
    if sub["repo"] is None:  # the listing itself is unusable: its reasons are all there is to say
        result["problems"] = [printable(p) for p in sub["invalid"]]
        return result
    scrub = printable
    try:
        scrub = _Scrub(sub["repo"], scrub_extra)
        _review(sub, contest, options, receipts if receipts is not None else [], result, scrub)
    except Exception as e:  # noqa: BLE001 -- one submission's failure is its reason, never everyone's traceback
        what = str(e) if isinstance(e, ReproError) else f"{type(e).__name__}: {e}"
        result["problems"].append(f"the review of {_short(sub['team'])} / {sub['paper']} stopped: {scrub(what)}")
        result["ok"] = False
    result["problems"] = [scrub(p) for p in result["problems"]]
    return result


def _review(sub, contest, options, receipts, result, scrub):
    entries = contest.entries(sub["paper"])
    repo = sub["repo"]
    result["problems"] += sub.get("invalid", [])
    if not os.path.isdir(repo):
        result["problems"].append("the repository is not there (check it out first)")
        return
    tree, hostile = scan_tree(repo)
    if getattr(entries[0], "kind", "") == "text_to_image":
        return _review_bundle(sub, entries[0], options, receipts, result, tree, hostile, contest.budget)
    layout, package = check_layout(repo, sub["paper"], tree)
    named = {p.split(" ")[0] for p in layout}
    result["problems"] += layout + [why for path, why in sorted(hostile.items()) if path not in named]
    state, problems = check_commit(repo, sub["commit"], tree)
    result["problems"] += problems
    result["head"], result["tree"] = state.get("head"), state.get("tree")
    result["_repository"] = repository_of(repo) if state else None
    if not sub.get("invalid"):
        result["problems"] += check_receipt(sub, state, receipts)
    if package is None or tree.get("logs", (None,))[0] != "dir" or hostile:
        return
    logs = os.path.join(repo, "logs")
    opts = Options(recompute=options.recompute, replay=_replay_of(entries) if options.replay else 0,
                   challenge=options.challenge, jobs=options.jobs, timeout=options.timeout,
                   progress=options.progress, protocol_of=protocol_of(contest, repo), sandbox=options.sandbox,
                   tree=repo, plugin=package, private=options.private if options.recompute else None,
                   budget=contest.budget)
    result["_last_words"] = opts.last_words  # failed workers' full words: workers.log, never a page
    try:
        verdict = verify([logs], opts)
    except ReproError as e:
        result["problems"].append(str(e))
        return
    rows, runs, report = verdict.rows, verdict.runs, verdict.json()
    judged = {(r["paper"], r["exp"]) for r in rows}
    result["problems"] += [f"no run of {e.plugin}/{e.experiment}, which the contest judges" for e in entries
                           if (e.plugin, e.experiment) not in judged]
    result["runs"] = [_run_result(run, got, opts, repo, scrub) for run, got in zip(runs, report["runs"])]
    result["_runs"] = runs
    result["targets"] = [{**row, "why": scrub(row["why"]), "source": scrub(row.get("source", ""))} for row in rows]
    result.update(checked=scrub(report.get("checked", opts.assurance())), challenge=report.get("challenge"),
                  checks=list(report.get("checks") or _checks(opts)),
                  sandbox=report.get("sandbox") or _sandbox_text(opts))
    result["full_review"] = bool(result["runs"]) and all(
        "recompute" in r["checks"] and "replay" in r["checks"] for r in result["runs"])
    result["ok"] = verdict.ok and not result["problems"]
    result["_render"] = (rows, runs, opts, scrub)  # for the page, written once the ledger is known


def _review_bundle(sub, entry, options, receipts, result, tree, hostile, budget):
    """A text-to-image submission: a repository holding the bundle repro.diffusion.submit wrote,
    checked like any submission (files, commit, receipt), then by repro.diffusion.judge: its
    files against SHA256SUMS, its card, its works redrawn in the sandbox from its weights, and
    the scores computed here from the redrawn works, within the contest's time budget."""
    started, repo = time.monotonic(), sub["repo"]
    result["problems"] += [why for _, why in sorted(hostile.items())]
    state, problems = check_commit(repo, sub["commit"], tree)
    result["problems"] += problems
    result["head"], result["tree"] = state.get("head"), state.get("tree")
    result["_repository"] = repository_of(repo) if state else None
    if not sub.get("invalid"):
        result["problems"] += check_receipt(sub, state, receipts)
    if hostile:
        return
    if options.runs_code:
        result["sandbox"] = ("none: the harness's redraw worker loaded the submitted weights as data, "
                             + ("WITHOUT the sandbox (--no-sandbox)" if options.sandbox == "off" else "in bubblewrap"))
    from repro.diffusion.judge import review_bundle
    review_bundle(repo, tree, entry, options, result, deadline=started + budget)
    result["ok"] = not result["problems"] and all(t.get("passed") for t in result["targets"])


def _checks(opts):
    return opts.checks() if hasattr(opts, "checks") else \
        ["logs", "code identity"] + (["recompute"] if opts.recompute else []) + (["replay"] if opts.replay else [])


def _sandbox_text(opts):
    if hasattr(opts, "sandbox_text"):
        return opts.sandbox_text()
    return "no code run" if not (opts.recompute or opts.replay) else "unknown"


def _run_result(run, got, opts, repo, scrub):
    """What review.json and the pages say of one run: relative path, checks that ran, coverage, weights."""
    checks = got.get("checks")
    if checks is None:
        checks = [c for c in _checks(opts) if (c != "recompute" or run.recomputed is not None)
                  and (c != "replay" or run.replayed)]
    coverage = got.get("coverage") or getattr(run, "coverage", None)
    final = got.get("final_weights") or getattr(run, "final_weights", None) or _logged_final(run)
    kept = got.get("kept_weights")
    if kept is None:
        kept = sorted(set(getattr(run, "kept_weights", {}).values()))
    rel = printable(os.path.relpath(run.path, repo))
    replay = [{k: scrub(v) if isinstance(v, str) else v for k, v in seg.items()} if isinstance(seg, dict) else seg
              for seg in run.replayed]
    text = lambda v: printable(v) if isinstance(v, str) else v
    return {"path": rel, "paper": text(run.header.get("paper")), "exp": text(run.header.get("exp")),
            "seed": run.seed, "problems": [scrub(p) for p in run.problems],
            "warnings": [scrub(w) for w in run.warnings],
            "metrics": run.metrics, "recomputed": run.recomputed, "replay": replay, "checks": list(checks),
            "coverage": coverage, "coverage_text": got.get("coverage_text") or coverage_text(coverage),
            "final_weights": final or None, "kept_weights": list(kept), "private": got.get("private")}


def _logged_final(run):
    """The final checkpoint's weights_sha256 as the log names it (before verify reported the weights)."""
    end = run.last("run_end") if run.events else None
    steps = end.get("step") if isinstance(end, dict) else None
    ckpts = run.checkpoints() if run.events else {}
    ev = ckpts.get(steps) or (ckpts[max(ckpts)] if ckpts else None)
    value = ev.get("weights_sha256") if isinstance(ev, dict) else None
    return value if isinstance(value, str) else None


def coverage_text(cov):
    """'replayed 3 of 8 segments, 38% of steps; one forged segment escapes with probability at most 62%'."""
    if not isinstance(cov, dict) or not cov.get("segments"):
        return None
    share = cov.get("steps", 0) / max(1, cov.get("total_steps") or 0)
    text = f"replayed {cov.get('replayed', 0)} of {cov['segments']} segments, {share:.0%} of steps"
    escape = cov.get("escape") or 0.0
    return text + (f"; one forged segment escapes with probability at most {escape:.0%}" if escape > 0
                   else "; every segment replayed")


def private_summary(result):
    """The judged metric on the public split and on the contest's private one, mean over the runs
    evaluated on both ('-' where the contest names no private evaluation or nothing was run)."""
    both = [r["private"] for r in result.get("runs") or [] if isinstance(r.get("private"), dict)
            and isinstance(r["private"].get("public"), (int, float)) and isinstance(r["private"].get("private"), (int, float))]
    if not both:
        return "-"
    pub = sum(p["public"] for p in both) / len(both)
    priv = sum(p["private"] for p in both) / len(both)
    bad = sum(not p.get("agrees") for p in both)
    return f"{pub:.2f} / {priv:.2f} over {len(both)} runs" + (f"; {bad} disagree" if bad else "")


def audit_summary(result):
    """The weakest run's audit, in words: what status.md says per submission (for a text-to-image
    bundle: its works' redraw)."""
    if result.get("bundle") is not None:
        return result["bundle"].get("summary") or "-"
    runs = result.get("runs") or []
    if not runs:
        return "-"
    if not all("replay" in r["checks"] for r in runs):
        done = sum("replay" in r["checks"] for r in runs)
        return "no replay" if not done else f"replay on {done} of {len(runs)} runs only"
    covs = [r["coverage"] for r in runs if isinstance(r.get("coverage"), dict) and r["coverage"].get("segments")]
    if len(covs) < len(runs):
        return f"replay on {len(runs)} runs"
    share = min(c.get("steps", 0) / max(1, c.get("total_steps") or 0) for c in covs)
    escape = max(c.get("escape") or 0.0 for c in covs)
    return (f"weakest run: {share:.0%} of steps replayed; "
            + (f"a forged segment escapes with p <= {escape:.0%}" if escape > 0 else "every segment replayed"))


# ------------------------------------------------------------------ across submissions

def _reviewed(sub, contest, out_dir, options, receipts, extra, earlier):
    """One submission's review. With code to run, its logs are read first: a submission whose
    runs' weights are an earlier one's (a copy, flag_copies) is refused from that quick pass,
    without running its code (a copy's audit would only repeat the earlier one's)."""
    if not options.runs_code:
        return review_one(sub, contest, out_dir, options, receipts, extra)
    quick = review_one(sub, contest, out_dir, replace(options, recompute=False, replay=False), receipts, extra)
    if _copies_earlier(quick, earlier):
        quick["problems"].append("refused as a copy from its logs, before running its code")
        return quick
    return review_one(sub, contest, out_dir, options, receipts, extra)


def _copies_earlier(result, earlier):
    """Whether any run of result has final or kept weights of a run of an earlier submission
    (not its own team's resubmission of the same repository)."""
    weights = lambda r: {w for run in r.get("runs") or [] for w in [run.get("final_weights")]
                         + list(run.get("kept_weights") or []) if w}
    mine = weights(result)
    return bool(mine) and any(mine & weights(r) and not _resubmission(r, result) for r in earlier)


def _resubmission(first, later):
    """A team's own earlier submission (resubmitted with its layout fixed) may lend the later one
    its runs: the same team name and the same repository (same_repository)."""
    return first["team"] == later["team"] and same_repository(first, later)


def _same_name(first, later):
    return (f" (recorded under the same team name, but {_why_other_repository(later, first)}: only a "
            f"resubmission of the same repository may carry its runs)" if first["team"] == later["team"] else "")


def flag_copies(results):
    """A run whose final or kept weights are a run's of an earlier-recorded submission is a copy of
    that one, whatever the team names (but for a team's resubmission of the same repository): the
    later submission fails with that reason, the earlier is unaffected."""
    seen = {}
    for r in results:  # in the maintainers' time order
        found = []
        for run in r["runs"]:
            weights = [("final weights", run.get("final_weights"))] + \
                      [("weights at a kept checkpoint", w) for w in run.get("kept_weights") or []]
            for what, w in weights:
                first = seen.get(w) if w else None
                if first is not None and first[0] is not r and not _resubmission(first[0], r):
                    other, orun = first
                    why = (f"its {what} are identical to those of {other['team']}'s run {orun['path']} "
                           f"({other['paper']}, recorded earlier: {other['time']}): a copy of that submission"
                           + _same_name(other, r))
                    run["problems"].append(why)
                    run["copy_of"] = {"team": other["team"], "time": other["time"], "run": orun["path"]}
                    found.append((run, why))
                    break
        for run in r["runs"]:
            for w in [run.get("final_weights")] + list(run.get("kept_weights") or []):
                if w and w not in seen:
                    seen[w] = (r, run)
        if found:
            r["ok"] = False
            objects = dict(zip(map(id, r["runs"]), r.get("_runs", [])))
            for run, why in found:
                if id(run) in objects:
                    objects[id(run)].problems.append(why)  # for its page


def flag_team_names(results):
    """Two different repositories (same_repository) recorded under one team name are flagged for a
    human on both submissions, each naming the other: one team name is one team. A flag is said
    everywhere (status.md, review.json, the pages) and decides nothing by itself."""
    for i, later in enumerate(results):
        for first in results[:i]:
            if first["team"] == later["team"] and first.get("head") and later.get("head") \
                    and not same_repository(first, later):
                why = _why_other_repository(later, first)
                later["flags"].append(f"the team name {_short(later['team'])} was recorded earlier for another "
                                      f"repository ({_named(first)}; {why}): one team name is one team, so a human "
                                      f"must decide whether these are one team")
                first["flags"].append(f"the team name {_short(first['team'])} was recorded later for another "
                                      f"repository ({_named(later)}; {why}): a human must decide whether these "
                                      f"are one team")
                break


def _named(r):
    return f"{r['paper']} at {r['time']}, commit {str(r.get('head') or r['commit'])[:12]}"


NEAR_COPY = 1e-3  # relative distance under which two bundles' LoRA tensors are the same weights


def _lora_tensors(r):
    """{name: array} of a reviewed bundle's LoRA (the judge read it already), or None."""
    path = r.get("_weights")
    if not path:
        return None
    try:
        arrays, _ = exchange.read_arrays(path, "the bundle's LoRA weights", 2 << 30)
    except (ReproError, OSError):
        return None
    return arrays


def weights_distance(a, b):
    """|a - b| / |b| over every tensor (b the earlier bundle's), or None where they are not the
    same tensors (names, shapes) or b is all zeros."""
    if a is None or b is None or set(a) != set(b) or any(a[k].shape != b[k].shape for k in a):
        return None
    f64 = lambda v: np.asarray(v, np.float64)
    norm = math.sqrt(sum(float(np.sum(f64(v) ** 2)) for v in b.values()))
    if not norm:
        return None
    return math.sqrt(sum(float(np.sum((f64(a[k]) - f64(b[k])) ** 2)) for k in a)) / norm


def flag_copied_bundles(results):
    """A text-to-image bundle whose LoRA tensors are those of another team's earlier-recorded
    bundle, or within NEAR_COPY of them (relative distance), is a copy of it: the later one
    fails, the earlier is unaffected (a team's resubmission of the same repository is not a copy)."""
    seen = []
    for r in results:  # in the maintainers' time order
        digest = (r.get("bundle") or {}).get("weights_sha256")
        if not digest:
            continue
        tensors = _lora_tensors(r)
        for first, first_digest, first_tensors in seen:
            if _resubmission(first, r):
                continue
            where = (f"{first['team']}'s bundle ({first['paper']}, recorded earlier: {first['time']})"
                     + _same_name(first, r))
            if first_digest == digest:
                why = f"its weights are identical to those of {where}: a copy of that submission"
            else:
                d = weights_distance(tensors, first_tensors)
                if d is None or d >= NEAR_COPY:
                    continue
                why = (f"its weights are those of {where} but for a relative difference of {d:.1e} (under "
                       f"{NEAR_COPY:g}): a copy of that submission")
            r["problems"].append(why)
            r["bundle"]["copy_of"] = {"team": first["team"], "time": first["time"]}
            r["ok"] = False
            break
        seen.append((r, digest, tensors))


def _bar(e):
    return e.bar() if getattr(e, "kind", "") == "text_to_image" else f"{e.metric} {e.target().bar()}"


def _policy(e):
    return "one bundle" if getattr(e, "kind", "") == "text_to_image" else str(e.target().policy)


def ledger(results, contest):
    """Mark each submission: the first to pass the full review (in time order) reproduces its paper."""
    winners, pending = {}, {}
    for r in results:
        paper = r["paper"]
        if r["late"]:
            r["status"] = "late: recorded after the deadline"
        elif not r["ok"]:
            r["status"] = "not reproduced"
        elif not r["full_review"]:
            r["status"] = "pending full review: passes the checks that ran (no recompute and replay of every run)"
            pending.setdefault(paper, []).append(r)
        elif paper in winners:
            w = winners[paper]
            r["status"] = f"passes, but {w['team']} reproduced {paper} first ({w['time']}): does not count"
        elif paper in pending:
            r["status"] = (f"passes; {pending[paper][0]['team']}, recorded earlier, is pending its full review, "
                           f"so the winner is not decided")
            pending[paper].append(r)
        else:
            winners[paper] = r
            r["status"] = "REPRODUCED: first to reach the bar"
        caveats = (r.get("bundle") or {}).get("caveats")  # a tolerant redraw, a smoke run's weights: said
        if r["ok"] and not r["late"] and caveats:
            r["status"] += f" ({'; '.join(caveats)})"
    papers = []
    for name in dict.fromkeys(e.plugin for e in contest.papers):
        entries = contest.entries(name)
        papers.append({"paper": name, "experiment": ", ".join(e.experiment for e in entries),
                       "bar": "; ".join(f"{e.experiment} {_bar(e)}" for e in entries),
                       "policy": "; ".join(sorted({_policy(e) for e in entries})),
                       "replay": "; ".join(sorted({str(e.replay) for e in entries})),
                       "status": "reproduced" if name in winners else
                       ("pending full review" if name in pending else "open"),
                       "reproduced_by": winners[name]["team"] if name in winners else None,
                       "at": winners[name]["time"] if name in winners else None,
                       "pending": [r["team"] for r in pending.get(name, [])],
                       "not_reproduced": [r["team"] for r in results if r["paper"] == name and not r["ok"]]})
    return papers


def reasons(r):
    """Every reason the submission does not count, one line each: experiment and run named."""
    why = list(r.get("problems", []))
    for t in r.get("targets", []):
        if not t.get("passed"):
            why.append(f"{t['paper']}/{t['exp']} {t['metric']}: {t['why']}")
    for run in r.get("runs", []):
        why += [f"{run.get('paper')}/{run.get('exp')} {run['path']}: {p}" for p in run["problems"]]
    return why


# ------------------------------------------------------------------ the outputs

_MD = {ord(c): f"&#{ord(c)};" for c in "&<>|`@[]\\"}  # links, HTML, code, mentions, cells


def now_iso():
    """The one time format of the review's outputs: ISO 8601 to the second, with the offset as
    the submissions file writes it (+08:00, never +0800)."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


def md(text):
    """Text safe in a Markdown table cell of a GitHub issue: no new lines, pipes, HTML, code or mentions."""
    return "".join(c if c.isprintable() else " " for c in str(text)).translate(_MD)


def plain(text):
    """Text safe on a terminal (no control characters)."""
    return printable(text)


def _why_cell(r, limit=MAX_WHY):
    """Whole reasons up to limit characters, then how many more (a reason is never cut inside a path)."""
    why, out, used = [f"for a human: {f}" for f in r.get("flags") or []] + reasons(r), [], 0
    for i, text in enumerate(why):
        if used and used + len(text) > limit:
            out.append(f"and {len(why) - i} more on its page")
            break
        if len(text) > limit:
            words, text = text.split(" "), ""
            for w in words:
                if len(text) + len(w) > limit:
                    text += " ..."
                    break
                text += (" " if text else "") + w
        out.append(text)
        used += len(text)
    return "; ".join(out) or "-"


def _banners(options, results):
    lines = []
    if not options.runs_code:
        lines.append("**Logs-only review (--logs-only): no submitted code was run, nothing was recomputed or "
                     "replayed.** A submission that passes is pending a full review; no paper is marked reproduced.")
    elif options.sandbox == "off":
        lines.append("**WARNING: this review ran the submitted code WITHOUT the sandbox (--no-sandbox).** Its "
                     "results stand, but the submitted code had this machine's access while it ran.")
    return lines


def status_markdown(contest, papers, results, options):
    lines = [f"## {md(contest.name)}: status as of {now_iso()}", ""]
    for b in _banners(options, results):
        lines += [b, ""]
    lines += [f"Deadline {contest.deadline.isoformat()}. A paper counts as reproduced by the first submission, in "
              "the order the maintainers recorded them, that reaches its bar in a full review (logs, code identity, "
              "recomputed metrics and the replay audit" + ("; for a text-to-image paper: the bundle's files, model card "
                                                           "and works, every work redrawn from its weights, and the "
                                                           "scores computed from the redrawn works"
                                                           if any(getattr(e, "kind", "") == "text_to_image"
                                                                  for e in contest.papers) else "") + ").", "",
              "| paper | experiment | bar | policy | replay | status | by | recorded |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for p in papers:
        lines.append(f"| {md(p['paper'])} | {md(p['experiment'])} | {md(p['bar'])} | {md(p['policy'])} | "
                     f"{md(p['replay'])} | {md(p['status'])} | {md(p['reproduced_by'] or '-')} | {md(p['at'] or '-')} |")
    lines += ["", "### Submissions, in the order they were recorded", "",
              "| # | recorded | team | paper | commit | tree | checks | audit | public / private | result | why |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for i, r in enumerate(results, 1):
        lines.append(f"| {i} | {md(r['time'])} | {md(r['team'])} | {md(r['paper'])} | {md(r['commit'][:12])} | "
                     f"{md((r.get('tree') or '-')[:12])} | {md(', '.join(_ran(r)) or '-')} | {md(audit_summary(r))} | "
                     f"{md(private_summary(r))} | {md(r['status'])} | {md(_why_cell(r))} |")
    flagged = [(r, f) for r in results for f in r.get("flags") or []]
    if flagged:
        lines += ["", "### For a human", ""] + [f"- {md(r['team'])} / {md(r['paper'])} ({md(r['time'])}): {md(f)}"
                                                 for r, f in flagged]
    return "\n".join(lines) + "\n"


def _ran(r):
    """The checks that ran on every run of the submission (of a text-to-image bundle: on it)."""
    if r.get("bundle") is not None:
        return list(r.get("checks") or [])
    runs = r.get("runs") or []
    if not runs:
        return []
    return [c for c in runs[0]["checks"] if all(c in x["checks"] for x in runs)]


def _header_html(r, options, sandbox_banner=True):
    """The top of a submission's page: who, what, which commit and tree, when, and where it stands
    (sandbox_banner: say --no-sandbox here; repro.page.render says it on a page it writes)."""
    e = lambda v: html.escape(str(v if v is not None else "-"))
    rows = [("team", r["team"]), ("paper", r["paper"]), ("announced commit", r["commit"]),
            ("checked-out commit", r.get("head")), ("git tree", r.get("tree")), ("recorded", r["time"]),
            ("ledger", r["status"]), ("checks that ran", ", ".join(_ran(r)) or "none"),
            ("audit", audit_summary(r)), ("public / private", private_summary(r)),
            ("submitted code ran", r.get("sandbox") or "no code run")]
    banner = "".join(f"<p class='FAIL'>{html.escape(b.replace('**', ''))}</p>" for b in _banners(options, [r])
                     if sandbox_banner or not options.runs_code)
    return (banner + "<table>" + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows) + "</table>"
            + "".join(f"<p class='FAIL'>For a human: {e(f)}</p>" for f in r.get("flags") or [])
            + ("<ul>" + "".join(f"<li>{e(p)}</li>" for p in r["problems"]) + "</ul>" if r["problems"] else ""))


def write_page(r, out_dir, options):
    verdict = ("REPRODUCED" if r["status"].startswith("REPRODUCED") else
               "PENDING FULL REVIEW" if r["status"].startswith("pending") else
               "PASSES (does not count)" if r["ok"] else "NOT REPRODUCED")
    title = f"{r['team']} / {r['paper']}"
    if r.get("bundle") is not None:
        verdict += "".join(f" ({c})" for c in r["bundle"].get("caveats") or [] if r["ok"])
        if r.get("_card"):  # the card the contest publishes: the bundle's, the judge's scores first
            with open(os.path.join(out_dir, r["page"][:-len(".html")] + ".card.md"), "w", encoding="utf-8") as f:
                f.write(r["_card"])
        body = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                f"<style>{CSS}</style></head><body><h1>Review: {html.escape(title)}</h1>"
                f"<p><span class='verdict {'PASS' if verdict.startswith('REPRODUCED') else 'FAIL'}'>{html.escape(verdict)}"
                f"</span></p>{_header_html(r, options)}{_bundle_html(r)}</body></html>")
    elif r.get("_render"):
        rows, runs, opts, scrub = r["_render"]
        body, _, _ = render(rows, runs, r["ok"], opts, preamble=_header_html(r, options, sandbox_banner=False),
                            title=title,
                            verdict=verdict, show=scrub)
    else:
        body = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                f"<style>{CSS}</style></head><body><h1>Review: {html.escape(title)}</h1>"
                f"<p><span class='verdict FAIL'>{html.escape(verdict)}</span></p>{_header_html(r, options)}"
                f"<p>Not verified further: the problems above stop the review before its runs are read.</p>"
                f"</body></html>")
    with open(os.path.join(out_dir, r["page"]), "w", encoding="utf-8", errors="replace") as f:
        f.write(body)


def _bundle_html(r):
    """A text-to-image bundle's review: every work redrawn and compared, the scores, the base model."""
    e = lambda v: html.escape(str(v if v is not None else "-"))
    b = r["bundle"]
    plat = b.get("platform") or {}
    rows = "".join(
        f"<tr><td>{e(w.get('file'))}</td><td>{e(w.get('prompt'))}</td><td>{e(w.get('seed'))}</td>"
        f"<td>{e(w.get('largest_difference'))}</td>"
        f"<td>{e('-' if w.get('differing') is None else format(w['differing'], '.2%'))}</td>"
        f"<td class='{'PASS' if w.get('ok') else 'FAIL'}'>"
        f"{e('from the weights' if w.get('ok') else ('not redrawn' if 'ok' not in w else 'NOT from the weights'))}"
        f"</td></tr>" for w in b.get("works") or [])
    scores = "".join(
        f"<tr><td>{e(t['metric'])}</td><td>{e(t['value'] if t.get('value') is None else format(t['value'], '.4f'))}"
        f"</td><td>{e(t.get('bar'))}</td><td class='{'PASS' if t.get('passed') else 'FAIL'}'>"
        f"{'reached' if t.get('passed') else 'not reached'}</td><td>{e((b.get('score_models') or {}).get(t['metric']))}"
        f"</td></tr>" for t in r.get("targets") or [])
    base = b.get("base_model") or {}
    declared = "; ".join(f"{k}: {v or 'none'}" for k, v in (base.get("declared") or {}).items())
    facts = [("bundle folder", b.get("folder")), ("weights (digest of the LoRA tensors)", b.get("weights_sha256")),
             ("the contest's base model", base.get("contest")), ("base model the bundle names", declared or "-"),
             ("redraw", b.get("summary")),
             ("platform", "-" if not plat else ("the works' own: exact comparison" if plat.get("same") else
                                               f"not the works' own: largest difference allowed {b.get('tolerance')}")),
             ("copy of", "{team} ({time})".format(**b["copy_of"]) if b.get("copy_of") else "-")]
    return ("<h2>Bundle</h2><table>" + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in facts)
            + "</table><h2>Works, redrawn from the weights</h2><table><tr><th>work</th><th>prompt</th>"
            "<th>claimed seed</th><th>largest difference (of 255)</th><th>values differing</th><th>result</th></tr>"
            + rows + "</table>" + ("<h2>Scores (computed by the judge from the redrawn works)</h2><table><tr>"
                                   "<th>score</th><th>value</th><th>bar</th><th>result</th><th>model</th></tr>"
                                   + scores + "</table>" if scores else ""))


def _page_name(i, sub):
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in f"{sub['team']}-{sub['paper']}")
    tag = hashlib.sha256(f"{sub['team']}\0{sub['paper']}\0{sub['time']}".encode("utf-8", "replace")).hexdigest()[:8]
    return f"{i:03d}-{safe[:48]}-{tag}.html"


def index_html(contest, papers, results, options):
    e = lambda v: html.escape(str(v))
    banners = "".join(f"<p class='FAIL'>{e(b.replace('**', ''))}</p>" for b in _banners(options, results))
    rows = "".join(
        f"<tr><td>{i}</td><td>{e(r['time'])}</td><td>{e(r['team'])}</td><td>{e(r['paper'])}</td>"
        f"<td>{e(r['commit'][:12])}</td><td>{e(', '.join(_ran(r)) or '-')}</td><td>{e(audit_summary(r))}</td>"
        f"<td class='{'PASS' if r['status'].startswith('REPRODUCED') else 'FAIL'}'>{e(r['status'])}</td><td>"
        + (f"<a href='{e(r['page'])}'>review page</a>" if r.get("page") else "-")
        + f"</td><td>{e(_why_cell(r, 400))}</td></tr>" for i, r in enumerate(results, 1))
    table = "".join(f"<tr><td>{e(p['paper'])}</td><td>{e(p['bar'])}</td><td>{e(p['replay'])}</td>"
                    f"<td>{e(p['status'] + (' by ' + p['reproduced_by'] if p['reproduced_by'] else ''))}</td></tr>"
                    for p in papers)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{e(contest.name)}</title>"
            f"<style>{CSS}</style></head><body><h1>{e(contest.name)}</h1>{banners}"
            f"<h2>Papers</h2><table><tr><th>paper</th><th>bar</th><th>replay</th><th>status</th></tr>{table}</table>"
            f"<h2>Submissions (maintainers' time order)</h2><table><tr><th>#</th><th>recorded</th><th>team</th>"
            f"<th>paper</th><th>commit</th><th>checks</th><th>audit</th><th>result</th><th>page</th><th>why</th>"
            f"</tr>{rows}</table></body></html>")


def write_worker_log(out_dir, lines):
    """Append lines to OUT/workers.log: the full text of what workers wrote, for the maintainers
    alone (status.md, review.json and the pages say only how a worker failed and a digest, so a
    worker's last words are no channel to the public outputs). Created 0600 and never linked;
    each line is kept to one line (printable); a link or FIFO in its place is refused."""
    path = os.path.join(out_dir, WORKER_LOG)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                     | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as e:
        raise ReproError(f"the workers' log {WORKER_LOG} cannot be opened ({e.strerror or e})") from None
    with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ReproError(f"the workers' log {WORKER_LOG} is not a regular file")
        os.fchmod(fd, 0o600)
        f.write("".join(printable(line) + "\n" for line in lines))


def _public(r):
    """A result as review.json has it (no objects, no paths of this machine)."""
    return {k: v for k, v in r.items() if not k.startswith("_")}


def _json(data):
    """JSON whose strings carry no <, > or & (escaped as \\u003c...): safe to embed or show anywhere."""
    text = json.dumps(data, indent=1, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def review(contest_path, submissions_path, out_dir, options):
    contest = read_contest(contest_path)
    subs = read_submissions(submissions_path, contest)
    if options.cache is None:
        options.cache = {}
    if options.runs_code:
        Sandbox(options.sandbox)  # refuse now, before any submission is read, when bubblewrap is missing
        if options.progress and options.replay and any(getattr(e, "kind", "") != "text_to_image"
                                                       for e in contest.papers):
            options.progress(f"replay audit: challenge {options.challenge} (pass --challenge {options.challenge} "
                             f"to repeat it)")
    os.makedirs(out_dir, exist_ok=True)
    receipts = read_receipts(out_dir)
    known = len(receipts)
    extra = ((os.path.abspath(out_dir), "<out>"), (os.path.dirname(os.path.abspath(submissions_path)), "<submissions>"),
             (os.path.dirname(os.path.abspath(contest_path)), "<contest>"))
    results = []
    try:
        for i, sub in enumerate(subs, 1):
            if options.progress:
                options.progress(f"[{i}/{len(subs)}] {plain(sub['team'])} / {sub['paper']} ({sub['time']})")
            r = _reviewed(sub, contest, out_dir, options, receipts, extra, results)
            r["_repo"] = sub["repo"]
            r["page"] = _page_name(i, sub)
            results.append(r)
    finally:
        if len(receipts) > known:
            write_receipts(out_dir, receipts)
    words = [f"{plain(r['team'])} / {r.get('paper', '?')}: digest {digest}: {text}"
             for r in results for digest, text in r.get("_last_words") or []]
    if words:
        write_worker_log(out_dir, words)
    flag_team_names(results)
    flag_copies(results)
    flag_copied_bundles(results)
    papers = ledger(results, contest)
    for r in results:
        try:
            write_page(r, out_dir, options)
        except Exception as e:  # noqa: BLE001 -- a page that cannot be written is said, never fatal for all
            r["problems"].append(f"its review page could not be written: {type(e).__name__}")
            r.pop("page", None)
    for name, text in (("status.md", status_markdown(contest, papers, results, options)),
                       ("index.html", index_html(contest, papers, results, options)),
                       ("review.json", _json({"contest": contest.name, "logs_only": not options.runs_code,
                                              "sandbox": "not used" if not options.runs_code else
                                              ("off (--no-sandbox)" if options.sandbox == "off" else "bubblewrap"),
                                              "papers": papers, "submissions": [_public(r) for r in results]}))):
        with open(os.path.join(out_dir, name), "w", encoding="utf-8", errors="replace") as f:
            f.write(text)
    return papers, results


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m repro.review", description=__doc__.splitlines()[0],
                                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("contest", metavar="CONTEST", help="the contest file (configs/contests/*.yaml)")
    ap.add_argument("submissions", metavar="SUBMISSIONS", help="the submissions file (YAML, below)")
    ap.add_argument("--out", default="review", metavar="DIR", help="where to write the status and pages (./review)")
    ap.add_argument("--logs-only", action="store_true",
                    help="check the files, logs and code identity only: run no submitted code (no recompute, no "
                         "replay); no winner is named")
    ap.add_argument("--no-sandbox", action="store_true",
                    help="run the submitted code without the bubblewrap sandbox (every page and status.md say so)")
    ap.add_argument("--challenge", metavar="SECRET",
                    help="what chooses the replayed segments (default: fresh randomness, printed)")
    ap.add_argument("--private-seed", metavar="N",
                    help="the maintainers' seed of the contest's fresh private splits (else $REPRO_PRIVATE_SEED; "
                         "never in the contest file)")
    ap.add_argument("--jobs", type=int, default=1, help="audit processes at a time (default 1)")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds one run's audit may take (default 3600)")
    args = ap.parse_args(argv)
    if args.jobs < 1 or args.timeout < 1:
        raise ReproError("--jobs and --timeout must be >= 1")
    if args.challenge is not None and args.logs_only:
        raise ReproError("--challenge only matters without --logs-only")
    say = lambda msg: print(plain(msg), flush=True)
    options = ReviewOptions(recompute=not args.logs_only, replay=not args.logs_only,
                            challenge=args.challenge or (None if args.logs_only else secrets.token_hex(8)),
                            jobs=args.jobs, timeout=args.timeout, progress=say,
                            sandbox="off" if args.no_sandbox else "required",
                            private=private_of(read_contest(args.contest), args.private_seed)
                            if not args.logs_only else None)
    review(args.contest, args.submissions, args.out, options)
    with open(os.path.join(args.out, "status.md"), encoding="utf-8") as f:
        print("\n" + plain_lines(f.read()))
    print(f"wrote {os.path.join(args.out, 'status.md')}, review.json, index.html and the review pages")
    return 0


def plain_lines(text):
    """status.md as terminal text: its Markdown escapes (&#62; ...) turned back into characters,
    then every line made safe for a terminal."""
    return "\n".join(plain(line) for line in html.unescape(text).splitlines())


if __name__ == "__main__":
    run_cli(main)
