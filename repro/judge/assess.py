"""A contest's review: each submission assessed on its own, in the maintainers' time order (its
files, its commit, its receipt, then verify against the contest's targets with every refusal
known before a target is judged), then the ledger, then the outputs (repro.pages.contest)."""
import os
import re
import sys
import tempfile
import time
from dataclasses import replace

from repro.boundary.safegit import check_commit, repository_of
from repro.boundary.sandbox import Sandbox
from repro.boundary.tree import printable, scan_tree
from repro.errors import ReproError
from repro.judge import copies
from repro.judge.contest import protocol_of, read_contest
from repro.judge.ledger import flag_team_names, last_full_review, ledger
from repro.judge.options import Options
from repro.judge.receipts import check_receipt, now_iso, read_receipts, write_receipts
from repro.judge.submissions import check_layout, read_submissions
from repro.judge.verdict import verify
from repro.pages import contest as pages
from repro.strict import short


def _replay_of(entries):
    """One replay setting for a paper's entries: theirs when they agree, else every segment."""
    settings = {e.replay for e in entries}
    return settings.pop() if len(settings) == 1 else "all"


class _Scrub:
    """Text for the outputs: paths of this machine replaced by paths inside the submission."""

    def __init__(self, repo=None, extra=()):
        roots = []
        for path, label in ((repo, ""), *extra):
            if path:
                for p in dict.fromkeys((os.path.abspath(path), os.path.realpath(path))):
                    roots.append((p, label))
        harness = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout
        roots += [(harness, "<harness>"), (sys.prefix, "<python>"), (os.path.realpath(tempfile.gettempdir()), "<tmp>"),
                  (tempfile.gettempdir(), "<tmp>"), (os.path.expanduser("~"), "~")]
        self.roots = sorted(((p.rstrip(os.sep), label) for p, label in roots if len(p) > 1), key=lambda r: -len(r[0]))

    def __call__(self, text):
        text = printable(text)
        for root, label in self.roots:
            if root in text:
                text = re.sub(re.escape(root) + r"(?:/|(?![\w.-]))",
                              lambda m: (f"{label}/" if label else "") if m.group(0).endswith("/") else (label or "."),
                              text)
        return text


def review_one(sub, contest, out_dir, options, receipts=None, scrub_extra=(), earlier=()):
    """One submission's result (a dict); nothing it holds can raise out of here. earlier: the results
    of the submissions recorded before it (a run holding their weights is a copy)."""
    result = {"team": sub["team"], "paper": sub["paper"], "commit": sub["commit"], "time": sub["time"],
              "late": sub["recorded"] is not None and sub["recorded"] > contest.deadline, "problems": [],
              "ok": False, "head": None, "tree": None, "checks": [], "runs": [], "targets": [], "full_review": False,
              "flags": []}
    if sub["repo"] is None:  # the listing itself is unusable: its reasons are all there is to say
        result["problems"] = [printable(p) for p in sub["invalid"]]
        return result
    scrub = printable
    try:
        scrub = _Scrub(sub["repo"], scrub_extra)
        _review(sub, contest, options, receipts if receipts is not None else [], result, scrub, earlier)
    except Exception as e:  # noqa: BLE001 -- one submission's failure is its reason, never everyone's traceback
        what = str(e) if isinstance(e, ReproError) else f"{type(e).__name__}: {e}"
        result["problems"].append(f"the review of {short(sub['team'])} / {sub['paper']} stopped: {scrub(what)}")
        result["ok"] = False
    result["problems"] = [scrub(p) for p in result["problems"]]
    return result


def _review(sub, contest, options, receipts, result, scrub, earlier=()):
    entries = contest.entries(sub["paper"])
    repo = sub["repo"]
    result["problems"] += sub.get("invalid", [])
    if not os.path.isdir(repo):
        result["problems"].append("the repository is not there (check it out first)")
        return
    tree, hostile = scan_tree(repo)
    if getattr(entries[0], "kind", "") == "text_to_image":
        return _review_bundle(sub, entries[0], options, receipts, result, tree, hostile, contest.budget)
    layout, package = check_layout(repo, sub["paper"], tree)
    named = {p.split(" ")[0] for p in layout}
    result["problems"] += layout + [why for path, why in sorted(hostile.items()) if path not in named]
    _pin(sub, tree, receipts, result)
    if package is None or tree.get("logs", (None,))[0] != "dir" or hostile:
        return
    logs = os.path.join(repo, "logs")
    opts = Options(recompute=options.recompute, replay=_replay_of(entries) if options.replay else 0,
                   challenge=options.challenge, jobs=options.jobs, timeout=options.timeout,
                   progress=options.progress, protocol_of=protocol_of(contest, repo), sandbox=options.sandbox,
                   tree=repo, plugin=package, private=options.private if options.recompute else None,
                   budget=contest.budget, earlier=copies.earlier_weights(earlier, result),
                   refused=result["problems"], executor=options.executor)
    result["_last_words"] = opts.last_words  # failed workers' full words: workers.log, never a page
    try:
        verdict = verify([logs], opts)
    except ReproError as e:
        result["problems"].append(str(e))
        return
    rows, runs, report = verdict.rows, verdict.runs, verdict.json()
    judged = {(r["paper"], r["exp"]) for r in rows}
    result["problems"] += [f"no run of {e.plugin}/{e.experiment}, which the contest judges" for e in entries
                           if (e.plugin, e.experiment) not in judged]
    result["runs"] = [_run_result(run, got, opts, repo, scrub) for run, got in zip(runs, report["runs"])]
    result["_runs"] = runs
    result["targets"] = [{**row, "why": scrub(row["why"]), "source": scrub(row.get("source", ""))} for row in rows]
    result.update(checked=scrub(report["checked"]), challenge=report["challenge"], checks=list(report["checks"]),
                  sandbox=report["sandbox"])
    result["full_review"] = bool(result["runs"]) and all(
        "recompute" in r["checks"] and "replay" in r["checks"] for r in result["runs"])
    result["ok"] = verdict.ok and not result["problems"]
    result["_render"] = (rows, runs, opts, scrub)  # for the page, written once the ledger is known


def _pin(sub, tree, receipts, result):
    """The checkout against its announced commit, and the submission against its receipt (added at
    its first review): their problems, its head and tree, and its repository's identity."""
    repo = sub["repo"]
    state, problems = check_commit(repo, sub["commit"], tree)
    result["problems"] += problems
    result["head"], result["tree"] = state.get("head"), state.get("tree")
    result["_repository"] = repository_of(repo) if state else None
    if not sub.get("invalid"):
        result["problems"] += check_receipt(sub, state, receipts)


def _review_bundle(sub, entry, options, receipts, result, tree, hostile, budget):
    """A text-to-image submission: a repository holding the bundle repro.diffusion.submit wrote,
    checked like any submission (files, commit, receipt), then by repro.diffusion.judge: its
    files against SHA256SUMS, its card, its works redrawn in the sandbox from its weights, and
    the scores computed here from the redrawn works, within the contest's time budget."""
    started, repo = time.monotonic(), sub["repo"]
    result["problems"] += [why for _, why in sorted(hostile.items())]
    _pin(sub, tree, receipts, result)
    if hostile:
        return
    if options.runs_code:
        result["sandbox"] = ("none: the harness's redraw worker loaded the submitted weights as data, "
                             + ("WITHOUT the sandbox (--no-sandbox)" if options.sandbox == "off" else "in bubblewrap"))
    from repro.diffusion.judge import review_bundle
    review_bundle(repo, tree, entry, options, result, deadline=started + budget)
    result["ok"] = not result["problems"] and all(t.get("passed") for t in result["targets"])


def _run_result(run, got, opts, repo, scrub):
    """What review.json and the pages say of one run: relative path, checks that ran, coverage, weights."""
    final = got["final_weights"] or _logged_final(run)
    rel = printable(os.path.relpath(run.path, repo))
    replay = [{k: scrub(v) if isinstance(v, str) else v for k, v in seg.items()} if isinstance(seg, dict) else seg
              for seg in run.replayed]
    text = lambda v: printable(v) if isinstance(v, str) else v
    return {"path": rel, "paper": text(run.header.get("paper")), "exp": text(run.header.get("exp")),
            "seed": run.seed, "problems": [scrub(p) for p in run.problems],
            "warnings": [scrub(w) for w in run.warnings],
            "metrics": run.metrics, "recomputed": run.recomputed, "replay": replay, "checks": got["checks"],
            "coverage": got["coverage"], "coverage_text": got["coverage_text"],
            "final_weights": final or None, "kept_weights": got["kept_weights"], "private": got["private"],
            **({"copy_of": run.copy_of} if run.copy_of else {})}


def _logged_final(run):
    """The final checkpoint's weights_sha256 as the log names it (before verify reported the weights)."""
    end = run.last("run_end") if run.events else None
    steps = end.get("step") if isinstance(end, dict) else None
    ckpts = run.checkpoints() if run.events else {}
    ev = ckpts.get(steps) or (ckpts[max(ckpts)] if ckpts else None)
    value = ev.get("weights_sha256") if isinstance(ev, dict) else None
    return value if isinstance(value, str) else None


def _reviewed(sub, contest, out_dir, options, receipts, extra, earlier):
    """One submission's review. With code to run, its logs are read first: a submission whose
    runs' weights are an earlier one's (a copy, repro.judge.copies) is refused from that quick pass,
    without running its code (a copy's audit would only repeat the earlier one's)."""
    if not options.runs_code:
        return review_one(sub, contest, out_dir, options, receipts, extra, earlier)
    quick = review_one(sub, contest, out_dir, replace(options, recompute=False, replay=False), receipts, extra,
                       earlier)
    if any(run.get("copy_of") for run in quick["runs"]):
        quick["problems"].append("refused as a copy from its logs, before running its code")
        return quick
    return review_one(sub, contest, out_dir, options, receipts, extra, earlier)


def review(contest_path, submissions_path, out_dir, options):
    contest = read_contest(contest_path)
    subs = read_submissions(submissions_path, contest)
    if options.cache is None:
        options.cache = {}
    if options.runs_code:
        Sandbox(options.sandbox)  # refuse now, before any submission is read, when bubblewrap is missing
        if options.progress and options.replay and any(getattr(e, "kind", "") != "text_to_image"
                                                       for e in contest.papers):
            options.progress(f"replay audit: challenge {options.challenge} (pass --challenge {options.challenge} "
                             f"to repeat it)")
    os.makedirs(out_dir, exist_ok=True)
    started = now_iso()
    full = None if options.runs_code else last_full_review(out_dir)
    receipts = read_receipts(out_dir)
    known = len(receipts)
    extra = ((os.path.abspath(out_dir), "<out>"), (os.path.dirname(os.path.abspath(submissions_path)), "<submissions>"),
             (os.path.dirname(os.path.abspath(contest_path)), "<contest>"))
    results = []
    try:
        for i, sub in enumerate(subs, 1):
            if options.progress:
                options.progress(f"[{i}/{len(subs)}] {pages.plain(sub['team'])} / {sub['paper']} ({sub['time']})")
            r = _reviewed(sub, contest, out_dir, options, receipts, extra, results)
            r["_repo"] = sub["repo"]
            r["page"] = ("" if options.runs_code else "quick-") + pages.page_name(i, sub)
            results.append(r)
    finally:
        if len(receipts) > known:
            write_receipts(out_dir, receipts)
    words = [f"{pages.plain(r['team'])} / {r.get('paper', '?')}: digest {digest}: {text}"
             for r in results for digest, text in r.get("_last_words") or []]
    if words:
        pages.write_worker_log(out_dir, words)
    flag_team_names(results)
    copies.flag_copied_bundles(results)
    papers = ledger(results, contest)
    for r in results:
        try:
            pages.write_page(r, out_dir, options)
        except Exception as e:  # noqa: BLE001 -- a page that cannot be written is said, never fatal for all
            r["problems"].append(f"its review page could not be written: {type(e).__name__}")
            r.pop("page", None)
    data = {"contest": contest.name, "logs_only": not options.runs_code, "reviewed_at": started,
            "sandbox": "not used" if not options.runs_code else
            ("off (--no-sandbox)" if options.sandbox == "off" else "bubblewrap"),
            "papers": papers, "submissions": [pages.public(r) for r in results]}
    if full:
        data["last_full_review"] = full
    for name, text in (("status.md", pages.status_markdown(contest, papers, results, options, started, full)),
                       ("index.html", pages.index_html(contest, papers, results, options, full)),
                       ("review.json", pages.to_json(data))):
        with open(os.path.join(out_dir, name), "w", encoding="utf-8", errors="replace") as f:
            f.write(text)
    return papers, results
