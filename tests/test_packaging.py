"""The harness installs as one top-level package (repro) with its metrics,
built-in papers and configs inside it, and works installed, away from this checkout."""
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

import plugin_tinycell
from conftest import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    src = str(out / "src")  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", ".git", "logs", "__pycache__", "build"))
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(out), src], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    (path,) = [os.path.join(out, f) for f in os.listdir(out) if f.endswith(".whl")]
    return path


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


@pytest.mark.slow
def test_installed_elsewhere_a_plugin_trains_verifies_and_is_reviewed(wheel, tmp_path):
    """A fresh virtual environment with the wheel installed (its dependencies come from
    this environment's site-packages), used from a folder that is not this checkout."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = str(venv / "bin" / "python")
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = [p for p in sys.path if p.endswith("site-packages")]
    with open(os.path.join(site, "deps.pth"), "w") as f:
        f.write("\n".join(ours) + "\n")
    p = subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    work = tmp_path / "elsewhere"
    plugin = plugin_tinycell.write(str(work / "tinycell"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "REPRO_PAPERS")}
    env["OMP_NUM_THREADS"] = "1"

    def run(*args):
        return subprocess.run([py, *args], cwd=str(work), capture_output=True, text=True, timeout=600, env=env)

    where = run("-c", "import repro, repro.metrics, repro.papers; print(repro.__file__, repro.metrics.__file__)")
    assert where.returncode == 0 and REPO not in where.stdout and site in where.stdout, where.stdout + where.stderr
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


def test_one_version():
    import tomllib

    import repro
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        assert tomllib.load(f)["project"]["version"] == repro.__version__
