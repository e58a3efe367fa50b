"""The authors' training procedure in PyTorch, on the same generated data, for
comparing with this harness (not part of the harness; needs torch).

    python papers/mnist1d/authors_procedure.py --exp mlp --seeds 0 1 2 3 4 [--steps 8000]
                                               [--permutation shuffle_seq|notebook] [--json FILE]

What the authors' notebooks/train.py does (github.com/greydanus/mnist1d, 2024):
torch.manual_seed(seed) before the model is built; Adam at lr 1e-2; the batch
of update `step` is rows [step*100 mod 4000, +100); `range(total_steps + 1)`
updates (8,001 for total_steps 8000); every 250 steps the test loss and the
train and test accuracy; the reported number is the last test accuracy (at
step total_steps). Models are papers/mnist1d/reference.py (the authors' layers
and PyTorch's default initialisation). One thread, as the harness runs.

--permutation notebook shuffles the 40 positions as the authors' 2024
classification notebook does (np.random.seed(42), one permutation applied to
the frozen data), instead of the dataset generator's own shuffle_seq=True.

Prints one line per seed; --json appends one JSON object per seed (the
experiment, seed, steps, final and best test accuracy, the curve, the PyTorch
version) to FILE.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from repro.papers.mnist1d import reference  # noqa: E402
from repro.registry import get_paper  # noqa: E402


def arrays(exp, permutation):
    paper = get_paper("mnist1d")
    cfg = paper.config(exp, overrides=[f"data.permutation={permutation}"] if exp.endswith("_shuffled") else ())
    data = paper.build_data(cfg)  # the harness's arrays, so both sides train on the same numbers
    d = {"x": data.train[0], "y": data.train[1], "x_test": data.eval["test"][0], "y_test": data.eval["test"][1]}
    return cfg, d


def train(cfg, d, seed, steps):
    """The authors' loop; returns (final test accuracy, [(step, test accuracy)])."""
    torch.manual_seed(seed)
    model = reference.build_model(cfg)
    opt = reference.optimizer(cfg, model.parameters())
    x, y = torch.from_numpy(np.asarray(d["x"], np.float32)), torch.from_numpy(np.asarray(d["y"], np.int64))
    xt, yt = torch.from_numpy(np.asarray(d["x_test"], np.float32)), torch.from_numpy(np.asarray(d["y_test"], np.int64))
    curve = []
    for step in range(steps + 1):
        xb, yb = reference.batch(x, y, step, cfg.train.batch_size)
        loss = reference.loss(model(xb), yb)
        loss.item()  # as train.py records every step's loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step % cfg.train.eval_every == 0:
            with torch.no_grad():
                reference.loss(model(xt), yt).item()
                reference.accuracy(model(x).numpy(), y.numpy())
                curve.append((step, float(reference.accuracy(model(xt).numpy(), yt.numpy()))))
    return curve[-1][1], curve


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exp", default="cnn")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--steps", type=int, default=None, help="total_steps (default: the experiment's train.steps)")
    ap.add_argument("--permutation", choices=("shuffle_seq", "notebook"), default="shuffle_seq")
    ap.add_argument("--json", metavar="FILE", help="append one JSON object per seed to FILE")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg, d = arrays(args.exp, args.permutation)
    steps = args.steps or cfg.train.steps
    for seed in args.seeds:
        final, curve = train(cfg, d, seed, steps)
        best = max(a for _, a in curve)
        print(f"{args.exp} seed {seed}: test_acc {final:.1f} (best {best:.1f})", flush=True)
        if args.json:
            with open(args.json, "a", encoding="utf-8") as f:
                f.write(json.dumps({"exp": args.exp, "seed": seed, "total_steps": steps, "updates": steps + 1,
                                    "permutation": args.permutation if cfg.data.shuffle_seq else None,
                                    "test_acc": final, "best_test_acc": best, "curve": curve,
                                    "torch": torch.__version__}) + "\n")


if __name__ == "__main__":
    main()
