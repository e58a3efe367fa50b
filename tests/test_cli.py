"""Bad input: one clear line, non-zero exit, no traceback, nothing overwritten."""
import os
import shutil

import pytest

from conftest import cli, subprocess_cli
from repro import eval as eval_cli
from repro import train, verify


@pytest.mark.parametrize("argv, message", [
    (["--paper", "nope"], "unknown paper 'nope'; registered: chnsenticorp_rnn, ddpm, dreambooth, kim_cnn, lenet5, mnist1d, resnet_cifar, sd_lora"),
    (["--paper", "mnist1d", "--exp", "resnet"], "no experiment 'resnet'; experiments: logreg"),
    (["--paper", "mnist1d", "-o", "train.lrr=1"], "unknown key 'train.lrr'"),
    (["--paper", "mnist1d", "-o", "train.lr=fast"], "train.lr must be float, got str 'fast'"),
    (["--paper", "mnist1d", "-o", "model.arch=vit"], "model.arch must be one of logreg, mlp, cnn, gru"),
    ([], "--paper is required; registered: chnsenticorp_rnn, ddpm, dreambooth, kim_cnn, lenet5, mnist1d, resnet_cifar, sd_lora"),
    (["--resume", "/nonexistent/run"], "no such run directory"),
])
def test_train_bad_input(argv, message, capsys):
    code, out, err = cli(train.main, argv, capsys)
    assert code == 2
    assert err.strip().count("\n") == 0 and message in err and "Traceback" not in err


def test_out_that_holds_a_run_is_refused_and_untouched(lite_run, capsys):
    before = {f: os.path.getmtime(os.path.join(lite_run, f)) for f in os.listdir(lite_run)}
    code, _, err = cli(train.main, ["--paper", "mnist1d", "--lite", "--out", lite_run], capsys)
    assert code == 2 and "already holds a run" in err
    assert before == {f: os.path.getmtime(os.path.join(lite_run, f)) for f in os.listdir(lite_run)}


def test_resume_of_a_finished_run_is_refused(lite_run, capsys):
    code, _, err = cli(train.main, ["--resume", lite_run], capsys)
    assert code == 2 and "already finished" in err


def test_resume_refuses_a_checkpoint_that_is_not_the_logged_one(lite_run, tmp_path, capsys):
    run = str(tmp_path / "run")
    shutil.copytree(lite_run, run)
    with open(os.path.join(run, "events.jsonl")) as f:
        lines = f.readlines()
    with open(os.path.join(run, "events.jsonl"), "w") as f:
        f.writelines(lines[:-1])  # drop run_end: an interrupted run
    last = os.path.join(run, "checkpoints", "step-00000030.safetensors")
    before = open(os.path.join(run, "events.jsonl"), "rb").read()
    # another checkpoint of this very run (valid file, wrong weights): the hijack
    shutil.copy(os.path.join(run, "checkpoints", "step-00000020.safetensors"), last)
    code, _, err = cli(train.main, ["--resume", run], capsys)
    assert code == 2 and "is not the checkpoint the log names (sha256 differs)" in err
    with open(last, "wb") as f:
        f.write(b"\x00" * 64)
    code, _, err = cli(train.main, ["--resume", run], capsys)
    assert code == 2 and "sha256 differs" in err
    os.remove(last)
    code, _, err = cli(train.main, ["--resume", run], capsys)
    assert code == 2 and "checkpoint not found" in err
    assert open(os.path.join(run, "events.jsonl"), "rb").read() == before  # nothing was written


def test_eval_bad_input(lite_run, capsys):
    code, _, err = cli(eval_cli.main, ["--paper", "mnist1d", "--exp", "mlp", "--checkpoint", lite_run], capsys)
    assert code == 2 and "is a run of mnist1d/cnn, not mnist1d/mlp" in err
    code, _, err = cli(eval_cli.main, ["--paper", "mnist1d", "--checkpoint", "/nonexistent"], capsys)
    assert code == 2 and "checkpoint not found" in err


def test_verify_bad_input(tmp_path, capsys):
    code, _, err = cli(verify.main, [str(tmp_path / "missing")], capsys)
    assert code == 2 and "no such run directory" in err
    code, _, err = cli(verify.main, [str(tmp_path)], capsys)
    assert code == 2 and "no runs found" in err
    # an unreadable run is a run that does not count, with its reason; never an abort
    (tmp_path / "events.jsonl").write_text('{"seq": 0, "kind": "run_start"\n')
    code, out, err = cli(verify.main, [str(tmp_path)], capsys)
    assert code == 1 and "line 1 is not JSON" in out and not err
    (tmp_path / "events.jsonl").write_text('{"seq": 0, "time": 1.0, "kind": "eval", "prev": "' + "0" * 64 +
                                           '", "step": 1, "metrics": {}, "samples": {}}\n')
    code, out, err = cli(verify.main, [str(tmp_path)], capsys)
    assert code == 1 and "line 1 is not a run_start event" in out


def test_real_cli_prints_one_line_without_traceback():
    code, out, err = subprocess_cli("-m", "repro.train", "--paper", "mnist1d", "-o", "train.steps=ten")
    assert code == 2
    assert err.strip() == "error: config: train.steps must be int, got str 'ten'"
