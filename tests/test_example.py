"""The maintainers' example (issue 36): python -m repro.example DIR builds four teams'
submissions from the contestant template, and the review line it prints gives each
team its verdict: alpha reproduces, beta is a copy of alpha, gamma's code changed
after training, delta trained on the test split and the private evaluation says so; and
alpha's, beta's and gamma's review through Ray (issue 39's farm) gives them the same verdicts."""
import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, cli, subprocess_cli

from repro import example
from repro.boundary import sandbox
from repro.example_contest import PLUGIN, contest_path
from repro.judge.contest import read_contest
from repro.judge import ledger

try:
    import ray
except ImportError:
    ray = None


def test_the_shipped_example_contest_reads_and_names_a_private_evaluation():
    contest = read_contest(os.path.join(REPO, "configs", "contests", "example.yaml"))
    assert contest_path() == os.path.join(REPO, "configs", "contests", "example.yaml")
    entry = contest.entry(PLUGIN, "cnn")
    assert "fresh" in entry.private_eval and entry.seeds == (0, 1)
    assert entry.protocol["train.steps"] // entry.audit == 2  # every run: two segments, both replayed


@pytest.mark.parametrize("argv, says", [
    (["{tmp}/full", "--steps", "200"], "not a new or empty folder"),
    (["{tmp}/new", "--steps", "1"], "--steps must be between 2 and 100,000, got 1"),
    (["{tmp}/file.txt"], "not a new or empty folder"),
])
def test_bad_input_is_one_line_and_nothing_is_written(tmp_path, capsys, argv, says):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    (tmp_path / "file.txt").write_text("mine")
    code, out, err = cli(example.main, [a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert code == 2 and says in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert sorted(os.listdir(tmp_path)) == ["file.txt", "full"]
    assert os.listdir(tmp_path / "full") == ["keep.txt"]


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory):
    """The example built (200 steps) and reviewed by the command line its build printed, as printed:
    (its folder, that command's arguments)."""
    dest = tmp_path_factory.mktemp("example") / "example"
    p = subprocess.run([sys.executable, "-m", "repro.example", str(dest), "--steps", "200"], cwd=REPO,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    line = p.stdout.strip().splitlines()[-1].strip()  # the review to run next, as printed
    args = shlex.split(line)
    assert args[:3] == ["python", "-m", "repro.review"] and "--private-seed" in args, line
    r = subprocess.run([sys.executable, *args[1:]], cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    return dest, args


@pytest.mark.slow
@pytest.mark.skipif(not sandbox.available(), reason="bubblewrap (bwrap) is not installed or usable here")
def test_the_example_builds_and_its_printed_review_gives_each_team_its_verdict(reviewed):
    dest, _ = reviewed
    subs = yaml.safe_load(open(dest / "submissions.yaml"))["submissions"]
    assert [s["team"] for s in subs] == ["alpha", "beta", "gamma", "delta"]
    assert subs[0]["commit"] == subs[1]["commit"] and len({s["commit"] for s in subs}) == 3
    pinned = read_contest(str(dest / "contest.yaml")).entry(PLUGIN, "cnn")
    assert pinned.protocol["train.steps"] == 200 and pinned.audit == 100
    data = json.load(open(dest / "review" / "review.json"))
    by = {s["team"]: s for s in data["submissions"]}
    why = {team: " ".join(ledger.reasons(s)) for team, s in by.items()}

    assert by["alpha"]["status"] == "REPRODUCED: first to reach the bar" and by["alpha"]["full_review"], why["alpha"]
    assert data["papers"][0]["reproduced_by"] == "alpha"
    assert all(run["private"]["agrees"] for run in by["alpha"]["runs"])
    # beta passes every check a submission alone can fail; its runs are alpha's, which its logs show:
    # it is refused from them, and its code never runs
    assert by["beta"]["status"] == "not reproduced" and not by["beta"]["full_review"]
    assert "refused as a copy from its logs, before running its code" in by["beta"]["problems"], why["beta"]
    assert all("a copy of that submission" in " ".join(run["problems"]) for run in by["beta"]["runs"]), why["beta"]
    assert all(not run.get("replay") and not run.get("recomputed") for run in by["beta"]["runs"])
    # gamma: the code in its tree is not the code its runs logged, so none of it is run
    assert by["gamma"]["status"] == "not reproduced"
    assert all(run["problems"] == [f"the log was produced by other code than the submitted tree "
                                   f"(differ: {PLUGIN}/models.py)"] for run in by["gamma"]["runs"]), why["gamma"]
    # delta: recompute and every replayed segment agree with its logs (they run its code); the private
    # evaluation does not
    assert by["delta"]["status"] == "not reproduced" and by["delta"]["full_review"]
    for run in by["delta"]["runs"]:
        assert run["private"]["agrees"] is False and run["private"]["public"] - run["private"]["private"] > 10
        assert all(s["exact"] for s in run["replay"]) and run["recomputed"]["test_acc"] == run["metrics"]["test_acc"]
        assert len(run["problems"]) == 1 and "fitted to the test split" in run["problems"][0], why["delta"]


def verdicts(review_json):
    data = json.load(open(review_json))
    return {s["team"]: (s["ok"], s["status"], [t.get("ok") for t in s["targets"]], s["problems"],
                        [r["problems"] for r in s["runs"]]) for s in data["submissions"]}


@pytest.mark.slow
@pytest.mark.skipif(ray is None, reason='ray is not installed (pip install "repro-paddle[cluster]")')
@pytest.mark.skipif(not sandbox.available(), reason="bubblewrap (bwrap) is not installed or usable here")
def test_the_example_reviewed_on_ray_gets_the_local_pools_verdicts(reviewed, tmp_path):
    """The review farm (issue 39), through benchmarks/review_farm.py: the example's alpha, beta and
    gamma reviewed through `--cluster local` (the command line a maintainer types) get every verdict
    and reason the local review above gave them. Alpha's review runs every kind of worker task
    (data, private evaluation, recompute, replay); delta's runs the same ones again, so it is left
    out here (about half the Ray review's time)."""
    dest, args = reviewed
    seed = args[args.index("--private-seed") + 1]
    teams = ("alpha", "beta", "gamma")
    some = tmp_path / "example"
    some.mkdir()
    shutil.copyfile(dest / "contest.yaml", some / "contest.yaml")
    subs = yaml.safe_load(open(dest / "submissions.yaml"))
    subs["submissions"] = [{**s, "repo": str(dest / s["repo"])} for s in subs["submissions"] if s["team"] in teams]
    (some / "submissions.yaml").write_text(yaml.safe_dump(subs, sort_keys=False))
    code, out, err = subprocess_cli("benchmarks/review_farm.py", "--example", str(some), "--private-seed", seed,
                                    "--repeats", "1", "--jobs", "2", "--modes", "ray", "--no-wait", "--keep", str(tmp_path / "bench"),
                                    timeout=1200)
    assert code == 0, (out + err)[-3000:]
    assert "verdicts identical: alpha " in out and "audit worker tasks per minute" in out, out
    local = verdicts(dest / "review" / "review.json")
    got = {"ray": verdicts(tmp_path / "bench" / "review-0-ray" / "review.json"),
           "local": {team: v for team, v in local.items() if team in teams}}
    assert got["ray"] == got["local"], got
    assert set(got["ray"]) == set(teams) and got["ray"]["alpha"][0]
    assert got["ray"]["gamma"][1] == got["ray"]["beta"][1] == "not reproduced"
    # two tasks in flight under --timeout 600 share the contest's budget (task.Budget): none was refused for it
    assert "budget" not in str(got["ray"])
    page = json.load(open(tmp_path / "bench" / "review-0-ray" / "review.json"))
    assert any("Ray cluster" in s.get("sandbox", "") for s in page["submissions"])
    assert not any("Ray cluster" in s.get("sandbox", "")
                   for s in json.load(open(dest / "review" / "review.json"))["submissions"])
