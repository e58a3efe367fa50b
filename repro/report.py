"""A review page for runs: python -m repro.report RUN_DIR [...] --out PAGE.html [--recompute] [--replay N]

Writes PAGE.html (self-contained: styles inline, curves as embedded PNGs) and
PAGE.md (a summary to paste into a pull request or issue). The page reads top
down as a reviewer decides: the verdict and its reasons; the targets; runs that
do not count, with why; curves of every seed against the target's bar and
band; what to look at (warnings, grouped); the config (permitted differences
collapsed to one line per key, real departures highlighted); the environment
and code; alignment results; the sources.
"""
import argparse
import os

from repro.errors import ReproError, run_cli
from repro.pages.run import render
from repro.registry import parse_with_papers
from repro.judge.arguments import add_arguments, options_from
from repro.judge.options import Options
from repro.judge.verdict import verify


def build(paths, options=None):
    """(page HTML, summary Markdown, ok) for the runs under paths, verified with options."""
    options = options or Options()
    rows, runs, ok = verify(paths, options)
    return render(rows, runs, ok, options)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m repro.report", description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="RUN_DIR")
    ap.add_argument("--out", required=True, metavar="PAGE", help="the HTML page to write; PAGE.md is written beside it")
    add_arguments(ap)
    args = parse_with_papers(ap, argv)
    out = args.out if args.out.endswith(".html") else args.out + ".html"
    md_path = out[: -len(".html")] + ".md"
    page, md, ok = build(args.runs, options_from(args))
    try:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        for path, text in ((out, page), (md_path, md)):
            tmp = path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
    except OSError as e:
        raise ReproError(f"--out {out}: cannot write ({e.strerror or e})") from None
    print(f"wrote {out} and {md_path}: {'REPRODUCED' if ok else 'NOT REPRODUCED'}")
    return 0


if __name__ == "__main__":
    run_cli(main)
