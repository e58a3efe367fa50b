"""A contestant runs the maintainers' checks on their own repository before submitting
(issue 25): python -m repro.selfcheck [REPO] [--contest FILE]."""
import os
import shutil

import pytest

from conftest import cli
from contest_repo import contest_file, make_repo
from repro import selfcheck


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("selfcheck")
    path = str(root / "mine")
    make_repo(path)
    return str(root), path


@pytest.mark.slow
def test_an_honest_repository_passes_the_maintainers_review_of_it(repo, capsys):
    root, path = repo
    code, out, err = cli(selfcheck.main, [path, "--contest", contest_file(root, 30.0), "--challenge", "x"], capsys)
    assert code == 0, out + err
    assert "REPRODUCED" in out and "logs, code identity, recompute, replay" in out, out


@pytest.mark.slow
def test_what_would_fail_is_printed_before_submitting(repo, tmp_path, capsys):
    root, path = repo
    mine = str(tmp_path / "edited")
    shutil.copytree(path, mine, symlinks=True)
    with open(os.path.join(mine, "tinycell", "helper.py"), "w") as f:  # code the runs were not made with
        f.write("X = 1\n")
    code, out, err = cli(selfcheck.main, [mine, "--contest", contest_file(root, 30.0), "--logs-only"], capsys)
    assert code == 1, out + err
    assert "not in the run's code: tinycell/helper.py" in out and "local changes" in out, out
    code, out, err = cli(selfcheck.main, [mine, "--logs-only"], capsys)
    assert code == 1 and "tinycell/helper.py" in out, out


def test_a_folder_that_is_not_a_repository_is_one_line(tmp_path, capsys):
    code, out, err = cli(selfcheck.main, [str(tmp_path / "none")], capsys)
    assert code == 2 and "no such folder" in err and "Traceback" not in err
