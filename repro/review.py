"""Review a reproduction contest's submissions: python -m repro.review CONTEST SUBMISSIONS [--out DIR]

CONTEST is a contest file (configs/contests/, repro/contest.py). SUBMISSIONS
lists what the maintainers received, in a YAML file:

    submissions:
      - team: alpha
        paper: mnist1d_cnn        # a paper of the contest
        repo: subs/alpha          # the checked-out repository (relative to this file)
        commit: 3f2a9c1           # the commit the team announced
        time: "2027-01-05T10:00:00+08:00"   # when the maintainers recorded it; never a time from the logs

For each submission: its layout (README, requirements.txt naming paddlepaddle,
the plugin package, logs/), the checkout against the announced commit, the
code identity of every run against the checked-out tree, then verify against
the contest's targets (never the plugin's own) with --recompute and the replay
audit. The first submission, in the maintainers' time order, that passes before
the deadline reproduces its paper; later ones no longer count.

Writes into --out (default ./review): status.md (the table for the pinned
issue), review.json, index.html and one review page per submission.

Safety: reading the logs never imports a submission's code. Recompute and the
replay audit must run it: they run in child processes (repro.audit) with a
time limit, capped file writes and no core dumps, and see only that
submission's plugin. That is not a sandbox: run `repro.review` in a container
(or a throwaway VM) without credentials, as the README says.
"""
import argparse
import html
import json
import os
import subprocess
import time

from repro import strict
from repro.contest import parse_time, protocol_of, read_contest
from repro.errors import ReproError, run_cli
from repro.registry import ENV, ONLY
from repro.verify import Options, find_runs, report_json, verify


def read_submissions(path, contest):
    data = strict.read_yaml(path, "submissions file")
    where = f"submissions file {path}"
    items = data.get("submissions") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ReproError(f"{where}: needs a list under 'submissions'")
    base = os.path.dirname(os.path.abspath(path))
    out = []
    for i, item in enumerate(items):
        at = f"{where}: submissions[{i}]"
        if not isinstance(item, dict):
            raise ReproError(f"{at} must be a mapping")
        missing = [k for k in ("team", "paper", "repo", "commit", "time") if k not in item]
        unknown = sorted(set(item) - {"team", "paper", "repo", "commit", "time"})
        if missing or unknown:
            raise ReproError(f"{at}: " + (f"missing {', '.join(missing)}" if missing else f"unknown key {unknown[0]!r}"))
        if not all(isinstance(item[k], str) and item[k] for k in ("team", "paper", "repo", "commit", "time")):
            raise ReproError(f"{at}: team, paper, repo, commit and time must be non-empty strings")
        contest.entries(item["paper"])  # a paper the contest has
        out.append({**item, "repo": os.path.normpath(os.path.join(base, item["repo"])),
                    "recorded": parse_time(item["time"], f"{at}: time")})
    return sorted(out, key=lambda s: s["recorded"])  # the maintainers' order, never the logs'


def check_layout(repo, plugin):
    """(problems, plugin package folder or None) of a submitted repository."""
    problems = []
    if not os.path.isdir(repo):
        return [f"the repository {repo} is not there (check it out first)"], None
    if not any(os.path.isfile(os.path.join(repo, n)) for n in ("README.md", "README.rst", "README.txt", "README")):
        problems.append("no README")
    req = os.path.join(repo, "requirements.txt")
    if not os.path.isfile(req):
        problems.append("no requirements.txt")
    else:
        names = [ln.split("#")[0].strip().lower() for ln in open(req, encoding="utf-8", errors="replace")]
        if not any(n.startswith(("paddlepaddle", "paddlepaddle-gpu")) for n in names):
            problems.append("requirements.txt does not name paddlepaddle")
    package = None
    for cand in (os.path.join(repo, plugin), os.path.join(repo, "src", plugin)):
        if os.path.isfile(os.path.join(cand, "__init__.py")):
            package = cand
            break
    if package is None:
        problems.append(f"no plugin package {plugin}/ (with __init__.py) at the repository's top or under src/")
    if not os.path.isdir(os.path.join(repo, "logs")):
        problems.append("no logs/ folder with the training runs")
    return problems, package


def check_commit(repo, commit):
    def git(*args):
        p = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, timeout=30)
        return p.stdout.strip() if p.returncode == 0 else None
    head = git("rev-parse", "HEAD")
    if head is None:
        return [f"{repo} is not a git checkout, so its commit cannot be checked"]
    if not head.startswith(commit.lower()) or len(commit) < 7:
        return [f"the checkout is at {head[:12]}, not the announced commit {commit}"]
    status = git("status", "--porcelain", "--untracked-files=all")
    if status:
        return [f"the checkout has local changes ({len(status.splitlines())} files): review a clean checkout"]
    return []


def review_one(sub, contest, out_dir, options):
    entries = contest.entries(sub["paper"])
    result = {"team": sub["team"], "paper": sub["paper"], "repo": sub["repo"], "commit": sub["commit"],
              "time": sub["time"], "late": sub["recorded"] > contest.deadline, "problems": [], "ok": False}
    layout, package = check_layout(sub["repo"], sub["paper"])
    result["problems"] += layout
    if os.path.isdir(sub["repo"]):
        result["problems"] += check_commit(sub["repo"], sub["commit"])
    logs = os.path.join(sub["repo"], "logs")
    if package is None or not os.path.isdir(logs):
        return result
    opts = Options(recompute=options.recompute, replay=max(e.replay for e in entries) if options.replay else 0,
                   challenge=options.challenge, jobs=options.jobs, timeout=options.timeout,
                   progress=options.progress, protocol_of=protocol_of(contest, sub["repo"]))
    saved = {k: os.environ.get(k) for k in (ENV, ONLY)}
    os.environ[ENV], os.environ[ONLY] = package, "1"  # what the audit children import: this plugin alone
    try:
        rows, runs, ok = verify([logs], opts)
    except ReproError as e:
        result["problems"].append(str(e))
        return result
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    report = report_json(rows, runs, ok, opts)
    judged = {(r["paper"], r["exp"]) for r in rows}
    result["problems"] += [f"no run of {e.plugin}/{e.experiment}, which the contest judges" for e in entries
                           if (e.plugin, e.experiment) not in judged]
    result.update(targets=rows, runs=report["runs"], checked=report["checked"], challenge=report["challenge"])
    result["ok"] = ok and not result["problems"]
    page = _page_name(sub)
    from repro.report import render
    body, _, _ = render(rows, runs, ok, opts)
    with open(os.path.join(out_dir, page), "w", encoding="utf-8") as f:
        f.write(body)
    result["page"] = page
    return result


def _page_name(sub):
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{sub['team']}-{sub['paper']}-{sub['time']}")
    return f"{safe}.html"


def ledger(results, contest):
    """Mark each submission: the first passing one (in time order) per paper reproduces it."""
    winners = {}
    for r in results:
        if r["late"]:
            r["status"] = "late: recorded after the deadline"
        elif not r["ok"]:
            r["status"] = "not reproduced"
        elif r["paper"] in winners:
            w = winners[r["paper"]]
            r["status"] = f"passes, but {w['team']} reproduced {r['paper']} first ({w['time']}): does not count"
        else:
            winners[r["paper"]] = r
            r["status"] = "REPRODUCED: first to reach the bar"
    papers = []
    for name in dict.fromkeys(e.plugin for e in contest.papers):
        entries = contest.entries(name)
        papers.append({"paper": name, "experiment": ", ".join(e.experiment for e in entries),
                       "bar": "; ".join(f"{e.experiment} {e.metric} {e.target().bar()}" for e in entries),
                       "policy": "; ".join(sorted({str(e.target().policy) for e in entries})),
                       "reproduced_by": winners[name]["team"] if name in winners else None,
                       "at": winners[name]["time"] if name in winners else None,
                       "pending": [r["team"] for r in results if r["paper"] == name and not r["ok"]]})
    return papers


def reasons(r):
    why = list(r["problems"])
    for t in r.get("targets", []):
        why.append(f"{t['metric']}: {t['why']}")
    for run in r.get("runs", []):
        why += [f"{os.path.relpath(run['path'], r['repo'])}: {p}" for p in run["problems"]]
    return why


def status_markdown(contest, papers, results):
    lines = [f"## {contest.name}: status as of {time.strftime('%Y-%m-%d %H:%M %Z')}", "",
             f"Deadline {contest.deadline.isoformat()}. A paper counts as reproduced by the first submission, in "
             "the order the maintainers recorded them, that reaches its bar.", "",
             "| paper | experiment | bar | policy | status | by | recorded |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for p in papers:
        status = "reproduced" if p["reproduced_by"] else "open"
        lines.append(f"| {p['paper']} | {p['experiment']} | {p['bar']} | {p['policy']} | {status} | "
                     f"{p['reproduced_by'] or '-'} | {p['at'] or '-'} |")
    lines += ["", "### Submissions, in the order they were recorded", "",
              "| # | recorded | team | paper | result | why |", "| --- | --- | --- | --- | --- | --- |"]
    for i, r in enumerate(results, 1):
        why = "; ".join(reasons(r))[:600].replace("|", "/") or "-"
        lines.append(f"| {i} | {r['time']} | {r['team']} | {r['paper']} | {r['status']} | {why} |")
    return "\n".join(lines) + "\n"


def index_html(contest, papers, results):
    rows = "".join(
        f"<tr><td>{i}</td><td>{html.escape(r['time'])}</td><td>{html.escape(r['team'])}</td>"
        f"<td>{html.escape(r['paper'])}</td><td class='{'PASS' if r['ok'] and not r['late'] else 'FAIL'}'>"
        f"{html.escape(r['status'])}</td><td>"
        + (f"<a href='{html.escape(r['page'])}'>review page</a>" if r.get("page") else "-")
        + f"</td><td>{html.escape('; '.join(reasons(r))[:400])}</td></tr>" for i, r in enumerate(results, 1))
    table = "".join(f"<tr><td>{html.escape(p['paper'])}</td><td>{html.escape(p['bar'])}</td>"
                    f"<td>{'reproduced by ' + html.escape(p['reproduced_by']) if p['reproduced_by'] else 'open'}"
                    f"</td></tr>" for p in papers)
    from repro.report import CSS
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(contest.name)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(contest.name)}</h1>"
            f"<h2>Papers</h2><table><tr><th>paper</th><th>bar</th><th>status</th></tr>{table}</table>"
            f"<h2>Submissions (maintainers' time order)</h2><table><tr><th>#</th><th>recorded</th><th>team</th>"
            f"<th>paper</th><th>result</th><th>page</th><th>why</th></tr>{rows}</table></body></html>")


def review(contest_path, submissions_path, out_dir, options):
    contest = read_contest(contest_path)
    subs = read_submissions(submissions_path, contest)
    os.makedirs(out_dir, exist_ok=True)
    results = []
    for i, sub in enumerate(subs, 1):
        if options.progress:
            options.progress(f"[{i}/{len(subs)}] {sub['team']} / {sub['paper']} ({sub['time']})")
        results.append(review_one(sub, contest, out_dir, options))
    papers = ledger(results, contest)
    for name, text in (("status.md", status_markdown(contest, papers, results)),
                       ("index.html", index_html(contest, papers, results)),
                       ("review.json", json.dumps({"contest": contest.name, "papers": papers, "submissions": [
                           {k: v for k, v in r.items()} for r in results]}, indent=1, default=str))):
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            f.write(text)
    return papers, results


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m repro.review", description=__doc__.splitlines()[0])
    ap.add_argument("contest", metavar="CONTEST", help="the contest file (configs/contests/*.yaml)")
    ap.add_argument("submissions", metavar="SUBMISSIONS", help="the submissions file (YAML)")
    ap.add_argument("--out", default="review", metavar="DIR", help="where to write the status and pages (./review)")
    ap.add_argument("--logs-only", action="store_true",
                    help="check the logs and the code identity only: run no submitted code (no recompute, no replay)")
    ap.add_argument("--challenge", metavar="SECRET", help="what chooses the replayed segments (default: fresh)")
    ap.add_argument("--jobs", type=int, default=1, help="audit processes at a time (default 1)")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds one run's audit may take (default 3600)")
    args = ap.parse_args(argv)
    say = lambda msg: print(msg, flush=True)
    options = Options(recompute=not args.logs_only, replay=0 if args.logs_only else 2, challenge=args.challenge,
                      jobs=args.jobs, timeout=args.timeout, progress=say)
    papers, results = review(args.contest, args.submissions, args.out, options)
    with open(os.path.join(args.out, "status.md"), encoding="utf-8") as f:
        print("\n" + f.read())
    print(f"wrote {os.path.join(args.out, 'status.md')}, review.json and index.html"
          + (f" (replay challenge {options.challenge})" if options.challenge else ""))
    return 0


if __name__ == "__main__":
    run_cli(main)
