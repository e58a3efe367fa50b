"""A contest entry for a text-to-image paper (`kind: text_to_image`): what a
submitted bundle (repro.diffusion.submit's folder) must hold and how it is scored.

      - kind: text_to_image
        plugin: theme_lora             # the paper name the submissions file gives
        experiment: works              # (optional; what status.md calls the judged cell)
        base_model: {path: builtin:tiny-sd, sha256: 59bb...}
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
        pixel_tolerance: 2             # the largest |difference| (0..255) a redrawn work may show where
                                       # the judge's platform is not the one the works were made on;
                                       # on that platform the redraw must be exact
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

from repro.errors import ReproError
from repro.strict import SHA256, typed as _typed
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
FIELDS = {  # key: (type, required)
    "kind": (str, True), "plugin": (str, True), "experiment": (str, False), "base_model": (dict, True),
    "weights": (str, False), "works": (dict, True), "prompts": ((list, str), True), "card_fields": (list, False),
    "pixel_tolerance": (int, False), "scores": (dict, True), "source": (str, False),
}
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
    pixel_tolerance: int = 0
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


def _prompt(text, where, key):
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_PROMPT or not text.isprintable() \
            or text != text.strip():
        raise ReproError(f"{where}: {key}: {_short(text)} is not a prompt (printable text of at most "
                         f"{MAX_PROMPT} characters, no surrounding spaces)")
    return text


def read_entry(data, where):
    """A TextToImageEntry from one item of a contest file's papers list (a mapping with kind)."""
    if not isinstance(data, dict):
        raise ReproError(f"{where} must be a mapping")
    if data.get("kind") != KIND:
        raise ReproError(f"{where}: kind must be {KIND!r} (or left out, for a paper judged on training runs), "
                         f"got {_short(data.get('kind'))}")
    unknown = sorted(map(str, set(data) - set(FIELDS)))
    if unknown:
        raise ReproError(f"{where}: unknown key {unknown[0][:40]!r} for a {KIND} entry (known: {', '.join(FIELDS)})")
    values = {k: _typed(data, k, tp, where, required) for k, (tp, required) in FIELDS.items()}
    for key in ("plugin", "experiment"):
        if values[key] is not None and not (values[key].isidentifier() and values[key].isascii()):
            raise ReproError(f"{where}: {key} {values[key]!r} is not a valid name")
    base = _mapping(values["base_model"], where, "base_model", {"path", "sha256"}, {"path", "sha256"})
    base = {"path": _path(base["path"], where, "base_model.path"),
            "sha256": _sha(base["sha256"], where, "base_model.sha256")}
    if base["path"].startswith("builtin:") and base["path"] != BUILTIN_SD:
        raise ReproError(f"{where}: base_model.path {base['path']!r}: the one built-in base model is {BUILTIN_SD}")
    weights = values["weights"] or "lora"
    if weights not in WEIGHTS:
        raise ReproError(f"{where}: weights must be one of {', '.join(WEIGHTS)} (the bundles reviewed so far), "
                         f"got {_short(weights)}")
    works = _mapping(values["works"], where, "works", {"count", "size"}, {"count", "size"})
    count, size = works["count"], works["size"]
    if type(count) is not int or not 1 <= count <= MAX_WORKS:
        raise ReproError(f"{where}: works.count must be an integer between 1 and {MAX_WORKS}, got {_short(count)}")
    if type(size) is not int or not 8 <= size <= MAX_SIZE or size % 8:
        raise ReproError(f"{where}: works.size must be a multiple of 8 between 8 and {MAX_SIZE}, got {_short(size)}")
    prompts = values["prompts"]
    if isinstance(prompts, str):
        if prompts != "submitter":
            raise ReproError(f"{where}: prompts must be a list of the contest's prompts or 'submitter', "
                             f"got {_short(prompts)}")
        prompts = None
    else:
        if not 1 <= len(prompts) <= count:
            raise ReproError(f"{where}: prompts must list 1 to works.count ({count}) prompts: every one is used "
                             f"by a work")
        prompts = tuple(_prompt(p, where, "prompts") for p in prompts)
        twice = next((p for p in prompts if prompts.count(p) > 1), None)
        if twice is not None:
            raise ReproError(f"{where}: prompts: {_short(twice)} is listed twice")
    fields = values["card_fields"]
    fields = list(CARD_FIELDS) if fields is None else fields
    bad = next((f for f in fields if f not in CARD_FIELDS), None)
    if bad is not None:
        raise ReproError(f"{where}: card_fields: {_short(bad)} is not one of {', '.join(CARD_FIELDS)}")
    if len(set(fields)) != len(fields):
        raise ReproError(f"{where}: card_fields: {sorted(f for f in fields if fields.count(f) > 1)[0]} is listed twice")
    tolerance = values["pixel_tolerance"] or 0
    if not 0 <= tolerance <= 255:
        raise ReproError(f"{where}: pixel_tolerance must be between 0 and 255 (of a pixel value), got {tolerance}")
    scores = {}
    for name, spec in values["scores"].items():
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
            ref = _mapping(spec["reference"], where, f"{at}.reference", {"path", "sha256"}, {"path", "sha256"})
            out["reference"] = {"path": _path(ref["path"], where, f"{at}.reference.path"),
                                "sha256": _sha(ref["sha256"], where, f"{at}.reference.sha256")}
            inception = spec["inception"]
            if inception != RANDOM_INCEPTION:
                inc = _mapping(inception, where, f"{at}.inception", {"path", "sha256"}, {"path", "sha256"})
                inception = {"path": _path(inc["path"], where, f"{at}.inception.path"),
                             "sha256": _sha(inc["sha256"], where, f"{at}.inception.sha256")}
            out["inception"] = inception
        scores[name] = out
    entry = TextToImageEntry(plugin=values["plugin"], base_model=base, count=count, size=size, prompts=prompts,
                             card_fields=tuple(fields), scores=scores, experiment=values["experiment"] or "works",
                             weights=weights, pixel_tolerance=tolerance, source=values["source"] or "")
    try:
        entry.targets()
    except ValueError as e:
        raise ReproError(f"{where}: {e}") from None
    return entry
