"""Check your own repository as the maintainers will: python -m repro.selfcheck [REPO] [--contest FILE]

With a contest file, this is the maintainers' `repro.review` of your repository's
commit as one submission: a clone of HEAD (what they review; your virtual
environment, caches and uncommitted files are not in it) gets the layout, the
commit, every run's code identity against the tree, recompute and the contest's
replay coverage, and its private evaluation when it names one and you give a seed
of your own; files the code identity covers that differ from the commit are
reported too. The contest file may lie anywhere, inside the repository included:
it is never part of the code (identity.EXCLUDED leaves out contest*.yaml at the
top, and the file given here is left out of the uncommitted files wherever it is).
Without one, it prints the code identity of the tree against its logs, then
verifies the runs under logs/ against the plugin's own targets with --recompute
and the default replay coverage.

The replay challenge it used is printed, so the same segments can be drawn again
(--challenge). Your own code runs in the bubblewrap sandbox where it is installed,
and unconfined otherwise (it is yours); the review will always run it sandboxed.
Every problem is printed with the command that fixes it. Exit status 0 when
nothing would fail, 1 when something would, 2 on bad input.
"""
import argparse
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone

from repro import env
from repro.boundary import identity, safegit
from repro.errors import ReproError, run_cli
from repro.judge import assess, ledger, submissions
from repro.judge.contest import read_contest
from repro.judge.arguments import private_of
from repro.judge.options import Options
from repro.judge.verdict import verify
from repro.pages import contest as contest_pages
from repro.registry import use_folders
from repro.run import rundir


def plugins_in(repo):
    """Top-level (or src/) package folders of the repository whose __init__.py defines PAPER."""
    found = []
    for base in (repo, os.path.join(repo, "src")):
        if not os.path.isdir(base):
            continue
        for name in sorted(os.listdir(base)):
            init = os.path.join(base, name, "__init__.py")
            if name.isidentifier() and os.path.isfile(init) and not os.path.islink(init):
                with open(init, encoding="utf-8", errors="replace") as f:
                    if "PAPER" in f.read(1 << 20):
                        found.append(os.path.join(base, name))
    return found


def _q(path):
    return shlex.quote(path)


def _team(repo_arg):
    """The name the review's own lines give this repository: its folder's name."""
    name = os.path.basename(os.path.normpath(os.path.abspath(repo_arg)))
    return name if name.isprintable() and 0 < len(name) <= 64 and name == name.strip() else "this repository"


def uncommitted(repo, repo_arg, contest_path=None):
    """[(problem, fix)] of the files the identity covers that differ from HEAD (identity.excluded()
    decides, as for a run's git_dirty): the review sees the commit, never the working files. A
    contest file given on the command line is the judge's input wherever it lies, never one of them."""
    entries = env.git_changes(repo)
    if entries is None:
        return [("git cannot list its changes against HEAD", f"git -C {_q(repo_arg)} status")]
    given = os.path.realpath(contest_path) if contest_path else None
    entries = [(xy, p) for xy, p in entries if os.path.realpath(os.path.join(repo, p)) != given]
    ignored = [p for xy, p in entries if xy == "!!"]
    other = [p for xy, p in entries if xy != "!!"]
    out = []
    if other:
        out.append((f"{len(other)} file(s) differ from the commit, which is what the review sees: "
                    f"{', '.join(other[:4])}{', ...' if len(other) > 4 else ''}",
                    f"git -C {_q(repo_arg)} add -A && git -C {_q(repo_arg)} commit -m 'my reproduction'"))
    if ignored:
        out.append((f"{len(ignored)} git-ignored file(s) are part of the code a run records but never of the "
                    f"commit: {', '.join(ignored[:4])}{', ...' if len(ignored) > 4 else ''}",
                    "move them out of the repository (mv -- FILE ..), or commit them: "
                    f"git -C {_q(repo_arg)} add -f -- {' '.join(_q(p) for p in ignored[:4])}"))
    return out


def fix_of(problem, repo_arg):
    """The command that fixes one problem selfcheck or the review reports (one line)."""
    rel = problem.removeprefix("the submitted tree: ").split(": ", 1)[0].rstrip("/")
    where = _q(os.path.join(repo_arg, rel))
    target = re.match(r"(\w+)/(\w+) ([^\s/]+): ", problem)    # "paper/exp metric: why" (ledger.reasons)
    run = re.match(r"(\w+)/(\w+) (\S+/\S+): ", problem)      # "paper/exp logs/...: why"
    if identity.BYTECODE in problem:
        return (f"find {_q(repo_arg)} -name __pycache__ -prune -exec rm -r {{}} + && "
                f"find {_q(repo_arg)} -name '*.py[co]' -delete")
    if "a symbolic link" in problem or "only regular files can be identified" in problem:
        return f"rm -- {where}  (links and special files are never followed; put the file itself there)"
    if "bytes, over the" in problem or ("more than" in problem and "files to identify" in problem):
        return f"mv -- {where} {_q(os.path.dirname(os.path.abspath(repo_arg)))}/  (keep data and weights outside)"
    if "produced by other code than the submitted tree" in problem:
        return _code_fix(problem, repo_arg)
    if "local changes against its commit" in problem:
        return f"git -C {_q(repo_arg)} add -A && git -C {_q(repo_arg)} commit -m 'my reproduction'"
    if "not a git checkout" in problem:
        return f"git -C {_q(repo_arg)} init && git -C {_q(repo_arg)} add -A && git -C {_q(repo_arg)} commit -m 'my reproduction'"
    if target or run:
        paper, exp = (target or run).group(1), (target or run).group(2)
        train = f"python -m repro.train --papers {_q(os.path.join(repo_arg, paper))} --paper {paper} --exp {exp}"
        if target:
            return (f"train the seeds the target pins: {train} --seeds "
                    f"--out {_q(os.path.join(repo_arg, 'logs', paper, exp))}")
        seed = re.search(r"seed(\d+)", run.group(3))
        return (f"train this run again: {train} --seed {seed.group(1) if seed else 'N'} "
                f"--out {_q(os.path.join(repo_arg, run.group(3)))}.new, then put it in place of "
                f"{run.group(3)} and commit it")
    if re.match(r"\S+/\S+: unreadable: ", problem):  # a log no experiment can be read from
        return f"train this run again (python -m repro.train ... --seed N --out DIR), or remove {where}"
    if (m := re.match(r"no run of (\w+)/(\w+)", problem)):
        return (f"python -m repro.train --papers {_q(os.path.join(repo_arg, m.group(1)))} --paper {m.group(1)} "
                f"--exp {m.group(2)} --seeds --out {_q(os.path.join(repo_arg, 'logs', m.group(1), m.group(2)))}")
    return f"see the line above; then check again: python -m repro.selfcheck {_q(repo_arg)}"


def _code_fix(problem, repo_arg):
    """A run whose recorded code is not the tree's: put back what it had, move out what it had
    not, or train it again with this code."""
    lists = dict(re.findall(r"(differ|missing here|not in the run's code): ([^;)]+)", problem))
    back = [n for key in ("differ", "missing here") for n in lists.get(key, "").split(", ") if n and n != "..."]
    extra = [n for n in lists.get("not in the run's code", "").split(", ") if n and n != "..."]
    steps = []
    if back:
        steps.append(f"git -C {_q(repo_arg)} checkout HEAD -- {' '.join(_q(n) for n in back)}")
    if extra:
        steps.append(f"mv -- {' '.join(_q(os.path.join(repo_arg, n)) for n in extra)} "
                     f"{_q(os.path.dirname(os.path.abspath(repo_arg)))}/")
    restore = " && ".join(steps) or f"git -C {_q(repo_arg)} status"
    return (f"{restore}  (the code as the runs had it, if HEAD holds it), or commit this code and train the "
            f"runs again: python -m repro.train ... --seeds --out logs/<paper>/<exp>")


def _clone(repo, repo_arg, dest):
    """A clone of the repository's HEAD in dest: what the maintainers review (the working files'
    virtual environment, caches and uncommitted changes are not in it)."""
    p = subprocess.run(["git", "clone", "-q", "--no-hardlinks", "--", repo, dest], capture_output=True, text=True,
                       timeout=600)
    if p.returncode != 0:
        raise ReproError(f"{repo_arg}: git cannot clone it ({(p.stderr.strip().splitlines() or ['?'])[-1][:200]})")
    return dest


def _print_failing(problems):
    """Each failing check, then the command that fixes it."""
    for problem, fix in problems:
        print(f"  - {problem}")
        print(f"    fix: {fix}")


def with_contest(repo, repo_arg, contest_path, args):
    contest = read_contest(contest_path)
    names = {e.plugin for e in contest.papers}
    mine = [p for p in plugins_in(repo) if os.path.basename(p) in names]
    if len(mine) != 1:
        raise ReproError(f"{repo_arg}: the contest judges {', '.join(sorted(names))}; the repository needs exactly one "
                         f"of them as a plugin package at its top or under src/ (found "
                         f"{', '.join(os.path.basename(p) for p in mine) or 'none'})")
    state, problems = safegit.git_state(repo)
    if problems:
        raise ReproError(f"{repo_arg}: {problems[0]} (fix: {fix_of('not a git checkout', repo_arg)})")
    local = uncommitted(repo, repo_arg, contest_path)
    when = min(datetime.now(timezone.utc), contest.deadline - timedelta(seconds=1))
    challenge = args.challenge or secrets.token_hex(8)
    print(f"self-check of {repo_arg} at its commit {state['head'][:12]} against {args.contest}, as the maintainers "
          f"will review it (a clone of the commit); replay challenge {challenge} (repeat with --challenge {challenge})",
          flush=True)
    out = tempfile.mkdtemp(prefix="repro-selfcheck-")
    try:
        clone = _clone(repo, repo_arg, os.path.join(out, "clone"))
        subs = os.path.join(out, "submissions.json")
        with open(subs, "w", encoding="utf-8") as f:
            json.dump({"submissions": [{"team": _team(repo_arg), "paper": os.path.basename(mine[0]),
                                        "repo": clone, "commit": state["head"], "time": when.isoformat()}]}, f)
        options = submissions.ReviewOptions(
            recompute=not args.logs_only, replay=not args.logs_only, challenge=challenge, jobs=args.jobs,
            timeout=args.timeout, progress=lambda msg: print(contest_pages.plain(msg), file=sys.stderr, flush=True),
            sandbox="off" if args.no_sandbox else "auto", private=_private(contest, args))
        _, results = assess.review(contest_path, subs, os.path.join(out, "review"), options)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    (r,) = results
    failing = [(line, fix_of(line, repo_arg)) for line in ledger.reasons(r)] + local
    passes = r["ok"] and not failing
    verdict = ("passes: the review would count it" if passes and r["full_review"] else
               "passes the checks that ran; the review also recomputes and replays (run it without --logs-only)"
               if passes else f"fails: {len(failing)} problem(s), each with the command that fixes it")
    print(f"self-check of {r['paper']} at {state['head'][:12]}: {verdict}")
    print(f"checks that ran: {ledger.checks_told(r)}; audit: {ledger.audit_summary(r)}; "
          f"public / private: {ledger.private_summary(r)}; your code ran: {r.get('sandbox') or '-'}")
    _print_failing(failing)
    return 0 if passes else 1


def _private(contest, args):
    if args.logs_only or not any(e.private_eval for e in contest.papers):
        return None
    if args.private_seed is None and not os.environ.get("REPRO_PRIVATE_SEED"):
        print("note: the contest scores on a private split the maintainers hold; give --private-seed N (any seed of "
              "your own) to try the check on fresh data", file=sys.stderr)
        return None
    return private_of(contest, args.private_seed)


def self_check(root):
    """(identity, problems) of a repository about to be submitted: its identity as a run made now would
    record it, what keeps it from being identified, and for every run under its logs/, whether the run's
    recorded code is this tree's (the check the review makes). No problems: the logs are tied to the code."""
    ident, found = identity.identify(root)
    problems = list(found)
    for folder, dirs, names in os.walk(os.path.join(root, "logs")):
        dirs.sort()
        if rundir.EVENTS not in names:
            continue
        where = os.path.relpath(folder, root).replace(os.sep, "/")
        try:
            header = rundir.read(folder, allow_partial_tail=True).header
        except ReproError as e:
            problems.append(f"{where}: {e}")
            continue
        problems += [f"{where}: {p}" for p in identity.check_logged(header, ident["files"])]
    return ident, problems


def without_contest(repo, repo_arg, args):
    plugins = plugins_in(repo)
    if not plugins:
        raise ReproError(f"{repo_arg}: no plugin package (a folder whose __init__.py defines PAPER) at its top or "
                         f"under src/")
    logs = os.path.join(repo_arg, "logs")
    if not os.path.isdir(logs):
        raise ReproError(f"{repo_arg}: no logs/ folder with your runs")
    _, problems = self_check(repo)
    failing = [(p, fix_of(p, repo_arg)) for p in problems]
    print(f"code identity of {repo_arg}: " + ("the tree and every run's recorded code agree" if not problems else
                                              f"{len(problems)} problem(s)"))
    _print_failing(failing)
    use_folders(plugins)
    challenge = None if args.logs_only else (args.challenge or secrets.token_hex(8))
    if challenge:
        print(f"replay challenge {challenge} (repeat with --challenge {challenge})")
    print(flush=True)
    options = Options(recompute=not args.logs_only, replay=0 if args.logs_only else "default", jobs=args.jobs,
                      timeout=args.timeout, challenge=challenge, sandbox="off" if args.no_sandbox else "auto",
                      progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    verdict = verify([logs], options)
    verdict.print_table()
    failed = [r for r in verdict.rows if not r["passed"]]
    for r in failed:
        print(f"  fix for {r['paper']}/{r['exp']}: train the seeds its target pins, e.g. python -m repro.train "
              f"--papers {_q(os.path.join(repo_arg, r['paper']))} --paper {r['paper']} --exp {r['exp']} --seeds "
              f"--out {_q(os.path.join(logs, r['paper'], r['exp']))}")
    ok = verdict.ok and not problems
    print(f"\nself-check of {repo_arg}: " + ("passes" if ok else "fails (each problem above with its fix)"))
    return 0 if ok else 1


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m repro.selfcheck", description=__doc__.splitlines()[0])
    ap.add_argument("repo", nargs="?", default=".", metavar="REPO", help="your repository (default: here)")
    ap.add_argument("--contest", metavar="FILE", help="the contest file the maintainers published")
    ap.add_argument("--logs-only", action="store_true", help="no recompute, no replay (fast; not what counts)")
    ap.add_argument("--challenge", metavar="SECRET", help="what draws the replayed segments (default: fresh)")
    ap.add_argument("--private-seed", metavar="N", help="with --contest: a seed of your own for its fresh private split")
    ap.add_argument("--no-sandbox", action="store_true", help="run your code unconfined even where bubblewrap is")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--timeout", type=int, default=3600)
    args = ap.parse_args(argv)
    repo = os.path.abspath(args.repo)
    if not os.path.isdir(repo):
        raise ReproError(f"{args.repo}: no such folder")
    if args.contest is not None and not os.path.isfile(args.contest):
        raise ReproError(f"{args.contest}: no such contest file")
    if args.jobs < 1 or args.timeout < 1:
        raise ReproError("--jobs and --timeout must be >= 1")
    return with_contest(repo, args.repo, args.contest, args) if args.contest else without_contest(repo, args.repo, args)


if __name__ == "__main__":
    run_cli(main)
