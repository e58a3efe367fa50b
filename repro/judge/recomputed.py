"""What a recompute's worker answered, judged here from numbers alone: the metrics computed
from the model's outputs and the labels the judge holds (the worker never sees a label, nor
which rows are the private split's), the private split's metrics apart from the public ones,
and whether this machine's local files (a pretrained model) are the ones the run used.
repro.judge.audit runs the worker; this module never imports paper code."""
import re

import numpy as np

from repro.boundary import exchange
from repro.errors import ReproError
from repro.judge import segments

PRIVATE = "private"  # the name a contest's private split has among the splits a model worker scores


def identities(text):
    """The sha256 digests in a provenance entry (its path part may differ between machines),
    or the whole text when it names no digest."""
    found = re.findall(r"sha256:([0-9a-f]{64})", str(text))
    return sorted(found) if found else str(text)


def provenance_differs(logged, here):
    """'' when this machine's local files (a worker's paper.provenance) are the run's, else what differs."""
    here = here if isinstance(here, dict) else {}
    return "; ".join(f"{k}: logged {str(v)[:80]!r}, here {str(here.get(k))[:80]!r}" for k, v in sorted(logged.items())
                     if identities(v) != identities(here.get(k)))


def judge_outputs(plan, path, labels, answer, order=None):
    """The metrics, computed here from the worker's outputs (the file at path) and the labels the
    judge holds (order: which split and rows each chunk of the shuffled inputs was)."""
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
        outputs, _ = exchange.read_arrays(path, "the model's outputs")
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


def private_apart(scored):
    """The metrics on the private split apart from the public ones: {'private': {metrics, n}}."""
    private = {k[len(PRIVATE) + 1:]: v for k, v in scored.get("metrics", {}).items() if k.startswith(PRIVATE + "_")}
    if private:
        scored["metrics"] = {k: v for k, v in scored["metrics"].items() if not k.startswith(PRIVATE + "_")}
        scored["private"] = {"metrics": private, "n": int(scored["samples"].pop(PRIVATE))}
    return scored
