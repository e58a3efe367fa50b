import os

import pytest

from conftest import REPO
from repro.errors import ReproError
from repro.registry import Registry, get_paper, load_papers


def test_duplicate_name_fails():
    reg = Registry("thing")
    reg.register("a", 1)
    with pytest.raises(ReproError, match="'a' is already registered"):
        reg.register("a", 2)


def test_unknown_name_lists_registered():
    reg = Registry("thing")
    reg.register("b", 1)
    reg.register("a", 2)
    with pytest.raises(ReproError, match=r"unknown thing 'zz'; registered: a, b"):
        reg.get("zz")


def test_every_paper_folder_is_listed_and_registered():
    import repro.papers as papers

    folders = sorted(d for d in os.listdir(os.path.join(REPO, "papers"))
                     if os.path.isfile(os.path.join(REPO, "papers", d, "__init__.py")))
    assert sorted(papers.PAPER_PACKAGES) == folders
    assert load_papers().names() == folders


def test_core_never_imports_a_paper():
    import re

    for name in os.listdir(os.path.join(REPO, "repro")):
        if name.endswith(".py"):
            text = open(os.path.join(REPO, "repro", name)).read()
            assert not re.search(r"^\s*(from|import)\s+papers\.", text, re.M), name


def test_every_experiment_has_config_targets_and_lite():

    for name in load_papers().names():
        paper = get_paper(name)
        assert paper.experiment().name == paper.default_experiment
        for exp in paper.experiments:
            assert exp.targets, exp.name
            full = paper.config(exp)
            lite = paper.config(exp, lite=True)
            assert lite.train.steps < full.train.steps


def test_unknown_experiment_lists_experiments():
    with pytest.raises(ReproError, match="no experiment 'nope'; experiments: logreg, logreg_shuffled, mlp"):
        get_paper("mnist1d").experiment("nope")


def test_a_text_plugin_needs_the_text_data_section(tmp_path, capsys, plugin_env):
    """A TextClassificationPaper whose config has no TextDataConfig is refused when it registers, in one line."""
    from conftest import cli
    from repro import train
    pkg = tmp_path / "wordy"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from dataclasses import dataclass, field\n"
        "from repro.config import TrainConfig\n"
        "from repro.paper import TextClassificationPaper\n"
        "@dataclass\nclass Data:\n    min_freq: int = 1\n"
        "@dataclass\nclass Cfg:\n    data: Data = field(default_factory=Data)\n"
        "    train: TrainConfig = field(default_factory=TrainConfig)\n"
        "class Wordy(TextClassificationPaper):\n    name = 'wordy'\n    config_class = Cfg\n"
        "PAPER = Wordy()\n")
    code, _, err = cli(train.main, ["--papers", str(pkg), "--list"], capsys)
    assert code == 2 and "subclasses repro.config.TextDataConfig" in err and len(err.strip().splitlines()) == 1, err
