"""verify's decisions on constructed run logs (the logic, not the training)."""
import hashlib
import json
import os

import pytest

from conftest import cli
from repro import verify
from repro.config import config_hash, load_config, to_dict
from repro.registry import get_paper
from repro.runlog import FORMAT, RunLog


def make_run(root, exp, seed, acc, status="success", config_changes=None, lite=False, final_eval=None):
    """A log as the harness writes it (real writer, valid chain), with made-up numbers."""
    paper = get_paper("mnist1d")
    e = paper.experiment(exp)
    cfg = to_dict(load_config(paper.config_class, e.config_path, seed=seed))
    for key, value in (config_changes or {}).items():
        section, name = key.split(".")
        cfg[section][name] = value
    metrics = {"test_loss": 0.3, "test_acc": acc}
    path = os.path.join(root, exp, f"seed{seed}")
    os.makedirs(path)
    log = RunLog(path, echo=None)
    log.event("run_start", format=FORMAT, paper="mnist1d", exp=exp, seed=seed, lite=lite, overrides=[],
              config=cfg, config_hash=config_hash(cfg), targets=[t.to_dict() for t in e.targets],
              metrics={"acc": "metrics.classification.Accuracy"},
              data={"test": {"n": e.eval_data["test"][0], "sha256": e.eval_data["test"][1]}},
              env={"device": "cpu"}, code={})
    log.event("eval", step=8000, metrics=final_eval or metrics)
    log.event("checkpoint", step=8000, path="checkpoint.safetensors", sha256=hashlib.sha256(path.encode()).hexdigest())
    if status:
        log.event("run_end", status=status, step=8000, metrics=metrics)
    log.close()
    return path


def judge(paths, capsys):
    code, out, err = cli(verify.main, [*map(str, paths), "--json"], capsys)
    assert code in (0, 1), err
    return code, json.loads(out)


def test_five_good_seeds_pass(tmp_path, capsys):
    for s in range(5):
        make_run(tmp_path, "cnn", s, 93.0 + s * 0.5)
    code, report = judge([tmp_path], capsys)
    assert code == 0 and report["ok"]
    (row,) = report["targets"]
    assert row["achieved"] == "94.00 ± 0.79 [93.00, 95.00]" and row["seeds"] == [0, 1, 2, 3, 4]


def test_low_mean_fails_with_reason(tmp_path, capsys):
    for s in range(5):
        make_run(tmp_path, "cnn", s, 88.0)
    code, report = judge([tmp_path], capsys)
    assert code == 1 and "mean of 5 seeds 88.00 misses >= " in report["targets"][0]["why"]


def test_shuffled_row_must_match_not_exceed(tmp_path, capsys):
    for s in range(5):
        make_run(tmp_path, "cnn_shuffled", s, 90.0)  # far above the paper's 56: contradicts the claim
    code, report = judge([tmp_path], capsys)
    assert code == 1 and "misses within 56.00" in report["targets"][0]["why"]


@pytest.mark.parametrize("kwargs, problem", [
    ({"status": "diverged"}, "ended with status 'diverged'"),
    ({"status": None}, "did not finish"),
    ({"status": "interrupted"}, "ended with status 'interrupted'"),
    ({"lite": True}, "a --lite smoke run"),
    ({"config_changes": {"train.lr": 0.02}}, "train.lr=0.02 (registered 0.01)"),
    ({"config_changes": {"data.shuffle_seq": True}}, "data.shuffle_seq=True (registered False)"),
    ({"final_eval": {"test_loss": 0.3, "test_acc": 50.0}}, "not those of the last evaluation"),
])
def test_runs_that_cannot_count_are_excluded(tmp_path, capsys, kwargs, problem):
    for s in range(4):
        make_run(tmp_path, "cnn", s, 94.0)
    bad = make_run(tmp_path, "cnn", 4, 99.0, **kwargs)
    code, report = judge([tmp_path], capsys)
    assert code == 1
    excluded = [r for r in report["runs"] if r["problems"]]
    assert [r["path"] for r in excluded] == [os.path.normpath(bad)]
    assert any(problem in p for p in excluded[0]["problems"])
    assert "needs 5 runs with distinct seeds, got 4" in report["targets"][0]["why"]


def test_seed_and_logging_knobs_may_differ(tmp_path, capsys):
    for s in range(5):
        make_run(tmp_path, "cnn", s, 94.0, config_changes={"train.log_every": 10, "train.visualdl": False})
    assert judge([tmp_path], capsys)[0] == 0


def test_duplicate_seeds_fail(tmp_path, capsys):
    for i in range(5):
        make_run(tmp_path / str(i), "cnn", 0, 94.0)
    code, report = judge([tmp_path], capsys)
    assert code == 1 and "share seed(s) 0" in report["targets"][0]["why"]


def test_every_experiment_given_is_judged(tmp_path, capsys):
    for s in range(5):
        make_run(tmp_path, "cnn", s, 94.0)
        make_run(tmp_path, "mlp", s, 60.0)
    code, report = judge([tmp_path / "cnn", tmp_path / "mlp"], capsys)
    assert code == 1
    assert {r["exp"]: r["passed"] for r in report["targets"]} == {"cnn": True, "mlp": False}


def test_table_output(tmp_path, capsys):
    for s in range(5):
        make_run(tmp_path, "cnn", s, 94.0)
    code, out, _ = cli(verify.main, [str(tmp_path)], capsys)
    assert code == 0
    assert "mnist1d/cnn" in out and "94.00 ± 0.00 [94.00, 94.00]" in out and "PASS" in out
    assert "1 of 1 targets reached, 5 of 5 runs count: REPRODUCED" in out
