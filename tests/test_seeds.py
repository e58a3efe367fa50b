"""Several seeds as one command: python -m repro.train --paper P --seeds [...] --jobs N."""
import os

import pytest

from conftest import cli, events, subprocess_cli
from repro import rundir, train
from repro.errors import ReproError
from repro.registry import get_paper
from repro.seeds import _Seed, _status, parse_seeds


def test_seed_lists():
    paper = get_paper("mnist1d")
    exp = paper.experiment("cnn")
    assert parse_seeds(None, paper, exp) == [0, 1, 2, 3, 4]  # the target's pinned seeds
    assert parse_seeds("0-2,7", paper, exp) == [0, 1, 2, 7]
    for bad in ("a", "3-1", "0-2,2", "-1", "0-5000"):
        with pytest.raises(ReproError):
            parse_seeds(bad, paper, exp)
    lenet = get_paper("lenet5")
    with pytest.raises(ReproError, match="pin no seeds"):
        parse_seeds(None, lenet, lenet.experiment())


def test_progress_follows_the_log(tmp_path):
    """Each poll shows the newest step and accuracy the run has logged, not the first ones."""
    import json
    job = _Seed(0, str(tmp_path))
    log = tmp_path / rundir.EVENTS

    def add(step, acc):
        with open(log, "a") as f:
            f.write(json.dumps({"kind": "train", "step": step, "steps": 1000}) + "\n")
            f.write(json.dumps({"kind": "eval", "step": step, "metrics": {"test_loss": 1.0, "test_acc": acc}}) + "\n")
    add(250, 71.0)
    job.poll_log()
    assert (job.step, job.steps, job.acc) == (250, 1000, 71.0)
    for step in range(260, 760, 10):
        add(step, step / 10)
    job.poll_log()
    assert (job.step, job.acc) == (750, 75.0)
    job.state, job.started = "running", 0.0
    lines = _status([job], 0.0, 75.0)  # 750 steps in 75 s: 250 left, about 25 s
    assert "750/1000  acc 75.0" in lines[0] and "0:00:25 left" in lines[-1], lines


@pytest.mark.slow
def test_seeds_train_in_their_own_processes_then_verify(tmp_path):
    parent = str(tmp_path / "set")
    code, out, err = subprocess_cli("-m", "repro.train", "--paper", "mnist1d", "--exp", "mlp", "--lite",
                                    "--seeds", "0-2", "--jobs", "2", "--out", parent)
    assert code == 1, err  # lite runs never count: trained, verified, not reproduced
    assert sorted(os.listdir(parent)) == ["seed0", "seed1", "seed2"]
    assert [events(os.path.join(parent, f"seed{s}"))[0]["config"]["train"]["seed"] for s in range(3)] == [0, 1, 2]
    assert "3 of 3 seeds done" in out and "recomputed metrics" in out and "NOT REPRODUCED" in out
    # the same command again: finished seeds are kept, a new one is added
    code, out, err = subprocess_cli("-m", "repro.train", "--paper", "mnist1d", "--exp", "mlp", "--lite",
                                    "--seeds", "0-3", "--jobs", "2", "--out", parent)
    assert code == 1 and "seed 0: already trained" in out and os.path.isdir(os.path.join(parent, "seed3"))


@pytest.mark.slow
def test_a_failing_seed_does_not_stop_the_others(tmp_path):
    parent = str(tmp_path / "set")
    os.makedirs(os.path.join(parent, "seed1"))
    with open(os.path.join(parent, "seed1", "events.jsonl"), "w") as f:
        f.write("not a log\n")  # seed 1 cannot resume from this
    code, out, err = subprocess_cli("-m", "repro.train", "--paper", "mnist1d", "--exp", "logreg", "--lite",
                                    "--seeds", "0-2", "--out", parent)
    assert code == 2, out + err
    assert "seed 1 failed" in out and os.path.isfile(os.path.join(parent, "seed1.err"))
    assert events(os.path.join(parent, "seed2"))[-1]["status"] == "success"


def test_seeds_refuse_what_they_cannot_do(capsys):
    code, _, err = cli(train.main, ["--paper", "mnist1d", "--seeds", "--seed", "3"], capsys)
    assert code == 2 and "drop --seed" in err
    code, _, err = cli(train.main, ["--paper", "mnist1d", "--seeds", "0-1", "--jobs", "0"], capsys)
    assert code == 2 and "--jobs must be" in err
