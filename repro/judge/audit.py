"""The judge's side of recompute and the replay audit: what to re-execute and every
comparison that decides.

Trust boundary: this module never imports paper code. Workers (repro.worker)
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
logged checkpoint is judged against the spread of the two (repro.judge.segments): within MARGIN times
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
from repro.boundary import exchange
from repro.boundary.task import Staged
from repro.data import fingerprint
from repro.errors import ReproError
from repro.judge import segments
from repro.run import checkpoint, decisions, rundir

RECOMPUTE_RTOL = 1e-3
PRIVATE = "private"  # the name a contest's private split has among the splits a model worker scores
TRAIN = "\0train"
DATA_BYTES = 8 << 30  # what a data worker may hand back (a pinned training split included)    # the training split among a data worker's splits, when a contest pins it


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
            if "error" in slot:  # a failed data worker is not started again for the next run
                raise ReproError(f"{slot['error']} (the same data worker failed for an earlier run; not started again)")
            if "value" not in slot:
                try:
                    slot["value"] = _build_data(plan, timeout, seeded)
                except ReproError as e:
                    slot["error"] = str(e)
                    raise
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
        answer, out = Staged(plan.worker, req, inputs, timeout, outputs=["data.safetensors", rundir.ARTIFACT],
                             out_bytes=DATA_BYTES).run()
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


def replay_groups(plan):
    """The chosen segments in worker groups such that no worker holds an answer: a segment's
    end is the next segment's start, so segments of even and of odd index (in the run's
    whole list) go to two different workers; the final weights go only to the recompute
    worker, which replays nothing."""
    index = {seg: i for i, seg in enumerate(plan.segments)}
    groups = [[s for s in plan.chosen if index[s] % 2 == parity] for parity in (0, 1)]
    return [g for g in groups if g]


def recompute_run(plan, data_cache, timeout):
    """A run's recompute, judged here: {'recompute': ...}. The worker gets the final weights and
    the inputs of every evaluation split, public and private, as the evaluation's own batches in
    an order only the judge knows (it never learns which rows are the private ones), and never
    a label; it replays nothing."""
    run, tmp = plan.run, tempfile.mkdtemp(prefix="repro-judge-")
    try:
        inputs = _artifact_input(run, tmp)
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
            out = {"data": generative or {s: {"n": len(x), "sha256": fingerprint(x, y)}
                                          for s, (x, y) in splits.items() if s != PRIVATE},
                   "train_data": None if train is None else {"n": len(train[0]), "sha256": fingerprint(*train)},
                   "artifact_refit": None if refit is None else
                   rundir.artifact_sha256(refit) == run.header["artifact_sha256"]}
            inputs["final.safetensors"] = _checked_copy(run, max(run.checkpoints()), tmp)
            job, order = {"weights": "final.safetensors"}, None
            if splits:
                rows, job["chunks"], order = segments.shuffled_batches(splits, run.cfg.train.eval_batch_size)
                exchange.write_arrays(os.path.join(tmp, "inputs.safetensors"), {"rows": rows})
                inputs["inputs.safetensors"] = os.path.join(tmp, "inputs.safetensors")
                job["inputs"] = "inputs.safetensors"
            answer, wout = Staged(plan.worker, plan.request("model", outputs=job), inputs, timeout,
                                  outputs=["outputs.safetensors"]).run()
        except ReproError as e:
            return {"recompute": {"error": str(e)}}
        try:
            labels = {s: y for s, (x, y) in splits.items()}
            scored = _judge_outputs(plan, wout, labels, answer, order)
        finally:
            shutil.rmtree(wout, ignore_errors=True)
        private = {k[len(PRIVATE) + 1:]: v for k, v in scored.get("metrics", {}).items()
                   if k.startswith(PRIVATE + "_")}
        if private:
            scored["metrics"] = {k: v for k, v in scored["metrics"].items() if not k.startswith(PRIVATE + "_")}
            scored["private"] = {"metrics": private, "n": int(scored["samples"].pop(PRIVATE))}
        out.update(scored)
        return {"recompute": out}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replay_group(plan, group, timeout):
    """One worker's share of a run's replay, judged here: [segment results]. The worker gets the
    start of each of its segments and never a checkpoint at which one of them ends."""
    run, tmp = plan.run, tempfile.mkdtemp(prefix="repro-judge-")
    try:
        inputs, segs, size = _artifact_input(run, tmp), [], _checkpoint_bytes(run)
        for a, b in group:
            # a verifiable run's replay is bitwise on any machine: no second, jittered replay
            seg = {"a": a, "b": b, "jitter": plan.cross_platform and not plan.verifiable}
            if a > 0:
                seg["start"] = f"start-{a}.safetensors"
                try:
                    inputs[seg["start"]] = _checked_copy(run, a, tmp, seg["start"])
                except ReproError as e:
                    seg["error"] = str(e)
            if plan.verifiable:  # the trainer's rounding decisions and state hashes for a+1..b
                seg["decisions"] = f"dec-{a}-{b}.decisions"
                try:
                    inputs[seg["decisions"]] = _checked_decisions(run, a, b, tmp, seg["decisions"])
                except ReproError as e:
                    seg.setdefault("error", str(e))
            segs.append(seg)
        runnable = [s for s in segs if "error" not in s]
        failed = lambda why: [{"a": s["a"], "b": s["b"], "steps": s["b"] - s["a"], "error": s.get("error", why)}
                              for s in segs]
        if not runnable:
            return failed(None)
        names = [f"{kind}-{s['a']}-{s['b']}.safetensors" for s in runnable for kind in ("seg", "init", "jitter")]
        names += [f"hashes-{s['a']}-{s['b']}.decisions" for s in runnable]
        try:
            answer, wout = Staged(plan.worker, plan.request("model", segments=runnable), inputs, timeout,
                                  outputs=names, out_bytes=(64 << 20) + 3 * size * len(runnable)).run()
        except ReproError as e:
            return failed(str(e))
        try:
            seconds = answer.get("seconds") if isinstance(answer.get("seconds"), dict) else {}
            exact = answer.get("verifiable") if isinstance(answer.get("verifiable"), dict) else {}
            out = [s if "error" in s else _judge_segment(plan, s, wout, tmp, seconds, exact) for s in segs]
        finally:
            shutil.rmtree(wout, ignore_errors=True)
        for s in out:
            s.pop("jitter", None), s.pop("start", None), s.pop("decisions", None)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _artifact_input(run, tmp):
    artifact = rundir.read_artifact(run)
    if artifact is None:
        return {}
    rundir.write_artifact(tmp, artifact)
    return {"artifact.json": os.path.join(tmp, rundir.ARTIFACT)}


def _checkpoint_bytes(run):
    """The largest of the run's kept checkpoint files (what one replayed segment returns, at most)."""
    sizes = [0]
    for ev in run.checkpoints().values():
        try:
            sizes.append(os.lstat(rundir.checkpoint_file(run, ev)).st_size)
        except (OSError, ReproError):
            pass
    return max(sizes)


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


def _judge_outputs(plan, wout, labels, answer, order=None):
    """The metrics, computed here from the worker's outputs and the labels the judge holds
    (order: which split and rows each chunk of the shuffled inputs was)."""
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
        outputs = segments.unshuffled(outputs.get("rows"), order, labels, run.cfg.train.eval_batch_size)
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
        out["distance"] = segments.distance(got, want, start, want)
        if plan.verifiable:
            out.update(_judge_exact(name, wout, tmp, seg, (exact or {}).get(name)))
        elif plan.cross_platform and not out["exact"]:
            other, _ = exchange.read_arrays(os.path.join(wout, f"jitter-{name}.safetensors"),
                                            f"the second replay of {a}->{b}")
            out["spread"] = segments.distance(other, got, start, want)
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


# ------------------------------------------------------------------ the pool

def run_audits(plans, jobs=1, timeout=3600, progress=None, tasks_done=None):
    """{path: result} for each plan, its worker tasks (recompute, replay groups) `jobs` at a time.
    progress(path, result) when a run's tasks are all done; tasks_done(done, total, path, what)
    after each task."""
    results, work, cache, lock = {}, queue.Queue(), DataCache(), threading.Lock()
    pending, count = {}, {"done": 0, "total": 0}
    for plan in plans:
        tasks = ([("recompute", None)] if plan.recompute else []) + [("replay", g) for g in replay_groups(plan)]
        results[plan.path] = {"replay": []} if plan.chosen else {}
        pending[plan.path] = len(tasks)
        count["total"] += len(tasks)
        for task in tasks:
            work.put((plan, *task))
        if not tasks and progress:
            progress(plan.path, results[plan.path])

    def one(plan, kind, group):
        t0 = time.perf_counter()
        try:
            got = recompute_run(plan, cache, timeout) if kind == "recompute" else \
                {"replay": replay_group(plan, group, timeout)}
        except ReproError as e:
            got = {"error": str(e)}
        except Exception as e:  # a failure of the judge on this run's files: this run's problem
            got = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
        with lock:
            mine = results[plan.path]
            mine["seconds"] = round(mine.get("seconds", 0.0) + time.perf_counter() - t0, 3)
            mine.setdefault("error", got.get("error")) if got.get("error") else None
            if "recompute" in got:
                mine["recompute"] = got["recompute"]
            if "replay" in got:
                mine["replay"] = sorted(mine.get("replay", []) + got["replay"], key=lambda s: s["a"])
            pending[plan.path] -= 1
            done = pending[plan.path] == 0
            count["done"] += 1
            step = count["done"]
        if tasks_done:
            what = "recompute" if kind == "recompute" else \
                f"replay of {len(group)} segment{'s' if len(group) != 1 else ''}"
            tasks_done(step, count["total"], plan.path, what)
        if done and progress:
            progress(plan.path, results[plan.path])

    def lane():
        while True:
            try:
                item = work.get_nowait()
            except queue.Empty:
                return
            one(*item)

    threads = [threading.Thread(target=lane, daemon=True) for _ in range(max(1, min(jobs, work.qsize() or 1)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {p: {k: v for k, v in r.items() if v is not None} for p, r in results.items()}
