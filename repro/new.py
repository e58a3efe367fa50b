"""Start a contestant's repository: python -m repro.new DIR [--paper NAME]

Writes the contestant template that ships with the harness (an installed one holds
it as package data, a checkout in templates/contestant/) into DIR, a new or empty
folder, with its plugin package and every mention of it renamed to NAME, and its
requirements.txt pinning the harness version that wrote it. The template, as
written, reproduces the MNIST-1D CNN cell; its README walks through every step.
"""
import argparse
import keyword
import os
import shutil

from repro import __version__
from repro.errors import ReproError, run_cli

HERE = os.path.dirname(os.path.abspath(__file__))
PLACEHOLDER = "my_paper"  # the template's package name, replaced by --paper
PIN = "repro-paddle=="    # the template's requirements line naming the harness, pinned to this version


def template_dir():
    """The contestant template: repro/templates/contestant installed (pyproject.toml's package
    data), templates/contestant beside the package in a checkout."""
    for base in (HERE, os.path.dirname(HERE)):
        path = os.path.join(base, "templates", "contestant")
        if os.path.isdir(os.path.join(path, PLACEHOLDER)):
            return path
    raise ReproError(f"the contestant template is not installed with the harness ({HERE}): reinstall it")


def check_name(name):
    if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_") or name != name.lower():
        raise ReproError(f"--paper {name!r}: a paper's name is its package's, a lowercase Python identifier "
                         f"(e.g. my_paper)")
    builtin = any(os.path.isdir(os.path.join(base, "papers", name)) for base in (HERE, os.path.dirname(HERE)))
    if builtin or name in ("repro", "paddle", "papers", "metrics"):
        raise ReproError(f"--paper {name!r}: the harness already has a package by that name; choose another")


def _text(data, name):
    text = data.decode("utf-8").replace(PLACEHOLDER, name)
    lines = [f"{PIN}{__version__}" if ln.startswith(PIN) else ln for ln in text.split("\n")]
    return "\n".join(lines).encode("utf-8")


def write(dest, name=PLACEHOLDER):
    """Write the template into dest (new, or an empty folder) with its package named name;
    returns the files written, relative to dest."""
    check_name(name)
    if os.path.lexists(dest) and (not os.path.isdir(dest) or os.path.islink(dest) or os.listdir(dest)):
        raise ReproError(f"{dest}: not a new or empty folder; the template goes into one (nothing was written)")
    src = template_dir()
    written = []
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for f in sorted(files):
            if f.endswith((".pyc", ".pyo")):
                continue
            rel = os.path.relpath(os.path.join(root, f), src)
            out = os.path.join(dest, *[name if part == PLACEHOLDER else part for part in rel.split(os.sep)])
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with open(os.path.join(root, f), "rb") as fin:
                data = fin.read()
            with open(out, "wb") as fout:
                fout.write(_text(data, name))
            shutil.copymode(os.path.join(root, f), out)
            written.append(os.path.relpath(out, dest).replace(os.sep, "/"))
    return written


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m repro.new", description=__doc__.splitlines()[0],
                                 epilog="then: cd DIR && git init, and follow its README.md")
    ap.add_argument("dest", metavar="DIR", help="the repository to create (a new or empty folder)")
    ap.add_argument("--paper", metavar="NAME", default=PLACEHOLDER,
                    help=f"the plugin package's name, which is the paper's name (default: {PLACEHOLDER})")
    args = ap.parse_args(argv)
    files = write(args.dest, args.paper)
    print(f"wrote the contestant template into {args.dest}: {len(files)} files, the plugin {args.paper}/ "
          f"(harness {__version__})")
    print(f"next: cd {args.dest} && git init, then follow README.md")
    return 0


if __name__ == "__main__":
    run_cli(main)
