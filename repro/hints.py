"""The commands the harness prints for the user to run next ("verify with: ...",
"predict with: ...", how to resume), written so that they work as printed from
where the user stands, also for a paper in the contestant's own repository:

- the interpreter that runs now (`python` when that is the one on PATH, else its
  path: `.venv/bin/python` after `.venv/bin/python -m repro.train`);
- `--papers FOLDER` when the paper came from a plugin folder (--papers or
  REPRO_PAPERS), the folder relative to the current one when it lies below it;
- `--data-dir DIR` when the datasets are read from one (--data-dir or
  REPRO_DATA_DIR), for the commands that read datasets;
- every word quoted for the shell where it needs it.
"""
import os
import shlex
import shutil
import sys

from repro import registry
from repro.datasets.download import ENV as DATA_DIR_ENV  # what --data-dir sets


def shown_path(path):
    """path as the user would type it here: relative to the current folder when it
    lies below it, else absolute."""
    path = os.path.abspath(path)
    rel = os.path.relpath(path)
    return path if rel == os.pardir or rel.startswith(os.pardir + os.sep) else rel


def python():
    """The running interpreter as a command word."""
    which = shutil.which("python")
    if which and os.path.abspath(which) == os.path.abspath(sys.executable):
        return "python"
    exe = shown_path(sys.executable)
    return exe if os.sep in exe else os.path.join(os.curdir, exe)  # a bare name would be looked up on PATH


def command(module, *args, paper=None, data=False, placeholder=""):
    """`python -m module args... [placeholder] [--papers FOLDER] [--data-dir DIR]`: --papers
    when paper (its name) came from a plugin folder, --data-dir with data=True when the
    datasets come from one. placeholder is shown as it is (e.g. INPUT.npy, for the user to fill in)."""
    line = shlex.join([python(), "-m", module, *map(str, args)]) + (f" {placeholder}" if placeholder else "")
    options = []
    folder = registry.paper_folder(paper) if paper else None
    if folder:
        options += ["--papers", shown_path(folder)]
    if data and os.environ.get(DATA_DIR_ENV):
        options += ["--data-dir", shown_path(os.environ[DATA_DIR_ENV])]
    return line + (" " + shlex.join(options) if options else "")
