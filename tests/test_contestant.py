"""The contestant's path, with the paper in a folder outside this repository: every
printed hint is a command that works as printed from where the user stands
(--papers and --data-dir included); repro.train checks the evaluation splits
against the registered ones before the first update; and the template repository
(templates/contestant) trains, verifies, exports and predicts as an outside plugin."""
import os
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

import plugin_tinycell
from conftest import REPO, cli, events, interrupt_train_step
from repro import registry, train, verify

TEMPLATE = os.path.join(REPO, "templates", "contestant")


def outside_env():
    """A user's environment: no plugin folders or data folder set, the checkout importable
    (it is not installed in this virtual environment) but not the current folder."""
    env = {k: v for k, v in os.environ.items() if k not in (registry.ENV, registry.ONLY, "REPRO_DATA_DIR")}
    return {**env, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}


def run_in(cwd, words, timeout=300):
    p = subprocess.run(words, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=outside_env())
    return p.returncode, p.stdout, p.stderr


def printed(out, label):
    """The command printed after `label: ` (its last such line), as the shell splits it."""
    line = [ln for ln in out.splitlines() if ln.startswith(label + ": ")][-1]
    return shlex.split(line[len(label) + 2:])


def write_plugin(folder, name, init_edits=()):
    """tests/plugin_tinycell.py's plugin as package `name` (each test its own name: a
    plugin module stays imported in this process), with (old, new) edits of its __init__."""
    plugin_tinycell.write(folder)
    path = os.path.join(folder, "__init__.py")
    text = open(path).read().replace('name = "tinycell"', f'name = "{name}"')
    for old, new in init_edits:
        assert old in text, old
        text = text.replace(old, new)
    with open(path, "w") as f:
        f.write(text)
    return folder


@pytest.fixture
def forget_modules():
    """Plugin packages imported in a test are forgotten after it."""
    names = []
    yield names
    for name in names:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]
    registry._loaded = False


# ------------------------------------------------------------------ hints

@pytest.mark.slow
def test_the_verify_hint_works_as_printed_from_where_the_user_stands(tmp_path):
    work = str(tmp_path / "work")
    plugin_tinycell.write(os.path.join(work, "plug", "tinycell"))
    code, out, err = run_in(work, [sys.executable, "-m", "repro.train", "--papers", "plug/tinycell",
                                   "--paper", "tinycell", "--lite", "--out", "runs/a", "--data-dir", "data"])
    assert code == 0, err
    words = printed(out, "verify with")
    assert words[words.index("--papers") + 1] == os.path.join("plug", "tinycell")
    assert words[words.index("--data-dir") + 1] == "data"
    code, out, err = run_in(work, words)
    # it ran: the run was found, its paper loaded, and judged (a --lite run never counts)
    assert code == 1 and "unknown paper" not in err and "a --lite smoke run" in out, out + err


@pytest.mark.slow  # it trains or audits for more than a few seconds
def test_an_interrupted_run_says_how_to_resume_it_and_that_works(tmp_path, monkeypatch, capsys, plugin_env,
                                                                 forget_modules):
    work = tmp_path / "work"
    write_plugin(str(work / "plug" / "hintcell"), "hintcell")
    forget_modules.append("hintcell")
    monkeypatch.chdir(work)
    monkeypatch.delenv("REPRO_DATA_DIR", raising=False)  # --data-dir sets it; it is put back after the test
    registry.use_folders(["plug/hintcell"])
    interrupt_train_step(monkeypatch, registry.get_paper("hintcell"), 15)
    code, out, err = cli(train.main, ["--papers", "plug/hintcell", "--paper", "hintcell", "--lite",
                                      "--out", "runs/r", "--data-dir", "data"], capsys)
    assert code == 130, err
    end = events(str(work / "runs" / "r"))[-1]
    assert end["status"] == "interrupted"
    command = end["reason"].split("`")[1]
    assert f"`{command}` continues from the last checkpoint" in out  # on the console too
    words = shlex.split(command)
    assert words[1:] == ["-m", "repro.train", "--resume", "runs/r", "--papers", os.path.join("plug", "hintcell"),
                         "--data-dir", "data"], command
    code, out, err = run_in(str(work), words)
    assert code == 0, err
    assert events(str(work / "runs" / "r"))[-1]["status"] == "success"


def test_hints_name_the_interpreter_and_the_plugin_folder_as_the_user_would_type_them(tmp_path, monkeypatch,
                                                                                      plugin_env, forget_modules):
    from repro import hints
    folder = write_plugin(str(tmp_path / "a b" / "quotecell"), "quotecell")
    forget_modules.append("quotecell")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REPRO_DATA_DIR", raising=False)
    registry.use_folders([folder])  # given absolute: shown relative to where the user stands
    line = hints.command("repro.verify", "runs/x y", paper="quotecell", data=True)
    assert shlex.split(line)[1:] == ["-m", "repro.verify", "runs/x y", "--papers", os.path.join("a b", "quotecell")]
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "d"))
    assert shlex.split(hints.command("repro.eval", paper="quotecell", data=True))[-2:] == ["--data-dir", "d"]
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the folder does not lie below: an absolute path
    assert shlex.split(hints.command("repro.verify", paper="quotecell"))[-1] == folder
    assert shlex.split(hints.command("repro.verify", paper="mnist1d"))[3:] == []  # built in: nothing to add
    interpreter = shlex.split(line)[0]
    assert interpreter == "python" or os.path.samefile(interpreter, sys.executable)


# ------------------------------------------------------------------ the evaluation data, before the first update

TEST_LINE = 'TEST = (1000, "5b45252af737bb954e45da270fc51c5a15b08af25eab200a3f938b6322903f33")'


@pytest.mark.parametrize("name, edits, says", [
    ("valcell", [('eval={"test": (d', 'eval={"val": (d')],
     "split 'test' is registered but build_data gives no such split (it gives 'val')"),
    ("sizecell", [(TEST_LINE, TEST_LINE.replace("1000", "999"))],
     "split 'test' has 1000 samples, the registered 999"),
    ("shacell", [(TEST_LINE, 'TEST = (1000, "' + "0" * 64 + '")')],
     "split 'test' has fingerprint 5b45252af737…, the registered 000000000000…"),
])
def test_train_stops_before_the_first_update_when_the_eval_splits_are_not_the_registered_ones(
        tmp_path, capsys, plugin_env, forget_modules, name, edits, says):
    folder = write_plugin(str(tmp_path / name), name, edits)
    forget_modules.append(name)
    out = str(tmp_path / "run")
    code, stdout, err = cli(train.main, ["--papers", folder, "--paper", name, "--out", out], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and says in err and "nothing was trained" in err, err
    assert not os.path.exists(out)  # the folder this command made is gone: no trace of a run
    empty = tmp_path / "given"
    empty.mkdir()
    code, _, err = cli(train.main, ["--papers", folder, "--paper", name, "--out", str(empty)], capsys)
    assert code == 2 and says in err and os.listdir(empty) == []  # a folder the user made stays, empty
    # a --lite run is exempt: its data are smoke data, and verify never counts it
    code, _, err = cli(train.main, ["--papers", folder, "--paper", name, "--lite", "--out", out,
                                    "-o", "train.steps=2"], capsys)
    assert code == 0, err


def test_a_data_override_is_an_exploration_whose_eval_splits_are_not_checked(tmp_path, capsys):
    """-o data.permutation=notebook makes other test data on purpose (the MNIST-1D protocol runs):
    train says so and trains; verify refuses to count the run because its config departs."""
    out = str(tmp_path / "run")
    args = ["--paper", "mnist1d", "--exp", "logreg_shuffled", "--out", out, "-o", "train.steps=20", "-o",
            "train.eval_every=20", "-o", "train.checkpoint_every=20", "-o", "train.audit_every=0"]
    code, said, err = cli(train.main, args + ["-o", "data.permutation=notebook"], capsys)
    assert code == 0, err
    assert "note: data.permutation=notebook changes the data, so the evaluation splits are not checked" in said, said
    code, report, _ = cli(verify.main, [out], capsys)
    assert code == 1 and "data.permutation" in report, report


# ------------------------------------------------------------------ the template repository

def test_the_template_is_a_complete_submission_whose_registered_eval_data_are_current(plugin_env, forget_modules):
    from repro.data import fingerprint
    from repro.judge.submissions import check_layout
    problems, package = check_layout(TEMPLATE, "my_paper")
    assert problems == [] and package == os.path.join(TEMPLATE, "my_paper")
    req = open(os.path.join(TEMPLATE, "requirements.txt")).read()
    assert "\nrepro-paddle==" in req and "\npaddlepaddle==" in req
    forget_modules.append("my_paper")
    registry.use_folders([package])
    paper = registry.get_paper("my_paper")
    for exp in paper.experiments:
        cfg = paper.config(exp)
        data = paper.data(cfg)
        assert {s: (len(xy[0]), fingerprint(*xy)) for s, xy in data.eval.items()} == exp.eval_data
        assert cfg.train.audit_every and all(cfg.train.audit_every <= t.policy.audit for t in exp.targets)
        assert paper.input_spec(cfg)  # what repro.export needs


@pytest.mark.slow
def test_the_template_trains_verifies_exports_and_predicts_as_an_outside_plugin(tmp_path):
    repo = str(tmp_path / "my-repo")
    shutil.copytree(TEMPLATE, repo)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "from the template"]):
        subprocess.run(["git", "-C", repo, "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                       capture_output=True)
    # the README's commands, from the repository's top
    code, out, err = run_in(repo, [sys.executable, "-m", "repro.train", "--papers", "my_paper", "--paper",
                                   "my_paper", "--lite", "--out", "logs/smoke"])
    assert code == 0, err
    head = events(os.path.join(repo, "logs", "smoke"))[0]
    assert head["paper"] == "my_paper" and head["lite"] is True
    code, out, err = run_in(repo, printed(out, "verify with"))
    assert code == 1 and "a --lite smoke run" in out and "unknown paper" not in err, out + err
    code, out, err = run_in(repo, [sys.executable, "-m", "repro.export", "logs/smoke", "--papers", "my_paper"])
    assert code == 0, err
    words = printed(out, "predict with")
    np.save(tmp_path / "x.npy", np.zeros((3, 40), dtype=np.float32))
    words[words.index("INPUT.npy")] = str(tmp_path / "x.npy")
    code, out, err = run_in(repo, words)
    assert code == 0 and out.count(": class ") == 3, out + err
    code, out, err = run_in(repo, [sys.executable, "-m", "repro.train", "--papers", "my_paper", "--paper",
                                   "my_paper", "--print-eval-data"])
    assert code == 0 and "5b45252af737bb954e45da270fc51c5a15b08af25eab200a3f938b6322903f33" in out, err
