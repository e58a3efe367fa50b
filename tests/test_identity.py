"""Code identity (repro.boundary.identity): a submitted repository is identified whole (its
root helpers, hidden folders and git-ignored files included; .git, logs/ and
documentation excluded), what cannot be identified is refused with one line
each and never followed or read, and the harness's identity is the same for a
wheel and for the checkout it was built from."""
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from types import SimpleNamespace

import plugin_tinycell
import pytest
from conftest import REPO, cli, copy_checkout

from repro import env, registry, selfcheck, strict, train
from repro.boundary import identity
from repro.errors import ReproError


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                   capture_output=True)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def repo(tmp_path):
    """A contestant's repository (committed): the plugin, a helper module at the
    top, a README, requirements.txt and a .gitignore."""
    root = tmp_path / "alpha"
    plugin_tinycell.write(str(root / "tinycell"))
    write(str(root / "helpers.py"), "SCALE = 1\n")
    write(str(root / "README.md"), "# tinycell\n")
    write(str(root / "requirements.txt"), "paddlepaddle==3.3.1\n")
    write(str(root / ".gitignore"), "secret.py\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "the plugin")
    return str(root)


def plugin(root):
    """What env.paper_code reads of a paper: the plugin at root/tinycell, experiment mlp."""
    package = os.path.join(root, "tinycell")
    return SimpleNamespace(name="tinycell", root=package, config_dir="configs",
                           config_path=lambda exp: os.path.join(package, "configs", "mlp.yaml"))


def header(root):
    return {"code": {"paper": env.paper_code(plugin(root), "mlp"), "harness": env.harness_code()}}


def scan_problems(root, **limits):
    files, problems = identity.scan(root, **limits)
    assert all("\n" not in p for p in problems)
    return files, problems


def test_a_run_records_the_whole_repository_and_the_same_tree_passes(repo):
    head = header(repo)
    code = head["code"]["paper"]
    assert (code["package"], code["configs"], code["config_file"]) == ("tinycell", "tinycell/configs",
                                                                        "tinycell/configs/mlp.yaml")
    files = code["repository"]["files"]
    # README.md is documentation and .gitignore git's settings: left out; .git is never read
    assert sorted(files) == ["helpers.py", "requirements.txt", "tinycell/__init__.py", "tinycell/configs/mlp.yaml",
                             "tinycell/models.py"]
    assert files["helpers.py"] == sha("SCALE = 1\n") and files["tinycell/models.py"] == sha(plugin_tinycell.MODELS)
    assert code["sha256"] == code["repository"]["sha256"] == identity.digest(files)
    assert code["repository"]["excluded"] == list(identity.EXCLUDED)
    assert "files" not in code  # the repository's map is the one compared
    assert code["git_commit"] and code["git_dirty"] is False and code["git_changes_sha256"] is None
    assert identity.check_tree(head, repo) == []


def test_a_helper_module_at_the_top_is_covered(repo):
    head = header(repo)
    write(os.path.join(repo, "helpers.py"), "SCALE = 2\n")
    (problem,) = identity.check_tree(head, repo)
    assert problem == "the log was produced by other code than the submitted tree (differ: helpers.py)"


def test_a_hidden_folder_inside_the_package_is_covered(repo):
    write(os.path.join(repo, "tinycell", ".hidden", "patch.py"), "X = 1\n")
    head = header(repo)
    assert "tinycell/.hidden/patch.py" in head["code"]["paper"]["repository"]["files"]
    assert head["code"]["paper"]["git_dirty"] is True  # untracked code is not the commit's
    write(os.path.join(repo, "tinycell", ".hidden", "patch.py"), "X = 2\n")
    assert identity.check_tree(head, repo) == [
        "the log was produced by other code than the submitted tree (differ: tinycell/.hidden/patch.py)"]
    os.remove(os.path.join(repo, "tinycell", ".hidden", "patch.py"))
    assert identity.check_tree(head, repo) == [
        "the log was produced by other code than the submitted tree (missing here: tinycell/.hidden/patch.py)"]


def test_a_git_ignored_file_is_covered(repo):
    write(os.path.join(repo, "secret.py"), "BOOST = 1\n")
    status = subprocess.run(["git", "-C", repo, "status", "--porcelain"], capture_output=True, text=True).stdout
    assert "secret.py" not in status  # git does not see it ...
    head = header(repo)
    code = head["code"]["paper"]
    assert code["repository"]["files"]["secret.py"] == sha("BOOST = 1\n")  # ... the identity does
    assert code["git_dirty"] is True and len(code["git_changes_sha256"]) == 64
    shutil.rmtree(os.path.join(repo, ".git"))  # a clone lacks it
    os.remove(os.path.join(repo, "secret.py"))
    assert identity.check_tree(head, repo) == [
        "the log was produced by other code than the submitted tree (missing here: secret.py)"]


def test_documentation_and_logs_do_not_count(repo):
    head = header(repo)
    write(os.path.join(repo, "README.md"), "# tinycell\n\nResults: 94.1%\n")  # written after training
    write(os.path.join(repo, "docs", "notes.rst"), "notes\n")
    write(os.path.join(repo, "LICENSE"), "Apache-2.0\n")
    write(os.path.join(repo, ".gitignore"), "secret.py\nbuild/\n")
    write(os.path.join(repo, "logs", "seed0", "events.jsonl"), "{}\n")
    write(os.path.join(repo, "logs", "seed0", "helper.py"), "X = 1\n")  # logs/ is not walked at all
    assert identity.check_tree(head, repo) == []
    assert header(repo)["code"]["paper"]["git_dirty"] is False
    # but a Python module is code whatever its name, and only the top-level logs/ is the runs'
    write(os.path.join(repo, "license_check.py"), "X = 1\n")
    write(os.path.join(repo, "tinycell", "logs", "x.yaml"), "a: 1\n")
    (problem,) = identity.check_tree(head, repo)
    assert problem == ("the log was produced by other code than the submitted tree "
                       "(not in the run's code: license_check.py, tinycell/logs/x.yaml)")


def test_a_venv_a_contest_file_and_caches_do_not_count_nor_make_the_run_dirty(repo):
    """The template's .venv (full of links), a contest file saved at the top and tools' caches
    are not code: one rule (identity.excluded) for the identity and for git_dirty (issue 36)."""
    head = header(repo)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", os.path.join(repo, ".venv")], check=True)
    write(os.path.join(repo, "contest.yaml"), "name: x\n")
    write(os.path.join(repo, "tinycell", ".pytest_cache", "v", "x.py"), "X = 1\n")
    assert identity.check_tree(head, repo) == []
    code = header(repo)["code"]["paper"]
    assert code["git_dirty"] is False and code["repository"]["files"] == head["code"]["paper"]["repository"]["files"]
    assert identity.excluded(".venv/lib/python3.11/site-packages/x.py") and identity.excluded("venv/bin/python")
    assert not identity.excluded("src/.venv/x.py") and not identity.excluded("tinycell/contest.yaml")
    assert not identity.excluded("contest.py")


def test_bytecode_is_refused(repo):
    cache = os.path.join(repo, "tinycell", "__pycache__")
    os.makedirs(cache)
    with open(os.path.join(cache, "models.cpython-311.pyc"), "wb") as f:
        f.write(b"\x00" * 16)
    with open(os.path.join(repo, "stray.pyc"), "wb") as f:
        f.write(b"\x00" * 16)
    files, problems = scan_problems(repo)
    assert problems == [
        "stray.pyc: a pyc file: " + identity.BYTECODE,
        "tinycell/__pycache__/: a __pycache__ folder: " + identity.BYTECODE]
    assert "bytecode is not reviewed source" in identity.BYTECODE
    assert not any("pycache" in f or f.endswith(".pyc") for f in files)
    with pytest.raises(ReproError, match=r"holds what cannot be identified as code, so no run starts from it: "
                                         r"stray.pyc: a pyc file: bytecode is not reviewed source"):
        env.paper_code(plugin(repo), "mlp")


def test_symbolic_links_are_refused_not_followed(repo, tmp_path):
    outside = tmp_path / "outside.py"
    outside.write_text("X = 1\n")
    os.symlink(str(outside), os.path.join(repo, "tinycell", "linked.py"))
    os.symlink("no-such-file", os.path.join(repo, "dangling"))
    os.symlink(str(tmp_path), os.path.join(repo, "tinycell", "folder"))  # a link to a folder is not walked
    files, problems = scan_problems(repo)
    assert problems == [
        "dangling: a symbolic link (to 'no-such-file'): links are not followed; "
        "put the file itself there or move it out of the repository",
        f"tinycell/folder: a symbolic link (to {str(tmp_path)!r}): links are not followed; "
        "put the file itself there or move it out of the repository",
        f"tinycell/linked.py: a symbolic link (to {str(outside)!r}): links are not followed; "
        "put the file itself there or move it out of the repository"]
    assert not any(f.startswith(("dangling", "tinycell/folder", "tinycell/linked")) for f in files)


def _deadline(seconds):
    def boom(*_):
        raise TimeoutError(f"still running after {seconds} s")
    signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)


def test_a_fifo_is_refused_without_hanging(repo):
    os.mkfifo(os.path.join(repo, "tinycell", "pipe"))
    t0 = time.monotonic()
    _deadline(2)
    try:
        files, problems = scan_problems(repo)
        with pytest.raises(ReproError, match="tinycell/pipe: a FIFO"):
            env.paper_code(plugin(repo), "mlp")
    finally:
        signal.alarm(0)
    assert time.monotonic() - t0 < 2
    assert problems == ["tinycell/pipe: a FIFO (named pipe): only regular files can be identified"]
    assert "tinycell/pipe" not in files


def test_a_huge_sparse_file_is_refused_by_its_size_without_being_read(repo, monkeypatch):
    with open(os.path.join(repo, "weights.bin"), "wb") as f:
        f.truncate(10 << 30)
    opened = []
    real = os.open
    monkeypatch.setattr(os, "open", lambda path, *a, **k: opened.append(str(path)) or real(path, *a, **k))
    t0 = time.monotonic()
    files, problems = scan_problems(repo)
    assert time.monotonic() - t0 < 2
    assert problems == ["weights.bin: 10,737,418,240 bytes, over the 67,108,864 a file may have "
                        "(keep data and weights outside the repository)"]
    assert "weights.bin" not in opened and "weights.bin" not in files
    assert "helpers.py" in opened  # the files that are identified are opened


def test_too_many_files_or_bytes_stop_with_one_line(repo):
    _, problems = scan_problems(repo, max_files=2)
    assert problems == ["tinycell/__init__.py: more than 2 files to identify; stopped here "
                        "(keep data, environments and caches outside the repository)"]
    _, problems = scan_problems(repo, max_total_bytes=100)
    assert len(problems) == 1 and "more than the 100 bytes the identified code may have in all" in problems[0]


def test_the_scan_is_deterministic_and_its_map_sorted(repo):
    write(os.path.join(repo, "a.b", "x.py"), "1\n")
    write(os.path.join(repo, "a", "b.py"), "2\n")
    first, _ = identity.scan(repo)
    assert list(first) == sorted(first) and identity.scan(repo)[0] == first


def test_a_snapshot_holds_exactly_the_identified_files(repo, tmp_path):
    write(os.path.join(repo, "tinycell", ".hidden", "x.py"), "X = 1\n")
    write(os.path.join(repo, "logs", "seed0", "events.jsonl"), "{}\n")
    files, problems = identity.scan(repo)
    assert problems == []
    dest = identity.snapshot(repo, files, str(tmp_path / "snap"))
    copied = {}
    for folder, _, names in os.walk(dest):
        for n in names:
            path = os.path.join(folder, n)
            assert not os.access(path, os.W_OK) or os.geteuid() == 0  # read-only copies
            copied[os.path.relpath(path, dest).replace(os.sep, "/")] = strict.sha256_file(path)
    assert copied == files  # no README, no .git, no logs
    with pytest.raises(ReproError, match="a snapshot goes into a new or empty folder"):
        identity.snapshot(repo, files, dest)
    write(os.path.join(repo, "helpers.py"), "SCALE = 3\n")
    with pytest.raises(ReproError, match="helpers.py changed since the code was identified"):
        identity.snapshot(repo, files, str(tmp_path / "snap2"))
    with pytest.raises(ReproError, match="is not a path inside a repository"):
        identity.snapshot(repo, {"../outside.py": "0" * 64}, str(tmp_path / "snap3"))


def test_check_tree_refuses_what_it_cannot_tie(repo):
    head = header(repo)
    assert identity.check_tree({}, repo) == [
        "the log does not record its paper's code, so it cannot be tied to the submitted code"]
    old = {"code": {"paper": {"package": "tinycell", "files": {"tinycell/__init__.py": "0" * 64}}}}
    (problem,) = identity.check_tree(old, repo)
    assert "not the whole repository" in problem
    forged = {"code": {"paper": {**head["code"]["paper"],
                                 "repository": {**head["code"]["paper"]["repository"], "sha256": "0" * 64}}}}
    assert identity.check_tree(forged, repo) == ["the log's repository sha256 is not the hash of the files it lists"]
    os.symlink("/etc/passwd", os.path.join(repo, "tinycell", "passwd"))
    problems = identity.check_tree(head, repo)
    assert problems[0].startswith("the submitted tree: tinycell/passwd: a symbolic link") and len(problems) == 1


def test_self_check_runs_the_reviews_check_on_every_logged_run(repo):
    import glob
    import json
    head = header(repo)
    shipped = sorted(glob.glob(os.path.join(REPO, "logs", "mnist1d", "*", "*", "events.jsonl")))[0]
    with open(shipped) as f:
        start = {**json.loads(f.readline()), "code": head["code"]}  # a real header, with this code
    for seed in (0, 1):
        write(os.path.join(repo, "logs", f"seed{seed}", "events.jsonl"), json.dumps(start) + "\n")
    ident, problems = selfcheck.self_check(repo)
    assert problems == [] and ident == head["code"]["paper"]["repository"]
    write(os.path.join(repo, "tinycell", "models.py"), "# tuned after the runs\n")
    ident, problems = selfcheck.self_check(repo)
    assert problems == [f"logs/seed{s}: the log was produced by other code than the submitted tree "
                        f"(differ: tinycell/models.py)" for s in (0, 1)]


@pytest.fixture
def own_tinycell():
    """This test's tinycell in sys.modules, and afterwards whatever was there before
    (another module's, imported from its own folder)."""
    def ours():
        return {m: sys.modules.pop(m) for m in list(sys.modules) if m == "tinycell" or m.startswith("tinycell.")}
    saved = ours()
    yield
    ours()
    sys.modules.update(saved)


def test_training_an_unidentifiable_repository_stops_before_the_first_update(repo, plugin_env, own_tinycell, capsys):
    cache = os.path.join(repo, "tinycell", "__pycache__")
    os.makedirs(cache)
    with open(os.path.join(cache, "__init__.cpython-311.pyc"), "wb") as f:
        f.write(b"\x00" * 16)
    out = os.path.join(repo, "logs", "seed0")
    code, _, err = cli(train.main, ["--papers", os.path.join(repo, "tinycell"), "--paper", "tinycell", "--lite",
                                    "--out", out], capsys)
    registry._loaded = False
    assert code == 2 and err.count("\n") == 1, err
    assert "tinycell/__pycache__/: a __pycache__ folder: bytecode is not reviewed source" in err
    events = os.path.join(out, "events.jsonl")
    assert not os.path.exists(events) or open(events).read() == ""  # no header, no update
    # the harness itself wrote no bytecode into the plugin's repository when it imported it
    shutil.rmtree(cache)
    assert identity.scan(repo)[1] == []


# ------------------------------------------------------------------ the harness's identity

def test_the_harness_identity_names_its_version():
    import tomllib

    import repro
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        version = tomllib.load(f)["project"]["version"]
    code = env.harness_code()
    assert code["version"] == repro.__version__ == version
    assert code["sha256"] == env.harness_sha256(REPO) and len(code["git_commit"]) == 40
    files = env.harness_files(REPO)
    assert "repro/metrics/__init__.py" in files and "repro/papers/mnist1d/README.md" in files
    assert "repro/configs/mnist1d/cnn.yaml" in files and "repro/boundary/identity.py" in files
    assert not any(f.startswith(("metrics/", "papers/", "configs/", "tests/")) for f in files)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(a checkout copy, the folder a wheel built from it unpacks into)."""
    out = tmp_path_factory.mktemp("wheel")
    src = str(out / "src")
    copy_checkout(src)
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(out), src], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    (wheel,) = [os.path.join(out, f) for f in os.listdir(out) if f.endswith(".whl")]
    unpacked = str(out / "site")
    zipfile.ZipFile(wheel).extractall(unpacked)
    return src, unpacked


def test_a_wheel_and_its_checkout_have_one_harness_identity(built):
    src, site = built
    installed, checkout = env.harness_files(site), env.harness_files(src)
    assert installed == checkout and len(installed) > 50
    assert env.harness_sha256(site) == env.harness_sha256(src)
    # and a changed file changes it
    with open(os.path.join(site, "repro", "metrics", "__init__.py"), "a") as f:
        f.write("# patched\n")
    assert env.harness_sha256(site) != env.harness_sha256(src)
