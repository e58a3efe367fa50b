"""The replay audit, measured on real runs: its cost, its storage, and the
distances behind verify's --cross-platform threshold.

    python benchmarks/replay_audit.py [--runs logs/mnist1d] [--exps cnn gru ...] [--seeds 0 1]

For each run (RUNS/<exp>/seed<N>, made with train.audit_every 1000):
  cost      every segment is replayed exactly as verify replays it (the run's
            thread count); its seconds against the run's own training seconds for
            those steps (the log's batch_cost), as a ratio
  storage   bytes of the checkpoints kept for the audit against the bytes of the
            run without them (the final checkpoint, the log, the config)
  verdicts  verify --cross-platform as it would run on another platform,
            simulated by thread counts (another summation order, the same
            mechanism as another CPU or a GPU): every segment replayed with 2
            threads (the "other platform") and with 3 (verify's second replay
            there, whose distance to the first is the segment's rounding spread);
            the logged checkpoint, forged end states of the final segment (the
            final weights fine-tuned on the test split for 1 step at lr 1e-4, for
            10 steps at lr 1e-3; 100 more steps of the recipe) and a clone's first
            segment (another seed's weights at its end) judged against them by
            repro.judge.segments.judge_segment: consistent, inconclusive (a chaotic
            segment) or rejected. Distances are |x - y| / |logged - start|, L2.
Prints one table per part: per experiment, how many genuine segments are
consistent / inconclusive / rejected, their distances and spreads, and what
becomes of each forgery.
"""
import argparse
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402

from repro import machine  # noqa: E402
from repro import worker
from repro.config import flatten  # noqa: E402
from repro.judge import coverage, segments
from repro.registry import get_paper
from repro.run import checkpoint, recipe, rundir

# The benchmark measures this harness's own shipped runs, so it runs the worker's code in this
# process (verify runs the same functions in sandboxed workers and judges what they return).

def config_of(run):
    """The registered config with the run's own values of the keys a run may choose."""
    own = flatten(run.header["config"])
    free = set(run.paper.path_keys)
    from repro.judge.protocol import LOGGING_KEYS
    keep = {k: own[k] for k in sorted(LOGGING_KEYS | free) if k in own}
    return worker._config(run.paper, {"exp": run.exp.name, "lite": run.header["lite"], "set": keep})


def train_segment(run, cfg, a, b, jitter=False):
    """(start tensors, end tensors) of re-training a+1..b from the run's checkpoint at a."""
    seg = {"a": a, "b": b, "start": os.path.join(run.path, rundir.checkpoint_name(a)) if a else None}
    start, end, _ = worker._segment(run.paper, cfg, rundir.read_artifact(run), seg, jitter)
    return start, end


def replay(run, cfg, a, b):
    """{'exact', 'distance'} of a replay of a..b against the run's checkpoint at b."""
    start, got = train_segment(run, cfg, a, b)
    want = rundir.read_checkpoint(run, b, want_optimizer=True)[0]
    exact = got.keys() == want.keys() and all(got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k])
                                               for k in got)
    return {"exact": exact, "distance": segments.distance(got, want, start, want)}


def forged_states(run, cfg, b):
    """Forged end states of the segment ending at b (the final one), as a forger makes them."""
    import paddle
    out = {}
    for name, steps, lr in (("test 1x1e-4", 1, 1e-4), ("test 10x1e-3", 10, 1e-3)):
        state = recipe.build(run.paper, cfg, init=False)
        rundir.load_trained(run, b, into=state.net, cfg=cfg)
        opt = paddle.optimizer.Adam(learning_rate=lr, parameters=state.net.parameters())
        x, y = next(iter(state.data.eval.values()))
        for i in range(steps):
            xb, yb = x[i * 100:(i + 1) * 100], y[i * 100:(i + 1) * 100]
            run.paper.loss(state.net(paddle.to_tensor(state.data.prepare(xb))), paddle.to_tensor(yb)).backward()
            opt.step()
            opt.clear_grad()
        out[name] = checkpoint.state_tensors(state.net)
    # 100 more steps of the recipe, from the last full state before b
    a = coverage.segments(run)[-1][0]
    state = recipe.build(run.paper, cfg, init=a == 0)
    if a:
        rundir.load_trained(run, a, into=state.net, optimizer=state.optimizer, cfg=cfg)
    for s in range(a + 1, b + 101):
        recipe.update(run.paper, state, cfg, s)
    out["100 more steps"] = checkpoint.state_tensors(state.net)
    return out


def other_platform(run, cfg, a, b):
    """(start, the replay with 2 threads, the jittered replay with 2 threads): verify
    --cross-platform on a machine that sums in another order than the run's."""
    threads(run, 2)
    start, r2 = train_segment(run, cfg, a, b)
    _, jittered = train_segment(run, cfg, a, b, jitter=True)
    threads(run, 1)
    return start, r2, jittered


def threads(run, n):
    """n threads, and MKL on the run's own code path (all the runs this process replays must share
    one: MKL takes it once per process, repro.machine.use_mkl_path)."""
    recipe.set_threads(n, mkl=run.header["env"].get("mkl_path"))


def verdict(distance, spread):
    why = segments.judge_segment({"exact": False, "distance": distance, "spread": spread}, True)
    return "consistent" if why is None else ("inconclusive" if why.startswith("inconclusive") else "rejected")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default=os.path.join(REPO, "logs", "mnist1d"))
    ap.add_argument("--exps", nargs="+", default=["logreg", "mlp", "cnn", "gru", "logreg_shuffled", "mlp_shuffled",
                                                   "cnn_shuffled", "gru_shuffled"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    args = ap.parse_args()
    cost_rows, storage_rows, genuine_rows, forged_rows = [], [], [], []
    for exp in args.exps:
        for seed in args.seeds:
            run = rundir.open_run(get_paper, os.path.join(args.runs, exp, f"seed{seed}"))
            cfg = config_of(run)
            batch_cost = statistics.mean(e["batch_cost"] for e in run.events if e["kind"] == "train")
            segs = coverage.segments(run)
            for a, b in segs:
                threads(run, 1)
                t0 = time.perf_counter()
                seg = replay(run, cfg, a, b)
                replay_s = time.perf_counter() - t0
                if machine.same_cpu(run.header["env"]):  # bitwise only on the CPU the run was made on
                    assert seg["exact"], (run.path, a, b)
                cost_rows.append((exp, seed, f"{a}->{b}", replay_s, batch_cost * (b - a)))
                start, r2, r3 = other_platform(run, cfg, a, b)
                want = rundir.read_checkpoint(run, b)[0]
                spread = segments.distance(r3, r2, start, want)
                d = segments.distance(r2, want, start, want)
                genuine_rows.append((exp, d, spread, verdict(d, spread)))
                if b == segs[-1][1]:
                    for name, forged in forged_states(run, cfg, b).items():
                        fd = segments.distance(r2, forged, start, forged)
                        forged_rows.append((exp, name, fd, spread, verdict(fd, spread)))
                if a == 0:
                    other = rundir.open_run(get_paper, os.path.join(
                        args.runs, exp, f"seed{args.seeds[(args.seeds.index(seed) + 1) % len(args.seeds)]}"))
                    if other.path != run.path:
                        cloned = rundir.read_checkpoint(other, b)[0]
                        fd = segments.distance(r2, cloned, start, cloned)
                        forged_rows.append((exp, "clone (first segment)", fd, spread, verdict(fd, spread)))
            kept = sum(os.path.getsize(os.path.join(run.path, rundir.checkpoint_name(s))) for s in run.kept_steps()[:-1])
            rest = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(run.path) for f in fs) - kept
            storage_rows.append((exp, seed, kept, rest))
            print(f"{exp} seed {seed}: done", file=sys.stderr, flush=True)

    means = lambda rows, i, exp: statistics.mean(r[i] for r in rows if r[0] == exp)
    for title, (na, nb), rows, (ia, ib), fmt in (
            ("cost: replaying a segment vs training it (same steps, same thread count)",
             ("replay s/segment", "training s/segment"), cost_rows, (3, 4), ".2f"),
            ("storage: checkpoints kept for the audit vs the rest of the run",
             ("audit bytes", "rest bytes"), storage_rows, (2, 3), ",.0f")):
        print(f"\n{title}\n{'experiment':<16} {na:>19} {nb:>19} {'ratio':>6}")
        for exp in args.exps:
            a, b = means(rows, ia, exp), means(rows, ib, exp)
            print(f"{exp:<16} {a:>19{fmt}} {b:>19{fmt}} {a / b:>6.2f}")
        if rows is cost_rows:
            a, b = sum(r[3] for r in rows), sum(r[4] for r in rows)
            print(f"{'all':<16} {a:>19.1f} {b:>19.1f} {a / b:>6.2f}  (totals over {len(rows)} segments)")

    print(f"\nverify --cross-platform, simulated (2 threads vs the run's 1; spread: jittered vs plain); "
          f"consistent when distance <= {segments.MARGIN:g} x spread and spread <= {segments.CHAOS_LIMIT:g}")
    print(f"{'experiment':<16} {'genuine: consistent/inconclusive/rejected':>42} {'distance median':>16} "
          f"{'spread median':>14} {'max distance/spread':>20}")
    for exp in args.exps:
        rows = [r for r in genuine_rows if r[0] == exp]
        n = {v: sum(r[3] == v for r in rows) for v in ("consistent", "inconclusive", "rejected")}
        ratio = max((r[1] / r[2] if r[2] > 0 else float("inf")) for r in rows)
        print(f"{exp:<16} {n['consistent']:>28}/{n['inconclusive']}/{n['rejected']:<11} "
              f"{statistics.median(r[1] for r in rows):>16.1e} {statistics.median(r[2] for r in rows):>14.1e} "
              f"{ratio:>20.1f}")
    print("\nforgeries judged the same way (per experiment and kind: verdicts, smallest distance)")
    kinds = sorted({r[1] for r in forged_rows})
    print(f"{'experiment':<16} " + "  ".join(f"{k:>30}" for k in kinds))
    for exp in args.exps:
        cells = []
        for k in kinds:
            rows = [r for r in forged_rows if r[0] == exp and r[1] == k]
            tags = ",".join(r[4][:4] for r in rows)
            cells.append(f"{tags} {min(r[2] for r in rows):.1e}" if rows else "-")
        print(f"{exp:<16} " + "  ".join(f"{c:>30}" for c in cells))

if __name__ == "__main__":
    main()
