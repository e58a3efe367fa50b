"""repro.review against hostile submissions (issue 22): each is caught with its own
reason in one line while every other submission's result stays what it is alone;
nothing a submission holds is followed, opened when it is not a regular file, read
whole when it is huge, or run (its .git/config); names are escaped in every output;
receipts pin a submission; a copy of an earlier submission's runs fails; a
--logs-only review names no winner; contest files are checked strictly."""
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess

import pytest
from conftest import cli
from contest_repo import CONTEST, commit_of, contest_file, git, repo_in

from repro import review
from repro.boundary import safegit
from repro.errors import ReproError
from repro.judge import assess, copies, ledger, receipts, submissions
from repro.judge.contest import read_contest
from repro.pages import contest as contest_pages


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The honest repository every submission here starts from (tests/contest_repo.py)."""
    root, repo, _ = repo_in(tmp_path_factory, "hostile", "base")
    return str(root), repo


@contextlib.contextmanager
def deadline(seconds):
    """Fail (instead of hanging the suite) when the body takes longer: a FIFO opened for reading blocks."""
    def expire(*_):
        raise TimeoutError(f"took over {seconds} s (a FIFO opened, or a huge file read?)")
    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def submission(root, name, base_repo, edit=None, commit=True):
    """A copy of the base repository as submission `name`: (repo, announced commit)."""
    repo = os.path.join(root, name)
    shutil.copytree(base_repo, repo, symlinks=True)
    announced = commit_of(repo)  # before the edit: git itself may hang on what it leaves
    if edit:
        announced = edit(repo) or announced  # an edit that commits itself says its commit
        if commit:
            git(repo, "add", "-A")
            git(repo, "commit", "-q", "-m", "edit")
            announced = commit_of(repo)
    return repo, announced


def listing(path, subs):
    """A submissions file of (team, repo, commit, time), written as JSON (valid YAML) so any team name fits."""
    items = [{"team": t, "paper": "tinycell", "repo": r, "commit": c, "time": when} for t, r, c, when in subs]
    with open(path, "w") as f:
        json.dump({"submissions": items}, f)
    return path


def run_review(root, out, subs, capsys, *args, value=30.0):
    path = listing(os.path.join(root, f"{os.path.basename(out)}.yaml"), subs)
    with deadline(240):
        code, stdout, err = cli(review.main, [contest_file(root, value), path, "--out", out, "--logs-only", *args],
                                capsys)
    assert code == 0, err
    data = json.load(open(os.path.join(out, "review.json")))
    return data, {s["team"]: s for s in data["submissions"]}, stdout


def when(day):
    return f"2027-01-{day:02d}T09:00:00+08:00"


def outputs(out):
    """Every file the review wrote, as text."""
    return {name: open(os.path.join(out, name), encoding="utf-8").read() for name in sorted(os.listdir(out))}


def comparable(s):
    """What a submission's result is, apart from where it stands in the listing."""
    return {"ok": s["ok"], "status": s["status"], "problems": s["problems"], "checks": s["checks"],
            "runs": [(r["path"], r["problems"], r["checks"]) for r in s["runs"]], "reasons": ledger.reasons(s)}


# ------------------------------------------------------------------ the corpus

MARKERS = ("fsmonitor", "clean", "process", "smudge", "external", "textconv", "pager", "hook")


def hostile_git_config(marker_dir):
    def edit(repo):
        with open(os.path.join(repo, ".gitattributes"), "w") as f:
            f.write("* filter=x diff=x\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "attributes (no filter configured yet)")
        announced = commit_of(repo)
        cmd = lambda what: f"touch {os.path.join(marker_dir, what)}"
        with open(os.path.join(repo, ".git", "config"), "a") as f:
            f.write(f'[core]\n\tfsmonitor = "{cmd("fsmonitor")}; true"\n\tpager = "{cmd("pager")}; cat"\n'
                    f'\thooksPath = hooks\n'
                    f'[filter "x"]\n\tclean = "{cmd("clean")}; cat"\n\tsmudge = "{cmd("smudge")}; cat"\n'
                    f'\tprocess = "{cmd("process")}"\n\trequired = true\n'
                    f'[diff]\n\texternal = "{cmd("external")}"\n[diff "x"]\n\ttextconv = "{cmd("textconv")}; cat"\n')
        os.makedirs(os.path.join(repo, ".git", "hooks"), exist_ok=True)
        for hook in ("post-checkout", "pre-auto-gc", "post-index-change"):
            path = os.path.join(repo, ".git", "hooks", hook)
            with open(path, "w") as f:
                f.write(f"#!/bin/sh\n{cmd('hook')}\n")
            os.chmod(path, 0o755)
        for dirpath, _, files in os.walk(repo):  # racily clean: git status would run the clean filter
            for name in files:
                if ".git" not in dirpath.split(os.sep):
                    os.utime(os.path.join(dirpath, name))
        return announced
    return edit


@pytest.mark.slow
def test_hostile_submissions_are_each_caught_and_change_no_other_result(base, tmp_path, capsys):
    root, base_repo = str(tmp_path), base[1]
    markers = tmp_path / "markers"
    markers.mkdir()

    def fifo_at(rel):
        def edit(repo):
            path = os.path.join(repo, rel)
            if os.path.exists(path):
                os.remove(path)
            os.mkfifo(path)
        return edit

    def dangling_link(repo):
        os.symlink("/nonexistent/secret", os.path.join(repo, "logs", "seed0", "notes.txt"))

    def link_out(repo):
        os.remove(os.path.join(repo, "README.md"))
        os.symlink(os.path.expanduser("~/.bash_history"), os.path.join(repo, "README.md"))

    def sparse(repo):
        with open(os.path.join(repo, "logs", "huge.bin"), "wb") as f:
            f.truncate(100 * 10**9)  # 100 GB, sparse: it must never be read

    def odd_names(repo):
        for name in ("evil\n| <b>.txt", b"\xff.bin".decode("utf-8", "surrogateescape")):
            with open(os.path.join(repo, "logs", name), "w") as f:
                f.write("x")

    alpha = submission(root, "alpha", base_repo)
    corpus = [  # (team, (repo, commit), the reason it must be caught with)
        ("oddnames", submission(root, "oddnames", base_repo, odd_names, commit=False),
         "2 not in the commit (logs/evil\\n| <b>.txt, logs/\\xff.bin): review a clean checkout"),
        ("dangling", submission(root, "dangling", base_repo, dangling_link),
         "logs/seed0/notes.txt is a symbolic link: a submission holds regular files and folders only"),
        ("linkout", submission(root, "linkout", base_repo, link_out),
         "README.md is a symbolic link, not a regular file"),
        ("fifo-readme", submission(root, "fifo-readme", base_repo, fifo_at("README.md"), commit=False),
         "README.md is a FIFO (named pipe), not a regular file"),
        ("fifo-req", submission(root, "fifo-req", base_repo, fifo_at("requirements.txt"), commit=False),
         "requirements.txt is a FIFO (named pipe), not a regular file"),
        ("fifo-logs", submission(root, "fifo-logs", base_repo, fifo_at("logs/seed1/events.jsonl"), commit=False),
         "logs/seed1/events.jsonl is a FIFO (named pipe): a submission holds regular files and folders only"),
        ("fifo-git", submission(root, "fifo-git", base_repo, fifo_at(".git/HEAD"), commit=False),
         ".git/HEAD is a FIFO (named pipe): git is not run on this repository"),
        ("sparse", submission(root, "sparse", base_repo, sparse, commit=False),
         "logs/huge.bin is 100,000,000,000 bytes, over the 16 GiB a file of a submission may have (not read)"),
        ("bad\nteam | x <!-- y", submission(root, "badname", base_repo),
         "the team name 'bad\\nteam | x <!-- y' is not a name"),
        ("gitconfig", submission(root, "gitconfig", base_repo, hostile_git_config(str(markers)), commit=False),
         "a copy of that submission"),  # its config ran nothing (below); its runs are alpha's
        ("copycat", submission(root, "copycat", base_repo),
         "its final weights are identical to those of alpha's run logs/seed0 (tinycell, recorded earlier: "
         "2027-01-02T09:00:00+08:00): a copy of that submission"),
    ]
    subs = [("alpha", *alpha, when(2))] + [(t, r, c, when(3 + i)) for i, (t, (r, c), _) in enumerate(corpus)]
    out = str(tmp_path / "review")
    data, by_team, _ = run_review(root, out, subs, capsys)

    for team, _, reason in corpus:
        why = ledger.reasons(by_team[team])
        assert any(reason in w for w in why), (team, why)
        assert all("\n" not in w for w in why) and not by_team[team]["ok"], (team, why)
        assert by_team[team]["status"] == "not reproduced"
    # the hostile config's checkout was read and compared (it is clean: only its runs are alpha's), yet
    # nothing the git config names ran, though `git status` there runs it (the trap works)
    # (its copied runs do not count, so its target is not reached: issue 35)
    target, *runs = ledger.reasons(by_team["gitconfig"])
    assert by_team["gitconfig"]["tree"] and target.endswith("no run of this experiment counts (2 run(s) excluded)")
    assert runs and all("a copy of that submission" in w for w in runs), runs
    assert sorted(os.listdir(markers)) == []
    subprocess.run(["git", "-C", os.path.join(root, "gitconfig"), "status", "--porcelain"], capture_output=True,
                   timeout=60)
    assert "fsmonitor" in os.listdir(markers)
    # the honest submission's result is what it is when reviewed alone
    _, alone, _ = run_review(root, str(tmp_path / "alone"), subs[:1], capsys)
    assert comparable(by_team["alpha"]) == comparable(alone["alpha"])
    assert by_team["alpha"]["ok"] and by_team["alpha"]["problems"] == []

    # names are escaped everywhere; no path of this machine appears; every page is distinct
    files = outputs(out)
    assert "<!--" not in files["status.md"] and "<!--" not in files["index.html"]
    rows = [ln for ln in files["status.md"].splitlines() if ln.startswith("| ")]
    assert all(ln.count(" | ") == rows[-1].count(" | ") for ln in rows[-len(subs):])
    assert "bad team &#124; x &#60;!-- y" in files["status.md"]
    pages = [s["page"] for s in data["submissions"]]
    assert len(set(pages)) == len(pages) and all(p in files for p in pages)
    for name, text in files.items():
        for secret in {str(tmp_path), os.path.realpath(str(tmp_path)), root, os.path.expanduser("~") + "/"}:
            assert secret not in text, (name, secret)
        assert "<!-- y" not in text, name
    page = files[by_team["copycat"]["page"]]
    for shown in ("copycat", "tinycell", by_team["copycat"]["commit"], by_team["copycat"]["tree"], when(13),
                  "not reproduced", "a copy of that submission"):
        assert shown in page, shown


@pytest.mark.slow
def test_a_logs_only_review_names_no_winner(base, tmp_path, capsys):
    root, base_repo = str(tmp_path), base[1]
    alpha = submission(root, "alpha", base_repo)
    data, by_team, stdout = run_review(root, str(tmp_path / "r"), [("alpha", *alpha, when(2))], capsys)
    alpha = by_team["alpha"]
    assert alpha["ok"] and not alpha["full_review"] and alpha["status"].startswith("pending full review")
    assert data["papers"][0]["status"] == "pending full review" and data["papers"][0]["reproduced_by"] is None
    assert all(r["checks"] == ["logs", "code identity"] and r["coverage"] is None for r in alpha["runs"])
    files = outputs(str(tmp_path / "r"))
    assert "REPRODUCED" not in files["status.md"] and "Logs-only review" in files["status.md"]
    page = files[alpha["page"]]
    assert "PENDING FULL REVIEW" in page and "REPRODUCED<" not in page
    assert "recompute" not in page.split("Checks that ran:")[1].split("</span>")[0]
    assert "no paper code ran" in page and "not replayed" in page


@pytest.mark.slow
def test_a_changed_submission_fails_its_receipt_and_receipts_are_never_lost(base, tmp_path, capsys):
    root, base_repo = str(tmp_path), base[1]
    alpha = submission(root, "alpha", base_repo)
    beta = submission(root, "beta", base_repo)
    out = str(tmp_path / "r")
    subs = [("alpha", *alpha, when(2)), ("beta", *beta, when(3))]
    run_review(root, out, subs, capsys)
    receipts = json.load(open(os.path.join(out, "receipts.json")))["receipts"]
    assert [(r["team"], r["commit"]) for r in receipts] == [("alpha", alpha[1]), ("beta", beta[1])]
    # alpha's repository is replaced by a later edit (its listing updated to match): the receipt says so
    with open(os.path.join(alpha[0], "README.md"), "a") as f:
        f.write("improved after the deadline\n")
    git(alpha[0], "commit", "-qam", "later")
    subs[0] = ("alpha", alpha[0], commit_of(alpha[0]), when(2))
    _, by_team, _ = run_review(root, out, subs, capsys)
    why = " ".join(ledger.reasons(by_team["alpha"]))
    assert "it changed since its receipt" in why and f"commit {alpha[1][:12]}" in why and not by_team["alpha"]["ok"]
    assert by_team["beta"]["ok"] is False and "a copy of that submission" in " ".join(ledger.reasons(by_team["beta"]))
    assert json.load(open(os.path.join(out, "receipts.json")))["receipts"] == receipts  # never overwritten
    # a damaged receipts file stops the review with one line, and is left as it was
    with open(os.path.join(out, "receipts.json"), "w") as f:
        f.write("{not json")
    path = listing(os.path.join(root, "again.yaml"), subs)
    code, _, err = cli(review.main, [contest_file(root, 30.0), path, "--out", out, "--logs-only"], capsys)
    assert code == 2 and "receipts file" in err and err.count("\n") == 1
    assert open(os.path.join(out, "receipts.json")).read() == "{not json"


@pytest.mark.slow
def test_a_copy_is_flagged_on_the_later_submission_only(base, tmp_path, capsys):
    """Listed in the other order, the copy is the honest team's: the earlier-recorded one keeps its runs."""
    root, base_repo = str(tmp_path), base[1]
    first = submission(root, "first", base_repo)
    second = submission(root, "second", base_repo)
    _, by_team, _ = run_review(root, str(tmp_path / "r"),
                               [("second", *second, when(4)), ("first", *first, when(3))], capsys)
    assert by_team["first"]["ok"] and by_team["first"]["problems"] == []
    runs = {r["path"]: r for r in by_team["second"]["runs"]}
    assert runs["logs/seed0"]["copy_of"] == {"team": "first", "time": when(3), "run": "logs/seed0"}
    assert not by_team["second"]["ok"]


@pytest.mark.slow
@pytest.mark.skipif(not __import__("repro.boundary.sandbox", fromlist=["x"]).available(),
                    reason="bubblewrap (bwrap) is not installed or usable here")
def test_a_copy_found_from_the_logs_is_refused_before_its_code_runs(base, tmp_path, capsys):
    """A full review reads a submission's logs first: the copy's weights are the earlier team's,
    so its code is never run (its audit would only repeat the earlier one's)."""
    root, base_repo = str(tmp_path), base[1]
    first = submission(root, "first", base_repo)
    second = submission(root, "second", base_repo)
    path = listing(os.path.join(root, "full.yaml"), [("first", *first, when(3)), ("second", *second, when(4))])
    out = str(tmp_path / "full")
    with deadline(600):
        code, _, err = cli(review.main, [contest_file(root, 30.0), path, "--out", out, "--challenge", "c"], capsys)
    assert code == 0, err
    by_team = {s["team"]: s for s in json.load(open(os.path.join(out, "review.json")))["submissions"]}
    assert by_team["first"]["ok"] and by_team["first"]["full_review"]
    copy = by_team["second"]
    assert not copy["ok"] and "refused as a copy from its logs, before running its code" in copy["problems"]
    assert all("recomputed" not in r or r["recomputed"] is None for r in copy["runs"])
    assert all(not r.get("replay") for r in copy["runs"]), copy["runs"]


@pytest.mark.slow
def test_a_team_resubmitting_its_own_runs_is_not_a_copy(base, tmp_path, capsys):
    """A team's second submission (its layout fixed) carries its own runs: not another team's copy."""
    root, base_repo = str(tmp_path), base[1]
    broken = submission(root, "first", base_repo, lambda r: os.remove(os.path.join(r, "requirements.txt")))
    fixed = submission(root, "second", base_repo)
    data, _, _ = run_review(root, str(tmp_path / "r"), [("alpha", *broken, when(2)), ("alpha", *fixed, when(3))],
                            capsys)
    first, second = data["submissions"]
    assert not first["ok"] and "no requirements.txt" in first["problems"]
    assert second["ok"] and second["status"].startswith("pending full review"), ledger.reasons(second)
    data, _, _ = run_review(root, str(tmp_path / "r2"), [("alpha", *fixed, when(3))] * 2, capsys)
    first, twice = data["submissions"]
    assert first["ok"] and twice["problems"] == [
        "'alpha' / tinycell at 2027-01-03T09:00:00+08:00 is listed twice in the submissions file (a receipt names "
        "one submission by team, paper and time): the earlier listing is reviewed"]


@pytest.mark.slow
def test_one_team_name_is_one_team(base, tmp_path, capsys):
    """Another repository recorded under a team's name (another root commit, or another remote URL
    in its git config) is flagged for a human on both submissions, each naming the other, and when it
    carries the first's runs it is a copy; the same repository resubmitted may carry them."""
    root, base_repo = str(tmp_path), base[1]
    alpha = submission(root, "alpha", base_repo)
    git(alpha[0], "remote", "add", "origin", "https://github.com/alpha/tinycell.git")
    resubmitted = submission(root, "resubmitted", alpha[0])
    git(resubmitted[0], "remote", "set-url", "origin", "git@github.com:Alpha/tinycell")  # the same remote
    rooted = os.path.join(root, "rooted")  # the same files and runs, committed in a repository of its own
    shutil.copytree(base_repo, rooted, ignore=shutil.ignore_patterns(".git"))
    git(rooted, "init", "-q")
    git(rooted, "add", "-A")
    git(rooted, "commit", "-q", "-m", "all of it")
    elsewhere = submission(root, "elsewhere", alpha[0])
    git(elsewhere[0], "remote", "set-url", "origin", "https://github.com/mallory/tinycell.git")
    subs = [("alpha", *alpha, when(2)), ("alpha", *resubmitted, when(3)), ("alpha", rooted, commit_of(rooted), when(4)),
            ("alpha", *elsewhere, when(5)), ("beta", *submission(root, "beta", base_repo), when(6))]
    out = str(tmp_path / "r")
    data, _, _ = run_review(root, out, subs, capsys)
    first, again, other_root, other_remote, beta = data["submissions"]
    assert first["ok"] and again["ok"] and again["flags"] == [], ledger.reasons(again)
    for r, why in ((other_root, "another root commit"), (other_remote, "another remote URL in its git config")):
        target, *reasons = ledger.reasons(r)  # its copied runs do not count: the target is not reached
        assert "no run of this experiment counts (2 run(s) excluded)" in target, target
        assert not r["ok"] and reasons and all("a copy of that submission (recorded under the same team name, but "
                                               f"{why}" in w for w in reasons), reasons
        (flag,) = r["flags"]
        assert flag.startswith(f"the team name 'alpha' was recorded earlier for another repository (tinycell at "
                               f"{when(2)}, commit {alpha[1][:12]}; {why}") and flag.endswith("one team"), flag
        assert any(f"(tinycell at {r['time']}, commit {r['commit'][:12]}; {why}" in f for f in first["flags"])
    assert len(first["flags"]) == 2 and beta["flags"] == [] and not beta["ok"]  # beta: another team's copy
    files = outputs(out)
    section = files["status.md"].split("### For a human")[1]
    assert section.count("- alpha / tinycell") == 4 and "json" not in section
    for r in (first, other_root, other_remote):
        assert "For a human: the team name" in files[r["page"]]
    assert files["index.html"].count("for a human: the team name") >= 3  # a row of each (its cell may be cut)


@pytest.mark.slow
def test_one_broken_submission_does_not_stop_the_others(base, tmp_path, capsys, monkeypatch):
    """Any exception while reviewing one (not only a ReproError) is its reason; status.md is written."""
    root, base_repo = str(tmp_path), base[1]
    alpha = submission(root, "alpha", base_repo)
    beta = submission(root, "beta", base_repo)
    real = submissions.check_layout

    def explode(repo, plugin, entries=None):
        if repo.endswith("beta"):
            raise OSError(5, "Input/output error", os.path.join(repo, "README.md"))
        return real(repo, plugin, entries)

    monkeypatch.setattr(assess, "check_layout", explode)
    _, by_team, _ = run_review(root, str(tmp_path / "r"), [("alpha", *alpha, when(2)), ("beta", *beta, when(3))],
                               capsys)
    (why,) = by_team["beta"]["problems"]
    assert why.startswith("the review of 'beta' / tinycell stopped: OSError") and "README.md" in why
    assert str(tmp_path) not in why and by_team["alpha"]["ok"]
    assert os.path.isfile(tmp_path / "r" / "status.md")


@pytest.mark.slow
def test_a_bad_listing_is_that_submissions_reason_and_the_others_are_reviewed(base, tmp_path, capsys):
    """Whatever one listing of the submissions file holds (a NUL or another control character in any
    field, a value that is not text, an over-long one, a missing or unknown key, a paper the contest
    lacks, a time without its zone, a second listing of the same submission), it is that submission's
    one line; the others are reviewed as if it were not there and status.md is written."""
    root, base_repo = str(tmp_path), base[1]
    alpha, announced = submission(root, "alpha", base_repo)
    good = {"team": "alpha", "paper": "tinycell", "repo": alpha, "commit": announced, "time": when(2)}
    bad = [  # (what the listing changes, what its one line says)
        ({"team": "nul", "repo": alpha + "\0/x"}, "its repo '"),
        ({"team": "nul-team\0"}, "the team name 'nul-team\\x00' is not a name"),
        ({"team": "esc", "paper": "tinycell\x1b[2J"}, "its paper 'tinycell\\x1b[2J' holds a control character"),
        ({"team": "bell", "commit": announced[:12] + "\x07"}, f"its commit '{announced[:12]}\\x07' holds"),
        ({"team": "tab", "time": when(4) + "\t"}, f"its time '{when(4)}\\t' holds a control character"),
        ({"team": 12345}, "its team must be non-empty text, not int 12345"),
        ({"team": "list", "repo": ["a", "b"]}, "its repo must be non-empty text, not list"),
        ({"team": "empty", "paper": ""}, "its paper must be non-empty text"),
        ({"team": "long", "repo": "x" * 100_000}, "its repo is 100,000 characters long, over the 4096"),
        ({"team": "t" * 10_000}, "its team is 10,000 characters long, over the 64"),
        ({"team": "nozone", "time": "2027-01-04T09:00:00"}, "has no time zone"),
        ({"team": "notime", "time": "soon"}, "is not an ISO 8601 time"),
        ({"team": "other", "paper": "mnist1d"}, "its paper 'mnist1d' is not in the contest"),
        ({"team": "extra", "bonus": "\0"}, "it has an unknown key 'bonus'"),
        ({"team": "missing", "commit": None}, "it has no commit"),
        ({}, "is listed twice in the submissions file"),
    ]
    items = [good]
    for i, (change, _) in enumerate(bad):
        item = {**good, "time": when(3 + i % 20), **change}
        items.append({k: v for k, v in item.items() if v is not None})
    items[-1] = dict(good)  # the second listing of alpha's submission
    items.append(["not", "a", "mapping"])
    bad.append(({}, "submissions[17] is list ['not', 'a', 'mapping'], not a mapping"))
    path = os.path.join(root, "s.yaml")
    with open(path, "w") as f:
        json.dump({"submissions": items}, f)
    out = str(tmp_path / "r")
    with deadline(240):
        code, stdout, err = cli(review.main, [contest_file(root, 30.0), path, "--out", out, "--logs-only"], capsys)
    assert code == 0 and "Traceback" not in err + stdout, err
    data = json.load(open(os.path.join(out, "review.json")))
    results = data["submissions"]
    assert len(results) == len(items) and os.path.isfile(os.path.join(out, "status.md"))
    first = next(r for r in results if r["team"] == "alpha" and r["ok"])
    _, alone, _ = run_review(root, str(tmp_path / "alone"), [("alpha", alpha, announced, when(2))], capsys)
    assert comparable(first) == comparable(alone["alpha"])
    others = [r for r in results if r is not first]
    assert len(others) == len(bad)
    for _, message in bad:
        found = [r for r in others if any(message in w for w in ledger.reasons(r))]
        assert len(found) == 1, (message, [ledger.reasons(r) for r in others])
        why = ledger.reasons(found[0])
        r = found[0]
        assert not r["ok"] and r["status"] == "not reproduced" and all(w.isprintable() for w in why), why
    files = outputs(out)
    assert "\0" not in files["status.md"] and "\x1b" not in files["status.md"] + files["index.html"]


def test_a_repository_is_told_by_its_root_commits_and_remotes():
    same = ("https://github.com/Alpha/tinycell.git", "git@github.com:alpha/tinycell", "ssh://git@github.com:22/alpha/"
            "tinycell.git/", "https://user:token@github.com/alpha/tinycell/")
    assert {safegit._remote_key(u) for u in same} == {"github.com/alpha/tinycell"}  # no user, no password
    assert safegit._remote_key("https://github.com/mallory/tinycell") != "github.com/alpha/tinycell"
    of = lambda roots, remotes=(): {"_repository": {"roots": list(roots), "remotes": list(remotes)}}
    assert copies.same_repository(of("a"), of("ab"))
    assert copies.same_repository(of("a", ["x"]), of("a"))  # a remote on one side only: its roots decide
    assert not copies.same_repository(of("a"), of("b"))
    assert not copies.same_repository(of("a", ["x"]), of("a", ["y"]))
    assert not copies.same_repository(of("a"), {"_repository": None})  # not a readable checkout: never the same


WORKER_FAILURES = ("timed out", "crashed", "ran out of its time budget", "wrote malformed output",
                   "wrote too much output", "was refused earlier in this submission")


def test_worker_failures_are_shown_as_given_and_the_workers_log_is_linked_nowhere(tmp_path):
    """How a worker failed (its category and digest, issue 33) reaches status.md, the index,
    review.json and the page word for word; the full text goes to workers.log, named by no output."""
    contest = read_contest(contest_file(str(tmp_path), 30.0))
    said = [f"the worker {what} (digest {i:012x})" for i, what in enumerate(WORKER_FAILURES)]
    run = {"path": "logs/seed0", "paper": "tinycell", "exp": "mlp", "problems": said[3:], "checks": ["logs"],
           "coverage": None}
    r = {"team": "alpha", "paper": "tinycell", "commit": "a" * 40, "time": when(2), "late": False,
         "problems": said[:3], "ok": False, "head": None, "tree": None, "checks": [], "runs": [run], "targets": [],
         "full_review": False, "flags": [], "page": "alpha.html"}
    papers = ledger.ledger([r], contest)
    options = submissions.ReviewOptions(recompute=False, replay=False)
    out = str(tmp_path / "r")
    os.makedirs(out)
    contest_pages.write_worker_log(out, ["the worker's whole story"])
    contest_pages.write_page(r, out, options)
    texts = {"status.md": contest_pages.status_markdown(contest, papers, [r], options),
             "index.html": contest_pages.index_html(contest, papers, [r], options),
             "review.json": contest_pages.to_json({"submissions": [contest_pages.public(r)]}),
             "page": open(os.path.join(out, "alpha.html")).read()}
    for name, text in texts.items():
        shown = said[:3] if name == "page" else said  # the page's runs come from verify's own objects
        assert all(s in text for s in shown), (name, [s for s in shown if s not in text])
        assert contest_pages.WORKER_LOG not in text and "whole story" not in text, name


def test_the_workers_log_is_appended_for_the_maintainers_alone(tmp_path):
    out = str(tmp_path)
    old = os.umask(0)
    try:
        contest_pages.write_worker_log(out, ["first: the worker timed out", "two\nlines | <b>"])
        contest_pages.write_worker_log(out, ["then: \x1b[2J"])
    finally:
        os.umask(old)
    path = os.path.join(out, contest_pages.WORKER_LOG)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert open(path).read() == "first: the worker timed out\ntwo\\nlines | <b>\nthen: \\x1b[2J\n"
    os.chmod(path, 0o644)  # widened by someone: the next append narrows it again
    contest_pages.write_worker_log(out, ["more"])
    assert os.stat(path).st_mode & 0o777 == 0o600 and open(path).read().endswith("\nmore\n")
    os.remove(path)
    target = tmp_path / "elsewhere.txt"
    target.write_text("kept\n")
    os.symlink(target, path)
    with pytest.raises(ReproError, match="workers' log workers.log cannot be opened"):
        contest_pages.write_worker_log(out, ["into a link"])
    assert target.read_text() == "kept\n"
    os.remove(path)
    os.mkfifo(path)
    with deadline(10), pytest.raises(ReproError, match="workers' log workers.log cannot be opened"):
        contest_pages.write_worker_log(out, ["into a FIFO"])


def test_help_documents_the_submissions_file(capsys):
    code, out, _ = cli(review.main, ["--help"], capsys)
    assert code == 0 and "submissions:\n    - team: alpha" in out and "receipts.json" in out and "--no-sandbox" in out


@pytest.mark.parametrize("edit, message", [
    (("audit: 100", "audit: 10000000000000000000000000000000000000"), "audit must be between 0 and 10,000,000"),
    (("replay: default", "replay: 1000000000"), "replay must be >= 2 and <= 10,000 segments"),
    (("replay: default", "replay: some"), "replay must be 'default', 'all' or a number of segments"),
    (("sha256: 5b45252af737bb954e45da270fc51c5a15b08af25eab200a3f938b6322903f33", "sha256: 12345"),
     "eval_data.test.sha256 must be 64 lowercase hex digits (a sha256) or null, got int 12345"),
    (("sha256: 5b45252af737bb954e45da270fc51c5a15b08af25eab200a3f938b6322903f33",
      "sha256: 5B45252AF737BB954E45DA270FC51C5A15B08AF25EAB200A3F938B6322903F33"), "must be 64 lowercase hex"),
    (("train.lr: 0.01,", "train: {{lr: 0.01}},"), "protocol key 'train' must be a dotted name"),
    (("train.lr: 0.01,", "train.lr: [0.01, 0.02],"), "protocol.train.lr must be a scalar"),
    (("train.lr: 0.01,", "secrets.token: 1,"), "protocol key 'secrets.token' is not under a known section"),
    (("n: 2", "n: 100000"), "n must be between 1 and 1,000"),
    (("seeds: [0, 1]", "seeds: [0, 0]"), "seeds: 0 is listed twice"),
    (("seeds: [0, 1]", "seeds: [0, -1]"), "seeds: -1 is not between 0 and"),
    (("test: {{n: 1000", "te-st: {{n: 1000"), "split name 'te-st' must be a name"),
    (("value: {value}", "value: .nan"), "value must be a finite number"),
    (("tolerance: 0.0", "tolerance: -1.0"), "tolerance must be >= 0"),
])
def test_contest_files_are_checked_strictly_each_problem_one_line(tmp_path, capsys, edit, message):
    text = CONTEST.replace(*edit)
    assert text != CONTEST
    path = contest_file(str(tmp_path), 30.0, text)
    with pytest.raises(ReproError) as e:
        read_contest(path)
    assert message in str(e.value) and "\n" not in str(e.value) and f"contest file {path}: papers[0]" in str(e.value)
    subs = listing(str(tmp_path / "s.yaml"), [])
    code, _, err = cli(review.main, [path, subs, "--out", str(tmp_path / "r"), "--logs-only"], capsys)
    assert code == 2 and message in err and err.count("\n") == 1


def test_the_contest_replay_setting_reads(tmp_path):
    for setting, want in (("replay: default", "default"), ("replay: all", "all"), ("replay: 7", 7), ("", "default")):
        text = CONTEST.replace("replay: default", setting)
        (entry,) = read_contest(contest_file(str(tmp_path), 30.0, text)).papers
        assert entry.replay == want


@pytest.mark.slow
def test_a_review_without_the_sandbox_says_so_everywhere(base, tmp_path, capsys):
    """The full review (recompute and the contest's default replay) with --no-sandbox: status.md, the index,
    review.json and the page say so; the winner is named only because recompute and replay ran."""
    root, base_repo = str(tmp_path), base[1]
    alpha = submission(root, "alpha", base_repo)
    out = str(tmp_path / "r")
    path = listing(os.path.join(root, "s.yaml"), [("alpha", *alpha, when(2))])
    with deadline(560):
        code, stdout, err = cli(review.main, [contest_file(root, 30.0), path, "--out", out, "--no-sandbox",
                                              "--challenge", "fixed"], capsys)
    assert code == 0, err
    data = json.load(open(os.path.join(out, "review.json")))
    (alpha,) = data["submissions"]
    assert alpha["status"].startswith("REPRODUCED") and alpha["full_review"], ledger.reasons(alpha)
    assert data["sandbox"] == "off (--no-sandbox)" and alpha["sandbox"] == "off (--no-sandbox)"
    assert all(r["checks"] == ["logs", "code identity", "recompute", "replay"] for r in alpha["runs"])
    assert all(r["coverage_text"] == "replayed 3 of 3 segments, 100% of steps; every segment replayed"
               for r in alpha["runs"])
    files = outputs(out)
    assert "WITHOUT the sandbox (--no-sandbox)" in files["status.md"].split("\n\n")[1]
    for name in ("index.html", alpha["page"]):
        assert "WITHOUT the sandbox (--no-sandbox)" in files[name], name
    page = files[alpha["page"]]
    assert "replayed 3 of 3 segments, 100% of steps; every segment replayed" in page
    assert "recompute; replay (challenge fixed)" in page
    for name, text in files.items():
        assert str(tmp_path) not in text and os.path.realpath(str(tmp_path)) not in text, name


@pytest.mark.parametrize("edit, message", [
    ({"private_eval": {"fresh": {"n": 10}}}, "private_eval.fresh must be"),
    ({"private_eval": {"fresh": {"n": 10, "source": "mnist1d"}}}, "private_eval.fresh must be"),
    ({"private_eval": {"file": {"path": "p.safetensors", "sha256": 5}}}, "private_eval.file must be"),
    ({"private_eval": {"both": {}}}, "private_eval must be"),
    ({"private_eval": {"fresh": {"n": 10 ** 7, "source": "mnist1d/cnn"}}}, "private_eval.fresh must be"),
    ({"train_data": {"n": 10, "sha256": "abc"}}, "train_data must be"),
])
def test_private_and_train_data_entries_are_checked(tmp_path, edit, message):
    import yaml
    data = yaml.safe_load(CONTEST.format(value=30.0))
    data["papers"][0].update(edit)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ReproError, match=message):
        read_contest(str(path))


def test_status_on_the_terminal_is_plain_text_and_times_have_one_format():
    text = contest_pages.plain_lines("| mean 86.95 &#62;= 85.50 &#124; x |\n\x1b[31mred")
    assert text.splitlines()[0] == "| mean 86.95 >= 85.50 | x |" and "\x1b" not in text, text
    stamp = receipts.now_iso()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", stamp), stamp
