"""Every command (`python -m repro.X`) answers --help with its usage and exit status 0.
argparse %-formats help strings, so one stray percent sign ends --help in a traceback
(issue 36: '25% of the others' in verify's --replay, which report shares)."""
import ast
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


@pytest.mark.parametrize("argv", [[m] for m in commands()] + [["repro.align", sub] for sub in ALIGN],
                         ids=lambda a: " ".join(a))
def test_help_prints_the_usage_and_exits_0(argv):
    p = subprocess.run([sys.executable, "-m", *argv, "--help"], cwd=REPO, capture_output=True, text=True,
                       timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert p.stdout.startswith(f"usage: python -m {argv[0]}"), p.stdout[:300]
