"""Results as data: the README's result tables, generated from results files.

A results file is what `python -m repro.verify logs/<paper> --recompute --json`
printed for the shipped runs, kept beside them as logs/<paper>/results.json
(timm keeps its results CSVs the same way). The README holds each table between

    <!-- results logs/<paper>/results.json [reference=logs/<dir>] -->
    ...
    <!-- end results -->

and `python -m repro.results README.md` writes the tables again from the files
(`--check`: exit 1, naming the block, where the README differs from them).
reference= adds a column with the authors' own code's results, read from that
folder: results_<exp>.jsonl (one line per seed with its final test_acc, as
papers/mnist1d/authors_procedure.py writes them), else the PyTorch side of
drift_<exp>.jsonl (repro.align drift) at its last step for the same seeds.
"""
import argparse
import os
import re
import statistics

from repro import strict
from repro.errors import ReproError, run_cli
from repro.judge.rates import equivalence_text

BLOCK = re.compile(r"(<!-- results (\S+)(?: reference=(\S+))? -->\n)(.*?)(<!-- end results -->)", re.S)


def read(path):
    """The verify --json report in a results file, checked for what the tables need."""
    report = strict.read_json(path, "results file")
    if not isinstance(report, dict) or not isinstance(report.get("targets"), list):
        raise ReproError(f"{path} is not a verify --json report (no targets list)")
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    for row in report["targets"]:
        if not isinstance(row, dict):
            raise ReproError(f"{path}: a target row is not a mapping")
        missing = [k for k in ("paper", "exp", "metric", "paper_value", "achieved", "bar", "passed", "seeds", "values")
                   if k not in row]
        if missing:
            raise ReproError(f"{path}: a target row lacks {', '.join(missing)}")
        if not (all(isinstance(row[k], str) for k in ("paper", "exp", "metric", "achieved", "bar"))
                and row["exp"].isidentifier() and number(row["paper_value"]) and isinstance(row["passed"], bool)
                and isinstance(row["seeds"], list) and all(isinstance(s, int) and not isinstance(s, bool)
                                                           for s in row["seeds"])
                and isinstance(row["values"], list) and all(number(v) for v in row["values"])
                and len(row["seeds"]) == len(row["values"])):
            raise ReproError(f"{path}: a target row of {str(row.get('exp'))[:40]!r} has a field of the wrong type")
    return report


def _seeds(seeds):
    seeds = sorted(seeds)
    if seeds and seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 2:
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(str(s) for s in seeds)


def _jsonl(path):
    return [strict.loads_json(strict.utf8(line, path), f"{path} line {n}")
            for n, line, _ in strict.lines(path, 16 << 20, 256 << 20) if line.strip()]


def reference(folder, exp, seeds):
    """'mean ± std' of the authors' code for exp on these seeds (noted when from a drift file), or
    None when the folder has no file for exp."""
    if not os.path.isdir(folder):
        raise ReproError(f"reference={folder}: no such folder")
    path = os.path.join(folder, f"results_{exp}.jsonl")
    note = ""
    try:
        if os.path.isfile(path):
            values = {r["seed"]: float(r["test_acc"]) for r in _jsonl(path)}
        else:
            path = os.path.join(folder, f"drift_{exp}.jsonl")
            if not os.path.isfile(path):
                return None
            values = {r["seed"]: float(r["curve"][-1]["reference_acc"])
                      for r in _jsonl(path) if "seed" in r}  # not the summary line
            note = " (drift's PyTorch side)"
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise ReproError(f"{path}: a line lacks its seed or final accuracy ({type(e).__name__}: {e})") from None
    got = [values[s] for s in seeds if s in values]
    if len(got) != len(seeds):
        raise ReproError(f"{path} lacks seeds {sorted(set(seeds) - set(values))} of the harness's runs")
    spread = statistics.stdev(got) if len(got) > 1 else 0.0
    return f"{statistics.mean(got):.2f} ± {spread:.2f}{note}"


def table(report, ref_folder=None):
    """The markdown table of a verify --json report's targets."""
    rows = report["targets"]
    seeds = _seeds(rows[0]["seeds"]) if rows else ""
    rated = any(r.get("error_rates") for r in rows)
    head = ["cell", "paper"] + ([f"authors' code, PyTorch, seeds {seeds}"] if ref_folder else []) + \
        [f"this harness, seeds {seeds}", "each seed", "bar", "verdict"] + \
        (["false reject", "false accept at δ", "against the authors' code"] if rated else [])
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:  # in verify's order: the paper's registration
        places = 1 if all(round(v, 1) == round(v, 6) for v in r["values"]) else 2
        cells = [f"{r['paper']}/{r['exp']}", f"{r['paper_value']:g}"]
        if ref_folder:
            cells.append(reference(ref_folder, r["exp"], r["seeds"]) or "-")
        cells += [r["achieved"], ", ".join(f"{v:.{places}f}" for v in r["values"]), r["bar"],
                  "PASS" if r["passed"] else "FAIL"] + (_rates(r.get("error_rates")) if rated else [])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _rates(rep):
    """The error-rate cells of a row (repro.judge.references.cell_report): rates with their 90%
    intervals and reference-set size, and the equivalence with the authors' code."""
    if not rep:
        return ["-", "-", "-"]
    r, pct = rep["rates"], lambda x: f"{100 * x:.1f}%"
    fr = f"{pct(r['false_reject'])} [{pct(r['false_reject_interval'][0])}, {pct(r['false_reject_interval'][1])}], " \
         f"{rep['n_reference']} runs" + (" (provisional: fewer than 20)" if rep.get("provisional") else "")
    fa = "-" if r["false_accept"] is None else \
        f"{pct(r['false_accept'])} [{pct(r['false_accept_interval'][0])}, {pct(r['false_accept_interval'][1])}], δ {r['delta']:g}"
    eq = rep.get("equivalence")
    if eq is None:
        return [fr, fa, "-"]
    text = equivalence_text(eq)
    if eq["difference"] is not None:
        text += f": {eq['difference']:+.2f} [{eq['interval'][0]:+.2f}, {eq['interval'][1]:+.2f}]"
    return [fr, fa, text]


def render(text, root):
    """text with every results block written again from its files (paths relative to root)."""
    def block(m):
        ref = os.path.join(root, m.group(3)) if m.group(3) else None
        return m.group(1) + "\n" + table(read(os.path.join(root, m.group(2))), ref) + "\n" + m.group(5)
    return BLOCK.sub(block, text)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m repro.results", description=__doc__.splitlines()[0])
    ap.add_argument("readme", nargs="?", default="README.md", help="the markdown file holding the blocks")
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 where the tables differ")
    args = ap.parse_args(argv)
    text = strict.read_text(args.readme, "markdown file", 4 << 20)
    root = os.path.dirname(os.path.abspath(args.readme))
    blocks = BLOCK.findall(text)
    if not blocks:
        raise ReproError(f"{args.readme} holds no '<!-- results FILE -->' block")
    new = render(text, root)
    if args.check:
        stale = [m.group(2) for m, n in zip(BLOCK.finditer(text), BLOCK.finditer(new)) if m.group(0) != n.group(0)]
        for name in stale:
            print(f"{args.readme}: the table from {name} differs from the file: python -m repro.results {args.readme}")
        if not stale:
            print(f"{args.readme}: {len(blocks)} result tables match their files")
        return 1 if stale else 0
    if new != text:
        tmp = args.readme + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(new)
        os.replace(tmp, args.readme)
    print(f"{args.readme}: {len(blocks)} result tables written from their files")
    return 0


if __name__ == "__main__":
    run_cli(main)
