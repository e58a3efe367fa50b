"""An interrupted and resumed run ends bitwise equal to an uninterrupted one (CPU)."""
import numpy as np
import pytest

from conftest import cli
from repro import checkpoint, train
from repro.registry import get_paper
from repro.runlog import read_events


def run(argv, capsys):
    code, _, err = cli(train.main, argv, capsys)
    return code, err


@pytest.mark.parametrize("exp, extra", [
    ("cnn", []),
    # exercise the shuffled batch order and an LR schedule with warmup too
    ("gru", ["-o", "train.batch_order=shuffle", "-o", "train.lr_schedule=cosine", "-o", "train.warmup_steps=5"]),
])
def test_resume_is_bitwise_exact(exp, extra, tmp_path, capsys, monkeypatch):
    base = ["--paper", "mnist1d", "--exp", exp, "--lite", "-o", "train.visualdl=false", *extra]
    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    assert run(base + ["--out", whole], capsys)[0] == 0

    paper = get_paper("mnist1d")
    real_step = type(paper).train_step
    calls = {"n": 0}

    def interrupt_at_25(self, *a):
        calls["n"] += 1
        if calls["n"] == 25:
            raise KeyboardInterrupt
        return real_step(self, *a)

    monkeypatch.setattr(type(paper), "train_step", interrupt_at_25)
    code, err = run(base + ["--out", parts], capsys)
    assert code == 130
    events = read_events(parts)
    assert events[-1]["kind"] == "run_end" and events[-1]["status"] == "interrupted"
    monkeypatch.setattr(type(paper), "train_step", real_step)

    code, err = run(["--resume", parts], capsys)
    assert code == 0, err
    resumed = read_events(parts)
    assert any(e["kind"] == "resume" and e["step"] == 20 for e in resumed)
    assert resumed[-1]["status"] == "success"
    assert resumed[-1]["metrics"] == read_events(whole)[-1]["metrics"]
    a, _ = checkpoint.read(whole)
    b, _ = checkpoint.read(parts)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
