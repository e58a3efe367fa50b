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
    from repro.config import load_config

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
