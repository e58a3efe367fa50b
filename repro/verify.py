"""Decide whether runs reproduce their paper: python -m repro.verify RUN_DIR [RUN_DIR ...]

Each argument is a run directory or a folder holding run directories (searched
recursively). Every run is checked from its files (repro/judge/compliance.py: hash
chain, required events, status, registered protocol and targets, order of
steps and time, consistent and possible results, its checkpoints). With
--recompute its final checkpoint is evaluated again, and with --replay N the
replay audit re-trains N segments of it (repro/judge/audit.py); both run the paper's
code in child processes, and the verdict then rests on the values verify
computed itself. Runs that count are grouped by paper and experiment and every
registered target is judged with its policy. Targets always come from the
registry (the paper's code), never from the run. Exit status 0 only when every
target of every experiment given is reached.
"""
import argparse
import json
import sys

from repro.errors import run_cli
from repro.judge import private as private_eval
from repro.judge.arguments import add_arguments, options_from
from repro.judge.verdict import verify
from repro.registry import parse_with_papers


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m repro.verify", description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="RUN_DIR")
    add_arguments(ap)
    ap.add_argument("--contest", metavar="FILE",
                    help="judge against a contest file's targets (configs/contests/), not the plugins' own")
    ap.add_argument("--private-seed", metavar="N",
                    help=f"with --contest: the maintainers' seed of the entries' fresh private splits (else "
                         f"${private_eval.SEED_ENV}; never written in the contest file)")
    ap.add_argument("--code", metavar="TREE",
                    help="with --contest: the submitted repository the runs' paper code must match, file by file")
    ap.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    args = parse_with_papers(ap, argv)
    say = lambda msg: print(msg, file=sys.stderr, flush=True)
    options = options_from(args, say)
    if options.replay:
        say(f"replay audit: challenge {options.challenge} (pass --challenge {options.challenge} to repeat it)")
    try:
        verdict = verify(args.runs, options)
    finally:
        options.executor.close()
    if args.json:
        print(json.dumps(verdict.json(), indent=1))
    else:
        verdict.print_table()
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    run_cli(main)
