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
evaluation data once for the runs that share them (DataCache), judges what comes back (a recompute's
outputs with repro.judge.recomputed), and runs the workers repro.judge.grouping
assigns (one recompute a cell, two replay workers a run) `jobs` at a time (run_audits).

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
import json
import os
import queue
import shutil
import tempfile
import threading
import time

import numpy as np

from repro import strict
from repro.boundary import exchange
from repro.boundary.task import Needs, Staged
from repro.data import fingerprint
from repro.machine import run_cpu
from repro.errors import ReproError
from repro.judge import grouping, recomputed, segments
from repro.run import checkpoint, decisions, rundir

RECOMPUTE_RTOL = 1e-3
PRIVATE = recomputed.PRIVATE
TRAIN = "\0train"
DATA_BYTES = 8 << 30  # what a data worker may hand back (a pinned training split included)    # the training split among a data worker's splits, when a contest pins it


# ------------------------------------------------------------------ one run

class Plan:
    """One run's audit: what to recompute and which segments to replay."""

    def __init__(self, run, recompute, segs, chosen, config_set, worker, cross_platform, threads, private=None,
                 train_pin=None, mkl=None):
        self.run, self.recompute, self.segments, self.chosen = run, recompute, segs, chosen
        self.config_set, self.worker, self.cross_platform, self.threads = config_set, worker, cross_platform, threads
        self.mkl = mkl  # the code path of MKL's products the run took (repro.machine.MKL_PATHS; None: MKL's own)
        self.private = private  # (x, y) of a private split the submitter never had (repro.judge.private), or None
        self.train_pin = train_pin  # (n, sha256) a contest pins the training split to, or None
        # train.verifiable: each segment replays bitwise on any machine, with the run's rounding decisions
        self.verifiable = bool(getattr(run.cfg.train, "verifiable", False)) if run.cfg is not None else False

    @property
    def path(self):
        return self.run.path

    @property
    def needs(self):
        """What its tasks ask of a cluster's node: a GPU where the run was made on one; the run's
        CPU where the comparison is bitwise (not --cross-platform, not a verifiable run, whose
        segments match on any CPU); the peak memory its training recorded (rundir.RESOURCES)."""
        env = self.run.header.get("env") or {}
        return Needs(gpu=str(env.get("device", "cpu")).startswith("gpu"),
                     cpu=None if self.cross_platform or self.verifiable else run_cpu(env),
                     memory=rundir.read_resources(self.run.path))

    def request(self, task, **extra):
        head = self.run.header
        return {"task": task, "paper": head["paper"], "exp": head["exp"], "lite": bool(head["lite"]),
                "set": self.config_set, "threads": self.threads, "mkl_path": self.mkl, **extra}


class DataCache:
    """Evaluation splits built by data workers, once for the runs that can share them: the
    cells of a paper whose logged data config is the same (ChnSentiCorp's three models read
    one dataset), and the seeds of a cell unless the data depend on the seed. Splits built
    for another run are used for a run only when they are what it logged: every evaluation
    split's fingerprint, the refitted artifact, this machine's files; otherwise they are
    built again for its own experiment, then for its own seed. A worker's failure for
    another cell's experiment is that cell's: the run's own experiment is then tried."""

    def __init__(self):
        self.lock, self.items, self.firsts = threading.Lock(), {}, {}

    def get(self, plan, timeout):
        own = self._key(plan, with_seed=False)
        with self.lock:  # the first run of this paper to ask for data logged like these builds them
            first = self.firsts.setdefault(self._data_key(plan), (own, plan))
        if first[0] != own:
            try:
                shared = self._slot(first[0], first[1], timeout, seeded=False)
            except ReproError:
                shared = None
            if shared is not None and self._fits(plan, shared, like=first[1]):
                return shared
        shared = self._slot(own, plan, timeout, seeded=False)
        if self._fits(plan, shared):
            return shared
        # a run trained with its registered seed asks for the same data either way: built once, not twice
        return self._slot(self._key(plan, with_seed=not _registered_seed(plan)), plan, timeout, seeded=True)

    @staticmethod
    def _fits(plan, value, like=None):
        """Whether splits built for another run are this one's: each evaluation split's fingerprint
        the one it logged and the refitted artifact its own; built for another cell's run (like),
        also the same split names logged, no generative scoring and this machine's files as it
        logged them."""
        splits, refit, generative, provenance = value
        logged = plan.run.header.get("data") or {}
        evals = {s: xy for s, xy in splits.items() if s != TRAIN}
        if not all(logged.get(s, {}).get("sha256") == fingerprint(x, y) for s, (x, y) in evals.items()):
            return False
        if refit is not None and rundir.artifact_sha256(refit) != plan.run.header.get("artifact_sha256"):
            return False
        if like is not None:
            return generative is None and set(logged) == set(like.run.header.get("data") or {}) \
                and not recomputed.provenance_differs(plan.run.header.get("provenance") or {}, provenance)
        return True

    @staticmethod
    def _data_key(plan):
        """What a paper's data are built from: its plugin, --lite, the run's logged data config
        (and what else the build is handed: threads, the artifact, a pinned training split)."""
        head = plan.run.header
        cfg = head.get("config") if isinstance(head.get("config"), dict) else {}
        return repr((plan.worker.env.get("REPRO_PAPERS"), head.get("paper"), bool(head.get("lite")), plan.threads,
                     json.dumps(cfg.get("data"), sort_keys=True, default=str), head.get("artifact_sha256"),
                     plan.train_pin is not None))

    @staticmethod
    def _key(plan, with_seed):
        """The data worker's request (with_seed=False: without the run's train.seed)."""
        req = plan.request("data")
        if not with_seed:
            req["set"] = {k: v for k, v in req["set"].items() if k != "train.seed"}
        return repr((plan.worker.env.get("REPRO_PAPERS"), sorted(req.items(), key=str),
                     plan.run.header.get("artifact_sha256"), plan.train_pin is not None))

    def _slot(self, key, plan, timeout, seeded):
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


def _registered_seed(plan):
    """Whether the run's train.seed is the one its registered config gives (or it sets none)."""
    if "train.seed" not in plan.config_set:
        return True
    protocol = getattr(plan.run, "protocol", None)
    if protocol is None:
        return False
    try:
        registered = protocol.registered_config(bool(plan.run.header.get("lite")))
    except ReproError:
        return False
    return registered.get("train.seed", object()) == plan.config_set["train.seed"]


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
                             out_bytes=DATA_BYTES, needs=plan.needs).run()
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


def recompute_cell(plans, data_cache, timeout):
    """The recompute of a cell's runs (repro.judge.grouping), judged here: {path: {'recompute': ...}}.
    One worker gets each run's final weights and the inputs of every evaluation split, public
    and private, as the evaluation's own batches in an order only the judge knows (it never
    learns which rows are the private ones), and never a label; it replays nothing."""
    tmp, results, jobs, inputs, held = tempfile.mkdtemp(prefix="repro-judge-"), {}, [], {}, []
    try:
        for plan in plans:
            try:
                job, known = _recompute_job(plan, data_cache, timeout, tmp, len(jobs), inputs)
            except ReproError as e:
                results[plan.path] = {"recompute": {"error": str(e)}}
                continue
            jobs.append(job)
            held.append((plan, known))
        if not jobs:
            return results
        req = {k: v for k, v in plans[0].request("model", runs=jobs).items() if k != "set"}  # each run has its own
        try:
            answer, wout = Staged(plans[0].worker, req, inputs, timeout,
                                  outputs=[f"outputs-{i}.safetensors" for i in range(len(jobs))],
                                  needs=grouping.cell_needs([plan for plan, _ in held])).run()
        except ReproError as e:
            return {**results, **{plan.path: {"recompute": {"error": str(e)}} for plan, _ in held}}
        try:
            for i, (plan, (out, labels, order)) in enumerate(held):
                gen = answer.get("generative") if isinstance(answer.get("generative"), dict) else {}
                scored = recomputed.judge_outputs(plan, os.path.join(wout, f"outputs-{i}.safetensors"), labels,
                                                  {"generative": gen[str(i)]} if str(i) in gen else {}, order)
                results[plan.path] = {"recompute": {**out, **recomputed.private_apart(scored)}}
        finally:
            shutil.rmtree(wout, ignore_errors=True)
        return results
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _recompute_job(plan, data_cache, timeout, tmp, i, inputs):
    """One run's part of a cell's recompute: (its job in the worker's request, (what the judge
    knows of its data, the labels, the order of the shuffled batches)); its files are added to
    inputs, named by its index i in the request."""
    run = plan.run
    splits, refit, generative, provenance = data_cache.get(plan, timeout)
    differ = recomputed.provenance_differs(run.header.get("provenance") or {}, provenance)
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
           "artifact_refit": None if refit is None else rundir.artifact_sha256(refit) == run.header["artifact_sha256"]}
    job = {"set": plan.config_set, "artifact": None, "weights": f"final-{i}.safetensors", "inputs": None, "chunks": []}
    artifact = rundir.read_artifact(run)
    if artifact is not None:
        job["artifact"], folder = f"artifact-{i}.json", os.path.join(tmp, f"artifact-{i}")
        os.mkdir(folder)
        rundir.write_artifact(folder, artifact)
        inputs[job["artifact"]] = os.path.join(folder, rundir.ARTIFACT)
    inputs[job["weights"]] = _checked_copy(run, max(run.checkpoints()), tmp, job["weights"])
    order = None
    if splits:
        rows, job["chunks"], order = segments.shuffled_batches(splits, run.cfg.train.eval_batch_size)
        job["inputs"] = f"inputs-{i}.safetensors"
        inputs[job["inputs"]] = os.path.join(tmp, job["inputs"])
        exchange.write_arrays(inputs[job["inputs"]], {"rows": rows})
    return job, (out, {s: y for s, (x, y) in splits.items()}, order)


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
                                  outputs=names, out_bytes=(64 << 20) + 3 * size * len(runnable), needs=plan.needs).run()
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
    """{path: result} for each plan, its worker tasks (repro.judge.grouping: each cell's recompute,
    each run's replay groups) `jobs` at a time. progress(path, result) when a run's tasks are all
    done; tasks_done(done, total, path, what) after each task."""
    results, work, cache, lock = {}, queue.Queue(), DataCache(), threading.Lock()
    tasks = grouping.worker_tasks(plans)
    pending, count = {plan.path: 0 for plan in plans}, {"done": 0, "total": len(tasks)}
    for task in tasks:
        for plan in task[1]:
            pending[plan.path] += 1
        work.put(task)
    for plan in plans:
        results[plan.path] = {"replay": []} if plan.chosen else {}
        if not pending[plan.path] and progress:
            progress(plan.path, results[plan.path])

    def one(kind, cell, group):
        t0 = time.perf_counter()
        try:
            got = recompute_cell(cell, cache, timeout) if kind == "recompute" else \
                {cell[0].path: {"replay": replay_group(cell[0], group, timeout)}}
        except ReproError as e:
            got = {plan.path: {"error": str(e)} for plan in cell}
        except Exception as e:  # a failure of the judge on these runs' files: their problem
            got = {plan.path: {"error": f"{type(e).__name__}: {str(e)[:200]}"} for plan in cell}
        share, finished = (time.perf_counter() - t0) / len(cell), []  # a cell's worker: each run its share
        with lock:
            for plan in cell:
                mine, its = results[plan.path], got.get(plan.path, {"error": "no result"})
                mine["seconds"] = round(mine.get("seconds", 0.0) + share, 3)
                mine.setdefault("error", its.get("error")) if its.get("error") else None
                if "recompute" in its:
                    mine["recompute"] = its["recompute"]
                if "replay" in its:
                    mine["replay"] = sorted(mine.get("replay", []) + its["replay"], key=lambda s: s["a"])
                pending[plan.path] -= 1
                finished += [plan.path] if pending[plan.path] == 0 else []
            count["done"] += 1
            step = count["done"]
        if tasks_done:
            what = f"recompute of {len(cell)} run{'s' if len(cell) != 1 else ''}" if kind == "recompute" else \
                f"replay of {len(group)} segment{'s' if len(group) != 1 else ''}"
            tasks_done(step, count["total"], cell[0].path, what)
        for path in finished if progress else []:
            progress(path, results[path])
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
