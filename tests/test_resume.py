"""An interrupted and resumed run ends bitwise equal to an uninterrupted one (CPU)."""
import pytest

from conftest import assert_same_checkpoints, cli, interrupt_train_step
from repro import train
from repro.registry import get_paper
from conftest import events as read_events


def run(argv, capsys):
    code, _, err = cli(train.main, argv, capsys)
    return code, err


def _whole_and_interrupted(tmp_path, capsys, monkeypatch, at, exp="cnn", extra=()):
    """(whole, parts): a --lite mnist1d run of exp trained to the end, and the same run interrupted
    (exit code 130) at train step `at`; the interruption is undone after."""
    base = ["--paper", "mnist1d", "--exp", exp, "--lite", "-o", "train.visualdl=false", *extra]
    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    assert run(base + ["--out", whole], capsys)[0] == 0
    undo = interrupt_train_step(monkeypatch, get_paper("mnist1d"), at)
    assert run(base + ["--out", parts], capsys)[0] == 130
    undo()
    return whole, parts


@pytest.mark.parametrize("exp, extra", [
    ("cnn", []),
    # exercise the shuffled batch order and an LR schedule with warmup too
    ("gru", ["-o", "train.batch_order=shuffle", "-o", "train.lr_schedule=cosine", "-o", "train.warmup_steps=5"]),
])
def test_resume_is_bitwise_exact(exp, extra, tmp_path, capsys, monkeypatch):
    whole, parts = _whole_and_interrupted(tmp_path, capsys, monkeypatch, 25, exp, extra)
    events = read_events(parts)
    assert events[-1]["kind"] == "run_end" and events[-1]["status"] == "interrupted"

    code, err = run(["--resume", parts], capsys)
    assert code == 0, err
    resumed = read_events(parts)
    assert any(e["kind"] == "resume" and e["step"] == 20 for e in resumed)
    assert resumed[-1]["status"] == "success"
    assert resumed[-1]["metrics"] == read_events(whole)[-1]["metrics"]
    assert_same_checkpoints(whole, parts)


def test_interrupted_before_the_first_checkpoint_starts_again_from_step_0(tmp_path, capsys, monkeypatch):
    whole, parts = _whole_and_interrupted(tmp_path, capsys, monkeypatch, 5)
    code, out, err = cli(train.main, ["--resume", parts], capsys)
    assert code == 0, err
    assert "training starts again from step 0" in out
    assert any(e["kind"] == "resume" and e["step"] == 0 for e in read_events(parts))
    assert_same_checkpoints(whole, parts)


def test_a_line_cut_off_by_a_kill_is_dropped_on_resume(tmp_path, capsys, monkeypatch):
    whole, parts = _whole_and_interrupted(tmp_path, capsys, monkeypatch, 15)
    log = f"{parts}/events.jsonl"
    with open(log, "rb") as f:
        data = f.read()
    with open(log, "wb") as f:  # the run_end line, half written when the kill came
        f.write(data[:-30])
    code, out, err = cli(train.main, ["--resume", parts], capsys)
    assert code == 0, err
    assert "dropped an incomplete last log line" in out
    assert_same_checkpoints(whole, parts)


def test_killed_after_the_final_checkpoint_ends_with_the_final_evaluation(tmp_path, capsys):
    """The final checkpoint holds the weights alone; a run killed after writing it
    (before its run_end line) resumes with nothing left to train and ends successfully
    with the metrics of its logged final evaluation."""
    import json
    base = ["--paper", "mnist1d", "--exp", "cnn", "--lite", "-o", "train.visualdl=false"]
    run_dir = str(tmp_path / "run")
    assert run(base + ["--out", run_dir], capsys)[0] == 0
    whole = read_events(run_dir)
    log = f"{run_dir}/events.jsonl"
    with open(log, encoding="utf-8") as f:
        lines = f.readlines()
    assert json.loads(lines[-1])["kind"] == "run_end" and json.loads(lines[-2])["kind"] == "checkpoint"
    with open(log, "w", encoding="utf-8") as f:  # the kill came before the run_end line
        f.writelines(lines[:-1])
    code, err = run(["--resume", run_dir], capsys)
    assert code == 0, err
    resumed = read_events(run_dir)
    assert resumed[-2]["kind"] == "resume" and resumed[-2]["step"] == whole[-1]["step"]
    assert resumed[-1]["status"] == "success" and resumed[-1]["metrics"] == whole[-1]["metrics"]
