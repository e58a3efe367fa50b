"""Every `python -m repro.X ...` line of the README parses as written (issue 36): its options
exist, its values have the right form and its arguments are complete. The command's own
parser reads each line and stops there, so nothing trains, downloads or writes; a README
line whose command changed under it fails here. What the walks run in full is in the README."""
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from conftest import REPO

DRIVER = """
import argparse, importlib, json, sys
class Parsed(Exception):
    pass
real = argparse.ArgumentParser.parse_args
def parse_and_stop(self, args=None, namespace=None):
    real(self, args, namespace)
    raise Parsed
argparse.ArgumentParser.parse_args = parse_and_stop
failed = []
for module, argv in json.loads(sys.argv[1]):
    main = importlib.import_module(module + ('.__main__' if module == 'repro.align' else '')).main
    try:
        main(argv)
    except Parsed:
        continue
    except SystemExit as e:
        if e.code == 0 and '--help' in argv:
            continue
        failed.append([module, argv, 'exit %s' % e.code])
    else:
        failed.append([module, argv, 'ran past its parser'])
print(json.dumps(failed))
"""


def readme_commands():
    """[(module, argv)] of the README's shell lines (and literal commands in its text) that run `python -m repro.X`
    (continuation lines joined, comments cut; each command of a line joined by && or ; apart)."""
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    lines, fenced, held = [], False, ""
    for line in text.splitlines():
        if line.startswith("```"):
            fenced, held = not fenced, ""
            continue
        if not fenced:  # a command in running text, where it is literal (no [optional] parts or ...)
            lines += [span for span in re.findall(r"`([^`]*python3? -m repro\.[^`]*)`", line)
                      if len(span.split()) > 3 and not any(mark in span for mark in ("[", "...", "…", "\\|"))]
            continue
        if line.rstrip().endswith("\\"):
            held += line.rstrip()[:-1] + " "
            continue
        lines.append(held + line)
        held = ""
    found = []
    for line in lines:
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        segment = []
        for w in words + ["&&"]:  # each command of a line: split at &&, ;, | and redirections
            if w not in ("&&", "||", "|", ";", ">", ">>", "<", "2>&1"):
                segment.append(w)
                continue
            head = segment[:3]
            if len(head) == 3 and head[0].endswith(("python", "python3")) and head[1] == "-m" \
                    and head[2].startswith("repro.") and all(p.isidentifier() for p in head[2].split(".")):
                found.append((head[2], segment[3:]))  # (not a placeholder such as repro.<name>)
            segment = [] if w not in (">", ">>", "<") else ["<redirected>"]
    return found


def test_the_readme_names_the_main_commands():
    modules = {m for m, _ in readme_commands()}
    assert {"repro.train", "repro.verify", "repro.review", "repro.selfcheck", "repro.new", "repro.example",
            "repro.align", "repro.diffusion.submit"} <= modules, modules


def test_every_readme_command_line_parses():
    lines = [(m, argv) for m, argv in readme_commands() if m != "repro.worker"]  # the sandbox starts the worker
    p = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(lines)], cwd=REPO,
                       capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    failed = json.loads(p.stdout.strip().splitlines()[-1])
    assert not failed, "README lines that do not parse:\n" + "\n".join(
        f"python -m {m} {shlex.join(a)}: {why}" for m, a, why in failed) + "\n" + p.stderr[-3000:]


@pytest.mark.parametrize("line,ok", [("python -m repro.verify logs/x --recompute", True),
                                     ("python -m repro.verify logs/x --recompute-all", False)])
def test_the_driver_tells_a_line_that_parses_from_one_that_does_not(line, ok):
    words = shlex.split(line)
    p = subprocess.run([sys.executable, "-c", DRIVER, json.dumps([[words[2], words[3:]]])], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert (json.loads(p.stdout.strip().splitlines()[-1]) == []) is ok, p.stderr[-2000:]
