"""The private evaluation's calibration on the 40 shipped MNIST-1D runs (issue 23),
fixed before any contest is judged with it:

    python papers/mnist1d/private_calibration.py [--seed 2026] [--n 4000] [--jobs 2] [--json out.jsonl]
                                                 [--root logs/mnist1d_reference]

For every cell, every shipped run is recomputed by verify with a private split of
n fresh samples (the authors' generator, another seed; repro/judge/private.py) and
judged by the agreement rule. Prints, per cell, the public-minus-private gaps
(mean, min, max, in accuracy points), the largest z, and how many honest runs
the rule refused (it should refuse none). Reads the shipped runs only.
"""
import argparse
import json
import os
import sys

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, REPO)

from repro.errors import run_cli  # noqa: E402
from repro.judge import verdict  # noqa: E402
from repro.judge import private

CELLS = ("logreg", "mlp", "cnn", "gru", "logreg_shuffled", "mlp_shuffled", "cnn_shuffled", "gru_shuffled")
ROOT = os.path.join(REPO, "logs", "mnist1d")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=2026, help="the private split's seed (a calibration's, public)")
    ap.add_argument("--n", type=int, default=4000, help="samples in the private split")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cells", nargs="+", default=list(CELLS))
    ap.add_argument("--json", metavar="FILE", help="also write one JSON line per run")
    ap.add_argument("--root", default=ROOT, help="the folder of the cells' runs (default: the shipped logs/mnist1d; "
                                                 "logs/mnist1d_reference for the reference sets)")
    args = ap.parse_args(argv)
    out = open(args.json, "w") if args.json else None
    print(f"{'cell':<17} runs  gap mean  gap min  gap max  max z  refused")
    for cell in args.cells:
        spec = private.PrivateEval({"fresh": {"n": args.n, "source": f"mnist1d/{cell}"}}, args.seed)
        options = verdict.Options(recompute=True, jobs=args.jobs, private={("mnist1d", cell): spec})
        _, runs, _ = verdict.verify([os.path.join(args.root, cell)], options)
        gaps, zs, refused = [], [], 0
        for run in runs:
            p = run.private or {}
            if "public" not in p:
                print(f"{cell}: {run.path}: no private result ({'; '.join(run.problems)[:200]})", file=sys.stderr)
                refused += 1
                continue
            gaps.append(p["public"] - p["private"])
            zs.append(p["z"])
            refused += not p["agrees"]
            if out:
                out.write(json.dumps({"cell": cell, "seed": run.seed, "public": p["public"], "private": p["private"],
                                      "n": p["n"], "z": p["z"], "agrees": p["agrees"]}) + "\n")
        print(f"{cell:<17} {len(runs):>4}  {sum(gaps) / max(1, len(gaps)):>+8.2f}  {min(gaps):>+7.2f}  "
              f"{max(gaps):>+7.2f}  {max(zs):>5.2f}  {refused:>7}", flush=True)
    if out:
        out.close()
    return 0


if __name__ == "__main__":
    run_cli(main)
