"""An interrupted and resumed run ends bitwise equal to an uninterrupted one (CPU)."""
import pytest

from conftest import assert_same_checkpoints, cli, interrupt_train_step
from repro import train
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

    undo = interrupt_train_step(monkeypatch, get_paper("mnist1d"), 25)
    code, err = run(base + ["--out", parts], capsys)
    assert code == 130
    events = read_events(parts)
    assert events[-1]["kind"] == "run_end" and events[-1]["status"] == "interrupted"
    undo()

    code, err = run(["--resume", parts], capsys)
    assert code == 0, err
    resumed = read_events(parts)
    assert any(e["kind"] == "resume" and e["step"] == 20 for e in resumed)
    assert resumed[-1]["status"] == "success"
    assert resumed[-1]["metrics"] == read_events(whole)[-1]["metrics"]
    assert_same_checkpoints(whole, parts)
