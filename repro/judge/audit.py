"""The judge's side of recompute and the replay audit: what to re-execute and every
comparison that decides.

Trust boundary: this module never imports paper code. Workers (repro.boundary.worker)
import it, inside the sandbox (repro.boundary.sandbox), and hand back tensors: the
evaluation splits they built, the model's outputs on inputs the judge gives
(never the labels), the weights a replayed segment ends in (never having seen
the checkpoint it must reach). The judge checks the splits' fingerprints
against the registered ones, computes the metrics itself from the labels it
holds, and compares the replayed weights with the run's checkpoints with its
own safetensors reader. A worker that fails, times out or writes something
malformed fails that run, with one line.

The replay audit follows Proof-of-Learning (Jia et al., IEEE S&P 2021): a run
keeps checkpoints every train.audit_every steps; the verifier re-trains
segments between them with the *registered* recipe and compares the weights it
gets with the next kept checkpoint. The first segment starts from the initial
weights rebuilt from the seed and the last one ends in the scored weights.
Which segments it re-trains is the coverage (repro.judge.coverage); one worker task
is repro.boundary.task; this module plans each run's audit (Plan), builds the
evaluation data once per cell (DataCache), judges what comes back, and runs the
runs' audits `jobs` at a time (run_audits).

On the same platform (CPU, the run's thread count, this Paddle) the comparison
is bitwise. Across platforms (--cross-platform) each segment is replayed twice,
once as the recipe says and once rounded the other way on purpose, and the
logged checkpoint is judged against the spread of the two: within MARGIN times
it on a segment calm enough for a forgery to stand out (spread at most
CHAOS_LIMIT); inconclusive on a chaotic segment.

A train.verifiable run (repro.run.verifiable, repro.run.decisions) is judged bit for bit
on any platform: the worker also gets the segment's rounding decisions and
state hashes (beside the checkpoint the segment ends at, checked against the
log), replays with them, and writes its own per-update hashes; the judge finds
the first update whose hash departs from the logged ones and the parameters
whose tags differ there, and requires the end state exactly.
"""
import os
import queue
import shutil
import tempfile
import threading
import time

import numpy as np

from repro import strict
from repro.boundary.task import Staged
from repro.data import fingerprint
from repro.errors import ReproError
from repro.judge import exchange
from repro.run import checkpoint, decisions, rundir

MARGIN = 10.0
CHAOS_LIMIT = 1e-4
RECOMPUTE_RTOL = 1e-3
PRIVATE = "private"  # the name a contest's private split has among the splits a model worker scores
TRAIN = "\0train"    # the training split among a data worker's splits, when a contest pins it


# ------------------------------------------------------------------ one run

class Plan:
    """One run's audit: what to recompute and which segments to replay."""

    def __init__(self, run, recompute, segs, chosen, config_set, worker, cross_platform, threads, private=None,
                 train_pin=None):
        self.run, self.recompute, self.segments, self.chosen = run, recompute, segs, chosen
        self.config_set, self.worker, self.cross_platform, self.threads = config_set, worker, cross_platform, threads
        self.private = private  # (x, y) of a private split the submitter never had (repro.judge.private), or None
        self.train_pin = train_pin  # (n, sha256) a contest pins the training split to, or None
        # train.verifiable: each segment replays bitwise on any machine, with the run's rounding decisions
        self.verifiable = bool(getattr(run.cfg.train, "verifiable", False)) if run.cfg is not None else False

    @property
    def path(self):
        return self.run.path

    def request(self, task, **extra):
        head = self.run.header
        return {"task": task, "paper": head["paper"], "exp": head["exp"], "lite": bool(head["lite"]),
                "set": self.config_set, "threads": self.threads, **extra}


class DataCache:
    """Evaluation splits built by data workers, once for the runs of a cell: the seeds of a
    cell share their data unless the data depend on the seed. The splits built for another
    seed are used for a run only when their fingerprints are the ones the run logged;
    otherwise they are built again for its own seed."""

    def __init__(self):
        self.lock, self.items = threading.Lock(), {}

    def get(self, plan, timeout):
        shared = self._get(plan, timeout, seeded=False)
        logged = plan.run.header.get("data") or {}
        refit, artifact = shared[1], plan.run.header.get("artifact_sha256")
        if all(logged.get(s, {}).get("sha256") == fingerprint(x, y) for s, (x, y) in shared[0].items() if s != TRAIN) \
                and (refit is None or rundir.artifact_sha256(refit) == artifact):
            return shared
        return self._get(plan, timeout, seeded=True)

    def _get(self, plan, timeout, seeded):
        req = plan.request("data")
        if not seeded:
            req["set"] = {k: v for k, v in req["set"].items() if k != "train.seed"}
        key = repr((plan.worker.env.get("REPRO_PAPERS"), sorted(req.items(), key=str), seeded,
                    plan.run.header.get("artifact_sha256"), plan.train_pin is not None))
        with self.lock:
            slot = self.items.setdefault(key, {"lock": threading.Lock()})
        with slot["lock"]:
            if "value" not in slot:
                slot["value"] = _build_data(plan, timeout, seeded)
            return slot["value"]


def _build_data(plan, timeout, seeded=True):
    """({split: (x, y)}, refit artifact or None) from a data worker (seeded=False: for the
    run's config without its seed, the registered one's); or a ReproError."""
    inputs, req = {}, plan.request("data", train=plan.train_pin is not None)
    if not seeded:
        req["set"] = {k: v for k, v in req["set"].items() if k != "train.seed"}
    artifact = rundir.read_artifact(plan.run)
    with tempfile.TemporaryDirectory() as tmp:
        if artifact is not None:
            rundir.write_artifact(tmp, artifact)
            inputs["artifact.json"] = os.path.join(tmp, rundir.ARTIFACT)
        answer, out = Staged(plan.worker, req, inputs, timeout).run()
    if isinstance(answer.get("generative"), dict):
        shutil.rmtree(out, ignore_errors=True)
        if not plan.worker.trusted:
            raise ReproError("a generative paper is scored by its own code, which is not run for a submission under "
                             "review (text-to-image contests judge bundles: repro/judge/contest_t2i.py)")
        return {}, None, answer["generative"], answer.get("provenance")
    try:
        arrays, _ = exchange.read_arrays(os.path.join(out, "data.safetensors"), "the built evaluation data")
        splits = {}
        if plan.train_pin is not None:
            x, y = arrays.get("train/x"), arrays.get("train/y")
            if x is None or y is None or len(x) != len(y):
                raise ReproError("the built training split is malformed")
            splits[TRAIN] = (x, y)
        for name in answer.get("splits", []) if isinstance(answer.get("splits"), list) else []:
            x, y = arrays.get(f"{name}/x"), arrays.get(f"{name}/y")
            if x is None or y is None or len(x) != len(y) or y.ndim != 1 or y.dtype.kind not in "iu":
                raise ReproError(f"the built evaluation split {str(name)[:40]!r} is malformed")
            splits[str(name)] = (x, y)
        refit = None
        if artifact is not None:
            path = os.path.join(out, rundir.ARTIFACT)
            strict.regular_file(path, "the refitted artifact")
            refit = strict.read_json(path, "the refitted artifact", max_bytes=256 << 20)
        return splits, refit, None, answer.get("provenance")
    finally:
        shutil.rmtree(out, ignore_errors=True)


def audit_run(plan, data_cache, timeout):
    """One run's recompute and replay, judged here: {'recompute': ..., 'replay': [...]}."""
    run = plan.run
    out = {}
    inputs, req_outputs, labels = {}, None, None
    tmp = tempfile.mkdtemp(prefix="repro-judge-")
    try:
        artifact = rundir.read_artifact(run)
        if artifact is not None:
            rundir.write_artifact(tmp, artifact)
            inputs["artifact.json"] = os.path.join(tmp, rundir.ARTIFACT)
        if plan.recompute:
            try:
                splits, refit, generative, provenance = data_cache.get(plan, timeout)
                differ = _provenance_differs(run.header.get("provenance") or {}, provenance)
                if differ:
                    raise ReproError(f"this machine's files are not the ones the run used ({differ}); point --local "
                                     f"KEY=PATH at copies of them")
                train = splits.get(TRAIN)
                splits = {k: v for k, v in splits.items() if k != TRAIN}
                if plan.private is not None:
                    splits = {**splits, PRIVATE: plan.private}
                labels = {s: y for s, (x, y) in splits.items()}
                out["recompute"] = {"data": generative or {s: {"n": len(x), "sha256": fingerprint(x, y)}
                                                           for s, (x, y) in splits.items() if s != PRIVATE},
                                    "train_data": None if train is None else
                                    {"n": len(train[0]), "sha256": fingerprint(*train)},
                                    "artifact_refit": None if refit is None else
                                    rundir.artifact_sha256(refit) == run.header["artifact_sha256"]}
                final = max(run.checkpoints())
                inputs["final.safetensors"] = _checked_copy(run, final, tmp)
                req_outputs = {"weights": "final.safetensors"}
                if splits:
                    exchange.write_arrays(os.path.join(tmp, "inputs.safetensors"), {s: x for s, (x, y) in splits.items()})
                    inputs["inputs.safetensors"] = os.path.join(tmp, "inputs.safetensors")
                    req_outputs["inputs"] = "inputs.safetensors"
            except ReproError as e:
                out["recompute"] = {"error": str(e)}
        segs = []
        verifiable = plan.verifiable
        for a, b in plan.chosen:
            # a verifiable run's replay is bitwise on any machine: no second, jittered replay
            seg = {"a": a, "b": b, "jitter": plan.cross_platform and not verifiable}
            if a > 0:
                name = f"start-{a}.safetensors"
                try:
                    inputs[name] = _checked_copy(run, a, tmp, name)
                except ReproError as e:
                    seg["error"] = str(e)
                seg["start"] = name
            if verifiable:  # the trainer's rounding decisions and state hashes for a+1..b
                name = f"dec-{a}-{b}.decisions"
                try:
                    inputs[name] = _checked_decisions(run, a, b, tmp, name)
                except ReproError as e:
                    seg.setdefault("error", str(e))
                seg["decisions"] = name
            segs.append(seg)
        runnable = [s for s in segs if "error" not in s]
        if req_outputs is None and not runnable:
            out["replay"] = [{"a": s["a"], "b": s["b"], "steps": s["b"] - s["a"], "error": s["error"]} for s in segs]
            return out
        t0 = time.perf_counter()
        req = plan.request("model", outputs=req_outputs, segments=runnable)
        try:
            answer, wout = Staged(plan.worker, req, inputs, timeout).run()
        except ReproError as e:
            if req_outputs is not None:
                out["recompute"] = {"error": str(e)}
            out["replay"] = [{"a": s["a"], "b": s["b"], "steps": s["b"] - s["a"], "error": s.get("error", str(e))}
                             for s in segs]
            return out
        try:
            seconds = answer.get("seconds") if isinstance(answer.get("seconds"), dict) else {}
            if req_outputs is not None:
                scored = _judge_outputs(plan, wout, labels, answer)
                private = {k[len(PRIVATE) + 1:]: v for k, v in scored.get("metrics", {}).items()
                           if k.startswith(PRIVATE + "_")}
                if private:
                    scored["metrics"] = {k: v for k, v in scored["metrics"].items() if not k.startswith(PRIVATE + "_")}
                    scored["private"] = {"metrics": private, "n": int(scored["samples"].pop(PRIVATE))}
                out["recompute"].update(scored)
            exact = answer.get("verifiable") if isinstance(answer.get("verifiable"), dict) else {}
            out["replay"] = [s if "error" in s else _judge_segment(plan, s, wout, tmp, seconds, exact)
                             for s in segs]
            for s in out["replay"]:
                s.pop("jitter", None), s.pop("start", None), s.pop("decisions", None)
        finally:
            shutil.rmtree(wout, ignore_errors=True)
        out["seconds"] = round(time.perf_counter() - t0, 3)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _identities(text):
    """The sha256 digests in a provenance entry (its path part may differ between machines),
    or the whole text when it names no digest."""
    import re
    found = re.findall(r"sha256:([0-9a-f]{64})", str(text))
    return sorted(found) if found else str(text)


def _provenance_differs(logged, here):
    """'' when this machine's local files (a worker's paper.provenance) are the run's, else what differs."""
    here = here if isinstance(here, dict) else {}
    return "; ".join(f"{k}: logged {str(v)[:80]!r}, here {str(here.get(k))[:80]!r}" for k, v in sorted(logged.items())
                     if _identities(v) != _identities(here.get(k)))


def _checked_copy(run, step, tmp, name=None):
    """A copy of the run's checkpoint at step, checked against the log after copying."""
    ev = run.checkpoints().get(step)
    if ev is None:
        raise ReproError(f"the run logged no checkpoint at step {step}")
    src = rundir.checkpoint_file(run, ev)
    dst = os.path.join(tmp, name or f"step-{step}.safetensors")
    shutil.copyfile(src, dst)
    if checkpoint.sha256_file(dst) != ev["sha256"]:
        raise ReproError(f"{ev['path']} changed while it was read")
    tensors, meta = checkpoint.read(dst, tensors=False)
    rundir.check_meta(run, ev, meta, ev["path"])
    return dst


def _checked_decisions(run, a, b, tmp, name):
    """A copy of a verifiable run's decisions file for the segment a..b (beside its checkpoint
    at b), checked against the log after copying and read: it must cover exactly a+1..b."""
    ev = run.checkpoints().get(b)
    if ev is None:
        raise ReproError(f"the run logged no checkpoint at step {b}")
    src = rundir.decisions_file(run, ev)
    dst = os.path.join(tmp, name)
    shutil.copyfile(src, dst)
    if checkpoint.sha256_file(dst) != ev["decisions_sha256"]:
        raise ReproError(f"{rundir.decisions_name(b)} changed while it was read")
    logged = decisions.read(dst, rundir.decisions_name(b))
    if (logged.a, logged.b) != (a, b):
        raise ReproError(f"{rundir.decisions_name(b)} covers updates {logged.a + 1}..{logged.b}, not the "
                         f"segment's {a + 1}..{b}")
    return dst


def _judge_outputs(plan, wout, labels, answer):
    """The metrics, computed here from the worker's outputs and the labels the judge holds."""
    run = plan.run
    if "generative" in answer:
        gen = answer["generative"]
        if not plan.worker.trusted:
            return {"error": "a generative paper's recompute needs its own scoring code, which is not run for "
                             "a submission under review"}
        if not isinstance(gen, dict) or not isinstance(gen.get("metrics"), dict):
            return {"error": "the worker's generative scores are malformed"}
        return {"metrics": {str(k): float(v) for k, v in gen["metrics"].items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool)},
                "samples": gen.get("samples") if isinstance(gen.get("samples"), dict) else {}}
    try:
        outputs, _ = exchange.read_arrays(os.path.join(wout, "outputs.safetensors"), "the model's outputs")
    except ReproError as e:
        return {"error": str(e)}
    metrics, samples = {}, {}
    bs = run.cfg.train.eval_batch_size
    for split, y in labels.items():
        logits = outputs.get(split)
        if logits is None or logits.ndim != 2 or len(logits) != len(y) or logits.dtype.kind != "f" \
                or not np.all(np.isfinite(logits)):
            return {"error": f"the worker's outputs on {split!r} are not {len(y)} rows of finite class scores"}
        for name, metric in run.protocol.metric_objects(run.cfg).items():
            for i in range(0, len(y), bs):
                metric.update(logits[i:i + bs], y[i:i + bs])
            metrics[f"{split}_{name}"] = float(metric.compute())
        samples[split] = len(y)
    return {"metrics": metrics, "samples": samples}


def _judge_segment(plan, seg, wout, tmp, seconds, exact=None):
    run, a, b = plan.run, seg["a"], seg["b"]
    name = f"{a}-{b}"
    out = {"a": a, "b": b, "steps": b - a}
    if plan.verifiable:
        out["verifiable"] = True
    try:
        got, _ = exchange.read_arrays(os.path.join(wout, f"seg-{name}.safetensors"), f"the replay of {a}->{b}")
        if a == 0:
            start, _ = exchange.read_arrays(os.path.join(wout, f"init-{name}.safetensors"),
                                            "the rebuilt initial weights")
            out["init_weights_sha256"] = checkpoint.weights_sha256(start)
        else:
            start, _ = checkpoint.read(os.path.join(tmp, f"start-{a}.safetensors"), want_optimizer=True)
        want, _, _ = rundir.read_checkpoint(run, b, want_optimizer=True)
        out["exact"] = got.keys() == want.keys() and all(
            got[k].dtype == want[k].dtype and got[k].shape == want[k].shape and np.array_equal(got[k], want[k])
            for k in got)
        out["distance"] = _distance(got, want, start, want)
        if plan.verifiable:
            out.update(_judge_exact(name, wout, tmp, seg, (exact or {}).get(name)))
        elif plan.cross_platform and not out["exact"]:
            other, _ = exchange.read_arrays(os.path.join(wout, f"jitter-{name}.safetensors"),
                                            f"the second replay of {a}->{b}")
            out["spread"] = _distance(other, got, start, want)
        if isinstance(seconds.get(name), (int, float)):
            out["seconds"] = float(seconds[name])
    except ReproError as e:
        out["error"] = str(e)
    return out


def _judge_exact(name, wout, tmp, seg, said):
    """A verifiable segment's bisection, decided here: the first update whose state hash in the
    replay differs from the logged one, with the groups (parameters with their optimizer state)
    whose tags differ there; and what the worker said of the decisions it could not apply (a
    worker can only make its own run fail, so a reported problem is believed, never a success)."""
    out = {}
    try:
        logged = decisions.read(os.path.join(tmp, seg["decisions"]), "the logged decisions")
        mine = decisions.read(os.path.join(wout, f"hashes-{name}.decisions"), f"the replay's state hashes of {name}")
    except ReproError as e:
        out["bisect_error"] = str(e)
        return out
    first = decisions.first_divergence(logged, mine.hashes, mine.tags, mine.groups)
    if first is not None:
        out["first_diverging"] = {"update": first[0], "groups": first[1][:20]}
    out["decisions_logged"] = logged.count()
    if isinstance(said, dict):
        problem = said.get("problem")
        if isinstance(problem, str) and problem:
            out["decision_problem"] = "".join(c if c.isprintable() else " " for c in problem)[:400]
        for key, as_ in (("taken", "decisions_taken"), ("resolved", "resolved_by_hash")):
            if type(said.get(key)) is int:
                out[as_] = said[key]
    return out


def _distance(x, y, start, scale_to):
    """|x - y| / |scale_to - start|, L2 over the model's weights."""
    keys = sorted(k for k in scale_to if k.startswith("model/"))
    if not all(k in x and k in y and k in start and x[k].shape == scale_to[k].shape == y[k].shape == start[k].shape
               and x[k].dtype.kind == "f" and y[k].dtype.kind == "f" for k in keys):
        return float("inf")
    vec = lambda t: np.concatenate([np.asarray(t[k], np.float64).ravel() for k in keys]) if keys else np.zeros(0)
    moved, diff = np.linalg.norm(vec(scale_to) - vec(start)), np.linalg.norm(vec(x) - vec(y))
    if not np.isfinite(diff):
        return float("inf")
    return float(diff / moved) if moved > 0 else (0.0 if diff == 0 else float("inf"))


def judge_segment(seg, cross_platform):
    """None when a replayed segment is acceptable, else why not (one line, without the
    segment's name). Same platform: bitwise only. Across platforms: see the module's doc.
    A train.verifiable run: bitwise on any platform, with the first diverging update named."""
    if seg.get("verifiable"):
        return _judge_verifiable(seg)
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


def _judge_verifiable(seg):
    problem, first = seg.get("decision_problem"), seg.get("first_diverging")
    if seg["exact"] and not problem:
        return None
    if seg["exact"]:
        return (f"the replay matched the logged checkpoint bit for bit, but not the run's record of the updates "
                f"before it: {problem}")
    why = (f"re-training this segment in verifiable mode does not give the logged checkpoint bit for bit "
           f"(distance {seg['distance']:.2e}; a train.verifiable run must match on any machine)")
    if first:
        where = f" in {', '.join(first['groups'])}" if first["groups"] else ""
        why += f"; the state first departs from the logged hashes after update {first['update']}{where}"
    elif "bisect_error" in seg:
        why += f"; no bisection: {seg['bisect_error']}"
    else:
        why += "; every update's logged state hash matches the replay's, so the checkpoint file is not the state the log describes"
    if problem:
        why += f"; the replay reports {problem}"
    return why


# ------------------------------------------------------------------ the pool

def run_audits(plans, jobs=1, timeout=3600, progress=None):
    """{path: result} for each plan, `jobs` runs at a time (each in its own workers)."""
    results, work, cache = {}, queue.Queue(), DataCache()
    for plan in plans:
        work.put(plan)

    def lane():
        while True:
            try:
                plan = work.get_nowait()
            except queue.Empty:
                return
            try:
                result = audit_run(plan, cache, timeout)
            except ReproError as e:
                result = {"error": str(e)}
            except Exception as e:  # a failure of the judge on this run's files: this run's problem
                result = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
            results[plan.path] = result
            if progress:
                progress(plan.path, result)

    threads = [threading.Thread(target=lane, daemon=True) for _ in range(max(1, min(jobs, len(plans))))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results
