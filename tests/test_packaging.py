"""The harness installs as one top-level package (repro) with its metrics,
built-in papers and configs inside it, and works installed, away from this checkout."""
import json
import os
import subprocess
import sys
import zipfile

import pytest

import plugin_tinycell
from conftest import REPO, copy_checkout
from repro import env

NAME = "repro-paddle"  # the distribution (pyproject.toml); test_one_version checks it


def git(repo, *args):
    return subprocess.run(["git", "-C", repo, "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                          capture_output=True, text=True, timeout=120).stdout.strip()


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory):
    """(the wheel built from a committed copy of this checkout, that copy's commit, the copy)."""
    out = tmp_path_factory.mktemp("wheel")
    src = str(out / "src")  # a copy, so the build leaves nothing in the checkout
    copy_checkout(src)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "the harness"]):
        git(src, *args)
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(out), src], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    (path,) = [os.path.join(out, f) for f in os.listdir(out) if f.endswith(".whl")]
    return path, git(src, "rev-parse", "HEAD"), src


@pytest.fixture(scope="module")
def wheel(built_wheel):
    return built_wheel[0]


def test_the_wheel_holds_every_module_and_config_under_repro(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"repro"}  # no top-level papers/ or metrics/ in site-packages
    want = set()
    for folder, prefix in (("repro", "repro"), ("metrics", "repro/metrics"), ("papers", "repro/papers"),
                           ("configs", "repro/configs")):
        for root, dirs, files in os.walk(os.path.join(REPO, folder)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for f in files:
                if f.endswith((".py", ".yaml", ".md", ".sh")):
                    want.add(prefix + "/" + os.path.relpath(os.path.join(root, f), os.path.join(REPO, folder))
                             .replace(os.sep, "/"))
    assert want - names == set()


def test_the_wheel_holds_the_template_and_the_commit_it_was_built_from(built_wheel):
    """repro.new writes the template from an installation, and the harness logs the commit
    of a wheel, which has no git checkout (issue 36)."""
    path, commit, _ = built_wheel
    z = zipfile.ZipFile(path)
    names = set(z.namelist())
    template = os.path.join(REPO, "templates", "contestant")
    want = {"repro/templates/contestant/" + os.path.relpath(os.path.join(root, f), template).replace(os.sep, "/")
            for root, dirs, files in os.walk(template) for f in files
            if "__pycache__" not in root and not f.endswith(".pyc")}
    assert len(want) >= 7 and "repro/templates/contestant/.gitignore" in want and want <= names, want - names
    build = z.read("repro/_build.py").decode()
    assert f"GIT_COMMIT = {commit!r}" in build and "GIT_DIRTY = False" in build, build
    assert os.path.basename(path) == "repro_paddle-0.2.0-py3-none-any.whl"  # the name the README installs


def test_an_unpacked_wheel_logs_its_commit_and_writes_the_template(built_wheel, tmp_path):
    path, commit, src = built_wheel
    site = tmp_path / "site"
    zipfile.ZipFile(path).extractall(site)
    environ = {**{k: v for k, v in os.environ.items() if k not in ("REPRO_PAPERS", "REPRO_PAPERS_ONLY")},
               "PYTHONPATH": str(site)}
    run = lambda *args: subprocess.run([sys.executable, *args], cwd=str(tmp_path), capture_output=True,  # noqa: E731
                                       text=True, timeout=300, env=environ)
    p = run("-c", "import json, repro; from repro import env; "
                  "print(json.dumps([repro.__file__, env.harness_code()]))")
    assert p.returncode == 0, p.stderr[-2000:]
    where, code = json.loads(p.stdout)
    assert where.startswith(str(site)) and code["git_commit"] == commit and code["git_dirty"] is False
    assert code["version"] == "0.2.0" and code["sha256"] == env.harness_sha256(src)
    p = run("-m", "repro.new", "mine", "--paper", "dropout_mlp")
    assert p.returncode == 0, p.stderr[-2000:]
    assert (tmp_path / "mine" / "dropout_mlp" / "__init__.py").is_file()


def fresh_venv(path):
    """A new virtual environment with nothing installed, not even pip (the host's pip
    installs into it with --python): this environment's site-packages come after its own
    on its path (a .pth file), so Paddle and the other dependencies are found offline
    and pip sees them as installed. The checkout is not on its path."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=300)
    py = str(path / "bin" / "python")
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = [p for p in sys.path if p.endswith("site-packages")]
    assert ours and not any(os.path.samefile(p, REPO) for p in ours if os.path.exists(p))
    with open(os.path.join(site, "deps.pth"), "w") as f:
        f.write("\n".join(ours) + "\n")
    return py, site


def pip_install(py, requirement):
    """pip install REQUIREMENT into the environment of interpreter py, offline: the
    dependencies, the extra [paddle] included, are resolved against what is installed."""
    p = subprocess.run([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-index",
                        "--no-build-isolation", requirement], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]


def runner(py, work):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "REPRO_PAPERS", "REPRO_PAPERS_ONLY")}
    env["OMP_NUM_THREADS"] = "1"

    def run(*args):
        return subprocess.run([py, *args], cwd=str(work), capture_output=True, text=True, timeout=600, env=env)
    return run


def check_installed(py, site, work):
    """The harness in the new environment is the installed one, declares Paddle as its
    extra [paddle], and trains and verifies an outside plugin (--lite) from a folder that
    is not this checkout; returns run(*args) for more."""
    run = runner(py, work)
    where = run("-c", "import repro, repro.metrics, repro.papers, paddle; print(repro.__file__)")
    assert where.returncode == 0, where.stderr[-2000:]
    assert where.stdout.startswith(site) and REPO not in where.stdout, where.stdout
    requires = run("-c", "from importlib.metadata import requires; print(requires('repro-paddle'))").stdout
    assert "paddlepaddle==3.3.1; extra == \"paddle\"" in requires, requires
    plugin = plugin_tinycell.write(str(work / "tinycell"))
    r = run("-m", "repro.train", "--papers", plugin, "--paper", "tinycell", "--lite", "--out", "lite")
    assert r.returncode == 0, r.stderr[-2000:]
    r = run("-m", "repro.verify", "--papers", plugin, "lite")
    assert r.returncode == 1 and "a --lite smoke run" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    return run, plugin


@pytest.mark.slow
def test_installed_elsewhere_a_plugin_trains_verifies_and_is_reviewed(wheel, tmp_path):
    """pip install WHEEL[paddle] into a fresh virtual environment, used from a folder that
    is not this checkout."""
    py, site = fresh_venv(tmp_path / "venv")
    pip_install(py, wheel + "[paddle]")
    work = tmp_path / "elsewhere"
    work.mkdir()
    run, plugin = check_installed(py, site, work)
    for seed in (0, 1):
        r = run("-m", "repro.train", "--papers", plugin, "--paper", "tinycell", "--seed", str(seed),
                "--out", f"logs/seed{seed}")
        assert r.returncode == 0, r.stderr[-2000:]
    r = run("-m", "repro.verify", "--papers", plugin, "logs", "--recompute", "--replay", "2")
    assert r.returncode == 0 and "REPRODUCED" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    r = run("-c", "import json; h = json.loads(open('logs/seed0/events.jsonl').readline());"
                  "print(h['code']['paper']['package'], h['code']['harness']['version'])")
    assert r.stdout.split() == ["tinycell", "0.2.0"]
    r = run("-m", "repro.train", "--paper", "mnist1d", "--exp", "logreg", "--lite", "--out", "builtin")
    assert r.returncode == 0, r.stderr[-2000:]  # the built-in papers and their configs came along


@pytest.mark.slow
def test_installed_from_a_git_url_under_its_distribution_name(tmp_path):
    """pip install "repro-paddle[paddle] @ git+URL", the README's contestant command, from a
    clone of this tree (file://localhost: pip 23 refuses git+file:/// with an empty host)."""
    src = tmp_path / "clone"
    copy_checkout(src)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "the harness"]):
        subprocess.run(["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                       capture_output=True, timeout=120)
    py, site = fresh_venv(tmp_path / "venv")
    pip_install(py, f"{NAME}[paddle] @ git+file://localhost{src}")
    work = tmp_path / "elsewhere"
    work.mkdir()
    check_installed(py, site, work)


def test_the_readme_installs_the_harness_from_what_the_user_has():
    """The name is this project's alone (the PyPI project "repro" is another one) and it is on
    no index: every install line of the README and the template installs it from a wheel
    file, a path or the user's own clone, under its distribution name, never from an address
    nobody confirmed (issue 36); the template pins the version that writes it."""
    import repro
    texts = {}
    for rel in ("README.md", "templates/contestant/README.md", "templates/contestant/requirements.txt",
                "pyproject.toml", "repro/errors.py"):
        with open(os.path.join(REPO, rel), encoding="utf-8") as f:
            texts[rel] = f.read()
    for rel, text in texts.items():
        assert "github.com" not in text and "git+https" not in text, rel
    readme = texts["README.md"]
    installs = [ln for ln in readme.splitlines() if "pip install" in ln and "[paddle]" in ln]
    assert any('"dist/repro_paddle-0.2.0-py3-none-any.whl[paddle]"' in ln for ln in installs), installs
    assert '"/path/to/repro[paddle]"' in readme and f'"{NAME}[paddle] @ git+URL@<commit>"' in readme
    assert '"repro @' not in readme and "pip install repro " not in readme
    req = [ln.split("#")[0].strip() for ln in texts["templates/contestant/requirements.txt"].splitlines()]
    assert f"{NAME}=={repro.__version__}" in req and any(ln.startswith("paddlepaddle") for ln in req)
    assert not any(ln.split("=")[0].split("@")[0].split("[")[0].strip() == "repro" for ln in req)


def test_one_version():
    import tomllib

    import repro
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert project["version"] == repro.__version__ and project["name"] == NAME
    assert project["optional-dependencies"]["paddle"] == ["paddlepaddle==3.3.1"]


def test_without_paddle_the_commands_say_how_to_install_it_in_one_line(tmp_path):
    """Paddle is the extra [paddle], so an install without it is possible: each command
    that needs Paddle says so, with the install command, instead of a traceback."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class NoPaddle:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] == 'paddle':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NoPaddle())\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), REPO])}
    for module in ("repro.train", "repro.eval", "repro.export", "repro.predict"):
        p = subprocess.run([sys.executable, "-m", module, "--help"], cwd=str(tmp_path), capture_output=True,
                           text=True, timeout=120, env=env)
        assert p.returncode == 2 and p.stdout == "", (module, p.stdout, p.stderr)
        assert p.stderr.count("\n") == 1 and "pip install paddlepaddle==3.3.1" in p.stderr, p.stderr
        assert "paddlepaddle-gpu==3.3.1" in p.stderr


@pytest.mark.slow  # a fresh interpreter that imports the registry and trains: about 5 s
def test_without_paddlenlp_the_text_papers_register_and_training_one_says_what_to_install(tmp_path):
    """requirements.txt is the main job's and leaves PaddleNLP out (issue 36): every paper still
    registers (the text papers import it only where they need it), and training a text paper
    without it says in one line to install requirements-test.txt."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class NoNLP:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] in ('paddlenlp', 'ppdiffusers'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NoNLP())\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), REPO]), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "repro.train", "--list"], cwd=str(tmp_path), capture_output=True,
                       text=True, timeout=300, env=env)
    assert p.returncode == 0 and "kim_cnn" in p.stdout and "chnsenticorp_rnn" in p.stdout, p.stderr[-2000:]
    p = subprocess.run([sys.executable, "-m", "repro.train", "--paper", "kim_cnn", "--lite", "--out",
                        str(tmp_path / "run")], cwd=str(tmp_path), capture_output=True, text=True, timeout=300,
                       env=env)
    assert p.returncode == 2 and "Traceback" not in p.stderr and p.stderr.count("\n") == 1, p.stderr[-2000:]
    assert "paddlenlp is not installed" in p.stderr and "requirements-test.txt" in p.stderr, p.stderr
