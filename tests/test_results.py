"""Results as data: the README's result tables are generated from logs/<paper>/results.json
(verify --recompute --json of the shipped runs), and those files agree with the logs."""
import json
import os
import re
import shutil

import pytest

from conftest import REPO, cli
from repro import results, verify

PAPERS = ("mnist1d", "kim_cnn", "chnsenticorp_rnn")


def test_the_readme_tables_are_the_ones_the_results_files_give(capsys):
    code, out, err = cli(results.main, [os.path.join(REPO, "README.md"), "--check"], capsys)
    assert code == 0, out + err
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    named = re.findall(r"<!-- results (\S+)", text)
    assert sorted(named) == sorted(f"logs/{p}/results.json" for p in PAPERS)


@pytest.mark.parametrize("paper", PAPERS)
def test_a_results_file_is_a_recomputed_verify_report_of_the_shipped_logs(paper, capsys):
    """Each file was made with --recompute of every shipped run, and its targets are what
    verify gives from the logs now (values, bars, verdicts): a new run, or a file edited by
    hand, shows here."""
    kept = results.read(os.path.join(REPO, "logs", paper, "results.json"))
    assert all(r["recomputed"] for r in kept["runs"]), "made without --recompute"
    assert all(not r["problems"] for r in kept["runs"])
    _, out, _ = cli(verify.main, [os.path.join(REPO, "logs", paper), "--json"], capsys)
    now = json.loads(out)
    fields = ("paper", "exp", "metric", "paper_value", "achieved", "bar", "passed", "seeds", "values")
    assert [{k: r[k] for k in fields} for r in now["targets"]] == [{k: r[k] for k in fields} for r in kept["targets"]]
    assert sorted(os.path.relpath(r["path"], REPO) if os.path.isabs(r["path"]) else r["path"] for r in now["runs"]) \
        == sorted(r["path"] for r in kept["runs"])


def test_a_changed_results_file_is_named_and_written_back(tmp_path, capsys):
    shutil.copytree(os.path.join(REPO, "logs", "mnist1d_authors"), tmp_path / "logs" / "mnist1d_authors")
    (tmp_path / "logs" / "mnist1d").mkdir()
    report = json.load(open(os.path.join(REPO, "logs", "mnist1d", "results.json"), encoding="utf-8"))
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- results logs/mnist1d/results.json reference=logs/mnist1d_authors -->\nstale\n"
                      "<!-- end results -->\n", encoding="utf-8")
    report["targets"][0]["passed"] = not report["targets"][0]["passed"]
    (tmp_path / "logs" / "mnist1d" / "results.json").write_text(json.dumps(report), encoding="utf-8")
    code, out, _ = cli(results.main, [str(readme), "--check"], capsys)
    assert code == 1 and "logs/mnist1d/results.json" in out
    assert "stale" in readme.read_text(encoding="utf-8")  # --check changes nothing
    code, out, _ = cli(results.main, [str(readme)], capsys)
    assert code == 0
    table = readme.read_text(encoding="utf-8")
    cell = f"{report['targets'][0]['paper']}/{report['targets'][0]['exp']}"
    row = next(line for line in table.splitlines() if line.startswith(f"| {cell} |"))
    assert ("| PASS |" if report["targets"][0]["passed"] else "| FAIL |") in row  # the error rates follow it
    assert cli(results.main, [str(readme), "--check"], capsys)[0] == 0


@pytest.mark.parametrize("content, says", [
    ("[1, 2]", "must be an object"),
    ("{\"runs\": []}", "not a verify --json report"),
    ('{"targets": [{"paper": "x"}]}', "a target row lacks"),
    ('{"targets": [], "targets": []}', "duplicate"),
    ("not json", "results file"),
])
def test_a_broken_results_file_is_one_line(tmp_path, capsys, content, says):
    (tmp_path / "r.json").write_text(content, encoding="utf-8")
    (tmp_path / "README.md").write_text("<!-- results r.json -->\n<!-- end results -->\n", encoding="utf-8")
    code, out, err = cli(results.main, [str(tmp_path / "README.md")], capsys)
    assert code == 2 and says in err and "Traceback" not in err, err


@pytest.mark.parametrize("row", [
    {"values": "93.1"},
    {"passed": "yes"},
    {"seeds": [0, 1]},
    {"exp": "../x"},
])
def test_a_target_row_of_the_wrong_type_is_one_line(tmp_path, capsys, row):
    report = json.load(open(os.path.join(REPO, "logs", "kim_cnn", "results.json"), encoding="utf-8"))
    report["targets"][0].update(row)
    (tmp_path / "r.json").write_text(json.dumps(report), encoding="utf-8")
    (tmp_path / "README.md").write_text("<!-- results r.json -->\n<!-- end results -->\n", encoding="utf-8")
    code, out, err = cli(results.main, [str(tmp_path / "README.md")], capsys)
    assert code == 2 and "wrong type" in err and "Traceback" not in err, err


def test_a_reference_line_without_its_accuracy_is_one_line(tmp_path, capsys):
    shutil.copy(os.path.join(REPO, "logs", "mnist1d", "results.json"), tmp_path / "r.json")
    (tmp_path / "ref").mkdir()
    (tmp_path / "ref" / "results_cnn.jsonl").write_text('{"seed": 0}\n', encoding="utf-8")
    (tmp_path / "README.md").write_text("<!-- results r.json reference=ref -->\n<!-- end results -->\n",
                                        encoding="utf-8")
    code, out, err = cli(results.main, [str(tmp_path / "README.md")], capsys)
    assert code == 2 and "results_cnn.jsonl" in err and "Traceback" not in err, err
