"""The one build step pyproject.toml cannot declare: a wheel has no git checkout, so the
commit it was built from is baked into it as repro/_build.py (read by repro.env.harness_code,
which logs it as code.harness.git_commit). Built from anything but this checkout's own git
(an sdist, a copied folder), the commit is None, as it would be unknown."""
import os
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
SHIPPED = ("repro", "metrics", "papers", "configs", "templates")  # pyproject.toml's package-dir


def _git(*args):
    try:
        p = subprocess.run(["git", "-C", HERE, *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def built_from():
    """(commit, whether the shipped folders differ from it) of this checkout; (None, None) when
    it is not the top of a git checkout (never an enclosing repository's commit)."""
    top = _git("rev-parse", "--show-toplevel")
    if not top or os.path.realpath(top) != os.path.realpath(HERE):
        return None, None
    status = _git("status", "--porcelain", "--untracked-files=all", "--", *SHIPPED)
    return _git("rev-parse", "HEAD"), (bool(status) if status is not None else None)


class BuildPy(build_py):
    def run(self):
        super().run()
        commit, dirty = built_from()
        os.makedirs(os.path.join(self.build_lib, "repro"), exist_ok=True)
        with open(os.path.join(self.build_lib, "repro", "_build.py"), "w", encoding="utf-8") as f:
            f.write('"""Written by setup.py when this wheel was built: the commit it was built from."""\n'
                    f"GIT_COMMIT = {commit!r}\nGIT_DIRTY = {dirty!r}\n")


setup(cmdclass={"build_py": BuildPy})
