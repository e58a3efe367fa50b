"""The review page's rendering: HTML (styles inline, curves as embedded PNGs) and its Markdown summary,
from a verdict's rows and runs. repro.report (the command) and repro.review (a contest's pages) both
render with it; it judges nothing and never imports verify.
"""
import base64
import glob
import html
import io
import math
import os

from repro import strict
from repro.config import flatten
from repro.errors import ReproError
from repro.judge.checks import excluded_note, ran, told
from repro.judge.coverage import describe_coverage

ENV_KEYS = ("python", "paddlepaddle", "paddlenlp", "ppdiffusers", "numpy", "cuda", "cudnn", "device", "cpu",
            "cpu_count", "os", "world_size", "threads")
CODE_KEYS = ("paper.sha256", "paper.git_commit", "paper.git_dirty", "harness.version", "harness.sha256",
             "harness.git_commit", "harness.git_dirty")


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


# A run's train loss is a minibatch's, logged every log_every steps: noisy, and near zero at
# times, so its lowest value is an outlier and "the last logged loss is twice the lowest"
# held on 30 of the 112 shipped honest runs (ChnSentiCorp BoW ends 9-15 times its smoothed
# lowest: a near-zero minimum makes any ratio to it meaningless). Divergence is said only
# when it is there: a loss that is not finite, or a smoothed loss (the median of each block
# of BLOCK_SHARE of the logged values, at least 3) ending DIVERGE_FACTOR times above where
# it started. On the shipped runs the largest such end/start ratio is 0.41.
DIVERGE_FACTOR = 2.0
BLOCK_SHARE = 1 / 8


def _median(values):
    s = sorted(values)
    return (s[(len(s) - 1) // 2] + s[len(s) // 2]) / 2


def divergence(losses):
    """Why the logged losses show a diverged run, or None: a NaN or infinite loss, or the
    median of the last block of logged losses DIVERGE_FACTOR times the first block's."""
    if any(not math.isfinite(x) for x in losses):
        return "the training loss was NaN or infinite at some step"
    width = max(3, int(len(losses) * BLOCK_SHARE))
    if len(losses) < 2 * width:
        return None
    first, last = _median(losses[:width]), _median(losses[-width:])
    if last > DIVERGE_FACTOR * first and last > 0:
        return (f"the loss diverged: its median over the last {width} logged values is {last:.4g}, "
                f"{last / first if first > 0 else math.inf:.3g} times the first {width}'s ({first:.4g})")
    return None


def run_warnings(run):
    """What a reviewer should look at, beyond the verdict."""
    out = list(run.problems)
    why = divergence([_num(e.get("loss")) for e in run.events if e["kind"] == "train"])
    if why:
        out.append(why)
    out += run.warnings
    return out


def config_changes(run):
    """[(key, run's value, registered value, permitted)] where the run's config differs
    from its protocol's registered config (Protocol.config_changes)."""
    if run.protocol is None:
        return []
    try:
        return run.protocol.config_changes(run.header["config"], run.header["lite"])
    except ReproError:
        return []


def alignment_results(run_dir):
    """[(title, passed, rows)] from the JSON reports repro.align wrote into RUN_DIR/align/."""
    out = []
    for path in sorted(glob.glob(os.path.join(run_dir, "align", "*.json"))):
        try:
            data = strict.read_json(path, "alignment report")
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
        except (ReproError, KeyError, TypeError, ValueError) as e:
            out.append((os.path.basename(path), False, [{"key": "unreadable", "passed": False, "detail": str(e)}]))
    return out


def curves_png(runs, title, targets):
    """Train loss and each target's metric over the steps: one line per seed, the
    target's bar (paper value and the tolerance band) drawn across."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = ["train loss"] + [t.metric for t in targets]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.1 * len(panels), 2.3), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for run in sorted(runs, key=lambda r: (r.seed is None, r.seed)):
            if panel == "train loss":
                pts = [(e["step"], _num(e.get("loss"))) for e in run.events if e["kind"] == "train"]
            else:
                pts = [(e["step"], _num(e["metrics"].get(panel))) for e in run.events if e["kind"] == "eval"]
            if pts:
                ax.plot(*zip(*pts), label=f"seed {run.seed}", linewidth=1.0, alpha=0.9 if not run.problems else 0.35)
        target = next((t for t in targets if t.metric == panel), None)
        if target is not None:
            lo, hi = target.paper_value - target.tolerance, target.paper_value + target.tolerance
            if target.direction == "higher":
                hi = max(hi, ax.get_ylim()[1])
            elif target.direction == "lower":
                lo = min(lo, ax.get_ylim()[0])
            ax.axhspan(lo, hi, color="tab:green", alpha=0.12, label="accepted")
            ax.axhline(target.paper_value, color="black", linewidth=1.0, linestyle="--", label="paper")
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6, ncol=2, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 12px}
table{border-collapse:collapse;margin:8px 0 18px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}.PASS{background:#d9f2d9;font-weight:bold}.FAIL{background:#f8d7d7;font-weight:bold}
.verdict{font-size:20px;padding:8px 12px;display:inline-block;border-radius:4px;margin-right:12px}
.depart{background:#fde2c8}.muted{color:#666}.warn{color:#8a4b00}code{font-size:12px}h2{margin:22px 0 6px}
.grid{display:flex;flex-wrap:wrap;gap:8px}.grid img{width:588px;border:1px solid #ddd}ul{margin:4px 0 12px}"""


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


def _grouped(runs, what):
    """{text: [run paths]} of what(run) -> list of texts, so 40 runs with one warning make one line."""
    out = {}
    for run in runs:
        for text in what(run):
            out.setdefault(text, []).append(run)
    return out


def _who(runs, total, show=str):
    return f"all {total} runs" if len(runs) == total and total > 1 else \
        ", ".join(os.path.basename(show(r.path).rstrip(os.sep)) or show(r.path) for r in runs[:6]) + \
        (f" and {len(runs) - 6} more" if len(runs) > 6 else "")


def run_checks(run, options):
    """The checks that ran on this run (not those asked for): repro.judge.checks.ran."""
    return ran(run, options.checks())


def checks_told(runs, options):
    """Which checks ran on these runs, in the words every output uses (repro.judge.checks.told)."""
    return told(options.checks(), [run_checks(r, options) for r in runs], options.challenge)


def checked_text(runs, options):
    """What was checked, as it ran: the checks with the share of runs each ran on, then how paper code ran."""
    parts = [checks_told(runs, options)]
    if not (options.recompute or options.replay):
        parts.append("no paper code ran")
    else:
        if getattr(options, "cross_platform", False):
            parts.append("cross-platform tolerances")
        parts.append(f"paper code ran with the sandbox {sandbox_text(options)}")
    return "; ".join(parts)


def sandbox_text(options):
    if hasattr(options, "sandbox_text"):
        return options.sandbox_text()
    return "unknown"


def unsandboxed(options):
    """Whether paper code ran without the sandbox (every page must say so)."""
    return bool(options.recompute or options.replay) and sandbox_text(options).startswith("off")


def coverage_of(run):
    """The run's replay coverage in words, or what was not replayed."""
    cov = getattr(run, "coverage", None)
    if cov:
        return describe_coverage(cov)
    return "not replayed"


BELOW = "see Runs that do not count"
BELOW_MD = "see Runs that do not count, below"


def _targets_html(rows, show):
    """The targets' table, each with its verdict and why."""
    out = ["<h2>Targets</h2>"]
    out.append(_table(["experiment", "metric", "paper", "achieved: mean ± std [min, max]", "bar", "policy", "runs",
                         "verdict", "why"],
                        [[f"{r['paper']}/{r['exp']}", r["metric"], f"{r['paper_value']:.2f}", r["achieved"], r["bar"],
                          r["policy"], len(r["seeds"]), "PASS" if r["passed"] else "FAIL", show(r["why"]) + excluded_note(r, BELOW)]
                         for r in rows],
                        [[None] * 7 + ["PASS" if r["passed"] else "FAIL", None] for r in rows]))
    return out


def _runs_html(runs, options, show):
    """The runs that do not count, and the checks that ran on each run."""
    out = []
    excluded = [r for r in runs if r.problems]
    if excluded:
        out.append("<h2>Runs that do not count</h2>")
        out.append(_table(["run", "seed", "why it does not count"],
                          [[show(r.path), r.seed, "\n".join(show(p) for p in r.problems)] for r in excluded]))

    out.append("<h2>Checks that ran, per run</h2>")
    same = {}  # runs of one experiment with the same checks and audit share a row
    for r in sorted(runs, key=lambda r: r.path):
        key = (os.path.dirname(show(r.path)), ", ".join(run_checks(r, options)) or "-", coverage_of(r))
        same.setdefault(key, []).append(r)
    out.append(_table(["runs", "seeds", "checks that ran", "replay audit"],
                        [[where if len(rs) > 1 else show(rs[0].path), ", ".join(str(r.seed) for r in rs), checks, audit]
                         for (where, checks, audit), rs in same.items()]))
    return out


def _cells(runs):
    """{(paper, experiment): [runs]} in the order the runs come."""
    groups = {}
    for run in runs:
        groups.setdefault((run.header.get("paper"), run.header.get("exp")), []).append(run)
    return groups


def _curves_html(groups):
    """Each cell's curves, as an embedded PNG."""
    out = ["<h2>Curves</h2><div class='grid'>"]
    for (paper, exp), group in groups.items():
        targets = group[0].protocol.targets if group[0].protocol else ()
        png = base64.b64encode(curves_png(group, f"{paper}/{exp}", targets)).decode()
        out.append(f"<img alt='curves of {html.escape(f'{paper}/{exp}')}' src='data:image/png;base64,{png}'>")
    out.append("</div>")
    return out


def _seeds_html(groups):
    """Each cell's final value of each run."""
    out = ["<h2>Final values per seed</h2>"]
    seed_rows = []
    for (paper, exp), group in groups.items():
        metric = group[0].protocol.targets[0].metric if group[0].protocol and group[0].protocol.targets else None
        vals = []
        for run in sorted(group, key=lambda r: (r.seed is None, r.seed)):
            v = (run.recomputed or run.metrics or {}).get(metric) if metric else None
            vals.append(f"seed {run.seed}: {v:.2f}" if isinstance(v, (int, float)) else f"seed {run.seed}: -")
        seed_rows.append([f"{paper}/{exp}", metric or "-", " · ".join(vals)])
    out.append(_table(["experiment", "metric", "final value of each run (recomputed where verify did)"], seed_rows))
    return out


def _warned_html(warned, runs, show):
    """What a reviewer should look at beyond the verdict, grouped by text."""
    out = []
    if warned:
        out.append("<h2>Worth a look</h2><ul>" + "".join(
            f"<li class='warn'>{html.escape(text)} <span class='muted'>({html.escape(_who(rs, len(runs), show))})"
            f"</span></li>"
            for text, rs in warned.items()) + "</ul>")
    return out


def _config_html(runs, show):
    """Each run's config against its registered experiment."""
    out = ["<h2>Config against the registered experiment</h2>"]
    permitted, departures = {}, []
    for run in runs:
        for key, used, registered, free in config_changes(run):
            if free:
                permitted.setdefault(key, set()).add(repr(used))
            else:
                departures.append([show(run.path), key, repr(used), repr(registered)])
    if departures:
        out.append("<p>Departures (these make a run not count):</p>")
        out.append(_table(["run", "key", "run's value", "registered"], departures,
                            [[None, "depart", "depart", None] for _ in departures]))
    if permitted:
        out.append("<p>Permitted differences (a run may choose these), one line per key with the values seen:</p><ul>"
                     + "".join(f"<li><code>{html.escape(k)}</code>: {html.escape(', '.join(sorted(v)))}</li>"
                               for k, v in sorted(permitted.items())) + "</ul>")
    if not departures and not permitted:
        out.append("<p>None: every run used the registered config.</p>")
    return out


def _env_html(runs):
    """The environment and code identity, distinct values across the runs."""
    out = ["<h2>Environment and code</h2>"]
    env_rows = []
    for key in ENV_KEYS:
        values = sorted({str(r.header.get("env", {}).get(key)) for r in runs})
        env_rows.append([key, " | ".join(values)])
    for key in CODE_KEYS:
        values = sorted({str(flatten(r.header.get("code", {})).get(key)) for r in runs})
        env_rows.append([f"code.{key}", " | ".join(values)])
    out.append(_table(["key", "value (distinct values across the runs, separated by |)"], env_rows))
    return out


def _align_html(runs, show):
    """The alignment reports repro.align wrote into the runs."""
    out = []
    align_rows, align_cls = [], []
    for run in runs:
        for name, passed, rows_ in alignment_results(run.path):
            for row in rows_:
                align_rows.append([show(run.path), name, row["key"], show(row.get("detail", "")),
                                   "PASS" if row["passed"] else "FAIL"])
                align_cls.append([None] * 4 + ["PASS" if row["passed"] else "FAIL"])
    if align_rows:
        out.append("<h2>Alignment (repro.align)</h2>")
        out.append(_table(["run", "check", "rung / key", "detail", "result"], align_rows, align_cls))
    return out


def _sources_html(rows, show):
    """Where each target comes from."""
    out = []
    sources = sorted({r["source"] for r in rows})
    if sources:
        out.append("<h2>Sources</h2><ul>" + "".join(f"<li>{html.escape(show(s))}</li>" for s in sources) + "</ul>")
    return out


def _markdown(title, warning, verdict, reached, counted, checked, rows, runs, warned, show):
    """The page's Markdown summary."""
    excluded = [r for r in runs if r.problems]
    md = [f"## repro review: {title}", ""] + ([f"**{warning}**", ""] if warning else []) + [
          f"**{verdict}**: {reached} of {len(rows)} targets reached; "
          f"{counted} of {len(runs)} runs count (checks that ran: {checked}).", "",
          "| experiment | metric | paper | achieved | bar | policy | runs | verdict |",
          "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    md += [f"| {r['paper']}/{r['exp']} | {r['metric']} | {r['paper_value']:.2f} | {r['achieved']} | "
           f"{r['bar']} | {r['policy']} | {len(r['seeds'])} | "
           f"{'PASS' if r['passed'] else 'FAIL'} |" for r in rows]
    md += ["", "Why:"] + [f"- {r['paper']}/{r['exp']} {r['metric']}: {show(r['why'])}{excluded_note(r, BELOW_MD)}"
                          for r in rows]
    if excluded:
        md += ["", "Runs that do not count:"] + [f"- `{show(r.path)}`: {'; '.join(show(p) for p in r.problems)}"
                                                 for r in excluded]
    audited = [r for r in runs if getattr(r, "coverage", None)]
    if audited:
        md += ["", "Replay audit:"] + [f"- `{show(r.path)}`: {coverage_of(r)}" for r in audited]
    if warned:
        md += ["", "Worth a look:"] + [f"- {text} ({_who(rs, len(runs), show)})" for text, rs in warned.items()]
    env = runs[0].header.get("env", {}) if runs else {}
    md += ["", "Environment: " + ", ".join(f"{k} {env.get(k)}" for k in ENV_KEYS if env.get(k) is not None)]
    return "\n".join(md) + "\n"


def render(rows, runs, ok, options, preamble="", title=None, verdict=None, show=None):
    """(page HTML, summary Markdown, ok). preamble: HTML put under the verdict (repro.review's
    header); title/verdict: override the page's; show(text): how a run's path or reason is shown
    (repro.review: relative to the submission, no path of the reviewer's machine)."""
    show = show or (lambda text: text)
    verdict = verdict or ("REPRODUCED" if ok else "NOT REPRODUCED")
    title = title or ", ".join(sorted({f"{r.header.get('paper')}/{r.header.get('exp')}" for r in runs}))
    counted = sum(not r.problems for r in runs)
    reached = sum(r["passed"] for r in rows)
    checked = checked_text(runs, options)
    warning = ("WARNING: the paper code ran WITHOUT the sandbox (--no-sandbox): it had this machine's access "
               "while it ran") if unsandboxed(options) else ""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>repro review: {html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>Review: {html.escape(title)}</h1>",
             f"<p class='FAIL'>{html.escape(warning)}</p>" if warning else "",
             f"<p><span class='verdict {'PASS' if ok and verdict.startswith('REPRODUCED') else 'FAIL'}'>"
             f"{html.escape(verdict)}</span>"
             f"{reached} of {len(rows)} targets reached; {counted} of {len(runs)} runs count. "
             f"<span class='muted'>Checks that ran: {html.escape(checked)}.</span></p>", preamble]
    failing = [r for r in rows if not r["passed"]]
    if failing:
        parts.append("<ul>" + "".join(f"<li><b>{html.escape(r['paper'])}/{html.escape(r['exp'])}</b> "
                                      f"{html.escape(r['metric'])}: {html.escape(show(r['why']) + excluded_note(r, BELOW))}</li>"
                                      for r in failing) + "</ul>")

    parts += _targets_html(rows, show) + _runs_html(runs, options, show)
    groups = _cells(runs)
    parts += _curves_html(groups) + _seeds_html(groups)
    warned = _grouped(runs, lambda r: [show(w) for w in run_warnings(r)[len(r.problems):]])
    parts += _warned_html(warned, runs, show) + _config_html(runs, show) + _env_html(runs) + _align_html(runs, show)
    parts += _sources_html(rows, show)
    parts.append("</body></html>")
    md = _markdown(title, warning, verdict, reached, counted, checked, rows, runs, warned, show)
    return "".join(parts), md, ok
