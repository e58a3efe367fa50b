"""A contestant runs the maintainers' checks on their own repository before submitting
(issue 25): python -m repro.selfcheck [REPO] [--contest FILE]."""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import cli
from contest_repo import contest_file, repo_in
from repro import env, selfcheck
from repro.boundary import identity


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root, path, _ = repo_in(tmp_path_factory, "selfcheck", "mine")
    return str(root), path


@pytest.mark.slow
def test_an_honest_repository_passes_the_maintainers_review_of_it(repo, capsys):
    root, path = repo
    code, out, err = cli(selfcheck.main, [path, "--contest", contest_file(root, 30.0), "--challenge", "x"], capsys)
    assert code == 0, out + err
    assert f"self-check of {path} at its commit" in out and "replay challenge x (repeat with --challenge x)" in out
    assert "passes: the review would count it" in out and "checks that ran: logs; code identity; recompute; replay" in out, out
    assert "first to reach" not in out + err and "REPRODUCED:" not in out and "self-check /" not in err, out + err


@pytest.mark.slow
def test_the_templates_layout_passes_with_its_venv_and_a_contest_file_inside(repo, tmp_path, capsys):
    """The template puts .venv/ in the repository, and a contestant saves the contest file
    there: neither is code, for the runs' identity, git_dirty or the self-check (issue 36)."""
    root, path = repo
    mine = str(tmp_path / "mine")
    shutil.copytree(path, mine, symlinks=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", os.path.join(mine, ".venv")], check=True)
    assert os.path.islink(os.path.join(mine, ".venv", "bin", "python"))
    os.makedirs(os.path.join(mine, ".pytest_cache"))
    open(os.path.join(mine, ".pytest_cache", "CACHEDIR.TAG"), "w").close()
    shutil.copy(contest_file(root, 30.0), os.path.join(mine, "contest.yaml"))
    assert env.git_changes(mine) == [] and env._git_state(mine)[1] is False
    code, out, err = cli(selfcheck.main, [mine, "--contest", os.path.join(mine, "contest.yaml"), "--logs-only"],
                         capsys)
    assert code == 0, out + err
    assert "symbolic link" not in out and "not in the commit" not in out, out
    # and a contest file under another name, given on the command line, is the judge's input too
    os.rename(os.path.join(mine, "contest.yaml"), os.path.join(mine, "terms.yaml"))
    code, out, err = cli(selfcheck.main, [mine, "--contest", os.path.join(mine, "terms.yaml"), "--logs-only"], capsys)
    assert code == 0, out + err
    _, problems = selfcheck.self_check(mine)  # without --contest it is a file of the repository like any other
    assert problems and all("not in the run's code: terms.yaml" in p for p in problems), problems


@pytest.mark.slow
def test_what_would_fail_is_printed_before_submitting_with_its_fix(repo, tmp_path, capsys):
    root, path = repo
    mine = str(tmp_path / "edited")
    shutil.copytree(path, mine, symlinks=True)
    with open(os.path.join(mine, "tinycell", "helper.py"), "w") as f:  # code the runs were not made with
        f.write("X = 1\n")
    code, out, err = cli(selfcheck.main, [mine, "--contest", contest_file(root, 30.0), "--logs-only"], capsys)
    assert code == 1, out + err
    assert "differ from the commit, which is what the review sees: tinycell/helper.py" in out, out
    assert f"fix: git -C {mine} add -A && git -C {mine} commit" in out, out
    code, out, err = cli(selfcheck.main, [mine, "--logs-only"], capsys)
    assert code == 1 and "not in the run's code: tinycell/helper.py" in out, out
    assert f"fix: mv -- {mine}/tinycell/helper.py" in out, out
    assert out.index("code identity of") < out.index("targets reached"), out  # the identity first


def test_a_folder_that_is_not_a_repository_is_one_line(tmp_path, capsys):
    code, out, err = cli(selfcheck.main, [str(tmp_path / "none")], capsys)
    assert code == 2 and "no such folder" in err and "Traceback" not in err


def test_a_missing_contest_file_is_one_line(tmp_path, capsys):
    code, out, err = cli(selfcheck.main, [str(tmp_path), "--contest", str(tmp_path / "none.yaml")], capsys)
    assert code == 2 and err.count("\n") == 1 and "none.yaml: no such contest file" in err


def test_what_the_identity_leaves_out_is_not_a_local_change(tmp_path):
    """One rule (identity.excluded) for the run's git_dirty as for its identity: a .venv, the
    contest file and caches at the top, and what lies inside them, change nothing."""
    repo = str(tmp_path / "r")
    os.makedirs(os.path.join(repo, "pkg"))
    open(os.path.join(repo, "pkg", "__init__.py"), "w").close()
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "c"]):
        subprocess.run(["git", "-C", repo, "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", os.path.join(repo, ".venv")], check=True)
    os.makedirs(os.path.join(repo, "pkg", ".mypy_cache"))
    for name in ("contest.yaml", "notes.md", "pkg/.mypy_cache/x.json"):
        open(os.path.join(repo, name), "w").close()
    assert env.git_changes(repo) == [] and env._git_state(repo)[1] is False
    assert selfcheck.uncommitted(repo, "r") == []
    open(os.path.join(repo, "pkg", "extra.py"), "w").close()
    assert env.git_changes(repo) == [("??", "pkg/extra.py")] and env._git_state(repo)[1] is True
    (problem, fix), = selfcheck.uncommitted(repo, "r")
    assert "pkg/extra.py" in problem and fix == "git -C r add -A && git -C r commit -m 'my reproduction'"


@pytest.mark.parametrize("problem, fix", [
    ("tinycell/mlp test_acc: mean of 2 seeds 9.00 misses >= 30.00",
     "python -m repro.train --papers mine/tinycell --paper tinycell --exp mlp --seeds --out mine/logs/tinycell/mlp"),
    ("tinycell/mlp logs/seed1: segment 100->200 does not replay",
     "python -m repro.train --papers mine/tinycell --paper tinycell --exp mlp --seed 1 --out mine/logs/seed1.new"),
    ("logs/seed0: unreadable: logs/seed0/events.jsonl line 11: run_end has an unknown key 'x'",
     "--seed N --out DIR), or remove mine/logs/seed0"),  # no experiment is named: none is guessed
    ("no run of tinycell/mlp, which the contest judges",
     "python -m repro.train --papers mine/tinycell --paper tinycell --exp mlp --seeds --out mine/logs/tinycell/mlp"),
    ("the submitted tree: tinycell/data: a symbolic link (to '/data'): links are not followed", "rm -- mine/tinycell/data"),
    (f"tinycell/__pycache__/: a __pycache__ folder: {identity.BYTECODE}",
     "find mine -name __pycache__ -prune -exec rm -r {} +"),
    ("logs/seed0: the log was produced by other code than the submitted tree (differ: tinycell/a.py; "
     "not in the run's code: tinycell/b.py)", "git -C mine checkout HEAD -- tinycell/a.py && mv -- mine/tinycell/b.py"),
])
def test_every_failing_check_comes_with_the_command_that_fixes_it(problem, fix):
    assert fix in selfcheck.fix_of(problem, "mine")
