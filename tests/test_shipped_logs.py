"""The runs shipped under logs/ pass every check, --recompute included, and
verify's verdicts on them are the ones the README states."""
import os
import re

import pytest

from conftest import REPO, cli
from repro import verify
from repro.compliance import check_run, load_run, recompute

LOGS = os.path.join(REPO, "logs")
SHIPPED = sorted(root for root, _, files in os.walk(LOGS)
                 if "events.jsonl" in files and not os.path.relpath(root, LOGS).startswith("runs"))


def test_there_are_shipped_runs():
    assert len([p for p in SHIPPED if "/logs/mnist1d/" in p]) == 40  # 8 cells x 5 seeds


@pytest.mark.parametrize("path", SHIPPED, ids=[os.path.relpath(p, LOGS) for p in SHIPPED])
def test_shipped_run_passes_every_check_and_recomputes(path):
    run = check_run(load_run(path))
    assert run.problems == []
    assert recompute(run) == []  # the checkpoint gives exactly the logged metrics


def readme_verdicts():
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    rows = re.findall(r"^\| (mnist1d/\w+) \|.*\| (PASS|FAIL) \|$", text, re.M)
    assert len(rows) == 8, "the README's results table should list the 8 MNIST-1D cells"
    return dict(rows)


def test_verify_gives_the_readme_verdicts(capsys):
    import json

    code, out, _ = cli(verify.main, [os.path.join(LOGS, "mnist1d"), "--json"], capsys)
    report = json.loads(out)
    got = {f"{r['paper']}/{r['exp']}": "PASS" if r["passed"] else "FAIL" for r in report["targets"]}
    assert got == readme_verdicts()
    assert all(not r["problems"] for r in report["runs"])
    assert code == (0 if all(v == "PASS" for v in got.values()) else 1)
