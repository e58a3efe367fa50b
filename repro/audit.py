"""What verify re-executes: recompute (evaluate the final checkpoint again) and
the replay audit (re-train stretches of the run and compare with its checkpoints).

The replay audit follows Proof-of-Learning (Jia et al., IEEE S&P 2021): a run
keeps checkpoints every train.audit_every steps; the verifier re-trains
segments between them, chosen from a challenge the submitter cannot predict,
with the *registered* recipe, and compares the weights it gets with the next
kept checkpoint. The first segment starts from the initial weights rebuilt
from the seed (a cloned or relabelled run has someone else's) and the last
one ends in the scored weights (they must come out of the recipe). On the
same platform (CPU, the run's thread count, this Paddle) the comparison is
bitwise. Across platforms it cannot be: rounding differs, and training amplifies
it, by how much depends on the segment (measured in benchmarks/replay_audit.py:
a 1,000-step MNIST-1D CNN segment replayed with two threads instead of one ends
a whole segment's movement away; a logistic regression 1e-5). So --cross-platform
replays each segment twice here, once as the recipe says and once with each
update's result rounded the other way at random (a float32 step, half the
weights the update changed, every step), and judges the
logged checkpoint against the spread of the two: within MARGIN times it, on a
segment calm enough for a forgery to stand out (spread at most CHAOS_LIMIT), it
is consistent; on a chaotic segment the audit is inconclusive and says so, since
a forgery there hides in the rounding.

Both run in child processes (`python -m repro.audit`, one per job), which
import the paper's code; the parent (verify) never does for them, gives each
run a time limit and collects one JSON line per run.
"""
import hashlib
import json
import os
import queue
import random
import resource
import signal
import subprocess
import sys
import threading
import time

from repro.errors import ReproError

# --cross-platform, with distances |x - y| / |logged - start| (L2 over the weights): a segment
# is consistent when its replay here is within MARGIN times the spread of two replays here
# (the run's thread count and one more), and conclusive only when that spread is at most
# CHAOS_LIMIT, so that MARGIN * CHAOS_LIMIT (1e-3) stays under the forgeries measured in
# benchmarks/replay_audit.py (fine-tuning on the test split for 10 steps: 2.7e-2 and more).
MARGIN = 10.0
CHAOS_LIMIT = 1e-4
# --cross-platform: recomputed metrics within this relative difference of the logged ones.
RECOMPUTE_RTOL = 1e-3


def segments(run):
    """[(a, b)] between the kept checkpoints, from 0 (the initial state) to the last step."""
    steps = [0] + run.kept_steps()
    return list(zip(steps, steps[1:]))


def choose(segs, n, challenge, identity):
    """n of segs: always the first and the last, the rest drawn from (challenge, identity)."""
    if n >= len(segs):
        return list(segs)
    middle = list(range(1, len(segs) - 1))
    rng = random.Random(hashlib.sha256(f"{challenge}\0{identity}".encode()).digest())
    picked = {0, len(segs) - 1} | set(rng.sample(middle, max(0, n - 2)))
    return [segs[i] for i in sorted(picked)]


# ------------------------------------------------------------------ the child

def _config(run, local):
    """The registered config (lite variant for a lite run) with the run's own
    values for the keys a run may choose, and this machine's local paths."""
    from repro.config import flatten, set_key, validate
    from repro.protocol import RegisteredProtocol
    paper, exp = run.paper, run.exp
    cfg = paper.config(exp, lite=run.header["lite"])
    own = flatten(run.header["config"])
    for key in sorted(RegisteredProtocol(paper, exp).free_keys()):
        if key in own:
            set_key(cfg, key, own[key])
    for key, value in (local or {}).items():
        if key not in paper.path_keys:
            raise ReproError(f"--local {key}: not a local-path key of {paper.name} "
                             f"(those are: {', '.join(paper.path_keys) or 'none'})")
        set_key(cfg, key, value)
    return validate(cfg)


def _identities(text):
    """The sha256 digests in a provenance entry (its path part may differ between
    machines), or the whole text when it names no digest."""
    import re
    found = re.findall(r"sha256:([0-9a-f]{64})", str(text))
    return sorted(found) if found else str(text)


def _recompute(run, cfg):
    from repro import rundir
    from repro.data import fingerprint
    from repro.eval import evaluate
    mine = run.paper.provenance(cfg)
    differ = [f"{k}: logged {v!r}, here {mine.get(k)!r}" for k, v in run.header["provenance"].items()
              if _identities(v) != _identities(mine.get(k))]
    if differ:
        raise ReproError(f"this machine's files are not the ones the run used ({'; '.join(differ)}); "
                         "point --local KEY=PATH at copies of them")
    artifact, refit = rundir.read_artifact(run), None
    if artifact is not None:
        # what the run fitted on the training split (a vocabulary) is fitted again here from
        # the registered config, so a run cannot bring its own (one fitted on the test split)
        data = run.paper.data(cfg, None, train=True)
        refit = rundir.artifact_sha256(data.artifact) == run.header["artifact_sha256"]
    if refit is not True:
        data = run.paper.data(cfg, artifact, train=False)
    model, _, _, _ = rundir.load_trained(run, cfg=cfg)
    metrics, samples = evaluate(run.paper, model, cfg, data)
    return {"metrics": metrics, "samples": samples, "artifact_refit": refit,
            "data": {s: {"n": len(xy[0]), "sha256": fingerprint(*xy)} for s, xy in data.eval.items()}}


def _train_segment(run, cfg, a, b, jitter=False):
    """(start tensors, end tensors, model) of re-training steps a+1..b with the registered
    recipe. jitter=True rounds differently on purpose: after every update, each weight the
    update changed is stored one float32 step (ulp) up or down, at random, half of the time,
    as another summation order would have rounded it (float32 weights; others, as under
    AMP O2, are replayed as the recipe says). The draws come from their own generator
    (seeded by the segment), never from Paddle's."""
    import numpy as np
    import paddle
    from repro import checkpoint, recipe, rundir
    state = recipe.build(run.paper, cfg, init=a == 0, artifact=rundir.read_artifact(run))
    if a == 0:
        start = checkpoint.state_tensors(state.net)
    else:
        _, start, meta, _ = rundir.load_trained(run, a, into=state.net, optimizer=state.optimizer, cfg=cfg)
        state.amp.load_state(meta.get("amp_scaler"))
    params = [p for p in state.net.parameters() if not p.stop_gradient and p.dtype == paddle.float32]
    rng = np.random.default_rng([a, b])
    for step in range(a + 1, b + 1):
        before = [p.numpy() for p in params] if jitter else None
        recipe.update(run.paper, state, cfg, step)
        if jitter:
            with paddle.no_grad():
                for p, p0 in zip(params, before):
                    x = p.numpy()
                    toward = np.where(rng.random(x.shape) < 0.5, np.float32(np.inf), np.float32(-np.inf))
                    flip = (x != p0) & (rng.random(x.shape) < 0.5)
                    p.set_value(np.where(flip, np.nextafter(x, toward), x))
    got = checkpoint.state_tensors(state.net, state.optimizer)
    if b == cfg.train.steps:  # the final checkpoint holds the weights alone (docs/log-format.md)
        got = {k: v for k, v in got.items() if k.startswith("model/")}
    return start, got, state.net


def _distance(x, y, start, scale_to):
    """|x - y| / |scale_to - start|, L2 over the model's weights."""
    import numpy as np
    if not {k for k in scale_to if k.startswith("model/")} <= set(x) or not set(y) >= set(x) & set(scale_to):
        return float("inf")
    vec = lambda t: np.concatenate([np.asarray(t[k], np.float64).ravel() for k in sorted(scale_to)
                                    if k.startswith("model/")])
    moved, diff = np.linalg.norm(vec(scale_to) - vec(start)), np.linalg.norm(vec(x) - vec(y))
    return float(diff / moved) if moved > 0 else (0.0 if diff == 0 else float("inf"))


def _replay(run, cfg, a, b, cross_platform=False, threads=1):
    import numpy as np
    from repro import checkpoint, recipe, rundir
    t0 = time.perf_counter()
    out = {"a": a, "b": b, "steps": b - a}
    start, got, net = _train_segment(run, cfg, a, b)
    if a == 0:
        out["init_weights_sha256"] = checkpoint.weights_sha256(start)
    want, _, _ = rundir.read_checkpoint(run, b, net, want_optimizer=True)
    out["exact"] = got.keys() == want.keys() and all(
        got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]) for k in got)
    out["distance"] = _distance(got, want, start, want)
    if cross_platform and not out["exact"]:
        # the same segment rounded differently on purpose: how far rounding alone carries it
        _, other, _ = _train_segment(run, cfg, a, b, jitter=True)
        out["spread"] = _distance(other, got, start, want)
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out


def judge_segment(seg, cross_platform):
    """None when a replayed segment is acceptable, else why not (one line, without the
    segment's name). Same platform: bitwise only. Across platforms: see the module's doc."""
    if seg["exact"]:
        return None
    d = seg["distance"]
    if not cross_platform:
        return (f"re-training this segment with the registered recipe does not give the logged checkpoint "
                f"(distance {d:.2e}, required: bitwise equality on the same platform; --cross-platform for runs "
                f"made elsewhere)")
    spread = seg.get("spread", float("inf"))
    if spread > CHAOS_LIMIT:
        return (f"inconclusive across platforms: two replays of this segment here, one rounded differently on "
                f"purpose, end {spread:.2e} apart (over {CHAOS_LIMIT:g}), so rounding alone can carry it as far as "
                f"the logged checkpoint's {d:.2e}; replay it on the platform the run was made on, where it must be "
                f"bitwise")
    if d > MARGIN * spread:
        return (f"re-training this segment with the registered recipe does not give the logged checkpoint "
                f"(distance {d:.2e}, while rounding here moves it {spread:.2e}; consistent up to {MARGIN:g} times that)")
    return None


def audit_one(req):
    """One run's recompute and replay, as a JSON-able dict; errors as {'error': ...}."""
    from repro import recipe, rundir
    run = rundir.open_run(req["path"])
    threads = run.header["env"].get("threads", 1)
    threads = threads if type(threads) is int and 1 <= threads <= 1024 else 1
    recipe.set_threads(threads)
    cfg = _config(run, req.get("local"))
    out = {"path": req["path"]}
    if req.get("recompute"):
        out["recompute"] = _guard(lambda: _recompute(run, cfg))
    out["replay"] = [_guard(lambda a=a, b=b: _replay(run, cfg, a, b, bool(req.get("cross_platform")), threads),
                            {"a": a, "b": b})
                     for a, b in req.get("segments", [])]
    return out


def _guard(fn, base=None):
    try:
        return fn()
    except ReproError as e:
        return {**(base or {}), "error": str(e)}
    except Exception as e:  # the paper's code failed on this run: that is the run's problem, not verify's
        return {**(base or {}), "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]}


def worker_main():
    """Read {"runs": [request, ...]} on stdin; write one JSON line per run to the
    file descriptor REPRO_AUDIT_FD (not stdout, where a paper's code may print)."""
    import warnings
    warnings.filterwarnings("ignore")
    out = os.fdopen(int(os.environ["REPRO_AUDIT_FD"]), "w")
    requests = json.loads(sys.stdin.read())["runs"]
    for req in requests:
        print(f"audit: {req['path']}", file=sys.stderr, flush=True)
        try:
            result = audit_one(req)
        except ReproError as e:
            result = {"path": req["path"], "error": str(e)}
        except Exception as e:
            result = {"path": req["path"], "error": f"{type(e).__name__}: {e}"[:300]}
        out.write(json.dumps(result) + "\n")
        out.flush()


# ------------------------------------------------------------------ the parent

def _limits():
    """In the child: no core files; files it writes are capped (it should write none)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 30, 1 << 30))
    os.setsid()


def _child_env():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


class _Worker:
    def __init__(self, requests):
        import tempfile
        read_fd, write_fd = os.pipe()
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "repro.audit"], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=self.stderr,
                                     env={**_child_env(), "REPRO_AUDIT_FD": str(write_fd)},
                                     pass_fds=(write_fd,), preexec_fn=_limits, text=True)
        os.close(write_fd)
        self.results = os.fdopen(read_fd)
        self.lines = queue.Queue()
        self.proc.stdin.write(json.dumps({"runs": requests}))
        self.proc.stdin.close()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.results:
            self.lines.put(line)
        self.lines.put(None)

    def last_words(self):
        """The last line the child wrote to stderr (its error, when it died)."""
        self.stderr.seek(0)
        text = [ln.strip() for ln in self.stderr.read().splitlines() if ln.strip()]
        return text[-1][:300] if text else ""

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()


def run_audits(requests, jobs=1, timeout=3600, progress=None):
    """{path: result} for each request, `jobs` child processes at a time; a run
    that takes longer than timeout seconds, or whose child dies, gets an error."""
    results = {}
    lanes = [requests[i::max(1, jobs)] for i in range(max(1, jobs))]
    threads = [threading.Thread(target=_lane, args=(lane, timeout, results, progress)) for lane in lanes if lane]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _lane(requests, timeout, results, progress):
    pending = list(requests)
    while pending:
        worker = _Worker(pending)
        while pending:
            try:
                line = worker.lines.get(timeout=timeout)
            except queue.Empty:
                results[pending[0]["path"]] = {"error": f"timed out after {timeout} s"}
                pending.pop(0)
                worker.kill()
                break
            if line is None:  # the child died before answering for this run
                code = worker.proc.wait()
                words = worker.last_words()
                results[pending[0]["path"]] = {"error": f"the audit process ended with status {code} on this run"
                                                        + (f" ({words})" if words else "")}
                pending.pop(0)
                break
            try:
                result = json.loads(line)
                path = result.pop("path")
            except (ValueError, KeyError, AttributeError, TypeError):
                continue  # not a result line (a plugin printed to stdout)
            if path != pending[0]["path"]:
                continue
            results[path] = result
            pending.pop(0)
            if progress:
                progress(path, result)
        else:
            worker.proc.wait()


if __name__ == "__main__":
    worker_main()
