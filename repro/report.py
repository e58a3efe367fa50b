"""A review page for runs: python -m repro.report RUN_DIR [...] --out PAGE.html

Writes PAGE.html (self-contained: styles inline, curves as embedded PNGs) and
PAGE.md (a summary to paste into a pull request or issue): the verdict per
target, paper vs achieved, loss and metric curves, the environment, config
differences from the registered experiment config, and warnings (NaN,
divergence, a dirty git tree, changed evaluation data, any compliance problem).
"""
import argparse
import base64
import html
import io
import math
import os

from repro.config import flatten
from repro.errors import ReproError, run_cli
from repro.registry import add_papers_option, use_folders
from repro.verify import Options, verify

ENV_KEYS = ("python", "paddlepaddle", "paddlenlp", "ppdiffusers", "numpy", "cuda", "cudnn", "device", "cpu",
            "cpu_count", "os", "world_size")
CODE_KEYS = ("paper.sha256", "paper.git_commit", "paper.git_dirty", "harness.version", "harness.sha256",
             "harness.git_commit", "harness.git_dirty")


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def run_warnings(run):
    """What a reviewer should look at, beyond the verdict."""
    out = list(run.problems)
    losses = [_num(e.get("loss")) for e in run.events if e["kind"] == "train"]
    if any(not math.isfinite(x) for x in losses):
        out.append("the training loss was NaN or infinite at some step")
    elif len(losses) >= 4 and losses[-1] > 2 * min(losses) and losses[-1] > losses[0]:
        out.append(f"the loss diverged: last {losses[-1]:.4g}, lowest {min(losses):.4g}")
    out += run.warnings
    return out


def config_changes(run):
    """Every key where the run's config differs from the registered experiment config."""
    if run.protocol is None:
        return []
    try:
        registered = run.protocol.registered_config(run.header["lite"])
    except ReproError:
        return []
    used = flatten(run.header["config"])
    return [(k, used.get(k), registered.get(k)) for k in sorted(set(used) | set(registered))
            if used.get(k) != registered.get(k)]


def alignment_results(run_dir):
    """[(title, passed, rows)] from the JSON reports repro.align wrote into RUN_DIR/align/."""
    import glob
    import json

    out = []
    for path in sorted(glob.glob(os.path.join(run_dir, "align", "*.json"))):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            rows = []
            for r in data["rows"]:
                if "checks" in r:  # a ladder rung
                    worst = max((c for c in r["checks"]), default=None,
                                key=lambda c: c[c["method"]] if math.isfinite(c[c["method"]]) else math.inf)
                    detail = r.get("note") or ""
                    if worst:
                        detail = (f"{len(r['checks'])} checks, worst {worst['method']} {worst[worst['method']]:.2e} "
                                  f"({worst['key']}) vs {worst['threshold']:.0e}" + (f"; {detail}" if detail else ""))
                    rows.append({"key": r["key"], "passed": r["passed"], "detail": detail})
                else:  # a diff report
                    rows.append({"key": r["key"], "passed": r["passed"],
                                 "detail": f"{r['method']} {r[r['method']]:.2e} vs {r['threshold']:.0e} {r.get('note', '')}"})
            out.append((data.get("title") or os.path.basename(path), data["passed"], rows))
        except (OSError, ValueError, KeyError, TypeError) as e:
            out.append((os.path.basename(path), False, [{"key": "unreadable", "passed": False, "detail": str(e)}]))
    return out


def curves_png(runs, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric_keys = sorted({k for r in runs for e in r.events if e["kind"] == "eval" for k in e["metrics"]})
    panels = ["train loss"] + metric_keys
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for run in runs:
            if panel == "train loss":
                pts = [(e["step"], _num(e.get("loss"))) for e in run.events if e["kind"] == "train"]
            else:
                pts = [(e["step"], _num(e["metrics"].get(panel))) for e in run.events if e["kind"] == "eval"]
            if pts:
                ax.plot(*zip(*pts), label=f"seed {run.seed}", linewidth=1.2)
        ax.set_title(panel)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:8px 0 18px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}.PASS{background:#d9f2d9;font-weight:bold}.FAIL{background:#f8d7d7;font-weight:bold}
.verdict{font-size:20px;padding:8px 12px;display:inline-block;border-radius:4px}code{font-size:12px}
.warn{color:#8a4b00;white-space:pre-line}img{max-width:100%;border:1px solid #ddd}"""


def _table(header, rows, classes=None):
    h = "".join(f"<th>{html.escape(str(c))}</th>" for c in header)
    body = ""
    for i, row in enumerate(rows):
        cells = ""
        for j, c in enumerate(row):
            cls = f' class="{classes[i][j]}"' if classes and classes[i][j] else ""
            cells += f"<td{cls}>{html.escape(str(c))}</td>"
        body += f"<tr>{cells}</tr>"
    return f"<table><tr>{h}</tr>{body}</table>"


def build(paths, options=None):
    """(page HTML, summary Markdown, ok) for the runs under paths, verified with options."""
    options = options or Options()
    rows, runs, ok = verify(paths, options)
    return render(rows, runs, ok, options)


def render(rows, runs, ok, options):
    with_recompute = options.recompute
    verdict = "REPRODUCED" if ok else "NOT REPRODUCED"
    title = ", ".join(sorted({f"{r.header.get('paper')}/{r.header.get('exp')}" for r in runs}))
    target_rows = [[f"{r['paper']}/{r['exp']}", r["metric"], f"{r['paper_value']:.2f}", r["achieved"],
                    r["bar"], r["policy"], len(r["seeds"]),
                    "PASS" if r["passed"] else "FAIL", r["why"]] for r in rows]
    target_header = ["experiment", "metric", "paper", "achieved (mean ± std [min, max])", "bar", "policy",
                     "runs", "verdict", "why"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>repro review: {html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>Review: {html.escape(title)}</h1>",
             f"<p class='verdict {'PASS' if ok else 'FAIL'}'>{verdict}</p>",
             f"<p>{len(runs)} run(s); {sum(not r.problems for r in runs)} count."
             f"{' Checkpoints re-evaluated (--recompute).' if with_recompute else ''}</p>",
             "<h2>Targets</h2>",
             _table(target_header, target_rows,
                    [[None] * 7 + ["PASS" if r["passed"] else "FAIL", None] for r in rows]),
             "<p>Sources: " + "; ".join(sorted({html.escape(r["source"]) for r in rows})) + "</p>"]

    parts.append("<h2>Runs</h2>")
    run_rows, run_cls = [], []
    for run in runs:
        end = run.events[-1]
        warns = run_warnings(run)
        run_rows.append([run.path, run.header.get("exp"), run.seed, end.get("status", "-"), end.get("step", "-"),
                         ", ".join(f"{k} {v:.4g}" for k, v in (end.get("metrics") or {}).items()
                                   if isinstance(v, (int, float))),
                         "counts" if not run.problems else "excluded",
                         "\n".join(warns) or "none"])
        run_cls.append([None] * 6 + ["PASS" if not run.problems else "FAIL", "warn" if warns else None])
    parts.append(_table(["run", "experiment", "seed", "status", "step", "final metrics", "", "warnings"],
                        run_rows, run_cls))

    parts.append("<h2>Curves</h2>")
    groups = {}
    for run in runs:
        groups.setdefault((run.header.get("paper"), run.header.get("exp")), []).append(run)
    for (paper, exp), group in groups.items():
        png = base64.b64encode(curves_png(group, f"{paper}/{exp}")).decode()
        parts.append(f"<h3>{html.escape(f'{paper}/{exp}')}</h3><img alt='curves {html.escape(exp)}' "
                     f"src='data:image/png;base64,{png}'>")

    align_rows, align_cls = [], []
    for run in runs:
        for title, passed, rows_ in alignment_results(run.path):
            for row in rows_:
                align_rows.append([run.path, title, row["key"], row.get("detail", ""), "PASS" if row["passed"] else "FAIL"])
                align_cls.append([None] * 4 + ["PASS" if row["passed"] else "FAIL"])
    if align_rows:
        parts.append("<h2>Alignment (repro.align)</h2>")
        parts.append(_table(["run", "check", "rung / key", "detail", "result"], align_rows, align_cls))

    parts.append("<h2>Config differences from the registered experiment config</h2>")
    diff_rows = [[run.path, k, repr(u), repr(r)] for run in runs for k, u, r in config_changes(run)]
    parts.append(_table(["run", "key", "run's value", "registered"], diff_rows) if diff_rows else "<p>none</p>")

    parts.append("<h2>Environment</h2>")
    env_rows = []
    for key in ENV_KEYS:
        values = sorted({str(r.header.get("env", {}).get(key)) for r in runs})
        env_rows.append([key, " | ".join(values)])
    for key in CODE_KEYS:
        values = sorted({str(flatten(r.header.get("code", {})).get(key)) for r in runs})
        env_rows.append([f"code.{key}", " | ".join(values)])
    parts.append(_table(["", "value (distinct values across runs, separated by |)"], env_rows))
    parts.append("</body></html>")

    md = [f"## repro review: {title}", "", f"**{verdict}**: {sum(r['passed'] for r in rows)} of {len(rows)} "
          f"targets reached; {sum(not r.problems for r in runs)} of {len(runs)} runs count"
          f"{' (checkpoints re-evaluated)' if with_recompute else ''}.", "",
          "| experiment | metric | paper | achieved | bar | policy | runs | verdict |",
          "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    md += [f"| {r['paper']}/{r['exp']} | {r['metric']} | {r['paper_value']:.2f} | {r['achieved']} | "
           f"{r['bar']} | {r['policy']} | {len(r['seeds'])} | "
           f"{'PASS' if r['passed'] else 'FAIL'} |" for r in rows]
    md += ["", "Why:"] + [f"- {r['paper']}/{r['exp']} {r['metric']}: {r['why']}" for r in rows]
    warned = [(run, run_warnings(run)) for run in runs if run_warnings(run)]
    if warned:
        md += ["", "Warnings:"] + [f"- `{run.path}`: {'; '.join(w)}" for run, w in warned]
    env = runs[0].header.get("env", {})
    md += ["", "Environment: " + ", ".join(f"{k} {env.get(k)}" for k in ENV_KEYS if env.get(k) is not None)]
    return "".join(parts), "\n".join(md) + "\n", ok


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m repro.report", description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="RUN_DIR")
    ap.add_argument("--out", required=True, metavar="PAGE", help="the HTML page to write; PAGE.md is written beside it")
    ap.add_argument("--recompute", action="store_true", help="re-evaluate each run's checkpoint first")
    add_papers_option(ap)
    args = ap.parse_args(argv)
    use_folders(args.papers)
    out = args.out if args.out.endswith(".html") else args.out + ".html"
    md_path = out[: -len(".html")] + ".md"
    page, md, ok = build(args.runs, Options(recompute=args.recompute))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    for path, text in ((out, page), (md_path, md)):
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    print(f"wrote {out} and {md_path}: {'REPRODUCED' if ok else 'NOT REPRODUCED'}")
    return 0


if __name__ == "__main__":
    run_cli(main)
