"""python -m repro.new DIR --paper NAME writes the contestant template the harness ships
(issue 36): a complete submission under its new name, or one line and nothing written."""
import os

import pytest

from conftest import cli, subprocess_cli
from repro import __version__, new
from repro.judge.submissions import check_layout


def test_the_template_is_written_under_the_papers_name(tmp_path, capsys):
    dest = str(tmp_path / "my-repo")
    code, out, err = cli(new.main, [dest, "--paper", "dropout_mlp"], capsys)
    assert code == 0 and f"wrote the contestant template into {dest}" in out, err
    files = sorted(new.write(str(tmp_path / "again"), "dropout_mlp"))
    assert files == [".gitignore", "README.md", "dropout_mlp/__init__.py", "dropout_mlp/configs/cnn.yaml",
                     "dropout_mlp/models.py", "logs/README.md", "requirements.txt"]
    problems, package = check_layout(dest, "dropout_mlp")  # what the maintainers' review requires
    assert problems == [] and package == os.path.join(dest, "dropout_mlp")
    for rel in files:
        assert "my_paper" not in open(os.path.join(dest, rel), encoding="utf-8").read(), rel
    assert 'name = "dropout_mlp"' in open(os.path.join(dest, "dropout_mlp", "__init__.py")).read()
    assert f"repro-paddle=={__version__}\n" in open(os.path.join(dest, "requirements.txt")).read()


@pytest.mark.slow
def test_the_written_plugin_trains_under_its_new_name(tmp_path):
    """The smoke run of the template's step 3, under the new name (about 10 s)."""
    dest = str(tmp_path / "my-repo")
    new.write(dest, "dropout_mlp")
    plugin = os.path.join(dest, "dropout_mlp")
    code, out, err = subprocess_cli("-m", "repro.train", "--papers", plugin, "--paper", "dropout_mlp", "--lite",
                                    "--out", os.path.join(dest, "logs", "smoke"))
    assert code == 0, err[-2000:]
    assert os.path.isfile(os.path.join(dest, "logs", "smoke", "events.jsonl"))


@pytest.mark.parametrize("argv, says", [
    (["{dest}"], "not a new or empty folder; the template goes into one (nothing was written)"),
    (["{empty}", "--paper", "My-Paper"], "a lowercase Python identifier"),
    (["{empty}", "--paper", "mnist1d"], "the harness already has a package by that name"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, says):
    dest = tmp_path / "busy"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine\n")
    empty = tmp_path / "empty"
    args = [a.format(dest=dest, empty=empty) for a in argv]
    code, out, err = cli(new.main, args, capsys)
    assert code == 2 and err.count("\n") == 1 and says in err and "Traceback" not in err, err
    assert os.listdir(dest) == ["notes.txt"] and not empty.exists()
