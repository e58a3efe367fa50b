"""Every command (`python -m repro.X`) answers --help with its usage and exit status 0.
argparse %-formats help strings, so one stray percent sign ends --help in a traceback
(issue 36: '25% of the others' in verify's --replay, which report shares)."""
import ast
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

# the worker is started by the sandbox with two folders, never by a user, but answers --help too
NOT_COMMANDS = set()


def commands():
    """Every module of the harness that runs as `python -m`: a package's __main__.py, or
    a module with an `if __name__ == "__main__":` block."""
    found = []
    for root, dirs, names in os.walk(os.path.join(REPO, "repro")):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names):
            if not name.endswith(".py"):
                continue
            path = os.path.join(root, name)
            module = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
            if name == "__main__.py":
                found.append(module.removesuffix(".__main__"))
                continue
            tree = ast.parse(open(path, encoding="utf-8").read())
            if any(isinstance(n, ast.If) and "__name__" in ast.unparse(n.test) and "__main__" in ast.unparse(n.test)
                   for n in tree.body):
                found.append(module)
    return [m for m in found if m not in NOT_COMMANDS]


def test_the_commands_are_found():
    found = set(commands())
    assert {"repro.train", "repro.verify", "repro.report", "repro.selfcheck", "repro.review", "repro.align",
            "repro.diffusion.generate", "repro.diffusion.submit", "repro.new"} <= found, found


ALIGN = ["ladder", "drift", "diff", "convert"]


ARGVS = [[m] for m in commands()] + [["repro.align", sub] for sub in ALIGN]

# every command's --help in one fresh Python (one import of Paddle, not one a command): each as
# `python -m` runs it (runpy, __main__), its exit status, what it printed, and a traceback if any
HELPS = """
import contextlib, io, json, runpy, sys, traceback
got = {}
for argv in json.loads(sys.argv[1]):
    out, err, code = io.StringIO(), io.StringIO(), None
    sys.argv = [argv[0], *argv[1:], "--help"]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = "raised"
    got[" ".join(argv)] = [code, out.getvalue(), err.getvalue()]
print(json.dumps(got))
"""


@pytest.fixture(scope="module")
def helps():
    p = subprocess.run([sys.executable, "-c", HELPS, json.dumps(ARGVS)], cwd=REPO, capture_output=True, text=True,
                       timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", ARGVS, ids=lambda a: " ".join(a))
def test_help_prints_the_usage_and_exits_0(argv, helps):
    code, out, err = helps[" ".join(argv)]
    assert code == 0 and "Traceback" not in err, err[-2000:]
    assert out.startswith(f"usage: python -m {argv[0]}"), out[:300]


def test_a_help_that_fails_is_seen(tmp_path):
    """The one-process runner above tells a --help that ends in a traceback from one that works."""
    (tmp_path / "broken_cmd.py").write_text("import argparse\nap = argparse.ArgumentParser(prog='python -m broken_cmd')\n"
                                            "ap.add_argument('--x', help='25% of it')\nap.parse_args()\n")
    p = subprocess.run([sys.executable, "-c", HELPS, json.dumps([["broken_cmd"], ["repro.new"]])], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": REPO + os.pathsep + str(tmp_path)})
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got["broken_cmd"][0] == "raised" and "Traceback" in got["broken_cmd"][2]
    assert got["repro.new"][0] == 0 and got["repro.new"][1].startswith("usage: python -m repro.new")
