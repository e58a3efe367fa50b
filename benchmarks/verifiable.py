"""Verifiable training (train.verifiable), measured: how far float64 results move
between kernels, whether honest runs replay bit for bit under other kernels,
whether forgeries are still refused, and what the mode costs.

    python benchmarks/verifiable.py [--models logreg mlp cnn gru] [--steps 1000] [--every 500]
                                    [--seeds 0] [--parts discrepancy replay cost] [--configs LABEL ...]
                                    [--text] [--out DIR]

Every "other machine" here is this one with other kernels: Paddle's CPU threads
(1 or 2: another summation order), oneDNN on or off (FLAGS_use_mkldnn), and
MKL and oneDNN held to AVX2 (MKL_ENABLE_INSTRUCTIONS, ONEDNN_MAX_CPU_ISA) where
the CPU has AVX-512. A CPU of the other kind (with or without AVX-512) is
another machine this benchmark cannot stand in for.

  discrepancy  each MNIST-1D model trained verifiably for --capture updates under
               each kernel configuration in its own process, the float64 result
               of every state value of every update kept; per configuration: the
               largest difference from the 1-thread run in float32 spacings (what
               decisions.MARGIN must exceed twice over), how many values differ at
               all, and whether any rounded float32 state differs.
  replay       honest runs (--steps updates, a checkpoint kept every --every), made
               with 1 thread, verifiable and float32, replayed by verify --replay all
               under every configuration (verifiable runs bitwise; float32 runs
               with --cross-platform); then forgeries of the verifiable runs: one
               weight of a middle checkpoint moved by one float32 step, the final
               weights fine-tuned on the test split (1 step, lr 1e-4), a logged
               decision turned the other way, a logged decision removed.
  cost         verifiable / float32 seconds per update (interleaved, median of 3),
               bytes of the decisions records and files against the checkpoints',
               and the final test accuracy of verifiable against float32 runs.
  emulate      (alone) the replay part's emulated summation orders again, on the runs a
               previous run left in --out.
  cell         the registered MNIST-1D CNN cell (seeds 0-4, 8,000 updates) trained verifiably
               with 1 thread and verified by the registered protocol, every segment
               replayed with 2 threads and oneDNN on (not in the default parts).
  --text       also a text paper's --lite run (chnsenticorp_rnn textcnn, made-up
               sentences, --steps updates), replayed like the others.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402

CONFIGS = [  # (label, threads, environment): the "other machines"
    ("1 thread", 1, {}),
    ("2 threads", 2, {}),
    ("oneDNN", 1, {"FLAGS_use_mkldnn": "1"}),
    ("2 threads, oneDNN", 2, {"FLAGS_use_mkldnn": "1"}),
    ("2 threads, oneDNN, AVX2", 2, {"FLAGS_use_mkldnn": "1", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                                    "ONEDNN_MAX_CPU_ISA": "AVX2"}),
]
ORDERS = [("rows reversed", 1, "reversed"), ("batch in two halves", 1, "halves")]  # discrepancy part only


def configs(args):
    """The kernel configurations asked for (--configs), the 1-thread baseline always first."""
    return [c for c in CONFIGS if c[0] == "1 thread" or c[0] in args.configs]


def python(args, env=None, timeout=3600):
    e = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO, **(env or {})}
    for k in ("FLAGS_use_mkldnn", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR"):
        if k not in (env or {}):
            e.pop(k, None)
    p = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=e)
    if p.returncode not in (0, 1) or not p.stdout.strip():
        raise SystemExit(f"{' '.join(args[:3])} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p.stdout


# ------------------------------------------------------------------ children

def capture(model, steps, out, threads, order=""):
    """In a child: `steps` verifiable updates of MNIST-1D `model` (seed 0), every float64 result
    before rounding saved as one row per update; and the float32 control's final weights.
    order: "" (the kernels' own), "reversed" (the batch's rows in reverse order) or "halves"
    (the loss summed over the two halves of the batch, each half's forward and backward on its
    own): other summation orders of the same arithmetic, as another machine's kernels have."""
    from repro.registry import get_paper
    from repro.run import decisions, recipe
    recipe.set_threads(threads)
    paper = get_paper("mnist1d")
    if order:
        reorder(paper, order)
    rows, floors, real = [], [], decisions.near_boundary

    def keep(v, margin, floor=0.0):  # the trainer looks at every float64 result of an update at once
        v = np.asarray(v, np.float64).ravel()
        rows[-1].append(v.copy())
        floors[-1].append(np.broadcast_to(np.asarray(floor, np.float64).reshape(-1) if np.ndim(floor) else
                                          np.asarray(floor, np.float64), v.shape).copy())
        return real(v, margin, floor)
    decisions.near_boundary = keep
    cfg = paper.config(paper.experiment(model), overrides=["train.verifiable=true", "train.seed=0"])
    state = recipe.build(paper, cfg)
    for s in range(1, steps + 1):
        rows.append([])
        floors.append([])
        recipe.update(paper, state, cfg, s)
    np.save(out, np.stack([np.concatenate(r) for r in rows]))
    np.save(out[:-len(".npy")] + "-floor.npy", np.stack([np.concatenate(f) for f in floors]))
    cfg = paper.config(paper.experiment(model), overrides=["train.seed=0"])
    state = recipe.build(paper, cfg)
    for s in range(1, steps + 1):
        recipe.update(paper, state, cfg, s)
    from repro.run.checkpoint import state_tensors, weights_sha256
    print(json.dumps({"float32_weights": weights_sha256(state_tensors(state.net))}))


def reorder(paper, order):
    """Make the paper's train_step sum in another order: "reversed" (the batch's rows in reverse
    order) or "halves" (the loss of each half of the batch, forward and backward on its own)."""
    cls, real_step = type(paper), type(paper).train_step

    def step(self, model_, optimizer, batch, amp, cfg):
        x, y = batch
        if order == "reversed":
            return real_step(self, model_, optimizer, (x.flip([0]), y.flip([0])), amp, cfg)
        h = x.shape[0] // 2
        loss = (self.loss(model_(x[:h]), y[:h]) * h + self.loss(model_(x[h:]), y[h:]) * (x.shape[0] - h)) \
            / x.shape[0]
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        return loss
    cls.train_step = step


def emulate(path, order):
    """In a child: every segment of a verifiable run replayed (the worker's own code, in this
    process) with the batch summed in another order; the judge's comparisons on the result."""
    from repro import worker
    from repro.registry import get_paper
    from repro.run import decisions, rundir
    run = rundir.open_run(get_paper, path)
    reorder(run.paper, order)
    steps, out = [0] + run.kept_steps(), []
    for a, b in zip(steps, steps[1:]):
        seg = {"a": a, "b": b, "start": os.path.join(path, rundir.checkpoint_name(a)) if a else None,
               "decisions": os.path.join(path, rundir.decisions_name(b))}
        _, got, _ = worker._segment(run.paper, run.cfg, None, seg, False)
        want = rundir.read_checkpoint(run, b, want_optimizer=True)[0]
        exact = got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in got)
        mine = seg["exact"]["segment"]
        first = decisions.first_divergence(decisions.read(seg["decisions"]), np.array(mine.hashes, np.uint32),
                                           np.array(mine.tags, np.uint8).reshape(len(mine.hashes), -1), mine.groups)
        out.append({"a": a, "b": b, "exact": exact and not seg["exact"]["problem"], "problem": seg["exact"]["problem"],
                    "taken": seg["exact"]["taken"], "resolved": seg["exact"]["resolved"], "first": first})
    print(json.dumps(out))


def own_protocol(run):
    """The run's registered paper and experiment, with the run's own config as the registered
    one (these runs are shorter than the registered experiments)."""
    from repro.config import flatten
    from repro.judge import verdict
    from repro.judge.protocol import RegisteredProtocol
    base = verdict.registered(run)
    config = flatten(run.header["config"])

    class Own(RegisteredProtocol):
        def registered_config(self, lite):
            return dict(config)

        def free_keys(self):
            return set(config)
    return Own(base.paper_obj, base.exp_obj)


def verify_child(paths, threads, cross):
    from repro.judge import verdict
    options = verdict.Options(replay="all", challenge="bench", protocol_of=own_protocol, threads=threads,
                             cross_platform=cross)
    rows, runs, ok = verdict.verify(paths, options)
    print(json.dumps([{"path": r.path, "problems": r.problems, "replay": r.replayed} for r in runs]))


# ------------------------------------------------------------------ helpers

def train(out, model, seed, steps, every, verifiable, paper="mnist1d", lite=False):
    args = ["-m", "repro.train", "--paper", paper, "--exp", model, "--seed", str(seed), "--out", out]
    if lite:
        args.append("--lite")
    args += ["-o", f"train.steps={steps}", "-o", f"train.audit_every={every}",
             "-o", f"train.checkpoint_every={every}", "-o", f"train.eval_every={every}",
             "-o", f"train.log_every={every}", "-o", "train.visualdl=false"]
    if verifiable:
        args += ["-o", "train.verifiable=true"]
    t0 = time.perf_counter()
    python(args)
    return time.perf_counter() - t0


def replay(paths, threads, env, cross=False):
    out = python([os.path.abspath(__file__), "_verify", "--threads", str(threads), *(["--cross"] if cross else []),
                  *paths], env)
    return {r["path"]: r for r in json.loads(out.strip().splitlines()[-1])}


def verdict(seg):
    if "error" in seg:
        return "error"
    if seg.get("verifiable"):
        from repro.judge import segments
        return "exact" if segments.judge_segment(seg, True) is None else "mismatch"
    if seg["exact"]:
        return "exact"
    from repro.judge import segments
    why = segments.judge_segment(seg, True)
    return "consistent" if why is None else ("inconclusive" if why.startswith("inconclusive") else "rejected")


def events(path):
    with open(os.path.join(path, "events.jsonl")) as f:
        return [json.loads(x) for x in f]


def forgeries(run_path, work):
    """{kind: forged copy} of an honest verifiable run, each forged as the tamper tests forge
    (tests/forgery.py: what a forger with the project's code does)."""
    sys.path.insert(0, os.path.join(REPO, "tests"))
    from forgery import forge
    from safetensors.numpy import save_file

    from repro.registry import get_paper
    from repro.run import checkpoint, decisions as dec, rundir
    out = {}
    evs = events(run_path)
    kept = [e["step"] for e in evs if e["kind"] == "checkpoint"]
    mid, last = kept[len(kept) // 2 - 1] if len(kept) > 2 else kept[0], kept[-1]

    def copy(kind):
        dst = os.path.join(work, kind.replace(" ", "-"))
        shutil.copytree(run_path, dst)
        out[kind] = dst
        return dst

    dst = copy("one weight one float32 step")
    t, _ = checkpoint.read(os.path.join(dst, rundir.checkpoint_name(mid)), want_optimizer=True)
    key = sorted(k for k in t if k.startswith("model/"))[-1]
    w = t[key].copy()
    w.reshape(-1)[0] = np.nextafter(w.reshape(-1)[0], np.float32(np.inf))
    t[key] = w
    forge(dst, events(dst), {mid: t})

    dst = copy("fine-tuned on test")
    import paddle

    from repro.run import recipe
    run = rundir.open_run(get_paper, dst)
    state = recipe.build(run.paper, run.cfg, init=False)
    rundir.load_trained(run, last, into=state.net)
    opt = paddle.optimizer.Adam(learning_rate=1e-4, parameters=state.net.parameters())
    x, y = state.data.eval["test"]
    run.paper.loss(state.net(paddle.to_tensor(x[:100])), paddle.to_tensor(y[:100])).backward()
    opt.step()
    forge(dst, events(dst), {last: checkpoint.state_tensors(state.net)})

    for kind in ("decision turned", "decision removed"):
        dst = copy(kind)
        side = next((os.path.join(dst, rundir.decisions_name(s)) for s in kept
                     if dec.read(os.path.join(dst, rundir.decisions_name(s))).count()), None)
        if side is None:
            shutil.rmtree(dst)
            out.pop(kind)
            continue
        from safetensors import safe_open
        with safe_open(side, framework="np") as f:
            meta, arrays = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
        d = arrays["decisions"]
        arrays["decisions"] = np.concatenate([d[:0], (d[:1] ^ np.array([0, 1, 0], np.uint32)), d[1:]]) \
            if kind == "decision turned" else d[1:]
        save_file(arrays, side, metadata=meta)
        forge(dst, events(dst))
    return out


# ------------------------------------------------------------------ parts

def part_discrepancy(args, work):
    from repro.run import decisions
    print(f"\ndiscrepancy: {args.capture} verifiable updates of each model from seed 0, float64 results before "
          f"rounding, against the 1-thread run, in float32 spacings (the trainer logs values within MARGIN "
          f"{decisions.MARGIN:.1e} of a boundary; beyond it a replay resolves up to LIMIT {decisions.LIMIT:g} by the "
          f"state hash)")
    print(f"{'model':<7} {'configuration':<26} {'values':>10} {'differing':>10} {'median':>9} {'99.99%':>9} "
          f"{'max':>9} {'crossings/update':>17} {'rounded state':>14} {'float32 control':>16}")
    for model in args.models:
        base = None
        for label, threads, env in configs(args) + ORDERS:
            order = env if isinstance(env, str) else ""
            env = {} if order else env
            path = os.path.join(work, f"cap-{model}-{len(label)}-{threads}.npy")
            info = json.loads(python([os.path.abspath(__file__), "_capture", model, str(args.capture), path,
                                      str(threads), order], env).strip().splitlines()[-1])
            v = np.load(path)
            if base is None:
                base, base_info = v, info
                base_floor = np.load(path[:-len(".npy")] + "-floor.npy")
                print(f"{model:<7} {label:<26} {v.size:>10,} {'-':>10} {'-':>9} {'-':>9} {'-':>9} {'-':>17} "
                      f"{'-':>14} {'-':>16}", flush=True)
                continue
            r_b, other, _ = decisions.nearest(base, base_floor)
            gap = np.abs(other.astype(np.float64) - r_b.astype(np.float64))
            same_rounding = np.array_equal(decisions.nearest(v, np.load(path[:-len(".npy")] + "-floor.npy"))[0], r_b)
            diff = np.abs(v - base) / gap
            differing = v != base
            nz = diff[differing & np.isfinite(diff)]
            q = (lambda x: f"{np.percentile(nz, x):9.1e}") if nz.size else (lambda x: f"{0:9.1e}")
            control = "same bits" if info["float32_weights"] == base_info["float32_weights"] else "differ"
            # a boundary lies between two values d spacings apart with probability d: the expected number of
            # values rounded differently per update, were nothing logged
            crossings = float(np.nansum(np.minimum(diff, 1.0))) / v.shape[0]
            print(f"{model:<7} {label:<26} {v.size:>10,} {int(differing.sum()):>10,} {q(50)} {q(99.99)} "
                  f"{float(nz.max()) if nz.size else 0.0:9.1e} {crossings:>17.1e} "
                  f"{'same' if same_rounding else 'DIFFERS':>14} {control:>16}", flush=True)
            os.remove(path)
        os.remove(os.path.join(work, f"cap-{model}-{len(CONFIGS[0][0])}-1.npy"))


def part_replay(args, work):
    runs = {}  # (model, seed, verifiable) -> path
    train_s = {}
    for model in args.models:
        for seed in args.seeds:
            for verifiable in (True, False):
                path = os.path.join(work, f"{model}-s{seed}-{'v' if verifiable else 'f'}")
                train_s[(model, seed, verifiable)] = train(path, model, seed, args.steps, args.every, verifiable)
                runs[(model, seed, verifiable)] = path
            print(f"trained {model} seed {seed}", file=sys.stderr, flush=True)
    if args.text:  # made-up sentences (--lite), as many updates as the others
        path = os.path.join(work, "textcnn-lite-v")
        train(path, "textcnn", 0, args.steps, args.every, True, paper="chnsenticorp_rnn", lite=True)
        runs[("textcnn (lite)", 0, True)] = path
    print(f"\nreplay: verify --replay all of runs made with 1 thread ({args.steps} updates, a checkpoint kept every "
          f"{args.every}; seeds {', '.join(map(str, args.seeds))}); per configuration: segments "
          f"exact / consistent / inconclusive / rejected or mismatch / error")
    print(f"{'model':<15} {'configuration':<26} {'verifiable runs':>24} {'float32, seed ' + str(args.seeds[0]) + ', --cross-platform':>34}")
    results = {}
    for label, threads, env in configs(args):
        v = replay([p for k, p in runs.items() if k[2]], threads, env)
        # the float32 controls: the first seed, replayed with --cross-platform (two replays a segment)
        f = replay([p for k, p in runs.items() if not k[2] and k[1] == args.seeds[0]], threads, env, cross=True)
        results[label] = {**v, **f}
        for model in args.models + (["textcnn (lite)"] if args.text else []):
            def tally(verifiable):
                segs = [s for k, p in runs.items() if k[0] == model and k[2] == verifiable and p in results[label]
                        for s in results[label][p]["replay"]]
                if not segs:
                    return "-"
                n = [verdict(s) for s in segs]
                return "/".join(str(n.count(x)) for x in ("exact", "consistent", "inconclusive")) + \
                    f"/{n.count('rejected') + n.count('mismatch')}/{n.count('error')}"
            print(f"{model:<15} {label:<26} {tally(True):>24} {tally(False):>34}", flush=True)
    part_emulate(args, runs)
    print("\nforgeries of the verifiable runs (seed " + str(args.seeds[0]) + "), replayed with 2 threads and oneDNN:")
    label, threads, env = next(c for c in CONFIGS if c[0] == "2 threads, oneDNN")
    for model in args.models:
        forged = forgeries(runs[(model, args.seeds[0], True)], os.path.join(work, f"forged-{model}"))
        for kind, path in forged.items():  # one at a time: side by side, verify would refuse them as copies
            r = replay([path], threads, env)[path]
            bad = [p for p in r["problems"] if p.startswith("replay")]
            print(f"  {model:<7} {kind:<28} {'REJECTED' if bad else 'ACCEPTED'}: "
                  f"{bad[0][:300] if bad else r['problems'][:1]}", flush=True)
    return runs, train_s


def part_emulate(args, runs):
    print("\nanother summation order, emulated (the worker's replay code in-process, the batch's rows summed in "
          "reverse or in two halves): segments exact / mismatch; logged directions taken against rounding to "
          "nearest here; values resolved by the state hash")
    for model in args.models:
        for order in ("reversed", "halves"):
            segs = [s for k, p in runs.items() if k[0] == model and k[2]
                    for s in json.loads(python([os.path.abspath(__file__), "_emulate", p, order]).strip()
                                        .splitlines()[-1])]
            bad = [s for s in segs if not s["exact"]]
            print(f"  {model:<7} {order:<9} {len(segs) - len(bad)}/{len(bad)}; taken "
                  f"{sum(s['taken'] for s in segs)}, resolved {sum(s['resolved'] for s in segs)}"
                  + (f"; first mismatch: {bad[0]['first']} {bad[0]['problem']}" if bad else ""), flush=True)


def part_cell(args, work):
    """The registered MNIST-1D CNN cell (8,000 updates, a checkpoint kept every 1,000), seeds 0-4,
    trained verifiably with 1 thread (two runs at a time), then verified by the registered protocol
    with --recompute and every segment replayed with 2 threads and oneDNN on."""
    parent = os.path.join(work, "cnn-cell")
    t0 = time.perf_counter()
    python(["-m", "repro.train", "--paper", "mnist1d", "--exp", "cnn", "--seeds", "--jobs", "2", "--out", parent,
            "-o", "train.verifiable=true", "-o", "train.visualdl=false"], timeout=7200)
    trained = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = python(["-m", "repro.verify", parent, "--recompute", "--replay", "all", "--threads", "2", "--jobs", "2",
                  "--json"], {"FLAGS_use_mkldnn": "1"}, timeout=7200)
    verified = time.perf_counter() - t0
    report = json.loads(out)
    segs = [s for r in report["runs"] for s in r["replay"]]
    exact = sum(bool(s.get("exact")) and not s.get("decision_problem") for s in segs)
    print(f"\ncell: mnist1d/cnn seeds 0-4, train.verifiable, trained with 1 thread ({trained:.0f} s, 2 at a time); "
          f"verify --recompute --replay all --threads 2 with oneDNN ({verified:.0f} s): {exact} of {len(segs)} "
          f"segments bitwise, {len(segs) - exact} not; decisions taken "
          f"{sum(s.get('decisions_taken', 0) for s in segs)}, resolved by the hash "
          f"{sum(s.get('resolved_by_hash', 0) for s in segs)}")
    for row in report["targets"]:
        print(f"  {row['paper']}/{row['exp']} {row['metric']}: {row['achieved']} (bar {row['bar']}): "
              f"{'PASS' if row['passed'] else 'FAIL'}; each seed {', '.join(f'{v:.1f}' for v in row['values'])}")
    for r in report["runs"]:
        if r["problems"]:
            print(f"  {r['path']}: {r['problems'][:2]}")


def part_cost(args, work, runs, train_s):
    from repro.registry import get_paper
    from repro.run import decisions, recipe, rundir
    print(f"\ncost: seconds per update, verifiable / float32 ({args.time_steps} updates, interleaved, 3 repeats, "
          f"1 thread, this process)")
    print(f"{'model':<7} {'float32 ms':>11} {'verifiable ms':>14} {'ratio (median)':>15}")
    paper = get_paper("mnist1d")
    recipe.set_threads(1)
    for model in args.models:
        ms = {True: [], False: []}
        for _ in range(3):
            for verifiable in (False, True):
                cfg = paper.config(paper.experiment(model), overrides=[f"train.verifiable={str(verifiable).lower()}"])
                state = recipe.build(paper, cfg)
                recipe.update(paper, state, cfg, 1)
                t0 = time.perf_counter()
                for s in range(2, args.time_steps + 2):
                    recipe.update(paper, state, cfg, s)
                ms[verifiable].append((time.perf_counter() - t0) / args.time_steps * 1000)
        ratios = [v / f for v, f in zip(ms[True], ms[False])]
        print(f"{model:<7} {statistics.median(ms[False]):>11.2f} {statistics.median(ms[True]):>14.2f} "
              f"{statistics.median(ratios):>15.2f}", flush=True)
    if not runs:
        return
    print("\nstorage of the verifiable runs: per kept checkpoint, the decisions and the whole record against the "
          "checkpoint file")
    print(f"{'model':<15} {'decisions':>10} {'bytes':>8} {'/ ckpt':>8} {'record file':>12} {'/ ckpt':>8} "
          f"{'checkpoint bytes':>17}")
    for model in sorted({k[0] for k in runs}):
        n = dbytes = fbytes = cbytes = 0
        for k, path in runs.items():
            if k[0] != model or not k[2]:
                continue
            for e in events(path):
                if e["kind"] == "checkpoint" and "decisions_sha256" in e:
                    logged = decisions.read(os.path.join(path, rundir.decisions_name(e["step"])))
                    n += logged.count()
                    dbytes += logged.decisions.nbytes
                    fbytes += os.path.getsize(os.path.join(path, rundir.decisions_name(e["step"])))
                    cbytes += os.path.getsize(os.path.join(path, e["path"]))
        print(f"{model:<15} {n:>10} {dbytes:>8} {dbytes / cbytes:>8.2%} {fbytes:>12} {fbytes / cbytes:>8.2%} "
              f"{cbytes:>17}")
    print("\nfinal test accuracy (%), verifiable vs float32, same seeds; training seconds (1 thread, in a "
          "subprocess, import included)")
    for model in args.models:
        acc = {}
        for verifiable in (True, False):
            acc[verifiable] = [events(runs[(model, s, verifiable)])[-1]["metrics"]["test_acc"] for s in args.seeds]
        secs = {v: statistics.mean(train_s[(model, s, v)] for s in args.seeds) for v in (True, False)}
        print(f"  {model:<7} verifiable {', '.join(f'{a:.1f}' for a in acc[True])} "
              f"(mean {statistics.mean(acc[True]):.2f}); float32 {', '.join(f'{a:.1f}' for a in acc[False])} "
              f"(mean {statistics.mean(acc[False]):.2f}); seconds {secs[True]:.1f} vs {secs[False]:.1f}")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "_capture":
        return capture(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), *sys.argv[6:7])
    if len(sys.argv) > 1 and sys.argv[1] == "_emulate":
        return emulate(sys.argv[2], sys.argv[3])
    if len(sys.argv) > 1 and sys.argv[1] == "_verify":
        ap = argparse.ArgumentParser()
        ap.add_argument("_")
        ap.add_argument("--threads", type=int)
        ap.add_argument("--cross", action="store_true")
        ap.add_argument("paths", nargs="+")
        a = ap.parse_args()
        return verify_child(a.paths, a.threads, a.cross)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["logreg", "mlp", "cnn", "gru"])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--every", type=int, default=500)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--capture", type=int, default=200, help="updates per model of the discrepancy part")
    ap.add_argument("--time-steps", type=int, default=300, help="updates per timing of the cost part")
    ap.add_argument("--parts", nargs="+", default=["discrepancy", "replay", "cost"],
                    choices=["discrepancy", "replay", "cost", "cell", "emulate"],
                    help="cell: the registered MNIST-1D CNN cell, 5 seeds of 8,000 updates (about half an hour)")
    ap.add_argument("--configs", nargs="+", choices=[c[0] for c in CONFIGS], default=[c[0] for c in CONFIGS],
                    metavar="LABEL", help="the kernel configurations to compare with the 1-thread run (default: all "
                                          "of " + "; ".join(c[0] for c in CONFIGS) + ")")
    ap.add_argument("--text", action="store_true", help="also a text paper's --lite run in the replay part")
    ap.add_argument("--out", help="keep the runs here (default: a temporary folder, removed)")
    args = ap.parse_args()
    work = args.out or tempfile.mkdtemp(prefix="verifiable-bench-")
    os.makedirs(work, exist_ok=True)
    try:
        from repro.machine import cpu
        print(f"machine: {cpu()[0]} ({cpu()[1]}), {os.cpu_count()} CPUs")
        if "discrepancy" in args.parts:
            part_discrepancy(args, work)
        runs, train_s = {}, {}
        if "replay" in args.parts:
            runs, train_s = part_replay(args, work)
        if "cost" in args.parts:
            part_cost(args, work, runs, train_s)
        if "emulate" in args.parts and "replay" not in args.parts:  # again, on the runs already in --out
            part_emulate(args, {(m, seed, True): os.path.join(work, f"{m}-s{seed}-v") for m in args.models
                                for seed in args.seeds if os.path.isdir(os.path.join(work, f"{m}-s{seed}-v"))})
        if "cell" in args.parts:
            part_cell(args, work)
    finally:
        if not args.out:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
