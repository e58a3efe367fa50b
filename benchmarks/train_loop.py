"""Harness overhead: repro.train's loop against a bare Paddle loop doing the same
steps on the same data, in the same process, interleaved, repeated.

    python benchmarks/train_loop.py [--exp cnn] [--steps 2000] [--repeats 3]

Both loops run the authors' MNIST-1D procedure (Adam, batch 100 in order, an
evaluation on the test set every 250 steps); the harness also logs, writes
checkpoints and VisualDL scalars as a real run does. Prints each timing, the
medians and harness/bare per repeat (each pair runs back to back, in
alternating order) with their median, the figure to quote: the machine's
speed drifts by more than the harness's overhead between repeats. The two must
end with identical test accuracy (the same computation), which the script checks.
"""
import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import paddle  # noqa: E402

from benchmarks._timing import bare_against_harness  # noqa: E402
from repro.registry import get_paper  # noqa: E402
from repro.run.recipe import reseed  # noqa: E402
from repro.train import train  # noqa: E402


def bare(paper, cfg):
    """What a person would write by hand: no logging, no checkpoints."""
    tc = cfg.train
    reseed(tc.seed, 0)  # same initial weights as the harness
    d = paper.build_data(cfg)
    x, y = paddle.to_tensor(d.train[0]), paddle.to_tensor(d.train[1])
    xt, yt = paddle.to_tensor(d.eval["test"][0]), d.eval["test"][1]
    model = paper.build_model(cfg)
    opt = paddle.optimizer.Adam(learning_rate=tc.lr, parameters=model.parameters())
    acc = None
    for step in range(1, tc.steps + 1):
        b = ((step - 1) * tc.batch_size) % len(x)
        loss = paddle.nn.functional.cross_entropy(model(x[b:b + tc.batch_size]), y[b:b + tc.batch_size])
        loss.backward()
        opt.step()
        opt.clear_grad()
        if step % tc.eval_every == 0 or step == tc.steps:  # the harness's schedule
            model.eval()
            with paddle.no_grad():
                logits = model(xt)
                float(paddle.nn.functional.cross_entropy(logits, paddle.to_tensor(yt)))
                acc = 100.0 * float((logits.numpy().argmax(-1) == yt).mean())
            model.train()
    return acc


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exp", default="cnn")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    paper = get_paper("mnist1d")
    exp = paper.experiment(args.exp)
    cfg = paper.config(exp, overrides=[f"train.steps={args.steps}"])
    paper.build_data(cfg)  # generate once; both loops then reuse the cached arrays

    def harness():
        with tempfile.TemporaryDirectory() as tmp:
            return "test_acc", train(paper, exp, cfg, tmp, echo=False)["test_acc"]
    mb, mh, ratios = bare_against_harness(lambda: ("test_acc", bare(paper, cfg)), harness, args.repeats,
                                          lambda seconds, name, value: f"{name} {value:.2f}")
    print(f"{args.exp}, {args.steps} steps, {args.repeats} repeats: bare {mb:.2f} s, harness {mh:.2f} s (medians); "
          f"harness/bare per repeat {', '.join(f'{x:.3f}' for x in ratios)}; median {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
