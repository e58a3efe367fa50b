"""ResNet-20 training throughput: the harness's loop against a PyTorch reference
of the same model, batch and input pipeline, in the same run.

    python benchmarks/resnet_throughput.py [--steps 20] [--batch 128] [--threads 2]

Both train on CIFAR-shaped synthetic images (the real archive is not needed to
time a step) with the same numpy pipeline (uint8 -> float, 4-pixel pad, random
crop, flip), SGD momentum 0.9, weight decay 1e-4. The harness's samples/s is
read from its own log (the `ips` of its train events: reader + step time, no
evaluation); a bare Paddle loop and the reference are timed around the same
work, so harness/bare is the harness's cost and bare/reference Paddle's. The first steps
of each are warm-up and not counted. PyTorch is optional: without it, only the
harness is measured.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


from repro.data import Batches  # noqa: E402
from repro.registry import get_paper  # noqa: E402
from repro.run import rundir  # noqa: E402
from repro.train import train  # noqa: E402

WARMUP = 3


def harness(paper, exp, cfg):
    with tempfile.TemporaryDirectory() as tmp:
        train(paper, exp, cfg, tmp, echo=False)
        events = [e for e in rundir.read(tmp).events if e["kind"] == "train"]
    return statistics.median(e["ips"] for e in events[WARMUP:])


def timed(paper, cfg, step):
    """Median samples/s of step(x, y) on the recipe's batches (making the batch timed too), past
    the warm-up steps: the one timing loop of the bare Paddle and the PyTorch reference loops."""
    data = paper.build_data(cfg)
    batches = Batches(*data.train, cfg.train.batch_size, "shuffle", 0, data.prepare, paper.augment)
    times = []
    for s in range(cfg.train.steps):
        t0 = time.perf_counter()
        step(*batches(s))
        times.append(time.perf_counter() - t0)
    return statistics.median(cfg.train.batch_size / t for t in times[WARMUP:])


def bare_paddle(paper, cfg):
    """The same step in plain Paddle, no harness: splits framework from harness cost."""
    import paddle

    paddle.seed(0)
    model = paper.build_model(cfg)
    opt = paddle.optimizer.Momentum(learning_rate=cfg.train.lr, momentum=0.9, parameters=model.parameters(),
                                    weight_decay=1e-4)

    def step(x, y):
        loss = paddle.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.clear_grad()
    return timed(paper, cfg, step)


def reference(paper, cfg):
    import torch

    from repro.papers.resnet_cifar.reference import build_model

    torch.manual_seed(0)
    model = build_model(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.train.lr, momentum=0.9, weight_decay=1e-4)

    def step(x, y):
        x, y = torch.from_numpy(x.numpy()), torch.from_numpy(y.numpy())
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
    return timed(paper, cfg, step)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--amp", choices=["off", "bfloat16", "float16"], default="off")
    args = ap.parse_args()
    paper = get_paper("resnet_cifar")
    exp = paper.experiment("resnet20")
    amp = [] if args.amp == "off" else ["train.amp.enabled=true", f"train.amp.dtype={args.amp}"]
    cfg = paper.config(exp, overrides=[
        "data.source=synthetic", f"data.synthetic_train={args.batch * 8}", f"train.steps={args.steps}",
        f"train.batch_size={args.batch}", "train.log_every=1", f"train.eval_every={args.steps}",
        f"train.checkpoint_every={args.steps}", "train.visualdl=false", *amp])
    import paddle
    ips_h = harness(paper, exp, cfg)
    print(f"harness (Paddle {paddle.__version__}, amp {args.amp}): {ips_h:.1f} samples/s "
          f"(ResNet-20, batch {args.batch}, median of steps {WARMUP + 1}-{args.steps})", flush=True)
    ips_b = bare_paddle(paper, cfg)
    print(f"bare Paddle loop (fp32): {ips_b:.1f} samples/s; harness/bare = {ips_h / ips_b:.2f}", flush=True)
    try:
        import torch
    except ImportError:
        print("PyTorch not installed: no reference measured (pip install torch==2.13.0)")
        return
    torch.set_num_threads(args.threads)
    ips_r = reference(paper, cfg)
    print(f"reference (PyTorch {torch.__version__}, fp32): {ips_r:.1f} samples/s")
    print(f"harness/reference = {ips_h / ips_r:.2f}")


if __name__ == "__main__":
    main()
