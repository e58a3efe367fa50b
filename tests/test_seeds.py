"""Several seeds as one command: python -m repro.train --paper P --seeds [...] --jobs N."""
import os

import pytest
from conftest import cli, events, subprocess_cli

from repro import train
from repro.errors import ReproError
from repro.registry import get_paper
from repro.run import rundir
from repro.run.seeds import _Seed, _status
from repro.targets import parse_seeds


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
    lines = _status([job], 0.0, 75.0)  # 750 steps in 75 s: 250 left (25 s), then the verify's 1000 (100 s)
    assert "750/1000  acc 75.0" in lines[0] and "about 0:02:05 left with the verify" in lines[-1], lines
    job.state = "done"
    assert "about 0:01:40 left with the verify" in _status([job], 0.0, 100.0)[-1]  # never "?" once a rate is known


@pytest.mark.slow
def test_seeds_train_in_their_own_processes_then_verify(tmp_path):
    parent = str(tmp_path / "set")
    code, out, err = subprocess_cli("-m", "repro.train", "--paper", "mnist1d", "--exp", "mlp", "--lite",
                                    "--seeds", "0-1", "--jobs", "2", "--out", parent)
    assert code == 1, err  # lite runs never count: trained, verified, not reproduced
    assert sorted(os.listdir(parent)) == ["seed0", "seed1"]
    assert [events(os.path.join(parent, f"seed{s}"))[0]["config"]["train"]["seed"] for s in range(2)] == [0, 1]
    assert "2 of 2 seeds done" in out and "recomputed metrics" in out and "NOT REPRODUCED" in out
    # into the same folder again: a finished seed is kept, a new one is added (and only these two verified)
    code, out, err = subprocess_cli("-m", "repro.train", "--paper", "mnist1d", "--exp", "mlp", "--lite",
                                    "--seeds", "1-2", "--jobs", "2", "--out", parent)
    assert code == 1 and "seed 1: already trained" in out and os.path.isdir(os.path.join(parent, "seed2"))
    assert "seed 0" not in out and "2 of 2 seeds done" in out


@pytest.mark.slow
def test_a_failing_seed_does_not_stop_the_others(tmp_path):
    parent = str(tmp_path / "set")
    os.makedirs(os.path.join(parent, "seed1"))
    with open(os.path.join(parent, "seed1", "events.jsonl"), "w") as f:
        f.write("not a log\n")  # seed 1 cannot resume from this
    code, out, err = subprocess_cli("-m", "repro.train", "--paper", "mnist1d", "--exp", "logreg", "--lite",
                                    "--seeds", "1-2", "--out", parent)  # seed 2 trains after seed 1 failed
    assert code == 2, out + err
    assert "seed 1 failed" in out and os.path.isfile(os.path.join(parent, "seed1.err"))
    assert events(os.path.join(parent, "seed2"))[-1]["status"] == "success"


def test_seeds_refuse_what_they_cannot_do(capsys):
    code, _, err = cli(train.main, ["--paper", "mnist1d", "--seeds", "--seed", "3"], capsys)
    assert code == 2 and "drop --seed" in err
    code, _, err = cli(train.main, ["--paper", "mnist1d", "--seeds", "0-1", "--jobs", "0"], capsys)
    assert code == 2 and "--jobs must be" in err


def test_without_a_terminal_each_change_is_one_line_and_nothing_is_redrawn(capsys):
    """Output to a file (CI, nohup): a line when a seed starts, reaches a new step or accuracy,
    or finishes, and the summary once at the end; polls that find nothing new print nothing."""
    from repro.run.seeds import _changes
    jobs = [_Seed(0, "a"), _Seed(1, "b")]
    said = {}
    for _ in range(50):  # both waiting: nothing to say, however often it polls
        _changes(jobs, said, 0.0, 1.0, False)
    assert capsys.readouterr().out == ""
    jobs[0].state, jobs[0].started = "running", 0.0
    for step in (100, 100, 100, 200, 200):
        jobs[0].step, jobs[0].steps = step, 300
        _changes(jobs, said, 0.0, step / 10, False)
    jobs[0].acc = 81.5
    _changes(jobs, said, 0.0, 21.0, False)
    jobs[0].state, jobs[0].step = "done", 300
    jobs[1].state, jobs[1].started, jobs[1].step, jobs[1].steps = "failed", 1.0, 0, 0
    _changes(jobs, said, 0.0, 30.0, True)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(set(lines)) == 6, lines
    assert [ln.split()[:3] for ln in lines[:-1]] == [["seed", "0", "running"]] * 3 + [["seed", "0", "done"],
                                                                                       ["seed", "1", "failed"]]
    assert "100/300" in lines[0] and "200/300" in lines[1] and "acc 81.5" in lines[2]
    assert "of 2 seeds done" in lines[0] and lines[-1] == "1 of 2 seeds done, 1 failed, in 0:00:30"


@pytest.mark.slow
def test_seeds_into_a_file_print_changes_only_and_a_verify_hint_that_works(tmp_path):
    """--seeds of an outside plugin, from its own folder, with the output going to a file:
    no table printed again and again, and the closing verify command runs as printed."""
    import shlex
    import subprocess
    import sys

    import plugin_tinycell
    from conftest import REPO
    work = tmp_path / "work"
    plugin_tinycell.write(str(work / "plug" / "tinycell"))
    env = {k: v for k, v in os.environ.items() if k not in ("REPRO_PAPERS", "REPRO_PAPERS_ONLY")}
    env.update(PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    with open(tmp_path / "out.txt", "w") as f:
        p = subprocess.run([sys.executable, "-m", "repro.train", "--papers", "plug/tinycell", "--paper", "tinycell",
                            "--lite", "--seeds", "0-1", "--jobs", "2", "--out", "runs"],
                           cwd=work, stdout=f, stderr=subprocess.PIPE, text=True, env=env, timeout=600)
    assert p.returncode == 1, p.stderr  # lite runs never count
    out = (tmp_path / "out.txt").read_text()
    assert "\033[" not in out  # no cursor movement in a file
    progress = [ln for ln in out.splitlines() if ln.startswith("seed ")]
    assert len(progress) == len(set(progress)) and progress, out
    assert out.count("seeds done") == len([ln for ln in progress if "seeds done" in ln]) + 1  # the summary once
    hint = out.split("to verify them again: ")[1].splitlines()[0]
    words = shlex.split(hint)
    assert words[words.index("--papers") + 1] == os.path.join("plug", "tinycell")
    p = subprocess.run(words, cwd=work, capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 1 and "unknown paper" not in p.stderr and "a --lite smoke run" in p.stdout, \
        p.stdout + p.stderr
