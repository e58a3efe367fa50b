"""The replay audit, measured on real runs: its cost, its storage, and the
distances behind verify's --cross-platform threshold.

    python benchmarks/replay_audit.py [--runs logs/mnist1d] [--exps cnn gru ...] [--seeds 0 1]

For each run (RUNS/<exp>/seed<N>, made with train.audit_every 1000):
  cost      every segment is replayed exactly as verify replays it (the run's
            thread count); its seconds against the run's own training seconds for
            those steps (the log's batch_cost), as a ratio
  storage   bytes of the checkpoints kept for the audit against the bytes of the
            run without them (the final checkpoint, the log, the config)
  distance  every segment replayed on "another platform" (2 CPU threads instead
            of 1: the same arithmetic, summed in another order), and forged final
            segments (the final weights fine-tuned on the test split for 1 step at
            lr 1e-4, for 10 steps at lr 1e-3; 100 more steps of the recipe), and a
            clone's first segment (the same recipe from another seed's initial
            weights): |replayed - logged| / |logged - start|, L2 over the weights.
Prints one table per part and the largest genuine and smallest forged distance
per experiment, side by side with verify's REPLAY_THRESHOLD.
"""
import argparse
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402

from repro import audit, checkpoint, recipe, rundir  # noqa: E402


def vec(tensors):
    return np.concatenate([np.asarray(tensors[k], np.float64).ravel() for k in sorted(tensors) if k.startswith("model/")])


def distance(got, want, start):
    moved = np.linalg.norm(vec(want) - vec(start))
    return float(np.linalg.norm(vec(got) - vec(want)) / moved)


def state_at(run, cfg, step):
    state = recipe.build(run.paper, cfg, init=step == 0)
    if step:
        rundir.load_trained(run, step, into=state.net, optimizer=state.optimizer, cfg=cfg)
    return state


def forged_distances(run, cfg, a, b):
    """Distances of forged end states of segment (a, b) from its logged end state."""
    import paddle
    start = rundir.read_checkpoint(run, a)[0] if a else checkpoint.state_tensors(state_at(run, cfg, 0).net)
    want = rundir.read_checkpoint(run, b)[0]
    out = {}
    for name, steps, lr in (("test 1x1e-4", 1, 1e-4), ("test 10x1e-3", 10, 1e-3)):
        state = state_at(run, cfg, b)
        opt = paddle.optimizer.Adam(learning_rate=lr, parameters=state.net.parameters())
        x, y = state.data.eval["test"]
        for i in range(steps):
            xb, yb = x[i * 100:(i + 1) * 100], y[i * 100:(i + 1) * 100]
            run.paper.loss(state.net(paddle.to_tensor(state.data.prepare(xb))), paddle.to_tensor(yb)).backward()
            opt.step()
            opt.clear_grad()
        out[name] = distance(checkpoint.state_tensors(state.net), want, start)
    state = state_at(run, cfg, b)
    for s in range(b + 1, b + 101):
        recipe.update(run.paper, state, cfg, s)
    out["100 more steps"] = distance(checkpoint.state_tensors(state.net), want, start)
    return out


def clone_distance(run, other, cfg):
    """The first segment of `run` as a clone of `other` would present it: other's weights at 1000."""
    start = checkpoint.state_tensors(state_at(run, cfg, 0).net)
    return distance(rundir.read_checkpoint(other, 1000)[0], rundir.read_checkpoint(run, 1000)[0], start)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default=os.path.join(REPO, "logs", "mnist1d"))
    ap.add_argument("--exps", nargs="+", default=["logreg", "mlp", "cnn", "gru", "logreg_shuffled", "mlp_shuffled",
                                                   "cnn_shuffled", "gru_shuffled"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    args = ap.parse_args()
    cost_rows, storage_rows, dist_rows = [], [], []
    for exp in args.exps:
        genuine, forged = [], {}
        for seed in args.seeds:
            run = rundir.open_run(os.path.join(args.runs, exp, f"seed{seed}"))
            cfg = audit._config(run, {})
            batch_cost = statistics.mean(e["batch_cost"] for e in run.events if e["kind"] == "train")
            for a, b in audit.segments(run):
                recipe.set_threads(1)
                t0 = time.perf_counter()
                seg = audit._replay(run, cfg, a, b)
                replay_s = time.perf_counter() - t0
                assert seg["exact"], (run.path, a, b)
                cost_rows.append((exp, seed, f"{a}->{b}", replay_s, batch_cost * (b - a)))
                recipe.set_threads(2)
                genuine.append(audit._replay(run, cfg, a, b)["distance"])
            recipe.set_threads(1)
            segs = audit.segments(run)
            for name, d in forged_distances(run, cfg, *segs[-1]).items():
                forged.setdefault(name, []).append(d)
            other = rundir.open_run(os.path.join(args.runs, exp, f"seed{args.seeds[(args.seeds.index(seed) + 1) % len(args.seeds)]}"))
            forged.setdefault("clone (first segment)", []).append(clone_distance(run, other, cfg))
            kept = sum(os.path.getsize(os.path.join(run.path, rundir.checkpoint_name(s))) for s in run.kept_steps()[:-1])
            rest = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(run.path) for f in fs) - kept
            storage_rows.append((exp, seed, kept, rest))
            print(f"{exp} seed {seed}: done", file=sys.stderr, flush=True)
        dist_rows.append((exp, genuine, forged))

    print("\ncost: replaying a segment vs training it (same steps, same thread count)")
    print(f"{'experiment':<16} {'replay s/segment':>17} {'training s/segment':>19} {'ratio':>6}")
    for exp in args.exps:
        rows = [r for r in cost_rows if r[0] == exp]
        rep, tr = statistics.mean(r[3] for r in rows), statistics.mean(r[4] for r in rows)
        print(f"{exp:<16} {rep:>17.2f} {tr:>19.2f} {rep / tr:>6.2f}")
    rep, tr = sum(r[3] for r in cost_rows), sum(r[4] for r in cost_rows)
    print(f"{'all':<16} {rep:>17.1f} {tr:>19.1f} {rep / tr:>6.2f}  (totals over {len(cost_rows)} segments)")

    print("\nstorage: checkpoints kept for the audit vs the rest of the run")
    print(f"{'experiment':<16} {'audit bytes':>12} {'rest bytes':>11} {'ratio':>6}")
    for exp in args.exps:
        rows = [r for r in storage_rows if r[0] == exp]
        k, r = statistics.mean(x[2] for x in rows), statistics.mean(x[3] for x in rows)
        print(f"{exp:<16} {k:>12,.0f} {r:>11,.0f} {k / r:>6.2f}")

    print(f"\ndistance |replayed - logged| / |logged - start|; verify's threshold {audit.REPLAY_THRESHOLD:g}")
    print(f"{'experiment':<16} {'genuine, 2 threads: median':>27} {'max':>9} {'> threshold':>12}   forged (min over seeds)")
    for exp, genuine, forged in dist_rows:
        over = sum(d > audit.REPLAY_THRESHOLD for d in genuine)
        fs = "  ".join(f"{k} {min(v):.1e}" for k, v in forged.items())
        print(f"{exp:<16} {statistics.median(genuine):>27.1e} {max(genuine):>9.1e} {over:>5}/{len(genuine):<6}   {fs}")


if __name__ == "__main__":
    main()
