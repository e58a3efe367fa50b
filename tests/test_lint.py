"""Every Python file of the project passes pyflakes: a name that no longer exists (a helper moved from one module
to another) fails here in seconds rather than in the one slow benchmark smoke that calls it."""
import os

import pytest
from pyflakes import api, reporter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDERS = ("repro", "papers", "benchmarks", "tests", "metrics", "configs")


def python_files():
    for folder in FOLDERS:
        for dirpath, dirnames, files in os.walk(os.path.join(ROOT, folder)):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__pycache__")))
            yield from (os.path.join(dirpath, f) for f in sorted(files) if f.endswith(".py"))


class Collect(reporter.Reporter):
    def __init__(self):
        self.found = []

    def unexpectedError(self, filename, msg):
        self.found.append(f"{filename}: {msg}")

    def syntaxError(self, filename, msg, lineno, offset, text):
        self.found.append(f"{filename}:{lineno}: {msg}")

    def flake(self, message):
        line = open(message.filename).read().split("\n")[message.lineno - 1]
        if "# noqa" not in line:  # an import kept for its side effect says so on its line
            self.found.append(str(message))


def test_the_project_has_python_files_to_check():
    files = list(python_files())
    assert len(files) > 100 and any(f.endswith(os.path.join("benchmarks", "verifiable.py")) for f in files)


@pytest.mark.parametrize("folder", FOLDERS)
def test_pyflakes_finds_nothing(folder):
    out = Collect()
    for path in (p for p in python_files() if os.path.relpath(p, ROOT).split(os.sep)[0] == folder):
        api.checkPath(path, out)
    assert not out.found, "\n".join(os.path.relpath(f, ROOT) if f.startswith(ROOT) else f for f in out.found)


def test_the_check_sees_an_undefined_name(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\ndef f():\n    return decisions.sha256_file(os.sep)\n")
    out = Collect()
    api.checkPath(str(bad), out)
    assert len(out.found) == 1 and "undefined name 'decisions'" in out.found[0], out.found
