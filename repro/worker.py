"""The worker: the only code of the audit that imports paper code, and it runs in
the sandbox (repro.boundary.sandbox). It is handed inputs and writes tensors; it never
sees a run's logs or the checkpoint a replay must reach, and it decides nothing.

    python -B -m repro.worker IN_DIR OUT_DIR

IN_DIR/request.json says what to do (its inputs named by file name in IN_DIR). Sandboxed,
IN_DIR is /in and OUT_DIR a private tmpfs at /out; when the task ends, every file in
OUT_DIR goes to the judge as one stream on standard output (repro.boundary.exchange), and
the judge keeps only what it asked for. Whatever the code prints goes to standard error.

  task "data":  build the experiment's evaluation splits (and, for a paper that
                fits something on its training split, fit it again from the
                registered config); writes OUT_DIR/data.safetensors with
                <split>/x and <split>/y, and OUT_DIR/artifact.json.
  task "fresh": n new evaluation samples from a seed, by a paper the maintainers
                trust (a contest's private evaluation): OUT_DIR/data.safetensors.
  task "redraw": a text-to-image bundle's works, drawn again from its LoRA and
                the maintainers' base model (repro.diffusion.redraw; harness
                code only, never the submitted images): OUT_DIR/works.safetensors.
  task "model": for each run it names (a cell's recompute: its config set, final
                weights and artifact), the model's outputs on the inputs the
                judge gives (never the labels: the evaluation's batches of every
                split, public and private, in an order only the judge knows):
                OUT_DIR/outputs-I.safetensors; or, for each segment a..b of one run, the
                state after re-training it from the start checkpoint it is given
                (or, from step 0, from the initial weights its seed gives):
                OUT_DIR/seg-A-B.safetensors (and init-0-B, jitter-A-B). A
                train.verifiable run's segment is re-trained with the trainer's
                rounding decisions it is given, and the replay's own per-update
                state hashes go to OUT_DIR/hashes-A-B.decisions (repro.run.decisions).

Failures end with one line in OUT_DIR/error.txt. The judge (repro.judge.audit)
checks every file here before it uses it.
"""
import json
import os
import sys
import time
import traceback

from repro import strict
from repro.boundary import exchange
from repro.config import set_key, validate
from repro.data import fingerprint
from repro.paper import GenerativePaper
from repro.registry import get_paper
from repro.run import checkpoint, decisions, recipe, rundir


def _config(paper, req):
    exp = paper.experiment(req["exp"])
    cfg = paper.config(exp, lite=bool(req.get("lite")))
    for key, value in sorted((req.get("set") or {}).items()):
        set_key(cfg, key, value)
    return validate(cfg)


def _paper(req, load=True):
    """(paper, config) of the request, Paddle's threads and MKL's code path set to the run's
    (load=False: a task that may never compute with Paddle, recipe.set_threads)."""
    recipe.set_threads(int(req.get("threads") or 1), load=load, mkl=req.get("mkl_path"))
    paper = get_paper(req["paper"])
    return paper, _config(paper, req)


def _artifact(path):
    if not path:
        return None
    return strict.read_json(path, "artifact", max_bytes=256 << 20)


def data_task(req, out):
    paper, cfg = _paper(req, load=False)
    provenance = paper.provenance(cfg)  # what this machine's local files are (a pretrained model's sha256)
    if isinstance(paper, GenerativePaper):  # scored by its own code in the model task: only its fingerprints
        data = paper.data(cfg, None, train=False)
        return {"splits": [], "provenance": provenance,
                "generative": {s: {"n": len(x), "sha256": fingerprint(x, y)} for s, (x, y) in data.eval.items()}}
    given = _artifact(req.get("artifact_file"))
    arrays, refit = {}, None
    if given is not None:
        fitted = paper.data(cfg, None, train=True)
        refit = fitted.artifact
        rundir.write_artifact(out, refit)
        same = rundir.artifact_sha256(refit) == rundir.artifact_sha256(given)
        data = fitted if same else paper.data(cfg, given, train=False)
    else:
        data = paper.data(cfg, None, train=bool(req.get("train")))
    for split, (x, y) in data.eval.items():
        arrays[f"{split}/x"], arrays[f"{split}/y"] = x, y
    if req.get("train"):  # a contest pins the training split: the judge fingerprints it
        arrays["train/x"], arrays["train/y"] = data.train
    exchange.write_arrays(os.path.join(out, "data.safetensors"), arrays)
    return {"splits": list(data.eval), "refit": refit is not None, "provenance": provenance}


def fresh_task(req, out):
    """A fresh evaluation split from a paper the maintainers trust (never a submission's):
    n samples from the seed they hold."""
    paper, cfg = _paper(req, load=False)
    x, y = paper.fresh_split(cfg, int(req["n"]), int(req["seed"]))
    exchange.write_arrays(os.path.join(out, "data.safetensors"), {"private/x": x, "private/y": y})
    return {"splits": ["private"]}


def _outputs(paper, cfg, artifact, weights, rows, chunks):
    """The logits of the model with these weights on rows, computed chunk by chunk (the judge
    sends the evaluation's own batches, so each is computed as evaluation computed it)."""
    import numpy as np
    import paddle
    model, _, _ = rundir.load_weights(paper, cfg, weights, artifact)  # the one loader of a weights file (eval mode)
    prepare = paper.data(cfg, artifact, train=False).prepare
    out, k = [], 0
    with paddle.no_grad():
        for n in chunks:
            out.append(model(paddle.to_tensor(prepare(rows[k:k + n]))).numpy())
            k += n
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def _segment(paper, cfg, artifact, seg, jitter, built=None):
    """(start tensors, end tensors, the data) of re-training steps a+1..b with the registered
    recipe. built: the data an earlier segment of this request built (the same run, config
    and artifact), used from a checkpoint (a > 0): building it again took as long as
    training a few hundred steps.
    jitter=True rounds differently on purpose (--cross-platform): after every update, each
    float32 weight the update changed is stored one float32 step up or down, at random, half
    of the time, from a generator of its own (seeded by the segment), never Paddle's."""
    import numpy as np
    import paddle
    a, b = seg["a"], seg["b"]
    state = recipe.build(paper, cfg, init=a == 0, artifact=artifact, data=None if a == 0 else built)
    if a == 0:
        start = checkpoint.state_tensors(state.net)
    else:
        start, meta = checkpoint.read(seg["start"], state.net, want_optimizer=True)
        checkpoint.load_model(state.net, start)
        checkpoint.load_optimizer(state.optimizer, state.net, start)
        state.amp.load_state(meta.get("amp_scaler"))
    if state.exact is not None:  # verifiable: the trainer's rounding decisions for these updates
        logged = decisions.read(seg["decisions"]) if seg.get("decisions") else None
        if logged is not None and (logged.a, logged.b) != (a, b):
            raise ValueError(f"the decisions file covers updates {logged.a + 1}..{logged.b}, not {a + 1}..{b}")
        state.exact.use_logged(a, logged)
        jitter = False
    params = [p for p in state.net.parameters() if not p.stop_gradient and p.dtype == paddle.float32]
    rng = np.random.default_rng([a, b])
    for step in range(a + 1, b + 1):
        before = [p.numpy() for p in params] if jitter else None
        recipe.update(paper, state, cfg, step)
        if jitter:
            with paddle.no_grad():
                for p, p0 in zip(params, before):
                    x = p.numpy()
                    toward = np.where(rng.random(x.shape) < 0.5, np.float32(np.inf), np.float32(-np.inf))
                    flip = (x != p0) & (rng.random(x.shape) < 0.5)
                    p.set_value(np.where(flip, np.nextafter(x, toward), x))
    if state.exact is not None:  # what the judge bisects with, and any decision the replay could not apply
        seg["exact"] = {"segment": state.exact.segment, "problem": state.exact.problem,
                        "resolved": len(state.exact.resolved), "taken": state.exact.taken}
    got = checkpoint.state_tensors(state.net, state.optimizer)
    if b == cfg.train.steps:  # the final checkpoint holds the weights alone (docs/log-format.md)
        got = {k: v for k, v in got.items() if k.startswith("model/")}
    return start, got, state.data


def recompute(req, out):
    """Each run's outputs on the inputs the judge gave, from its final weights: the I-th run of
    the request (a cell's recompute) to OUT_DIR/outputs-I.safetensors. Replays nothing."""
    answer = {"seconds": {}}
    for i, job in enumerate(req["runs"]):
        t0 = time.perf_counter()
        paper, cfg = _paper({**req, "set": job["set"]})
        artifact = _artifact(job["artifact"])
        if isinstance(paper, GenerativePaper):  # scored by the paper's own code: only believed for built-in papers
            from repro.run.evaluation import evaluate
            model, _, _ = rundir.load_weights(paper, cfg, job["weights"], artifact)
            metrics, samples = evaluate(paper, model, cfg, paper.data(cfg, artifact, train=False))
            answer.setdefault("generative", {})[str(i)] = {"metrics": metrics, "samples": samples}
        else:
            rows = exchange.read_arrays(job["inputs"], "the evaluation inputs")[0]["rows"]
            exchange.write_arrays(os.path.join(out, f"outputs-{i}.safetensors"),
                                  {"rows": _outputs(paper, cfg, artifact, job["weights"], rows, job["chunks"])})
        answer["seconds"][f"outputs-{i}"] = round(time.perf_counter() - t0, 3)
    return answer


def model_task(req, out):
    if req["runs"]:
        return recompute(req, out)
    paper, cfg = _paper(req)
    artifact = _artifact(req.get("artifact_file"))
    answer = {"seconds": {}}
    built = None
    for seg in req.get("segments") or []:
        t0 = time.perf_counter()
        start, got, built = _segment(paper, cfg, artifact, seg, jitter=False, built=built)
        name = f"{seg['a']}-{seg['b']}"
        if seg["a"] == 0:
            exchange.write_arrays(os.path.join(out, f"init-{name}.safetensors"),
                                  {k: v for k, v in start.items() if k.startswith("model/")})
        exchange.write_arrays(os.path.join(out, f"seg-{name}.safetensors"), got)
        if seg.get("exact"):
            decisions.write(os.path.join(out, f"hashes-{name}.decisions"), seg["exact"]["segment"])
            answer.setdefault("verifiable", {})[name] = {"problem": seg["exact"]["problem"],
                                                         "resolved": seg["exact"]["resolved"],
                                                         "taken": seg["exact"]["taken"]}
        if seg.get("jitter"):
            _, other, built = _segment(paper, cfg, artifact, seg, jitter=True, built=built)
            exchange.write_arrays(os.path.join(out, f"jitter-{name}.safetensors"), other)
        answer["seconds"][name] = round(time.perf_counter() - t0, 3)
    return answer


def redraw_task(req, out):
    """A text-to-image bundle's works, drawn again from its weights and the maintainers'
    base model (repro.diffusion.redraw): OUT_DIR/works.safetensors. Harness code only."""
    from repro.diffusion.redraw import task  # the diffusion family, only for this task
    return task(req, out)


TASKS = {"data": data_task, "model": model_task, "fresh": fresh_task, "redraw": redraw_task}


def _resolve(req, in_dir):
    """The request names its inputs by file name; here they are paths in IN_DIR."""
    at = lambda name: os.path.join(in_dir, name) if name else None
    req = dict(req)
    if req.get("artifact_file"):
        req["artifact_file"] = at(req["artifact_file"])
    req["segments"] = [{**s, "start": at(s.get("start")), "decisions": at(s.get("decisions"))}
                       for s in req.get("segments") or []]
    req["runs"] = _run_jobs(req, at) if req["task"] == "model" else []
    req["staged"] = {name: at(name) for name in req.get("staged") or []}
    return req


RUN_JOB = {"set", "artifact", "weights", "inputs", "chunks"}  # one run's part of a recompute request


def _run_jobs(req, at):
    """A model request's runs to recompute, checked (each names files staged for it), or []. A
    request carries either runs to recompute or segments to replay, never both (the wall)."""
    jobs, staged = req.get("runs"), set(req.get("staged") or [])
    if jobs is None:
        if not req["segments"]:
            raise ValueError("a model request carries runs to recompute or segments to replay")
        return []
    if not isinstance(jobs, list) or not jobs or req["segments"] or req.get("set") or req.get("artifact_file"):
        raise ValueError("a recompute request carries its runs (each with its own config and files) and nothing else")
    for job in jobs:
        if not isinstance(job, dict) or set(job) != RUN_JOB or not isinstance(job["set"], dict) \
                or job["weights"] not in staged or any(job[k] not in staged for k in ("artifact", "inputs") if job[k]) \
                or not isinstance(job["chunks"], list) or not all(type(n) is int and n > 0 for n in job["chunks"]):
            raise ValueError("a malformed run in the recompute request")
    return [{**job, "weights": at(job["weights"]), "artifact": at(job["artifact"]), "inputs": at(job["inputs"])}
            for job in jobs]


def main(argv):
    if len(argv) != 2 or any(a.startswith("-") for a in argv):  # started by the sandbox, never by hand
        print("usage: python -m repro.worker IN_DIR OUT_DIR  (the sandbox starts it: repro/boundary/sandbox.py)")
        return 0 if argv in (["--help"], ["-h"]) else 2
    import warnings
    warnings.filterwarnings("ignore")
    in_dir, out = argv
    # the judge reads this worker's outputs from its standard output (repro.boundary.exchange):
    # keep that descriptor apart, and send whatever the code prints to standard error
    stream = os.dup(1)
    os.dup2(2, 1)
    code = 0
    try:
        req = _resolve(exchange.read_request(os.path.join(in_dir, "request.json")), in_dir)
        answer = TASKS[req["task"]](req, out)
        with open(os.path.join(out, "result.json"), "w", encoding="utf-8") as f:
            json.dump(answer, f)
    except BaseException as e:  # the paper's code failed: one line for the judge, the rest to stderr
        traceback.print_exc(file=sys.stderr)
        text = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        with open(os.path.join(out, "error.txt"), "w", encoding="utf-8") as f:
            f.write(text[:300])
        code = 1
    sys.stderr.flush()
    exchange.send_outputs(stream, out)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
