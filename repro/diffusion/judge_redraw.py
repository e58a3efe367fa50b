"""Redrawing a bundle's works and judging them: the judge's side of the sandboxed redraw
(repro.diffusion.redraw is the worker's), the pixel comparison on the judge's terms (exact
on the works' platform; on another, only where the contest opts in with tolerate:, and said
so), and the scores the judge computes from the works it redrew. Within the review's time:
the redraw's timeout is cut to what is left of the submission's budget (a deadline).
"""
import time

import numpy as np

from repro import strict
from repro.boundary.sandbox import Sandbox
from repro.boundary.task import LOCAL, Needs, Staged, Worker
from repro.diffusion.bundle_files import LORA_FILE
from repro.diffusion.platform import PLATFORM_KEYS
from repro.diffusion.scoring import clip_embedder, fid_extractor, score_images
from repro.errors import ReproError
from repro.boundary import exchange
from repro.strict import sha256_file

IMAGES = "images"


# ------------------------------------------------------------------ redraw, compare, score

def redraw(entry, base_dir, lora_path, digest, works, params, options, timeout=None, made_on=None):
    """(images uint8 [N, size, size, 3], the worker's platform) drawn in the sandbox; the same
    request (base, weights' digest, parameters, prompts and seeds) is drawn once per review.
    Through a cluster (options.executor) the redraw goes to a node of the works' platform
    (made_on: their record) where one exists, and asks for a GPU where they were drawn on one."""
    key = repr((entry.base_model["sha256"], digest, sorted(params.items()),
                [(w["prompt"], w["seed"]) for w in works]))
    cache = getattr(options, "cache", None)
    if cache is not None and key in cache:
        return cache[key]
    req = {"task": "redraw", "base": base_dir, "weights": entry.weights, **params,
           "works": [[w["prompt"], w["seed"]] for w in works]}
    worker = Worker(Sandbox(options.sandbox), readonly=[(base_dir, base_dir)], trusted=False,
                    executor=getattr(options, "executor", LOCAL))
    made_on = made_on if isinstance(made_on, dict) else {}
    needs = Needs(gpu=str(made_on.get("device", "cpu")).startswith("gpu"),
                  cpu=(made_on.get("cpu"), made_on.get("cpu_isa")) if made_on.get("cpu") else None)
    answer, out = Staged(worker, req, {LORA_FILE: lora_path}, timeout if timeout is not None else options.timeout,
                         outputs=["works.safetensors"], needs=needs).run()
    arrays, _ = exchange.take_arrays(out, "works.safetensors", "the redrawn works")
    images = arrays.get("images")
    want = (len(works), entry.size, entry.size, 3)
    if images is None or images.dtype != np.uint8 or images.shape != want:
        raise ReproError(f"the redraw worker's images are not uint8 {list(want)}")
    platform = answer.get("platform") if isinstance(answer.get("platform"), dict) else {}
    if cache is not None:
        cache[key] = (images, platform)
    return images, platform


def same_platform(made_on, redrawn_on):
    return isinstance(made_on, dict) and all(made_on.get(k) == redrawn_on.get(k) for k in PLATFORM_KEYS)


def compare(works, submitted, redrawn, tolerance):
    """Per work: its largest |difference| and the share of pixel values that differ."""
    out = []
    for w, a, b in zip(works, submitted, redrawn):
        if a is None:
            out.append({**w, "largest_difference": None, "differing": None, "ok": False})
            continue
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
        largest = int(diff.max())
        out.append({**w, "largest_difference": largest, "differing": round(float((diff > 0).mean()), 6),
                    "ok": largest <= tolerance})
    return out


def scores(entry, images, works):
    """{score: value} and {score: the model it used}, computed here from the redrawn images."""
    values, models = {}, {}
    for name, spec in entry.scores.items():
        if name == "clip_score":
            clip = clip_embedder(spec["model"], spec.get("sha256") or "")
            values[name] = score_images(images, prompts=[w["prompt"] for w in works], clip=clip)["clip_score"]
            models[name] = clip.identity
        elif name == "fid":
            ref = spec["reference"]
            strict.regular_file(ref["path"], "the contest's FID reference set")
            if sha256_file(ref["path"]) != ref["sha256"]:
                raise ReproError(f"the contest's FID reference set {ref['path']} is not the file its sha256 names")
            arrays, _ = exchange.read_arrays(ref["path"], "the contest's FID reference set")
            reference = arrays.get("images")
            if reference is None or reference.dtype != np.uint8 or reference.ndim != 4 or reference.shape[-1] != 3 \
                    or len(reference) < 2:
                raise ReproError("the contest's FID reference set must hold images, uint8 [N >= 2, H, W, 3]")
            inc = spec["inception"]
            extractor = fid_extractor("", "") if not isinstance(inc, dict) else fid_extractor(inc["path"], inc["sha256"])
            if len(images) < 2:
                raise ReproError("FID needs at least 2 works")
            values[name] = score_images(images, reference=reference, fid=extractor)["fid"]
            models[name] = extractor.identity
    return values, models


# ------------------------------------------------------------------ redraw, on the judge's terms

def budget(options, deadline):
    """Seconds the redraw may take: the review's per-task timeout, cut to what is left of the
    submission's time budget (deadline: a time.monotonic() instant, or options.deadline)."""
    timeout = getattr(options, "timeout", None)
    deadline = deadline if deadline is not None else getattr(options, "deadline", None)
    if deadline is None:
        return timeout
    left = int(deadline - time.monotonic())
    return left if timeout is None else min(timeout, left)


def redraw_and_compare(entry, base_dir, lora_path, digest, works, params, made_on, submitted, options, deadline,
                       info, problems):
    """Redraw the works in the sandbox and compare: exact on the works' platform; elsewhere
    refused unless the contest accepts that platform (tolerate:), and then said so. True where
    every work comes from the weights."""
    seconds = budget(options, deadline)
    if seconds is not None and seconds < 1:
        problems.append("not redrawn: the submission's time budget was spent before its redraw")
        return False
    try:
        images, redrawn_on = redraw(entry, base_dir, lora_path, digest, works, params, options, seconds, made_on)
    except ReproError as e:
        problems.append(f"the redraw of its works did not finish within the submission's time budget "
                        f"({seconds} s): {e}" if seconds is not None and "longer than" in str(e) else
                        f"the redraw of its works failed: {e}")
        return False
    same = same_platform(made_on, redrawn_on)
    tolerance = 0 if same else entry.tolerated(made_on)
    info["platform"] = {"works": made_on, "redraw": redrawn_on, "same": same}
    info["tolerance"] = tolerance
    compared = compare(works, submitted, images, tolerance or 0)
    info["works"] = compared
    info["_images"] = images
    found = [c["largest_difference"] for c in compared if c["largest_difference"] is not None]
    largest = max(found) if found else None
    if tolerance is None:
        problems.append(f"its works were drawn on another platform than the judge's ({_platform_diff(made_on, redrawn_on)}): "
                        f"the redraw must be exact and the contest accepts no other platform (tolerate:)")
        info["summary"] = f"redrew {len(compared)} works on another platform, not accepted: largest difference {largest}"
        return False
    bad = [c for c in compared if not c["ok"]]
    where = ("on the platform the works were made on: exact required" if same else
             f"on another platform than the works' ({_platform_diff(made_on, redrawn_on)}), which the contest "
             f"accepts within a largest difference of {tolerance}")
    if bad:
        detail = "; ".join(f"{IMAGES}/{c['file']} (prompt {c['prompt'][:40]!r}, claimed seed {c['seed']})"
                           + (f" differs by up to {c['largest_difference']} of 255 in "
                              f"{c['differing']:.1%} of its values" if c["largest_difference"] is not None
                              else " could not be read") for c in bad[:4])
        problems.append(f"{len(bad)} of {len(compared)} works {'does' if len(bad) == 1 else 'do'} not come from the "
                        f"submitted weights and the declared base model: redrawn from their prompt and claimed seed, "
                        f"{detail}" + (f" and {len(bad) - 4} more" if len(bad) > 4 else "") + f" ({where})")
    elif not same:
        info["caveats"].append(f"not an exact redraw: the works were made on another platform "
                               f"({_platform_diff(made_on, redrawn_on)}) and pass within a tolerance of {tolerance} "
                               f"of 255 (largest difference {largest})")
    info["summary"] = (f"redrew {len(compared)} works {'on their platform' if same else 'on another platform'}: "
                       + (f"{len(bad)} differ{'s' if len(bad) == 1 else ''}, " if bad else "")
                       + f"largest difference {largest if largest is not None else '-'}"
                       + ("" if same else f" (tolerated up to {tolerance}: not exact)"))
    return not bad


def score_targets(entry, images, works, info, result):
    values, models = scores(entry, images, works)
    info["scores"], info["score_models"] = values, models
    result["checks"].append("scores")
    for name, target in entry.targets().items():
        value = values.get(name)
        passed = value is not None and target.reached(value)
        result["targets"].append({
            "paper": entry.plugin, "exp": entry.experiment, "metric": name, "value": value, "bar": target.bar(),
            "passed": passed, "why": "" if passed else
            f"{value:.4f} does not reach the bar {target.bar()} (computed by the judge from the "
            f"{len(works)} works it redrew)"})


def judges_scores(info, targets):
    """The judge's scores, as the card the contest publishes gives them (Markdown)."""
    rows = "\n".join(f"| {t['metric']} | {t['value']:.4f} | {t['bar']} | {info['score_models'].get(t['metric'], '-')} |"
                     for t in targets if isinstance(t.get("value"), (int, float)))
    notes = "".join(f"\n- {c}" for c in info["caveats"])
    return (f"Computed by the judge from the works it redrew ({info['summary']}); any other number in this card is "
            f"the submitter's own.{notes}\n\n| score | value | bar | model |\n|---|---|---|---|\n{rows}\n")

def _platform_diff(a, b):
    if not isinstance(a, dict):
        return "the works do not record theirs"
    keys = [k for k in PLATFORM_KEYS if a.get(k) != b.get(k)]
    return ", ".join(f"{k} {str(a.get(k))[:30]} vs {str(b.get(k))[:30]}" for k in keys[:3])
