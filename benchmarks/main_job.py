"""The main job against the authors' procedure, timed in the same run.

    python benchmarks/main_job.py [--exp cnn] [--seeds 0 1 2 3 4] [--jobs 2] [--steps N]

1. the harness: `python -m repro.train --paper mnist1d --exp E --seeds ... --jobs J`
   (each seed in its own process, one thread each, then verify --recompute)
2. the authors' procedure in PyTorch (papers/mnist1d/authors_procedure.py: the
   same data, model, Adam and batches, an evaluation every 250 steps as their
   train.py does, no logs or checkpoints), one process per seed, J at a time,
   one thread each
   (skipped, with the reason, where PyTorch is not installed)
Prints both wall times and their ratio; the harness's time split at the moment
its training ends (the line "trained in ..."), so the training alone compares
with the authors' training-only procedure and verify's share shows; and where
one harness step's time goes (measured in this process: data, forward, backward, optimizer update,
the per-step reseed, and the harness loop's own overhead against a bare loop).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks._timing import ms_per_call  # noqa: E402


def wall(cmds, jobs):
    """Seconds to run the commands, `jobs` at a time."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0, pending, running = time.perf_counter(), list(cmds), []
    while pending or running:
        while pending and len(running) < jobs:
            running.append(subprocess.Popen(pending.pop(0), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE))
        for p in list(running):
            if p.poll() is not None:
                running.remove(p)
                if p.returncode not in (0, 1):
                    raise SystemExit(f"{p.args} failed: {p.stderr.read().decode()[-500:]}")
        time.sleep(0.05)
    return time.perf_counter() - t0


def harness_wall(cmd):
    """(seconds for the whole command, seconds until it printed that training ended)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0, trained = time.perf_counter(), None
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        for line in p.stdout:
            if trained is None and line.startswith("trained in"):
                trained = time.perf_counter() - t0
        p.wait()
        total = time.perf_counter() - t0
        if p.returncode not in (0, 1) or trained is None:
            err.seek(0)
            raise SystemExit(f"{cmd} failed (exit {p.returncode}): {err.read().decode()[-500:]}")
    return total, trained


def breakdown(exp, steps=300):
    """Milliseconds per step of each part of one harness update (MNIST-1D, one thread): each part
    timed where it runs, inside whole updates (a forward alone, never followed by its backward,
    would be timed without the graph's release), over `steps` updates after 20."""
    import time

    from repro.registry import get_paper
    from repro.run import recipe
    recipe.set_threads(1)
    paper = get_paper("mnist1d")
    cfg = paper.config(exp, seed=0)
    st = recipe.build(paper, cfg)
    net, opt = st.net, st.optimizer
    spent = dict.fromkeys(("batch", "reseed", "forward", "backward", "optimizer"), 0.0)
    for step in range(-20, steps):
        t0 = time.perf_counter()
        recipe.reseed(0, step + 21)
        t1 = time.perf_counter()
        x, y = st.batches(step + 20)
        t2 = time.perf_counter()
        loss = paper.loss(net(x), y)
        t3 = time.perf_counter()
        loss.backward()
        t4 = time.perf_counter()
        opt.step()
        opt.clear_grad()
        t5 = time.perf_counter()
        if step >= 0:
            for k, a, b in (("reseed", t0, t1), ("batch", t1, t2), ("forward", t2, t3), ("backward", t3, t4),
                            ("optimizer", t4, t5)):
                spent[k] += b - a
    parts = {k: v / steps * 1e3 for k, v in spent.items()}
    counter = iter(range(10 ** 9))
    parts["whole update (recipe.update)"] = ms_per_call(lambda: recipe.update(paper, st, cfg, next(counter) + 1),
                                                        steps, warmup=20)
    return parts


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exp", default="cnn")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--steps", type=int, help="fewer updates than the registered 8,000 (a quick look; the "
                                              "harness's verify then says the config departs)")
    args = ap.parse_args()
    seeds = ",".join(map(str, args.seeds))
    short = ["-o", f"train.steps={args.steps}"] if args.steps else []
    with tempfile.TemporaryDirectory() as tmp:
        harness, trained = harness_wall([sys.executable, "-m", "repro.train", "--paper", "mnist1d", "--exp", args.exp,
                                         "--seeds", seeds, "--jobs", str(args.jobs), "--out", os.path.join(tmp, "cell"),
                                         *short])
    print(f"harness: --seeds {seeds} --jobs {args.jobs}, train and verify: {harness:.1f} s (training {trained:.1f} s, "
          f"verify with its replay audit {harness - trained:.1f} s: {(harness - trained) / harness:.0%})")
    try:
        import torch  # noqa: F401
        authors = wall([[sys.executable, "papers/mnist1d/authors_procedure.py", "--exp", args.exp, "--seeds", str(s),
                         *(["--steps", str(args.steps)] if args.steps else [])] for s in args.seeds], args.jobs)
        print(f"authors' procedure (PyTorch {torch.__version__}), the same seeds {args.jobs} at a time: {authors:.1f} s")
        print(f"ratio harness / authors' procedure: {harness / authors:.2f} (the training alone: "
              f"{trained / authors:.2f})")
    except ImportError:
        print("authors' procedure: skipped, PyTorch is not installed (pip install torch==2.13.0)")
    print(f"\nwhere one harness update of mnist1d/{args.exp} goes (ms, one thread):")
    for k, v in breakdown(args.exp, 300 if not args.steps else 20).items():
        print(f"  {k:<30} {v:7.3f}")


if __name__ == "__main__":
    main()
