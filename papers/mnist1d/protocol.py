"""The two protocol questions of the shuffled cells, answered from shipped files.

    python papers/mnist1d/protocol.py [--logs logs]

1. 6,000 or 8,000 steps? The authors' notebooks train 6,000 steps, their
   train.py 8,000 (our configs follow train.py). The learning rate is constant
   and every run evaluates every 250 steps, so a 6,000-step run is the first
   6,000 steps of an 8,000-step one: both values are read from the same curves.
2. Which permutation? The dataset generator's own shuffle_seq=True (the
   registered experiments) or the 2024 notebook's (np.random.seed(42), one
   permutation of the frozen data; data.permutation=notebook here,
   --permutation notebook in authors_procedure.py).

Reads, for each cell and framework, seeds 0-4:
  this harness   LOGS/mnist1d/<exp>/seed<N> (shuffle_seq) and
                 LOGS/mnist1d_protocol/<exp>-notebook/seed<N> (notebook)
  authors' code  LOGS/mnist1d_authors/results_<exp>.jsonl, or for the shuffled GRU
                 the PyTorch side of drift_gru_shuffled.jsonl, and
                 results_<exp>-notebook.jsonl
and prints the test accuracy at step 6,000 and at step 8,000, mean ± sd, per
framework. Pure reading: nothing is trained or imported from Paddle.
"""
import argparse
import json
import os
import statistics
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from repro.errors import ReproError  # noqa: E402
from repro.run import rundir  # noqa: E402  (reads logs only; imports no Paddle)

SEEDS = range(5)
STEPS = (6000, 8000)


def harness_curve(run_dir):
    """{step: test_acc} of a run's evaluations, from its log (read as verify reads it)."""
    return {e["step"]: e["metrics"]["test_acc"] for e in rundir.read(run_dir).events if e["kind"] == "eval"}


def authors_curves(path, exp):
    """{seed: {step: test_acc}} from an authors_procedure.py --json file or a drift file."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if "curve" not in row:
                continue  # a drift file's summary line
            if "exp" in row and row["exp"] != exp:
                continue
            curve = row["curve"]
            if curve and isinstance(curve[0], dict):  # repro.align drift: the reference side
                out[row["seed"]] = {p["step"]: p["reference_acc"] for p in curve}
            else:
                out[row["seed"]] = {int(s): a for s, a in curve}
    return out


def summary(curves, step):
    values = [c[step] for c in curves]
    return f"{statistics.mean(values):6.2f} ± {statistics.stdev(values):4.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logs", default=os.path.join(REPO, "logs"))
    args = ap.parse_args()
    try:
        table(args.logs)
    except (ReproError, OSError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"error: {args.logs}: cannot read the shipped runs or results ({type(e).__name__}: {e})")


def table(logs):
    authors = os.path.join(logs, "mnist1d_authors")
    print(f"{'cell':<14} {'permutation':<12} {'framework':<22} " + " ".join(f"{'step ' + str(s):>15}" for s in STEPS))
    for exp in ("cnn_shuffled", "gru_shuffled"):
        for perm in ("shuffle_seq", "notebook"):
            if perm == "shuffle_seq":
                ours = os.path.join(logs, "mnist1d", exp)
                theirs = (os.path.join(authors, "drift_gru_shuffled.jsonl") if exp == "gru_shuffled"
                          else os.path.join(authors, f"results_{exp}.jsonl"))
            else:
                ours = os.path.join(logs, "mnist1d_protocol", f"{exp}-notebook")
                theirs = os.path.join(authors, f"results_{exp}-notebook.jsonl")
            rows = [("this harness (Paddle)", [harness_curve(os.path.join(ours, f"seed{s}")) for s in SEEDS])]
            by_seed = authors_curves(theirs, exp)
            rows.append(("authors' code (PyTorch)", [by_seed[s] for s in SEEDS]))
            for name, curves in rows:
                print(f"{exp:<14} {perm:<12} {name:<22} " + " ".join(f"{summary(curves, s):>15}" for s in STEPS))


if __name__ == "__main__":
    main()
