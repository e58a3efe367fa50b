"""Contest mode: a paper plugin from outside this repository, logs tied to the
submitted code, maintainer-owned targets, and repro.review's first-to-reach ledger."""
import json
import os
import shutil
import subprocess

import plugin_tinycell
import pytest
from conftest import REPO, cli
from contest_repo import CONTEST, commit_of, contest_file, git, make_repo, repo_in

from repro import registry, train, verify
from repro.errors import ReproError
from repro.judge import ledger

@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A contestant's repository: README, requirements.txt, the plugin package, logs of seeds 0 and 1."""
    return repo_in(tmp_path_factory, "contest", "alpha")


def test_an_outside_plugin_trains_and_its_log_names_its_own_code(made):
    root, repo, plugin = made
    import hashlib

    from conftest import events

    import repro
    from repro.boundary import identity
    code = events(os.path.join(repo, "logs", "seed0"))[0]["code"]
    paper = code["paper"]
    assert (paper["package"], paper["configs"], paper["config_file"]) == ("tinycell", "tinycell/configs",
                                                                         "tinycell/configs/mlp.yaml")
    # the whole repository, as repro.boundary.identity identifies it: README.md, logs/ and .git are left out
    files = paper["repository"]["files"]
    assert sorted(files) == ["requirements.txt", "tinycell/__init__.py", "tinycell/configs/mlp.yaml",
                             "tinycell/models.py"]
    assert files["tinycell/models.py"] == hashlib.sha256(plugin_tinycell.MODELS.encode()).hexdigest()
    assert files == identity.scan(repo)[0] and identity.check_tree(events(os.path.join(repo, "logs", "seed1"))[0],
                                                                   repo) == []
    assert paper["sha256"] == paper["repository"]["sha256"] == identity.digest(files)
    assert paper["repository"]["excluded"] == list(identity.EXCLUDED) and "files" not in paper
    assert paper["git_commit"] == subprocess.run(["git", "-C", repo, "rev-parse", "HEAD~1"], capture_output=True,
                                                 text=True).stdout.strip()  # the commit before the logs'
    assert paper["git_dirty"] is False and paper["git_changes_sha256"] is None
    harness = code["harness"]
    assert harness["version"] == repro.__version__ and len(harness["sha256"]) == 64
    assert harness["sha256"] != paper["sha256"] and harness["git_commit"]


def test_plugin_discovery_is_strict(tmp_path, plugin_env, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "__init__.py").write_text("import no_such_module_here\n")
    code, _, err = cli(train.main, ["--papers", str(broken), "--list"], capsys)
    assert code == 2 and "paper plugin" in err and "No module named 'no_such_module_here'" in err
    registry._loaded = False
    os.environ.pop(registry.ENV)
    notpaper = tmp_path / "notpaper"
    notpaper.mkdir()
    (notpaper / "__init__.py").write_text("PAPER = 42\n")
    code, _, err = cli(train.main, ["--papers", str(notpaper), "--list"], capsys)
    assert code == 2 and "defines no PAPER that is a repro.paper.Paper" in err
    registry._loaded = False
    os.environ.pop(registry.ENV)
    twin = plugin_tinycell.write(str(tmp_path / "x" / "lenet5"))  # a package named like a built-in paper
    with open(os.path.join(twin, "__init__.py")) as f:
        text = f.read().replace('name = "tinycell"', 'name = "lenet5"')
    with open(os.path.join(twin, "__init__.py"), "w") as f:
        f.write(text)
    code, _, err = cli(train.main, ["--papers", twin, "--list"], capsys)
    assert code == 2 and "paper 'lenet5' is registered twice: by repro.papers.lenet5 and by" in err
    registry._loaded = False
    os.environ.pop(registry.ENV)
    clash = plugin_tinycell.write(str(tmp_path / "y" / "json"))  # a package named like an imported module
    code, _, err = cli(train.main, ["--papers", clash, "--list"], capsys)
    assert code == 2 and "a module named 'json' is already imported" in err


def test_verify_against_a_contest_ignores_the_plugins_own_bar(made, plugin_env, capsys):
    """The plugin's own target (10%) is reached; the contest's (99%) is not: the contest's decides."""
    root, repo, plugin = made
    logs = os.path.join(repo, "logs")
    code, out, _ = cli(verify.main, ["--papers", plugin, logs, "--json"], capsys)
    assert code == 0 and json.loads(out)["ok"]  # the plugin's own, low bar
    registry._loaded = False
    code, out, _ = cli(verify.main, [logs, "--json", "--contest", contest_file(root, 99.0), "--code", repo], capsys)
    report = json.loads(out)
    assert code == 1 and not report["ok"]
    (row,) = report["targets"]
    assert row["paper_value"] == 99.0 and "misses >= 99.00" in row["why"]
    assert all(r["problems"] == [] for r in report["runs"])
    assert any("the plugin's own targets are not the contest's entry" in w for r in report["runs"]
               for w in r["warnings"])


def test_a_log_from_other_code_is_refused(made, tmp_path, plugin_env, capsys):
    root, repo, plugin = made
    other = str(tmp_path / "beta")
    shutil.copytree(repo, other)
    with open(os.path.join(other, "tinycell", "models.py"), "a") as f:
        f.write("# tuned after the runs\n")
    code, out, _ = cli(verify.main, [os.path.join(other, "logs"), "--json", "--contest", contest_file(root, 30.0),
                                     "--code", other], capsys)
    problems = [p for r in json.loads(out)["runs"] for p in r["problems"]]
    assert code == 1 and any("produced by other code" in p and "tinycell/models.py" in p for p in problems)


def _submission(root, name, base, commit=None, edit=None):
    repo = os.path.join(root, name)
    shutil.copytree(base, repo)
    if edit:
        edit(repo)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "edit")
    return repo, commit or commit_of(repo)


@pytest.mark.slow
def test_review_keeps_a_first_to_reach_ledger(made, tmp_path, plugin_env, capsys):
    from repro import review
    root, repo, plugin = made

    def other_code(r):
        with open(os.path.join(r, "tinycell", "models.py"), "a") as f:
            f.write("# changed after training\n")

    def missing_requirements(r):
        os.remove(os.path.join(r, "requirements.txt"))

    # runs of their own (a submission whose weights are an earlier one's is a copy of it): beta's
    # a smoke run, gamma's a wider MLP
    beta = str(tmp_path / "beta")
    make_repo(beta, seeds=(0,), lite=True)
    gamma = str(tmp_path / "gamma")
    make_repo(gamma, hidden=33)
    subs = [  # (team, recorded, repository)
        ("beta", "2027-01-02T09:00:00+08:00", _submission(str(tmp_path), "beta-sub", beta, edit=other_code)),
        ("alpha", "2027-01-03T09:00:00+08:00", _submission(str(tmp_path), "alpha", repo)),
        ("gamma", "2027-01-04T09:00:00+08:00", _submission(str(tmp_path), "gamma-sub", gamma)),
        ("delta", "2027-01-05T09:00:00+08:00", _submission(str(tmp_path), "delta", repo, edit=missing_requirements)),
        ("eps", "2027-02-05T09:00:00+08:00", _submission(str(tmp_path), "eps", repo)),
    ]
    listing = tmp_path / "submissions.yaml"
    listing.write_text("submissions:\n" + "".join(
        f"  - {{team: {t}, paper: tinycell, repo: {r}, commit: {c}, time: \"{when}\"}}\n"
        for t, when, (r, c) in subs))
    out = str(tmp_path / "review")
    code, stdout, err = cli(review.main, [contest_file(root, 30.0), str(listing), "--out", out,
                                          "--challenge", "test"], capsys)
    assert code == 0, err
    data = json.loads(open(os.path.join(out, "review.json")).read())
    status = {s["team"]: s["status"] for s in data["submissions"]}
    assert status["beta"] == "not reproduced"  # earlier, but its logs came from other code
    why = {s["team"]: " ".join(ledger.reasons(s)) for s in data["submissions"]}
    assert status["alpha"].startswith("REPRODUCED"), why["alpha"]
    assert status["gamma"].startswith("passes, but alpha reproduced tinycell first")
    assert status["delta"] == "not reproduced"
    assert status["eps"].startswith("late")
    assert "produced by other code" in why["beta"] and "no requirements.txt" in why["delta"]
    assert "a copy of that submission" in why["delta"] and "a copy" not in why["gamma"]  # delta's runs are alpha's
    assert data["papers"] == [{**data["papers"][0], "paper": "tinycell", "reproduced_by": "alpha"}]
    alpha = next(s for s in data["submissions"] if s["team"] == "alpha")
    # the contest's replay: default replays every segment of a run this short
    assert all(len(r["replay"]) == 3 and all(seg["exact"] for seg in r["replay"]) for r in alpha["runs"])
    assert all(r["checks"][-2:] == ["recompute", "replay"] and r["coverage_text"].endswith("every segment replayed")
               for r in alpha["runs"]) and alpha["full_review"]
    md = open(os.path.join(out, "status.md")).read()
    assert "| tinycell | mlp |" in md and "reproduced | alpha |" in md
    assert os.path.isfile(os.path.join(out, "index.html")) and os.path.isfile(os.path.join(out, alpha["page"]))


def test_a_log_only_review_never_imports_the_submitted_code(made, tmp_path, plugin_env, capsys):
    from repro import review
    root, repo, plugin = made
    marker = str(tmp_path / "imported")
    sub = str(tmp_path / "zeta")
    shutil.copytree(repo, sub)
    plugin_tinycell.write(os.path.join(sub, "tinycell"), side_effect=marker)
    git(sub, "add", "-A")
    git(sub, "commit", "-q", "-m", "a plugin whose import writes a file")
    listing = tmp_path / "submissions.yaml"
    listing.write_text(f"submissions:\n  - {{team: zeta, paper: tinycell, repo: {sub}, commit: {commit_of(sub)}, "
                       f"time: \"2027-01-02T09:00:00+08:00\"}}\n")
    code, _, err = cli(review.main, [contest_file(root, 30.0), str(listing), "--out", str(tmp_path / "r"),
                                     "--logs-only"], capsys)
    assert code == 0, err
    assert not os.path.exists(marker)
    # and the logs do not match the code now in the tree (its __init__.py changed)
    data = json.loads(open(tmp_path / "r" / "review.json").read())
    assert "produced by other code" in " ".join(ledger.reasons(data["submissions"][0]))
    # the target's reason names the runs left out, and every output lists them where it says (issue 35:
    # no '(2 run(s) excluded, see below)' where nothing follows below)
    (row,) = data["submissions"][0]["targets"]
    assert row["excluded"] == 2 and "see below" not in row["why"]
    for name in os.listdir(tmp_path / "r"):
        assert "see below" not in open(tmp_path / "r" / name, encoding="utf-8").read(), name
    assert "(2 run(s) excluded)" in " ".join(ledger.reasons(data["submissions"][0]))


def _review(root, tmp_path, capsys, subs, out, *args):
    listing = tmp_path / f"{os.path.basename(out)}.yaml"
    listing.write_text("submissions:\n" + "".join(
        f"  - {{team: {t}, paper: tinycell, repo: {r}, commit: {c}, time: \"{when}\"}}\n" for t, when, (r, c) in subs))
    from repro import review
    code, _, err = cli(review.main, [contest_file(root, 30.0), str(listing), "--out", out, *args], capsys)
    assert code == 0, err
    data = json.loads(open(os.path.join(out, "review.json")).read())
    return data, {s["team"]: s for s in data["submissions"]}


def test_a_copys_targets_are_judged_after_its_refusal(made, tmp_path, plugin_env, capsys):
    """Issue 35: a copy's page said NOT REPRODUCED over '1 of 1 targets reached' and a green PASS (the
    copy was refused after its target was judged). A copied run never counts, and a refused
    submission (no requirements.txt) reaches no target: one verdict, told the same everywhere."""
    root, repo, plugin = made
    subs = [("alpha", "2027-01-02T09:00:00+08:00", _submission(str(tmp_path), "alpha", repo)),
            ("beta", "2027-01-03T09:00:00+08:00", _submission(str(tmp_path), "beta", repo)),
            ("gamma", "2027-01-04T09:00:00+08:00",
             _submission(str(tmp_path), "gamma", str(tmp_path / "alpha"),
                         edit=lambda r: os.remove(os.path.join(r, "requirements.txt"))))]
    out = str(tmp_path / "r")
    _, by_team = _review(root, tmp_path, capsys, subs, out, "--logs-only")
    assert by_team["alpha"]["ok"] and by_team["alpha"]["targets"][0]["passed"]
    beta = by_team["beta"]
    (row,) = beta["targets"]
    assert not beta["ok"] and not row["passed"] and row["excluded"] == 2, row
    assert all(r["copy_of"]["team"] == "alpha" for r in beta["runs"])
    page = open(os.path.join(out, beta["page"]), encoding="utf-8").read()
    assert "0 of 1 targets reached; 0 of 2 runs count" in page and "class=\"PASS\"" not in page
    (row,) = by_team["gamma"]["targets"]
    assert not row["passed"] and row["why"].startswith("not reached: the submission is refused: no requirements.txt")
    page = open(os.path.join(out, by_team["gamma"]["page"]), encoding="utf-8").read()
    assert "0 of 1 targets reached" in page and "class=\"PASS\"" not in page


def test_which_checks_ran_is_told_one_way(made, tmp_path, plugin_env, capsys):
    """Issue 35: status.md, the index and the page's header and its verdict line say the same checks."""
    root, repo, plugin = made
    out = str(tmp_path / "r")
    _, by_team = _review(root, tmp_path, capsys, [("alpha", "2027-01-02T09:00:00+08:00",
                                                  _submission(str(tmp_path), "alpha", repo))], out, "--logs-only")
    alpha = by_team["alpha"]
    told = ledger.checks_told(alpha)
    assert told == "logs; code identity"
    page = open(os.path.join(out, alpha["page"]), encoding="utf-8").read()
    assert f"<th>checks that ran</th><td>{told}</td>" in page
    assert page.split("Checks that ran: ")[1].startswith(told + ";")
    assert f"| {told} |" in open(os.path.join(out, "status.md")).read()
    assert f"<td>{told}</td>" in open(os.path.join(out, "index.html")).read()


@pytest.mark.slow
def test_a_quick_pass_keeps_what_the_full_review_found(made, tmp_path, plugin_env, capsys):
    """Issue 35: a --logs-only pass into the --out of a full review erased it (status.md and the index
    went back to 'pending full review'); the full review's result stands beside the quick pass's."""
    root, repo, plugin = made
    subs = [("alpha", "2027-01-02T09:00:00+08:00", _submission(str(tmp_path), "alpha", repo))]
    out = str(tmp_path / "r")
    first, by_team = _review(root, tmp_path, capsys, subs, out, "--no-sandbox", "--challenge", "c")
    full_page = by_team["alpha"]["page"]
    assert by_team["alpha"]["status"].startswith("REPRODUCED") and first["reviewed_at"]
    data, by_team = _review(root, tmp_path, capsys, subs, out, "--logs-only")
    assert by_team["alpha"]["status"].startswith("pending full review")
    assert data["last_full_review"]["at"] == first["reviewed_at"]
    status = open(os.path.join(out, "status.md")).read()
    assert f"The last full review ({first['reviewed_at']}) stands" in status
    assert "REPRODUCED: first to reach the bar" in status and "reproduced by alpha" in status
    assert "REPRODUCED" in open(os.path.join(out, full_page)).read()  # its page is still there
    assert "REPRODUCED: first to reach the bar" in open(os.path.join(out, "index.html")).read()
    again, _ = _review(root, tmp_path, capsys, subs, out, "--logs-only")  # a second quick pass keeps it too
    assert again["last_full_review"] == data["last_full_review"]


def test_bad_contest_and_submission_files_are_one_line(tmp_path, capsys):
    from repro import review
    from repro.judge.contest import read_contest
    good = CONTEST.format(value=30.0)
    for text, message in [
            (good.replace("value: 30.0", "value: lots"), "value must be float"),
            (good.replace("measure: accuracy", "measure: vibes"), "measure 'vibes' is not a harness metric"),
            (good.replace('deadline: "2027-01-31T23:59:59+08:00"', 'deadline: "2027-01-31"'), "has no time zone"),
            (good.replace("replay: default", "replay: 1"), "replay must be >= 2"),
            (good + "bonus: 1\n", "unknown key 'bonus'"),
            (good.replace("policy: mean_of_n", "policy: best_of_n"), "policy must be one of")]:
        path = tmp_path / "c.yaml"
        path.write_text(text)
        with pytest.raises(ReproError, match=message):
            read_contest(str(path))
    path = tmp_path / "c.yaml"
    path.write_text(good)
    listing = tmp_path / "s.yaml"
    listing.write_text("submissions: 3\n")
    code, _, err = cli(review.main, [str(path), str(listing), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "needs a list" in err and err.count("\n") == 1, err
    # a bad listing is that submission's own reason (tests/test_review_hostile.py has many more)
    for text, message in [("submissions:\n  - {team: a, paper: tinycell}\n", "it has no repo; it has no commit"),
                          ("submissions:\n  - {team: a, paper: other, repo: x, commit: abcdefg, time: '2027-01-01T00:00:00Z'}\n",
                           "its paper 'other' is not in the contest")]:
        listing.write_text(text)
        code, _, err = cli(review.main, [str(path), str(listing), "--out", str(tmp_path / "r"), "--logs-only"], capsys)
        assert code == 0, err
        (sub,) = json.loads((tmp_path / "r" / "review.json").read_text())["submissions"]
        assert message in "; ".join(sub["problems"]) and sub["status"] == "not reproduced", sub["problems"]


def test_the_example_contest_file_reads():
    from repro.judge.contest import read_contest
    contest = read_contest(os.path.join(REPO, "configs", "contests", "mnist1d.yaml"))
    assert [(e.plugin, e.experiment) for e in contest.papers] == [("mnist1d_repro", "cnn"),
                                                                   ("mnist1d_repro", "cnn_shuffled")]
    # the bar is the registered one: the same numbers a plugin-side verify uses
    from repro.registry import get_paper
    paper = get_paper("mnist1d")
    for e in contest.papers:
        (t,) = paper.experiment(e.experiment).targets
        assert (e.value, e.tolerance, e.direction) == (t.paper_value, t.tolerance, t.direction)
        assert e.eval_data == paper.experiment(e.experiment).eval_data
        # a private evaluation drawn by the harness's own generator of the same cell
        assert e.private_eval == {"fresh": {"n": 4000, "source": f"mnist1d/{e.experiment}"}}


@pytest.mark.parametrize("source, said", [
    ("mnist1d/cnn_shuffled", "private_eval.fresh.source mnist1d/cnn_shuffled registers test as 1000 samples, "
                             "sha256 c7bfd2223a68…, not the entry's (1000 samples, sha256 5b45252af737…)"),
    ("mnist1d/nothing", "private_eval.fresh.source mnist1d/nothing: not an experiment registered with this harness"),
])
def test_a_private_source_that_draws_from_another_split_than_the_entrys_is_refused_in_one_line(tmp_path, capsys,
                                                                                                source, said):
    from repro import review
    text = open(os.path.join(REPO, "configs", "contests", "mnist1d.yaml")).read()
    path = tmp_path / "contest.yaml"  # the unshuffled entry's private samples drawn by the shuffled cell
    path.write_text(text.replace("source: mnist1d/cnn}", f"source: {source}}}", 1))
    listing = tmp_path / "subs.yaml"
    listing.write_text("submissions: []\n")
    code, _, err = cli(review.main, [str(path), str(listing), "--out", str(tmp_path / "r"), "--private-seed", "7"],
                       capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"contest file {path}: papers[0]: {said}" in err, err
