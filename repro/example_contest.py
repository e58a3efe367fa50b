"""The example contest's submissions, built offline (python -m repro.example DIR).

Four teams' repositories, each written by `python -m repro.new` from the contestant
template the harness ships, its recipe cut to the contest's steps
(configs/contests/example.yaml), trained with the contest's seeds and committed:

  alpha   honest
  beta    a byte-for-byte copy of alpha's repository, recorded later
  gamma   honest training (with its own weight decay, so its weights are its own), then
          one line of its model changed and committed after the runs
  delta   trained on the public test split instead of the training split: recompute and
          replay agree with its logs (they run its code); the private evaluation does not

and DIR/submissions.yaml listing them in that order. The review of DIR is the
maintainers' next step; `review_command` says it.
"""
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

import yaml

from repro import strict
from repro.errors import ReproError
from repro.judge.contest import read_contest

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.dirname(HERE)  # the folder holding the repro package, for the commands started here
PLUGIN = "mnist1d_example"       # the contest's paper: every submission's plugin package
EXPERIMENT = "cnn"

# what each team's repository is, and what the review must find
TEAMS = (("alpha", "honest"),
         ("beta", "a byte-for-byte copy of alpha's repository, recorded later"),
         ("gamma", "its model's code changed after training"),
         ("delta", "trained on the public test split"))

# gamma: trained with this (the contest pins no weight decay), then this line of its model changed
GAMMA_DECAY = 0.0001
GAMMA_LINE = ("        h = nn.functional.relu(self.conv3(h))\n",
              "        h = nn.functional.gelu(self.conv3(h))  # tidied up after training\n")
# delta: its build_data hands the public test split over as the training data
DELTA_LINE = ('        return Data(train=(x(d["x"]), y(d["y"])),',
              '        # trained on the public test split: the answers it is judged on\n'
              '        return Data(train=(x(d["x_test"]), y(d["y_test"])),')


def contest_path():
    """configs/contests/example.yaml: package data installed (repro/configs), the checkout's configs/."""
    for base in (HERE, HARNESS):
        path = os.path.join(base, "configs", "contests", "example.yaml")
        if os.path.isfile(path):
            return path
    raise ReproError(f"the example contest file is not installed with the harness ({HERE}): reinstall it")


def _env():
    """The commands started here import this harness, one thread each."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (HARNESS, os.environ.get("PYTHONPATH")) if p),
            "OMP_NUM_THREADS": "1"}


def _run(args, cwd, what, timeout=1800):
    try:
        p = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ReproError(f"{what} took over {timeout} s") from None
    if p.returncode != 0:
        last = (p.stderr.strip() or p.stdout.strip() or f"exit status {p.returncode}").splitlines()[-1]
        raise ReproError(f"{what} failed: {last}")
    return p.stdout


def git(repo, *args):
    return _run(["git", "-C", repo, "-c", "user.name=example", "-c", "user.email=example@example.invalid",
                 "-c", "commit.gpgsign=false", *args], repo, f"git {args[0]} in {repo}").strip()


def _replace(path, old, new):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if old not in text:
        raise ReproError(f"{path}: the contestant template has changed (no {old.strip()!r} to edit)")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace(old, new, 1))


def _set_yaml(path, values, why="the example contest's recipe"):
    """Set `  key: value` lines of the template's experiment YAML's train section (added where absent)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for key, value in values.items():
        line = f"  {key}: {value}  # {why}"
        text, n = re.subn(rf"(?m)^  {key}:.*$", line, text, count=1)
        if not n:
            text = text.replace("train:\n", f"train:\n{line}\n", 1)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def recipe(entry, steps=None):
    """(steps, audit) of the runs: the contest's, or `steps` with a checkpoint kept every half."""
    if steps is None:
        return entry.protocol["train.steps"], entry.audit
    return steps, max(1, steps // 2)


def write_repo(repo, entry, steps, audit):
    """A team's repository: the template (python -m repro.new) with the contest's recipe, in a new git
    repository (nothing committed yet)."""
    _run([sys.executable, "-m", "repro.new", repo, "--paper", PLUGIN], HARNESS, "python -m repro.new")
    _set_yaml(os.path.join(repo, PLUGIN, "configs", f"{EXPERIMENT}.yaml"),
              {"steps": steps, "eval_every": audit, "log_every": audit, "checkpoint_every": audit,
               "audit_every": audit})
    seeds = ", ".join(map(str, entry.seeds)) + ("," if len(entry.seeds) == 1 else "")
    init = os.path.join(repo, PLUGIN, "__init__.py")
    with open(init, encoding="utf-8") as f:
        text = f.read()
    text, n = re.subn(r"(?m)^POLICY = Policy\(.*\)$",
                      f'POLICY = Policy("{entry.policy}", {entry.n}, seeds=({seeds}), audit={audit})', text)
    if n != 1:
        raise ReproError(f"{init}: the contestant template has changed (no POLICY line to edit)")
    with open(init, "w", encoding="utf-8") as f:
        f.write(text)
    git(repo, "init", "-q")


def commit(repo, message):
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def train_all(jobs, progress, at_once=2):
    """Run (team, repo, seed) trainings, at_once processes at a time (one thread each)."""
    running, pending, t0 = [], list(jobs), time.time()
    while pending or running:
        while pending and len(running) < at_once:
            team, repo, seed = pending.pop(0)
            out = os.path.join("logs", PLUGIN, EXPERIMENT, f"seed{seed}")
            args = [sys.executable, "-m", "repro.train", "--papers", PLUGIN, "--paper", PLUGIN, "--exp",
                    EXPERIMENT, "--seed", str(seed), "--out", out]
            output = tempfile.TemporaryFile("w+", encoding="utf-8")  # a pipe left unread could fill and block
            proc = subprocess.Popen(args, cwd=repo, env=_env(), stdout=output, stderr=subprocess.STDOUT, text=True)
            running.append((team, seed, proc, output))
        team, seed, proc, output = running.pop(0)
        with output:
            proc.wait()
            output.seek(0)
            text = output.read()
        if proc.returncode != 0:
            for _, _, other, _ in running:
                other.kill()
            last = (text.strip() or f"exit status {proc.returncode}").splitlines()[-1]
            raise ReproError(f"training {team}'s seed {seed} failed: {last}")
        progress(f"  trained {team} seed {seed} ({time.time() - t0:.0f} s)")


def build(dest, steps=None, progress=print):
    """Build the example's submissions in dest (new, or an empty folder). Returns
    (contest file to review against, submissions file, private seed)."""
    if os.path.lexists(dest) and (not os.path.isdir(dest) or os.path.islink(dest) or os.listdir(dest)):
        raise ReproError(f"{dest}: not a new or empty folder; the example goes into one (nothing was written)")
    if steps is not None and not 2 <= steps <= 100_000:
        raise ReproError(f"--steps must be between 2 and 100,000, got {steps}")
    if shutil.which("git") is None:
        raise ReproError("git is not installed: the submissions are git repositories")
    contest = contest_path()
    entry = read_contest(contest).entry(PLUGIN, EXPERIMENT)
    steps, audit = recipe(entry, steps)
    try:
        os.makedirs(dest, exist_ok=True)
    except OSError as e:
        raise ReproError(f"{dest}: cannot make the folder ({e.strerror})") from None
    dest = os.path.abspath(dest)
    if (steps, audit) != recipe(entry):  # a smaller example: its own contest file, the recipe's steps pinned
        contest = write_contest(contest, os.path.join(dest, "contest.yaml"), steps, audit)
    repos = {team: os.path.join(dest, team) for team, _ in TEAMS}
    for team in ("alpha", "gamma", "delta"):
        write_repo(repos[team], entry, steps, audit)
    _set_yaml(os.path.join(repos["gamma"], PLUGIN, "configs", f"{EXPERIMENT}.yaml"), {"weight_decay": GAMMA_DECAY},
              "gamma's own choice (the contest pins none)")
    _replace(os.path.join(repos["delta"], PLUGIN, "__init__.py"), *DELTA_LINE)
    for team in ("alpha", "gamma", "delta"):
        commit(repos[team], "the plugin")
    progress(f"training seeds {', '.join(map(str, entry.seeds))} of alpha, gamma and delta ({steps} steps, "
             f"a checkpoint kept every {audit}), two at a time")
    train_all([(team, repos[team], seed) for team in ("alpha", "gamma", "delta") for seed in entry.seeds], progress)
    commits = {team: commit(repos[team], "the runs") for team in ("alpha", "gamma", "delta")}
    shutil.copytree(repos["alpha"], repos["beta"], symlinks=True)
    commits["beta"] = commits["alpha"]
    _replace(os.path.join(repos["gamma"], PLUGIN, "models.py"), *GAMMA_LINE)
    commits["gamma"] = commit(repos["gamma"], "tidy the model")
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    submissions = {"submissions": [
        {"team": team, "paper": PLUGIN, "repo": team, "commit": commits[team],
         "time": (start + timedelta(minutes=i)).isoformat()} for i, (team, _) in enumerate(TEAMS)]}
    path = os.path.join(dest, "submissions.yaml")
    with open(path, "w", encoding="utf-8") as f:
        f.write("# the example's submissions (python -m repro.example), in the order they were recorded:\n")
        for team, what in TEAMS:
            f.write(f"#   {team}: {what}\n")
        yaml.safe_dump(submissions, f, sort_keys=False)
    # the README's recipe; the judge maps it into the generator's range (repro.judge.private.generator_seed)
    return contest, path, secrets.randbelow(10 ** 18)


def write_contest(shipped, path, steps, audit):
    """The shipped contest file with another number of steps pinned (a smaller example)."""
    data = strict.read_yaml(shipped, "contest file")
    entry = next(p for p in data["papers"] if p["plugin"] == PLUGIN and p["experiment"] == EXPERIMENT)
    entry["protocol"]["train.steps"] = steps
    entry["audit"] = audit
    data["name"] = f"{data['name']}, cut to {steps} steps"
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"# {os.path.basename(shipped)} with train.steps {steps} and a checkpoint every {audit} "
                f"(python -m repro.example --steps {steps})\n")
        yaml.safe_dump(data, f, sort_keys=False)
    read_contest(path)  # still a contest file
    return path


def review_command(contest, submissions, seed, out):
    """The review to run next, with paths as seen from here."""
    rel = lambda p: os.path.relpath(p) if not os.path.relpath(p).startswith(os.pardir + os.sep) else p
    return (f"python -m repro.review {rel(contest)} {rel(submissions)} --out {rel(out)} "
            f"--private-seed {seed}")
