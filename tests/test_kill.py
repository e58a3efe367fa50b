"""A run killed at any instant (kill -9: no handler runs) resumes, ends bitwise
equal to an uninterrupted run, and verifies (replay audit included)."""
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, assert_same_checkpoints, cli, events

from repro import train, verify
# an MNIST-1D MLP, long enough to be killed at many points and checkpointing
from repro.run import checkpoint

# often, so that kills land in checkpoint writes too
ARGS = ["--paper", "mnist1d", "--exp", "mlp", "--lite", "-o", "train.steps=600", "-o", "train.eval_every=50",
        "-o", "train.log_every=25", "-o", "train.checkpoint_every=20", "-o", "train.audit_every=100",
        "-o", "train.visualdl=false"]
# a full-protocol logistic-regression run (8,000 steps, a few seconds), checkpointing
# every 50 steps (a logging knob, so the run still follows the registered protocol)
FULL = ["--paper", "mnist1d", "--exp", "logreg", "--seed", "3", "-o", "train.checkpoint_every=50",
        "-o", "train.visualdl=false"]


class Killed(BaseException):
    """What SIGKILL does to the loop: nothing after this point runs (no run_end line)."""


@pytest.mark.slow  # it trains or audits for more than a few seconds
def test_killed_between_a_checkpoint_file_and_its_log_line(tmp_path, capsys, monkeypatch):
    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    assert cli(train.main, ARGS + ["--out", whole], capsys)[0] == 0
    real_save = checkpoint.save
    calls = {"n": 0}

    def save_then_die(path, *a, **k):
        out = real_save(path, *a, **k)
        calls["n"] += 1
        if calls["n"] == 7:  # step 140: not an audit step, so the file supersedes step 120's
            raise Killed
        return out

    monkeypatch.setattr(checkpoint, "save", save_then_die)
    with pytest.raises(Killed):
        train.main(ARGS + ["--out", parts])
    monkeypatch.setattr(checkpoint, "save", real_save)
    assert os.path.exists(os.path.join(parts, "checkpoints", "step-00000140.safetensors"))  # on disk, not logged
    assert [e["step"] for e in events(parts) if e["kind"] == "checkpoint"][-1] == 120
    code, _, err = cli(train.main, ["--resume", parts], capsys)
    assert code == 0, err
    assert_same_checkpoints(whole, parts)
    assert any(e["kind"] == "resume" and e["step"] == 120 for e in events(parts))


KILLS = 10


@pytest.mark.slow
def test_kill_9_at_random_instants_then_resume(tmp_path, capsys):
    """10 kills -9, each at a random instant of the process that continues the run (the instant between a
    checkpoint file and its log line has its own test above)."""
    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    assert cli(train.main, FULL + ["--out", whole], capsys)[0] == 0
    rng = random.Random(12345)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    kills, cmd = 0, [sys.executable, "-m", "repro.train", *FULL, "--out", parts]
    log = os.path.join(parts, "events.jsonl")
    for attempt in range(60):
        lines_before = _count_lines(log)
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while _count_lines(log) == lines_before and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)  # the process is importing; the run is not being written yet
        time.sleep(rng.uniform(0.0, 2.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        proc.stderr.close()
        last = events(parts)[-1] if _count_lines(log) else None
        if last and last["kind"] == "run_end" and last["status"] == "success":
            if kills >= KILLS:
                break
            # finished before KILLS kills: start the whole exercise over in a fresh directory
            parts = str(tmp_path / f"parts{attempt}")
            log = os.path.join(parts, "events.jsonl")
            cmd = [sys.executable, "-m", "repro.train", *FULL, "--out", parts]
            continue
        cmd = [sys.executable, "-m", "repro.train", "--resume", parts]
    assert kills >= KILLS, f"only {kills} kills landed"
    assert events(parts)[-1]["status"] == "success"
    assert_same_checkpoints(whole, parts)
    # the run counts, and every one of its 8 segments replays exactly
    code, out, _ = cli(verify.main, [parts, "--json", "--recompute", "--replay", "99"], capsys)
    import json
    (run,) = json.loads(out)["runs"]
    assert run["problems"] == [], run["problems"]
    assert len(run["replay"]) == 8 and all(seg["exact"] for seg in run["replay"])


def _count_lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0
