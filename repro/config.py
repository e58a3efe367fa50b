"""Typed config: schema in code (dataclasses), values in YAML, `-o key=value` wins.

A paper's config class is a dataclass whose fields are nested dataclasses
(``model``, ``data``, ``train``...). Loading refuses unknown keys and wrong
types and names the key. An experiment YAML may hold a ``lite:`` mapping of
dotted overrides: the few-step smoke variant used by `--lite` and the tests.
"""
import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field

import yaml

from repro import strict
from repro.strict import short
from repro.errors import ReproError


def choice(default, choices, help=""):
    return field(default=default, metadata={"choices": tuple(choices), "help": help})


@dataclass
class AmpConfig:
    """Mixed precision; see repro/run/amp.py."""
    enabled: bool = False
    level: str = choice("O1", ("O1", "O2"))
    dtype: str = choice("bfloat16", ("float16", "bfloat16"))


@dataclass
class TrainConfig:
    """The harness's own section: the training loop's knobs."""
    steps: int = 1000
    batch_size: int = 100
    batch_order: str = choice("sequential", ("sequential", "shuffle"),
                              "sequential: batch i is rows [i*bs % N, +bs), as the MNIST-1D authors train")
    optimizer: str = choice("adam", ("adam", "adamw", "sgd", "momentum", "adadelta", "adagrad", "rmsprop", "lamb"),
                            "a Paddle optimizer by name (repro.run.recipe.build_optimizer)")
    lr: float = 1e-3
    momentum: float = 0.9  # momentum, rmsprop
    weight_decay: float = 0.0
    beta1: float = 0.9  # adam, adamw, lamb
    beta2: float = 0.999  # adam, adamw, lamb
    rho: float = 0.95  # adadelta, rmsprop
    epsilon: float = 0.0  # 0: the optimizer's own default (1e-8 for the Adams, 1e-6 for the others)
    lr_schedule: str = choice("constant", ("constant", "cosine", "step"))
    lr_milestones: typing.List[int] = field(default_factory=list)
    lr_gamma: float = 0.1
    warmup_steps: int = 0
    eval_every: int = 250
    eval_batch_size: int = 1000
    log_every: int = 100
    checkpoint_every: int = 1000
    # checkpoints at multiples of this are kept for the replay audit (0: none but the last)
    audit_every: int = 0
    seed: int = 42
    visualdl: bool = True
    amp: AmpConfig = field(default_factory=AmpConfig)
    # each update computed in float64 from the float32 state and rounded back, with the rare
    # near-boundary roundings logged, so the replay audit is bitwise on any machine (repro/run/verifiable.py)
    verifiable: bool = False

    def validate(self):
        for name in ("steps", "batch_size", "eval_every", "eval_batch_size", "log_every", "checkpoint_every"):
            if getattr(self, name) <= 0:
                raise ReproError(f"config: train.{name} must be > 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ReproError(f"config: train.lr must be > 0, got {self.lr}")
        for name in ("beta1", "beta2", "rho"):
            if not 0 <= getattr(self, name) < 1:
                raise ReproError(f"config: train.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.epsilon < 0 or self.momentum < 0 or self.weight_decay < 0:
            raise ReproError("config: train.epsilon, train.momentum and train.weight_decay must be >= 0")
        if self.warmup_steps < 0:
            raise ReproError(f"config: train.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.audit_every < 0:
            raise ReproError(f"config: train.audit_every must be >= 0 (0: keep only the last checkpoint), "
                             f"got {self.audit_every}")
        if not 0 <= self.seed < 2 ** 63:
            raise ReproError(f"config: train.seed must be in [0, 2**63), got {self.seed}")
        if self.verifiable and self.amp.enabled:
            raise ReproError("config: train.verifiable computes every update in float64; it cannot be combined "
                             "with train.amp.enabled")


# ---------------------------------------------------------------- typing helpers

def _type_name(tp):
    origin = typing.get_origin(tp)
    if origin in (list, typing.List):
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _coerce(key, tp, value):
    """Return value as type tp, or raise ReproError naming key."""
    origin = typing.get_origin(tp)
    if origin in (list, typing.List):
        if not isinstance(value, list):
            raise ReproError(f"config: {key} must be a {_type_name(tp)}, got {type(value).__name__} {value!r}")
        (item,) = typing.get_args(tp)
        return [_coerce(f"{key}[{i}]", item, v) for i, v in enumerate(value)]
    ok = (
        (tp is bool and isinstance(value, bool))
        or (tp is int and isinstance(value, int) and not isinstance(value, bool))
        or (tp is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (tp is str and isinstance(value, str))
    )
    if not ok:
        raise ReproError(f"config: {key} must be {_type_name(tp)}, got {type(value).__name__} {short(value, 60)}")
    if tp is float:
        try:
            value = float(value)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value):
            raise ReproError(f"config: {key} must be a finite number, got {short(value, 60)}")
    return value



def _fields(obj):
    hints = typing.get_type_hints(type(obj))
    return {f.name: (hints[f.name], f) for f in dataclasses.fields(obj)}


def set_key(cfg, dotted, value):
    """Set cfg.a.b = value with schema checks; dotted is 'a.b'."""
    if not isinstance(dotted, str):
        raise ReproError(f"config: key {short(dotted, 60)} is not a name")
    parts = dotted.split(".")
    node = cfg
    for i, part in enumerate(parts):
        known = _fields(node)
        where = ".".join(parts[: i + 1])
        if part not in known:
            prefix = ".".join(parts[:i])
            names = ", ".join(f"{prefix}.{k}" if prefix else k for k in known)
            raise ReproError(f"config: unknown key {short(where, 60)} (known: {names})")
        tp, f = known[part]
        if i < len(parts) - 1:
            node = getattr(node, part)
            if not dataclasses.is_dataclass(node):
                raise ReproError(f"config: {where} is a value, not a section")
            continue
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ReproError(f"config: {where} is a section; give a mapping, got {short(value, 60)}")
            for k, v in value.items():
                set_key(cfg, f"{where}.{k}", v)
            return
        value = _coerce(where, tp, value)
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ReproError(f"config: {where} must be one of {', '.join(map(str, choices))}, got {short(value, 60)}")
        setattr(node, part, value)


def parse_override(text):
    """'train.lr=0.005' -> ('train.lr', 0.005); the value is read as YAML."""
    if "=" not in text:
        raise ReproError(f"override {short(text, 60)} is not key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ReproError(f"override {short(text, 60)} has no key")
    try:
        value = strict.loads_yaml(raw, f"override {key}") if raw.strip() else ""
    except ReproError:
        value = raw  # not YAML: the text itself (a path with a colon, say); the schema decides
    return key, value


def read_yaml(path):
    data = strict.read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ReproError(f"bad config {path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def _set_keys(cfg, data):
    """cfg with each dotted key of data set (set_key's checks); YAML values and the lite block alike."""
    for key, value in data.items():
        set_key(cfg, key, value)
    return cfg


def load_config(config_class, path, lite=False, overrides=(), seed=None):
    """Defaults <- YAML values <- lite overrides (if lite) <- -o overrides <- --seed."""
    data = read_yaml(path)
    lite_block = data.pop("lite", None) or {}
    if not isinstance(lite_block, dict):
        raise ReproError(f"bad config {path}: 'lite' must be a mapping of dotted keys")
    cfg = _set_keys(config_class(), data)
    if lite:
        if not lite_block:
            raise ReproError(f"{path} has no 'lite' block, so this experiment has no --lite variant")
        _set_keys(cfg, lite_block)
    for text in overrides:
        set_key(cfg, *parse_override(text))
    if seed is not None:
        set_key(cfg, "train.seed", seed)
    return validate(cfg)


@dataclass
class TextDataConfig:
    """The data knobs every TextClassificationPaper has (a paper subclasses it to add
    its `source` choice and to change the defaults)."""
    min_freq: int = 1         # tokens seen fewer times in the training split are [UNK]
    max_len: int = 0          # tokens kept per text (0: all)
    synthetic_train: int = 400  # sizes of the made-up splits of --lite runs
    synthetic_dev: int = 100

    def validate(self):
        if self.min_freq < 1 or self.max_len < 0 or self.synthetic_train < 1 or self.synthetic_dev < 1:
            raise ReproError("config: data.min_freq, data.synthetic_train and data.synthetic_dev must be >= 1, "
                             "data.max_len >= 0")


def validate(cfg):
    """Each section's own checks (e.g. TrainConfig.validate); returns cfg."""
    for section in dataclasses.fields(cfg):
        check = getattr(getattr(cfg, section.name), "validate", None)
        if check:
            try:
                check()
            except ValueError as e:  # a plugin's own check may raise the plain kind
                raise ReproError(str(e) if str(e).startswith("config:") else f"config: {e}") from None
    return cfg


def to_dict(cfg):
    return dataclasses.asdict(cfg)


def flatten(d, prefix=""):
    """{'train': {'lr': 0.1}} -> {'train.lr': 0.1}; anything but a dict gives {}."""
    out = {}
    if not isinstance(d, dict):
        return out
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_hash(cfg):
    """sha256 of the config (a config object or its dict) as canonical JSON."""
    data = cfg if isinstance(cfg, dict) else to_dict(cfg)
    blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def from_dict(config_class, data):
    """Rebuild a config saved with a run, with load_config's checks."""
    if not isinstance(data, dict):
        raise ReproError(f"config: the top level must be a mapping, got {type(data).__name__}")
    return validate(_set_keys(config_class(), data))


def dump_yaml(cfg):
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
