"""verify's decisions on constructed run logs (the logic, not the training)."""
import hashlib
import json
import os

import pytest
import yaml
from conftest import cli

from repro import verify
from repro.config import config_hash, to_dict
from repro.registry import get_paper
from repro.run.runlog import FORMAT, RunLog


def make_run(root, exp, seed, acc, status="success", config_changes=None, lite=False, final_eval=None):
    """A run as the harness writes it (real log writer, valid chain, real checkpoint
    files at every audit step), with made-up weights and numbers."""
    import numpy as np
    from safetensors.numpy import save_file

    from repro.run import checkpoint
    from repro.run.rundir import checkpoint_name

    paper = get_paper("mnist1d")
    e = paper.experiment(exp)
    cfg = to_dict(paper.config(e, lite=lite, seed=seed))
    for key, value in (config_changes or {}).items():
        section, name = key.split(".")
        cfg[section][name] = value
    metrics = {"test_loss": 0.3, "test_acc": acc}
    path = os.path.join(root, exp, f"seed{seed}")
    os.makedirs(os.path.join(path, "checkpoints"))
    with open(os.path.join(path, "config.yaml"), "w") as f:
        yaml.safe_dump(cfg, f)
    log = RunLog(os.path.join(path, "events.jsonl"), os.path.join(path, "train.log"), echo=None)
    tag = hashlib.sha256(f"{exp}/{seed}/{acc}".encode()).hexdigest()
    log.event("run_start", format=FORMAT, paper="mnist1d", exp=exp, title="t", lite=lite, overrides=[],
              config=cfg, config_hash=config_hash(cfg), targets=[t.to_dict() for t in e.targets],
              metrics={"acc": "repro.metrics.classification.Accuracy"},
              data={"test": {"n": e.eval_data["test"][0], "sha256": e.eval_data["test"][1]}},
              init_weights_sha256=tag, env={"device": "cpu", "threads": 1}, code={}, provenance={})
    tc = cfg["train"]
    every = tc["audit_every"] or tc["steps"]
    for step in range(every, tc["steps"] + 1, every):
        if step == tc["steps"]:
            log.event("eval", step=step, metrics=final_eval or metrics, samples={"test": 1000})
        file = os.path.join(path, checkpoint_name(step))
        tensors = {"model/w": np.full(3, seed * 10_000 + step + acc, np.float32)}
        save_file(tensors, file, metadata={"format": checkpoint.FORMAT, "paper": "mnist1d", "exp": exp,
                                           "config_hash": config_hash(cfg), "step": str(step),
                                           "log_seq": str(log.seq), "log_head": log.prev})
        log.event("checkpoint", step=step, path=checkpoint_name(step), sha256=checkpoint.sha256_file(file),
                  weights_sha256=checkpoint.weights_sha256(tensors))
    if status:
        log.event("run_end", status=status, step=tc["steps"], **({"metrics": metrics} if status == "success" else {}))
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
    ({"config_changes": {"train.audit_every": 2000}}, "the target requires the replay audit"),
    ({"config_changes": {"train.audit_every": 0}}, "this run kept only its last checkpoint"),
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
    assert "seeds 0-4; seed(s) 4 have no run that counts" in report["targets"][0]["why"]


def test_seed_and_logging_knobs_may_differ(tmp_path, capsys):
    for s in range(5):
        make_run(tmp_path, "cnn", s, 94.0, config_changes={"train.log_every": 10, "train.visualdl": False})
    assert judge([tmp_path], capsys)[0] == 0


def test_the_pinned_seeds_are_judged_and_nothing_else(tmp_path, capsys):
    for s in range(5):
        make_run(tmp_path / "a", "cnn", s, 94.0)
    make_run(tmp_path / "b", "cnn", 0, 90.0)  # seed 0 again
    code, report = judge([tmp_path], capsys)
    assert code == 1 and "runs of seed(s) 0 are extra or repeated" in report["targets"][0]["why"]
    make_run(tmp_path / "c", "cnn", 7, 95.0)  # a sixth seed: verify does not pick 5 of 6
    code, report = judge([tmp_path / "a", tmp_path / "c"], capsys)
    assert code == 1 and "runs of seed(s) 7 are extra or repeated" in report["targets"][0]["why"]
    code, report = judge([tmp_path / "a"], capsys)
    assert code == 0


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
    assert "1 of 1 targets reached, 5 of 5 runs count (checked: logs): REPRODUCED" in out


def test_cross_platform_replay_is_judged_against_its_own_rounding_spread():
    """Same platform: bitwise or nothing. Across platforms: the logged end within MARGIN
    times what rounding alone does to the segment here, and only on a calm segment;
    a chaotic segment is inconclusive, never a pass."""
    from repro.judge.segments import CHAOS_LIMIT, MARGIN, judge_segment
    calm = CHAOS_LIMIT / 100
    assert judge_segment({"exact": True, "distance": 0.0}, False) is None
    assert "bitwise equality" in judge_segment({"exact": False, "distance": 1e-9}, False)
    assert judge_segment({"exact": False, "distance": calm * MARGIN * 0.9, "spread": calm}, True) is None
    assert "does not give the logged checkpoint" in judge_segment(
        {"exact": False, "distance": calm * MARGIN * 1.1, "spread": calm}, True)
    assert judge_segment({"exact": False, "distance": 1e-3, "spread": CHAOS_LIMIT * 2}, True).startswith("inconclusive")
    assert judge_segment({"exact": False, "distance": 1e-3}, True).startswith("inconclusive")  # no spread measured


@pytest.mark.slow
def test_cross_platform_replay_rejects_a_forgery_on_a_calm_segment(tmp_path, capsys):
    """A lite logistic regression whose final weights were nudged toward the test split
    (and the log re-chained): on the same platform the replay is not bitwise; with
    --cross-platform the replay here, its jittered twin and the forged end are compared,
    and the forgery stands far outside the rounding spread."""
    import numpy as np
    from test_tamper import forge

    from repro import train
    from repro.run import rundir
    run = str(tmp_path / "run")
    assert cli(train.main, ["--paper", "mnist1d", "--exp", "logreg", "--lite", "--out", run,
                            "-o", "train.visualdl=false"], capsys)[0] == 0
    r = rundir.open_run(get_paper, run)
    final = max(r.checkpoints())
    tensors = rundir.read_checkpoint(r, final)[0]
    nudged = {k: (v * np.float32(1.01) if k.startswith("model/") else v) for k, v in tensors.items()}
    forge(run, r.events, {final: nudged})
    code, out, _ = cli(verify.main, [run, "--json", "--replay", "9", "--cross-platform"], capsys)
    (res,) = json.loads(out)["runs"]
    last = [p for p in res["problems"] if p.startswith("replay ") and f"->{final}:" in p]
    assert last and "does not give the logged checkpoint" in last[0], res["problems"]
    others = [s for s in res["replay"] if s["b"] != final]
    assert others and all(s["exact"] for s in others)  # the untouched segments replay bitwise here
