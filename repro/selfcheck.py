"""Check your own repository as the maintainers will: python -m repro.selfcheck [REPO] [--contest FILE]

With a contest file, this is the maintainers' `repro.review` of your repository as
one submission (the layout, the commit and a clean checkout, every run's code
identity against the tree, recompute and the contest's replay coverage, and its
private evaluation when it names one and you give a seed of your own), written to a
temporary folder and printed. Without one, it checks the code identity of the tree
and its logs, then verifies the runs under logs/ against the plugin's own targets
with --recompute and the default replay coverage.

Your own code runs in the bubblewrap sandbox where it is installed, and unconfined
otherwise (it is yours); the review will always run it sandboxed. Exit status 0
when nothing would fail, 1 when something would (each reason printed), 2 on bad
input.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
from datetime import datetime, timedelta, timezone

from repro import review
from repro.boundary import identity
from repro.errors import ReproError, run_cli
from repro.judge.contest import read_contest
from repro.registry import use_folders
from repro.run import rundir
from repro.verify import Options, private_of, verify


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


def with_contest(repo, contest_path, args):
    contest = read_contest(contest_path)
    names = {e.plugin for e in contest.papers}
    mine = [p for p in plugins_in(repo) if os.path.basename(p) in names]
    if len(mine) != 1:
        raise ReproError(f"{repo}: the contest judges {', '.join(sorted(names))}; the repository needs exactly one "
                         f"of them as a plugin package at its top or under src/ (found "
                         f"{', '.join(os.path.basename(p) for p in mine) or 'none'})")
    state, problems = review.git_state(repo)
    if problems:
        raise ReproError(f"{repo}: {problems[0]}")
    when = min(datetime.now(timezone.utc), contest.deadline - timedelta(seconds=1))
    out = tempfile.mkdtemp(prefix="repro-selfcheck-")
    try:
        subs = os.path.join(out, "submissions.json")
        with open(subs, "w", encoding="utf-8") as f:
            json.dump({"submissions": [{"team": "self-check", "paper": os.path.basename(mine[0]),
                                        "repo": os.path.abspath(repo), "commit": state["head"],
                                        "time": when.isoformat()}]}, f)
        options = review.ReviewOptions(
            recompute=not args.logs_only, replay=not args.logs_only, challenge=args.challenge, jobs=args.jobs,
            timeout=args.timeout, progress=lambda msg: print(review.plain(msg), file=sys.stderr, flush=True),
            sandbox="off" if args.no_sandbox else "auto", private=_private(contest, args))
        _, results = review.review(contest_path, subs, os.path.join(out, "review"), options)
        (r,) = results
        why = review.reasons(r)
        print(f"{r['paper']} at {state['head'][:12]}: {r['status']}")
        print(f"checks that ran: {', '.join(review._ran(r)) or 'none'}; audit: {review.audit_summary(r)}; "
              f"public / private: {review.private_summary(r)}; submitted code ran: {r.get('sandbox') or '-'}")
        for line in why:
            print(f"  - {line}")
        return 0 if r["ok"] and not r["late"] else 1
    finally:
        shutil.rmtree(out, ignore_errors=True)


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


def without_contest(repo, args):
    _, problems = self_check(repo)
    plugins = [p for p in plugins_in(repo)]
    if not plugins:
        raise ReproError(f"{repo}: no plugin package (a folder whose __init__.py defines PAPER) at its top or under src/")
    use_folders(plugins)
    logs = os.path.join(repo, "logs")
    if not os.path.isdir(logs):
        raise ReproError(f"{repo}: no logs/ folder with your runs")
    options = Options(recompute=not args.logs_only, replay=0 if args.logs_only else "default", jobs=args.jobs,
                      timeout=args.timeout, challenge=args.challenge, sandbox="off" if args.no_sandbox else "auto",
                      progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    verdict = verify([logs], options)
    verdict.print_table()
    print(f"\ncode identity of {repo}: " + ("the tree and every run's recorded code agree" if not problems else
                                            f"{len(problems)} problem(s)"))
    for p in problems:
        print(f"  - {p}")
    return 0 if verdict.ok and not problems else 1


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
    if args.jobs < 1 or args.timeout < 1:
        raise ReproError("--jobs and --timeout must be >= 1")
    return with_contest(repo, args.contest, args) if args.contest else without_contest(repo, args)


if __name__ == "__main__":
    run_cli(main)
