"""Data parallel on Paddle's engine: 2 CPU processes through paddle.distributed.launch (gloo)."""
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, cli

from repro import eval as eval_cli
from repro.judge.compliance import LITE, check_run, load_run
from repro.judge.verdict import registered

pytestmark = pytest.mark.slow  # trains, samples or launches processes: the full tier


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    out, logs = str(root / "run"), str(root / "launch")
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", logs,
           "repro/train.py", "--paper", "mnist1d", "--exp", "cnn", "--lite", "--out", out,
           "-o", "train.visualdl=false"]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    if p.returncode != 0:
        worker = "".join(open(os.path.join(logs, f)).read()[-2000:] for f in sorted(os.listdir(logs)))
        pytest.fail(f"launch failed ({p.returncode}): {p.stdout[-1500:]}{p.stderr[-1500:]}{worker}")
    return out


def test_only_rank_0_writes_and_the_log_says_world_size_2(two_process_run):
    assert sorted(os.listdir(two_process_run)) == ["checkpoints", "config.yaml", "events.jsonl", "resources.json",
                                                   "train.log"]
    run = check_run(load_run(two_process_run), registered)
    kinds = [e["kind"] for e in run.events]
    assert kinds.count("run_start") == 1 and kinds.count("run_end") == 1
    assert run.header["env"]["world_size"] == 2
    # only the lite flag keeps it from counting: the chain and order are intact
    assert run.problems == [LITE]


def test_every_evaluation_counts_the_full_test_set_once(two_process_run):
    evals = [e for e in load_run(two_process_run).events if e["kind"] == "eval"]
    assert evals and all(e["samples"] == {"test": 1000} for e in evals)


def test_final_metrics_equal_a_single_process_evaluation(two_process_run, capsys):
    logged = load_run(two_process_run).events[-1]["metrics"]
    code, out, _ = cli(eval_cli.main, ["--paper", "mnist1d", "--checkpoint", two_process_run, "--json"], capsys)
    assert code == 0
    assert json.loads(out) == logged  # exactly, on CPU
