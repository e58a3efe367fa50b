"""--lite train -> eval -> verify, through the real CLIs."""
import json
import os

import pytest

from conftest import cli, subprocess_cli
from repro import eval as eval_cli
from repro import verify
from conftest import events as read_events


def test_lite_run_writes_everything(lite_run):
    assert sorted(os.listdir(lite_run)) == ["checkpoints", "config.yaml", "events.jsonl", "resources.json",
                                            "train.log"]
    # lite: audit_every 10 of 30 steps, so every checkpoint is kept
    assert sorted(os.listdir(os.path.join(lite_run, "checkpoints"))) == [
        f"step-000000{s}.safetensors" for s in (10, 20, 30)]
    events = read_events(lite_run)
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end"
    assert [e["seq"] for e in events] == list(range(len(events)))
    head = events[0]
    assert head["lite"] is True and head["config"]["train"]["steps"] == 30
    assert head["targets"][0]["paper_value"] == 94.0
    assert head["data"]["test"]["n"] == 1000 and len(head["data"]["test"]["sha256"]) == 64
    assert head["env"]["paddlepaddle"] and head["env"]["world_size"] == 1 and head["env"]["threads"] == 1
    assert len(head["init_weights_sha256"]) == 64 and "seed" not in head  # the seed is config.train.seed
    assert events[-1]["status"] == "success"
    text = open(os.path.join(lite_run, "train.log")).read()
    for word in ("iter: 30/30", "loss:", "lr: 0.010000", "reader_cost:", "batch_cost:", "ips:", "eval iter: 30"):
        assert word in text


def test_eval_of_the_checkpoint_reproduces_the_logged_metrics(lite_run, capsys):
    code, out, _ = cli(eval_cli.main, ["--paper", "mnist1d", "--checkpoint", lite_run, "--json"], capsys)
    assert code == 0
    logged = read_events(lite_run)[-1]["metrics"]
    assert json.loads(out) == logged  # same weights, same data, CPU: exactly equal


def test_verify_refuses_a_lite_run_and_says_why(lite_run, capsys):
    code, out, _ = cli(verify.main, [lite_run], capsys)
    assert code == 1
    # a lite run is compared with the registered lite variant: being lite is its only problem
    assert "FAIL" in out and "a --lite smoke run" in out and "config departs" not in out
    assert "NOT REPRODUCED" in out


@pytest.mark.slow
def test_visualdl_scalars_and_real_cli(tmp_path):
    out = str(tmp_path / "run")
    code, stdout, err = subprocess_cli("-m", "repro.train", "--paper", "mnist1d", "--exp", "mlp_shuffled",
                                       "--lite", "--seed", "3", "--out", out)
    assert code == 0, err
    # (--data-dir follows only where this process has REPRO_DATA_DIR set)
    tail = " --data-dir " if os.environ.get("REPRO_DATA_DIR") else "\n"
    assert "verify with: " in stdout and f" -m repro.verify {out}{tail}" in stdout, stdout
    assert os.listdir(os.path.join(out, "vdl"))
    head = read_events(out)[0]
    assert head["config"]["train"]["seed"] == 3
    assert head["env"]["command"][:3] == ["python", "-m", "repro.train"]
    code, stdout, _ = subprocess_cli("-m", "repro.verify", out)
    assert code == 1 and "mnist1d/mlp_shuffled" in stdout


def test_list_shows_papers_experiments_and_targets(capsys):
    from repro import train
    code, out, _ = cli(train.main, ["--list"], capsys)
    assert code == 0
    assert "mnist1d: Scaling down deep learning with MNIST-1D" in out
    assert "cnn (default)" in out and "gru_shuffled" in out and "target test_acc 56" in out


def test_the_logged_command_names_no_folder_of_the_machine(tmp_path, monkeypatch):
    """Paths under the working directory are logged relative to it (shipped logs are made from the repo root)."""
    import sys
    from repro.env import command
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["/abs/repro/train.py", "--out", str(tmp_path / "logs" / "r"),
                                      "-o", f"model.pretrained={tmp_path / 'sd'}", "--seed", "3"])
    got = command()
    assert got[-6:] == ["--out", os.path.join("logs", "r"), "-o", "model.pretrained=sd", "--seed", "3"]
    assert not any(str(tmp_path) in part for part in got)
