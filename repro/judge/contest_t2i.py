"""A contest entry for a text-to-image paper (`kind: text_to_image`): what a
submitted bundle (repro.diffusion.submit's folder) must hold and how it is scored.

      - kind: text_to_image
        plugin: theme_lora             # the paper name the submissions file gives
        experiment: works              # (optional; what status.md calls the judged cell)
        base_model: {path: builtin:tiny-sd, sha256: 5c1f...}
                                       # the maintainers' own copy of the base model (a local
                                       # ppdiffusers directory, relative to the contest file, or
                                       # builtin:tiny-sd) and its identity: sha256 over its files,
                                       # as repro.diffusion.pretrained.dir_identity computes it
        weights: lora                  # what a bundle carries (LoRA only, so far)
        works: {count: 4, size: 512}   # how many works, and their width = height in pixels
        prompts: ["一幅山水画，橙色的天空，绿色的山"]
                                       # the contest's prompts (every work uses one, every one is
                                       # used), or `submitter`: the bundle's own
        card_fields: [license, base_model, training_data, prompts, seeds]   # the model card must have
        redraw:                        # what a redraw may cost, set by the contest: a bundle whose
                                       # images/metadata.json is outside it is refused before any redraw
          steps: {max: 50}             # an integer pins it; {min, max} bounds it
          scheduler: [ddim]            # the schedulers accepted (repro.diffusion.pretrained.SCHEDULERS)
          guidance: {min: 0, max: 15}  # a number pins it; {min, max} bounds it
          threads: 1                   # the redraw's CPU threads: pinned or bounded like steps
        tolerate:                      # (optional; without it every redraw must be exact) the
          pixels: 2                    # maintainers' opt-in: works whose platform record matches one of
          platforms: [{device: cpu}]   # these (every key given equal) may differ from the judge's
                                       # redraw by up to `pixels` (0..255); the pass says so
        smoke_runs: accept             # accept (the page says so) or refuse a --lite smoke run's bundle
        scores:                        # computed by the judge from the works it redrew, never taken
          clip_score: {model: builtin:tiny-clip, sha256: null, value: 0.15, direction: higher}
                                       # a local paddlenlp CLIP / Chinese CLIP directory (its weights'
                                       # sha256 required) or builtin:tiny-clip (smoke contests)
          fid: {reference: {path: ref.safetensors, sha256: ...}, inception: {path: pt_inception.pth,
                sha256: ...}, value: 90, direction: lower}
                                       # only with a reference set: a safetensors file holding
                                       # `images`, uint8 [N, H, W, 3]; inception: pytorch-fid's
                                       # weights, or builtin:random-inception (smoke contests)
        deadline: (the contest's)
        source: "the contest's rules"

Read strictly: every problem is one ReproError line naming the file and the key.
Nothing here imports paper code, Paddle or ppdiffusers.
"""
import dataclasses
import math
import os
from dataclasses import dataclass, field

from repro import strict
from repro.errors import ReproError
from repro.strict import SHA256
from repro.targets import DIRECTIONS, Target

KIND = "text_to_image"
CARD_FIELDS = ("license", "base_model", "training_data", "prompts", "seeds")
WEIGHTS = ("lora",)
BUILTIN_SD = "builtin:tiny-sd"
BUILTIN_CLIP = "builtin:tiny-clip"
RANDOM_INCEPTION = "builtin:random-inception"
MAX_WORKS = 64
MAX_SIZE = 2048
MAX_PROMPT = 1000  # characters
MAX_STEPS = 1000
MAX_GUIDANCE = 100.0
MAX_THREADS = 256
MAX_PLATFORMS = 64
SMOKE_RUNS = ("accept", "refuse")
# the core never imports the diffusion family (tests/test_layout.py), so the names a contest may
# give are stated here; tests/test_review_text_to_image.py keeps them equal to the family's own
SCHEDULERS = ("ddim", "pndm", "euler", "dpm", "ddpm")              # repro.diffusion.pretrained.SCHEDULERS
PLATFORM_KEYS = ("paddlepaddle", "paddle_commit", "ppdiffusers", "device", "gpu", "cpu", "cpu_isa",
                 "threads", "mkl_path")                            # repro.diffusion.platform.PLATFORM_KEYS
FIELDS = {  # key: (type, required)
    "kind": (str, True), "plugin": (str, True), "experiment": (str, False), "base_model": (dict, True),
    "weights": (str, False), "works": (dict, True), "prompts": ((list, str), True), "card_fields": (list, False),
    "redraw": (dict, True), "tolerate": (dict, False), "smoke_runs": (str, False), "scores": (dict, True),
    "source": (str, False),
}
REDRAW = {"steps", "scheduler", "guidance", "threads"}
SCORES = {"clip_score": ({"model", "sha256", "value", "direction", "tolerance"}, {"model", "value"}, "higher"),
          "fid": ({"reference", "inception", "value", "direction", "tolerance"}, {"reference", "inception", "value"},
                  "lower")}


@dataclass(frozen=True)
class TextToImageEntry:
    plugin: str
    base_model: dict                 # {"path": local directory or builtin:tiny-sd, "sha256": identity}
    count: int
    size: int
    prompts: tuple = None            # the contest's prompts; None: the submitter's
    card_fields: tuple = CARD_FIELDS
    scores: dict = field(default_factory=dict)   # name -> {model/reference/inception, value, direction, tolerance}
    experiment: str = "works"
    weights: str = "lora"
    redraw: dict = field(default_factory=dict)  # {"steps"|"guidance"|"threads": (lo, hi), "scheduler": names}
    tolerate: dict = None            # {"pixels": int, "platforms": ({platform key: value}, ...)}; None: exact only
    smoke_runs: str = "accept"
    source: str = ""
    # what a classification entry has, so code that walks every entry passes these by
    kind = KIND
    replay = "-"
    private_eval = {}
    train_data = None
    eval_data = {}
    verifiable = False

    @property
    def metric(self):
        return ", ".join(self.scores) or "works"

    def targets(self):
        """{score: Target}: the bars, judged on the scores the judge computes."""
        return {name: Target(name, s["value"], s["direction"], s["tolerance"], self.source)
                for name, s in self.scores.items()}

    def tolerated(self, platform):
        """The largest pixel difference the contest allows for works made on platform (a record
        other than the judge's), or None where the maintainers did not opt in to it."""
        if self.tolerate is None or not isinstance(platform, dict):
            return None
        if any(all(k in platform and platform[k] == v for k, v in p.items()) for p in self.tolerate["platforms"]):
            return self.tolerate["pixels"]
        return None

    def bar(self):
        """'4 works at 512x512 redrawn from the weights; clip_score >= 0.15' (status.md)."""
        parts = [f"{self.count} at {self.size}x{self.size}, redrawn from the weights"]
        parts += [f"{name} {t.bar()}" for name, t in self.targets().items()]
        return "; ".join(parts)

    def with_base(self, base):
        """Paths relative to the contest file, made absolute."""
        def at(path):
            return path if path.startswith("builtin:") or os.path.isabs(path) else os.path.join(base, path)
        scores = {}
        for name, s in self.scores.items():
            s = dict(s)
            if name == "clip_score":
                s["model"] = at(s["model"])
            else:
                s["reference"] = {**s["reference"], "path": at(s["reference"]["path"])}
                if isinstance(s["inception"], dict):
                    s["inception"] = {**s["inception"], "path": at(s["inception"]["path"])}
            scores[name] = s
        return dataclasses.replace(self, base_model={**self.base_model, "path": at(self.base_model["path"])},
                                   scores=scores)


def _short(value, n=40):
    text = repr(value)
    return text if len(text) <= n else text[:n - 3] + "..."


def _sha(value, where, key, allow_null=False):
    if value is None and allow_null:
        return None
    if not (isinstance(value, str) and SHA256.fullmatch(value)):
        raise ReproError(f"{where}: {key} must be 64 lowercase hex digits (a sha256)"
                         f"{' or null' if allow_null else ''}, got {type(value).__name__} {_short(value)}")
    return value


def _path(value, where, key):
    if not isinstance(value, str) or not value or len(value) > 4096 or not value.isprintable():
        raise ReproError(f"{where}: {key} must be a path (printable text), got {_short(value)}")
    return value


def _number(value, where, key):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or abs(value) > 1e12:
        raise ReproError(f"{where}: {key} must be a finite number, got {_short(value)}")
    return float(value)


def _mapping(value, where, key, allowed, required):
    if not isinstance(value, dict):
        raise ReproError(f"{where}: {key} must be a mapping with {', '.join(sorted(required))}")
    unknown = sorted(map(str, set(value) - allowed))
    if unknown:
        raise ReproError(f"{where}: {key}: unknown key {unknown[0][:40]!r} (known: {', '.join(sorted(allowed))})")
    missing = sorted(required - set(value))
    if missing:
        raise ReproError(f"{where}: {key}.{missing[0]} is required")
    return value


def _range(value, where, key, lo, hi, integer):
    """(low, high) of a value that pins (a number) or bounds ({min, max}, either optional) a
    drawing parameter, inside [lo, hi]."""
    kind = "an integer" if integer else "a number"
    ok = (lambda v: type(v) is int) if integer else \
        (lambda v: not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v))
    if isinstance(value, dict):
        _mapping(value, where, key, {"min", "max"}, set())
        low, high = value.get("min", lo), value.get("max", hi)
    else:
        low = high = value
    for v in (low, high):
        if not ok(v) or not lo <= v <= hi:
            raise ReproError(f"{where}: {key} must be {kind} between {lo} and {hi}, or {{min, max}} of such, "
                             f"got {_short(v)}")
    if low > high:
        raise ReproError(f"{where}: {key}: min {low} is above max {high}")
    return (low, high) if integer else (float(low), float(high))


def _redraw(spec, where):
    """What one redraw may cost: steps, schedulers, guidance and threads the contest accepts."""
    spec = _mapping(spec, where, "redraw", REDRAW, REDRAW)
    schedulers = spec["scheduler"]
    schedulers = [schedulers] if isinstance(schedulers, str) else schedulers
    if not isinstance(schedulers, list) or not schedulers or any(s not in SCHEDULERS for s in schedulers):
        raise ReproError(f"{where}: redraw.scheduler must be one or a list of {', '.join(SCHEDULERS)}, "
                         f"got {_short(spec['scheduler'])}")
    return {"steps": _range(spec["steps"], where, "redraw.steps", 1, MAX_STEPS, True),
            "scheduler": tuple(dict.fromkeys(schedulers)),
            "guidance": _range(spec["guidance"], where, "redraw.guidance", 0, MAX_GUIDANCE, False),
            "threads": _range(spec["threads"], where, "redraw.threads", 1, MAX_THREADS, True)}


def _tolerate(spec, where):
    """The maintainers' opt-in to a tolerant redraw: the platforms (partial records, every key
    given must match) whose works may differ from the redraw by up to `pixels`."""
    spec = _mapping(spec, where, "tolerate", {"pixels", "platforms"}, {"pixels", "platforms"})
    pixels, platforms = spec["pixels"], spec["platforms"]
    if type(pixels) is not int or not 0 <= pixels <= 255:
        raise ReproError(f"{where}: tolerate.pixels must be an integer between 0 and 255 (of a pixel value), "
                         f"got {_short(pixels)}")
    if not isinstance(platforms, list) or not 1 <= len(platforms) <= MAX_PLATFORMS:
        raise ReproError(f"{where}: tolerate.platforms must list 1 to {MAX_PLATFORMS} platforms the maintainers "
                         f"accept (each a mapping of {', '.join(PLATFORM_KEYS)})")
    out = []
    for i, p in enumerate(platforms):
        at = f"tolerate.platforms[{i}]"
        if not isinstance(p, dict) or not p:
            raise ReproError(f"{where}: {at} must be a non-empty mapping of {', '.join(PLATFORM_KEYS)}")
        _mapping(p, where, at, set(PLATFORM_KEYS), set())
        bad = next((k for k, v in p.items() if not (v is None or type(v) is int or
                                                    (isinstance(v, str) and len(v) <= 200 and v.isprintable()))), None)
        if bad is not None:
            raise ReproError(f"{where}: {at}.{bad} must be text, an integer or null, got {_short(p[bad])}")
        out.append(dict(p))
    return {"pixels": pixels, "platforms": tuple(out)}


def _prompt(text, where, key):
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_PROMPT or not text.isprintable() \
            or text != text.strip():
        raise ReproError(f"{where}: {key}: {_short(text)} is not a prompt (printable text of at most "
                         f"{MAX_PROMPT} characters, no surrounding spaces)")
    return text


def read_entry(data, where):
    """A TextToImageEntry from one item of a contest file's papers list (a mapping with kind)."""
    if isinstance(data, dict) and data.get("kind") != KIND:
        raise ReproError(f"{where}: kind must be {KIND!r} (or left out, for a paper judged on training runs), "
                         f"got {_short(data.get('kind'))}")
    values = strict.fields_of(data, where, FIELDS, f" for a {KIND} entry")
    base = _file(values["base_model"], where, "base_model")
    if base["path"].startswith("builtin:") and base["path"] != BUILTIN_SD:
        raise ReproError(f"{where}: base_model.path {base['path']!r}: the one built-in base model is {BUILTIN_SD}")
    weights = values["weights"] or "lora"
    if weights not in WEIGHTS:
        raise ReproError(f"{where}: weights must be one of {', '.join(WEIGHTS)} (the bundles reviewed so far), "
                         f"got {_short(weights)}")
    count, size = _works(values["works"], where)
    smoke = values["smoke_runs"] or "accept"
    if smoke not in SMOKE_RUNS:
        raise ReproError(f"{where}: smoke_runs must be one of {', '.join(SMOKE_RUNS)}, got {_short(smoke)}")
    entry = TextToImageEntry(plugin=values["plugin"], base_model=base, count=count, size=size,
                             prompts=_prompts(values["prompts"], count, where),
                             card_fields=_card_fields(values["card_fields"], where),
                             scores={name: _score(name, spec, where) for name, spec in values["scores"].items()},
                             experiment=values["experiment"] or "works", weights=weights,
                             redraw=_redraw(values["redraw"], where),
                             tolerate=None if values["tolerate"] is None else _tolerate(values["tolerate"], where),
                             smoke_runs=smoke, source=values["source"] or "")
    try:
        entry.targets()
    except ValueError as e:
        raise ReproError(f"{where}: {e}") from None
    return entry


def _file(value, where, at):
    """{path, sha256} of a file or folder the contest names (a base model, a reference, a network)."""
    spec = _mapping(value, where, at, {"path", "sha256"}, {"path", "sha256"})
    return {"path": _path(spec["path"], where, f"{at}.path"), "sha256": _sha(spec["sha256"], where, f"{at}.sha256")}


def _works(value, where):
    """(count, size) of the works a bundle holds."""
    works = _mapping(value, where, "works", {"count", "size"}, {"count", "size"})
    count, size = works["count"], works["size"]
    if type(count) is not int or not 1 <= count <= MAX_WORKS:
        raise ReproError(f"{where}: works.count must be an integer between 1 and {MAX_WORKS}, got {_short(count)}")
    if type(size) is not int or not 8 <= size <= MAX_SIZE or size % 8:
        raise ReproError(f"{where}: works.size must be a multiple of 8 between 8 and {MAX_SIZE}, got {_short(size)}")
    return count, size


def _prompts(prompts, count, where):
    """The contest's prompts (a tuple), or None where the submitter chooses them."""
    if isinstance(prompts, str):
        if prompts != "submitter":
            raise ReproError(f"{where}: prompts must be a list of the contest's prompts or 'submitter', "
                             f"got {_short(prompts)}")
        return None
    if not 1 <= len(prompts) <= count:
        raise ReproError(f"{where}: prompts must list 1 to works.count ({count}) prompts: every one is used "
                         f"by a work")
    prompts = tuple(_prompt(p, where, "prompts") for p in prompts)
    twice = next((p for p in prompts if prompts.count(p) > 1), None)
    if twice is not None:
        raise ReproError(f"{where}: prompts: {_short(twice)} is listed twice")
    return prompts


def _card_fields(fields, where):
    fields = list(CARD_FIELDS) if fields is None else fields
    bad = next((f for f in fields if f not in CARD_FIELDS), None)
    if bad is not None:
        raise ReproError(f"{where}: card_fields: {_short(bad)} is not one of {', '.join(CARD_FIELDS)}")
    if len(set(fields)) != len(fields):
        raise ReproError(f"{where}: card_fields: {sorted(f for f in fields if fields.count(f) > 1)[0]} is listed twice")
    return tuple(fields)


def _score(name, spec, where):
    """One score the judge computes, with its bar and the files it is computed with."""
    if name not in SCORES:
        raise ReproError(f"{where}: scores: {_short(name)} is not a score the judge computes "
                         f"({', '.join(SCORES)})")
    allowed, required, direction = SCORES[name]
    at = f"scores.{name}"
    spec = _mapping(spec, where, at, allowed, required)
    out = {"value": _number(spec["value"], where, f"{at}.value"),
           "direction": spec.get("direction", direction),
           "tolerance": _number(spec.get("tolerance", 0.0), where, f"{at}.tolerance")}
    if out["direction"] not in DIRECTIONS:
        raise ReproError(f"{where}: {at}.direction must be one of {', '.join(DIRECTIONS)}")
    if out["tolerance"] < 0:
        raise ReproError(f"{where}: {at}.tolerance must be >= 0")
    if name == "clip_score":
        out["model"] = _path(spec["model"], where, f"{at}.model")
        builtin = out["model"].startswith("builtin:")
        if builtin and out["model"] != BUILTIN_CLIP:
            raise ReproError(f"{where}: {at}.model {out['model']!r}: the one built-in CLIP is {BUILTIN_CLIP}")
        out["sha256"] = _sha(spec.get("sha256"), where, f"{at}.sha256", allow_null=builtin)
    else:
        out["reference"] = _file(spec["reference"], where, f"{at}.reference")
        inception = spec["inception"]
        out["inception"] = inception if inception == RANDOM_INCEPTION else _file(inception, where, f"{at}.inception")
    return out
