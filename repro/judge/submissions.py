"""A contest's submissions file, read strictly (each listing's problems are that submission's own
reasons), and a submitted repository's layout; ReviewOptions, how far a review goes."""
import os
import re
from dataclasses import dataclass

from repro import strict
from repro.boundary.task import LOCAL
from repro.boundary.tree import read_at_most, scan_tree
from repro.errors import ReproError
from repro.judge.contest import parse_time
from repro.strict import short


MAX_TEAM = 64


COMMIT = re.compile(r"[0-9a-fA-F]{7,40}|[0-9a-fA-F]{64}")


MAX_REQUIREMENTS_BYTES = 64 << 10


READMES = ("README.md", "README.rst", "README.txt", "README")


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
    executor: object = LOCAL  # where workers run: this machine or a Ray cluster (repro.boundary.executor)

    @property
    def runs_code(self):
        return self.recompute or self.replay


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
            s["invalid"].append(f"{short(s['team'])} / {s['paper']} at {s['time']} is listed twice in the "
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
        sub["invalid"].append(f"submissions[{i}] is {type(item).__name__} {short(item)}, not a mapping of "
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
            sub[key] = short(item[key]) if why else item[key]
    unknown = sorted(map(short, set(item) - set(SUBMISSION_KEYS)))
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
        bad["paper"] = f"its paper {short(sub['paper'])} is not in the contest {contest.name!r}"
    if "time" not in bad:
        try:
            sub["recorded"] = parse_time(sub["time"], "its time")
            sub["time"] = sub["recorded"].isoformat()
        except ReproError as e:
            bad["time"] = str(e)
    if "team" not in bad and (not sub["team"].isprintable() or sub["team"] != sub["team"].strip()):
        bad["team"] = (f"the team name {short(sub['team'])} is not a name (printable, at most {MAX_TEAM} "
                       f"characters, no newline or surrounding spaces): the maintainers must record a plain one")
    if "commit" not in bad and not COMMIT.fullmatch(sub["commit"]):
        bad["commit"] = f"the announced commit {short(sub['commit'])} is not 7 to 40 hex digits"


def _field_problem(key, value):
    """Why a submission's field cannot be used (None when it can): text, printable, not too long."""
    if not isinstance(value, str) or not value:
        return f"must be non-empty text, not {type(value).__name__} {short(value)}"
    if len(value) > MAX_FIELD[key]:
        return f"is {len(value):,} characters long, over the {MAX_FIELD[key]} it may have"
    if key != "team" and not value.isprintable():  # the team's own check below says more
        return f"{short(value)} holds a control character"
    return None


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
            data = read_at_most(os.path.join(repo, req), MAX_REQUIREMENTS_BYTES)
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
