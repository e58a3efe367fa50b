"""The authors' training procedure in PyTorch, on the same generated data, for
comparing spreads with this harness (not part of the harness; needs torch).

    python papers/mnist1d/authors_procedure.py --exp mlp --seeds 0 1 2 3 4

As notebooks/train.py does: torch.manual_seed(seed), Adam lr 1e-2, batches in
order, `range(total_steps + 1)` updates (8,001), final test accuracy printed.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import torch  # noqa: E402

from repro.papers.mnist1d import reference  # noqa: E402
from repro.config import load_config  # noqa: E402
from repro.registry import get_paper  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exp", default="cnn")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 0, 1])
    args = ap.parse_args()
    torch.set_num_threads(1)
    paper = get_paper("mnist1d")
    cfg = paper.config(args.exp)
    data = paper.build_data(cfg)
    x, y = torch.from_numpy(data.train[0]), torch.from_numpy(data.train[1])
    xt, yt = data.eval["test"]
    for seed in args.seeds:
        torch.manual_seed(seed)
        model = reference.build_model(cfg)
        opt = reference.optimizer(cfg, model.parameters())
        for step in range(cfg.train.steps + 1):
            xb, yb = reference.batch(x, y, step, cfg.train.batch_size)
            reference.loss(model(xb), yb).backward()
            opt.step()
            opt.zero_grad()
        with torch.no_grad():
            acc = reference.accuracy(model(torch.from_numpy(xt)).numpy(), yt)
        print(f"{args.exp} seed {seed}: test_acc {acc:.1f}", flush=True)


if __name__ == "__main__":
    main()
