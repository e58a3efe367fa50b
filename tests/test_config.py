from dataclasses import dataclass, field
from typing import List

import pytest

from repro.config import TrainConfig, choice, config_hash, load_config, parse_override, set_key
from repro.errors import ReproError


@dataclass
class Model:
    arch: str = choice("a", ("a", "b"))
    width: int = 4
    sizes: List[int] = field(default_factory=list)


@dataclass
class Cfg:
    model: Model = field(default_factory=Model)
    train: TrainConfig = field(default_factory=TrainConfig)


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return str(p)


def test_yaml_then_lite_then_overrides_then_seed(tmp_path):
    path = write(tmp_path, "model: {width: 8}\ntrain: {steps: 100, lr: 0.1}\nlite:\n  train.steps: 5\n")
    cfg = load_config(Cfg, path)
    assert (cfg.model.width, cfg.train.steps, cfg.train.lr) == (8, 100, 0.1)
    cfg = load_config(Cfg, path, lite=True, overrides=["train.lr=0.005", "model.sizes=[1, 2]"], seed=7)
    assert (cfg.train.steps, cfg.train.lr, cfg.model.sizes, cfg.train.seed) == (5, 0.005, [1, 2], 7)


def test_int_is_accepted_for_float_and_stored_as_float(tmp_path):
    cfg = load_config(Cfg, write(tmp_path, "train: {lr: 1}\n"))
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)


@pytest.mark.parametrize("text, message", [
    ("model: {widht: 3}\n", "unknown key 'model.widht'"),
    ("modle: {width: 3}\n", "unknown key 'modle'"),
    ("model: {width: 2.5}\n", "model.width must be int, got float 2.5"),
    ("model: {width: true}\n", "model.width must be int, got bool"),
    ("train: {visualdl: 1}\n", "train.visualdl must be bool, got int 1"),
    ("model: {sizes: 3}\n", "model.sizes must be a list of int"),
    ("model: {sizes: [1, x]}\n", r"model.sizes\[1\] must be int, got str"),
    ("model: {arch: c}\n", "model.arch must be one of a, b, got 'c'"),
    ("model: 3\n", "model is a section; give a mapping"),
    ("train: {steps: 0}\n", "train.steps must be > 0"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("model: {width: [1, 2\n", "bad YAML in .* line"),
    ("lite: 3\n", "'lite' must be a mapping"),
])
def test_bad_config_names_the_key(tmp_path, text, message):
    with pytest.raises(ReproError, match=message):
        load_config(Cfg, write(tmp_path, text))


def test_bad_overrides(tmp_path):
    path = write(tmp_path, "{}\n")
    with pytest.raises(ReproError, match="unknown key 'train.lrr'"):
        load_config(Cfg, path, overrides=["train.lrr=1"])
    with pytest.raises(ReproError, match="train.lr must be float, got str 'fast'"):
        load_config(Cfg, path, overrides=["train.lr=fast"])
    with pytest.raises(ReproError, match="not key=value"):
        load_config(Cfg, path, overrides=["train.lr"])
    with pytest.raises(ReproError, match="train.steps is a value, not a section"):
        load_config(Cfg, path, overrides=["train.steps.x=1"])
    with pytest.raises(ReproError, match="has no 'lite' block"):
        load_config(Cfg, path, lite=True)
    with pytest.raises(ReproError, match="config file not found"):
        load_config(Cfg, str(tmp_path / "missing.yaml"))


def test_parse_override_reads_yaml_values():
    assert parse_override("a.b=0.5") == ("a.b", 0.5)
    assert parse_override("a=[1,2]") == ("a", [1, 2])
    assert parse_override("a=true") == ("a", True)
    assert parse_override("a=x=y") == ("a", "x=y")


def test_config_hash_changes_with_any_value():
    a, b = Cfg(), Cfg()
    assert config_hash(a) == config_hash(b)
    set_key(b, "train.lr", 0.5)
    assert config_hash(a) != config_hash(b)
