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
winner (every pass is "pending full review"), and erases nothing a full review
into the same --out found: its results stand beside the quick pass's, with the
time of each.

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
import os
import secrets

from repro.boundary.executor import executor_for
from repro.errors import ReproError, run_cli
from repro.judge.assess import review
from repro.judge.contest import read_contest
from repro.judge.arguments import add_cluster_option, private_of
from repro.judge.submissions import ReviewOptions
from repro.pages.contest import plain, plain_lines

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
    add_cluster_option(ap)
    args = ap.parse_args(argv)
    if args.jobs < 1 or args.timeout < 1:
        raise ReproError("--jobs and --timeout must be >= 1")
    if args.challenge is not None and args.logs_only:
        raise ReproError("--challenge only matters without --logs-only")
    if args.cluster and args.logs_only:
        raise ReproError("--cluster only matters without --logs-only (it runs the workers)")
    say = lambda msg: print(plain(msg), flush=True)
    options = ReviewOptions(recompute=not args.logs_only, replay=not args.logs_only,
                            challenge=args.challenge or (None if args.logs_only else secrets.token_hex(8)),
                            jobs=args.jobs, timeout=args.timeout, progress=say,
                            sandbox="off" if args.no_sandbox else "required",
                            private=private_of(read_contest(args.contest), args.private_seed)
                            if not args.logs_only else None, executor=executor_for(args.cluster, jobs=args.jobs))
    try:
        review(args.contest, args.submissions, args.out, options)
    finally:
        options.executor.close()
    with open(os.path.join(args.out, "status.md"), encoding="utf-8") as f:
        print("\n" + plain_lines(f.read()))
    print(f"wrote {os.path.join(args.out, 'status.md')}, review.json, index.html and the review pages")
    return 0


if __name__ == "__main__":
    run_cli(main)
