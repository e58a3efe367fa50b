"""Build the example contest's submissions, offline: python -m repro.example DIR [--steps N]

Writes into DIR (a new or empty folder) four teams' git repositories made from the
contestant template (python -m repro.new), trained for the example contest
(configs/contests/example.yaml: the MNIST-1D CNN cell cut to 500 steps, seeds 0 and 1)
and committed, and DIR/submissions.yaml listing them; then prints the review to run:

  alpha   honest: reproduces the example's bar
  beta    a byte-for-byte copy of alpha's repository, recorded later: a copy
  gamma   a line of its model changed after training: its runs are not its code's
  delta   trained on the public test split: refused by the private evaluation
"""
import argparse
import os
import time

from repro.errors import run_cli
from repro.example_contest import build, review_command


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m repro.example", description=__doc__.splitlines()[0],
                                 epilog="\n".join(__doc__.splitlines()[2:]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dest", metavar="DIR", help="where to build the submissions (a new or empty folder)")
    ap.add_argument("--steps", type=int, metavar="N",
                    help="train N steps instead of the contest's 500 (a smaller example: DIR/contest.yaml "
                         "pins N, and the review command names it)")
    args = ap.parse_args(argv)
    t0 = time.time()
    contest, submissions, seed = build(args.dest, args.steps, progress=lambda m: print(m, flush=True))
    print(f"built the example's four submissions in {args.dest} in {time.time() - t0:.0f} s "
          f"(listed in {submissions})")
    print("review them with:")
    print(f"  {review_command(contest, submissions, seed, os.path.join(args.dest, 'review'))}")
    return 0


if __name__ == "__main__":
    run_cli(main)
