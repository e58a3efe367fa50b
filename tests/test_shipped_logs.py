"""The runs shipped under logs/ pass every check, and verify's verdicts on them,
recomputed and replay-audited, are the ones the README states."""
import json
import os
import re

import pytest

from conftest import REPO, cli
from repro import verify
from repro.compliance import check_run, load_run

LOGS = os.path.join(REPO, "logs")
SHIPPED = sorted(root for root, _, files in os.walk(LOGS)
                 if "events.jsonl" in files and not os.path.relpath(root, LOGS).startswith("runs"))
JUDGED = [p for p in SHIPPED if "/logs/mnist1d/" in p]
CALIBRATION = [p for p in SHIPPED if "/logs/mnist1d_calibration/" in p]


def test_there_are_shipped_runs():
    assert len(JUDGED) == 40  # 8 cells x seeds 0-4
    assert len(CALIBRATION) == 40  # 8 cells x seeds 100-104


@pytest.mark.parametrize("path", SHIPPED, ids=[os.path.relpath(p, LOGS) for p in SHIPPED])
def test_shipped_run_passes_every_log_check(path):
    run = check_run(load_run(path))
    if path in CALIBRATION:
        # calibration runs keep only their final checkpoint (they set the tolerances, they
        # are not judged), so the audit the targets require is all they lack
        assert len(run.problems) == 1 and "requires the replay audit" in run.problems[0], run.problems
    else:
        assert run.problems == []


def readme_verdicts():
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    rows = re.findall(r"^\| (mnist1d/\w+) \|.*\| (PASS|FAIL) \|$", text, re.M)
    assert len(rows) == 8, "the README's results table should list the 8 MNIST-1D cells"
    return dict(rows)


@pytest.mark.slow
def test_recompute_and_replay_give_the_readme_verdicts(capsys):
    """verify --recompute --replay 2 (the first and the last segment of every run)."""
    code, out, _ = cli(verify.main, [os.path.join(LOGS, "mnist1d"), "--json", "--recompute", "--replay", "2",
                                     "--jobs", "2", "--challenge", "ci"], capsys)
    report = json.loads(out)
    got = {f"{r['paper']}/{r['exp']}": "PASS" if r["passed"] else "FAIL" for r in report["targets"]}
    assert got == readme_verdicts()
    assert all(not r["problems"] for r in report["runs"])
    assert all(len(r["replay"]) == 2 and all(s["exact"] for s in r["replay"]) for r in report["runs"])
    assert code == (0 if all(v == "PASS" for v in got.values()) else 1)
