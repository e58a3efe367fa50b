"""A contest review's outputs, rendered from its results and deciding nothing: status.md (the
pinned issue's table), index.html, one page per submission (repro.pages.run for a run-based
one), review.json and the maintainers' workers.log."""
import hashlib
import html
import json
import os
import stat

from repro.boundary.tree import printable
from repro.errors import ReproError
from repro.judge.ledger import audit_summary, checks_told, full_status, private_summary, reasons
from repro.judge.receipts import now_iso
from repro.pages.run import CSS, render


MAX_WHY = 700                  # characters of reasons in one status.md cell (whole reasons, never cut paths)


WORKER_LOG = "workers.log"     # the maintainers' own: what workers said in full (write_worker_log)


_MD = {ord(c): f"&#{ord(c)};" for c in "&<>|`@[]\\"}  # links, HTML, code, mentions, cells


def md(text):
    """Text safe in a Markdown table cell of a GitHub issue: no new lines, pipes, HTML, code or mentions."""
    return "".join(c if c.isprintable() else " " for c in str(text)).translate(_MD)


def plain(text):
    """Text safe on a terminal (no control characters)."""
    return printable(text)


def _why_cell(r, limit=MAX_WHY):
    """Whole reasons up to limit characters, then how many more (a reason is never cut inside a path)."""
    why, out, used = [f"for a human: {f}" for f in r.get("flags") or []] + reasons(r), [], 0
    for i, text in enumerate(why):
        if used and used + len(text) > limit:
            out.append(f"and {len(why) - i} more on its page")
            break
        if len(text) > limit:
            words, text = text.split(" "), ""
            for w in words:
                if len(text) + len(w) > limit:
                    text += " ..."
                    break
                text += (" " if text else "") + w
        out.append(text)
        used += len(text)
    return "; ".join(out) or "-"


def _banners(options, results):
    lines = []
    if not options.runs_code:
        lines.append("**Logs-only review (--logs-only): no submitted code was run, nothing was recomputed or "
                     "replayed.** A submission that passes is pending a full review; no paper is marked reproduced.")
    elif options.sandbox == "off":
        lines.append("**WARNING: this review ran the submitted code WITHOUT the sandbox (--no-sandbox).** Its "
                     "results stand, but the submitted code had this machine's access while it ran.")
    return lines


def status_markdown(contest, papers, results, options, at=None, full=None):
    """status.md: the papers and the submissions as this review found them (at: when it began); after a
    quick pass, the last full review's results (full: last_full_review) beside them, with its time."""
    lines = [f"## {md(contest.name)}: status as of {at or now_iso()}", ""]
    for b in _banners(options, results):
        lines += [b, ""]
    if full:
        lines += [f"**The last full review ({md(full['at'])}) stands:** its results are in the columns 'last "
                  f"full review'; the others are this quick pass's ({md(at)}).", ""]
    lines += [f"Deadline {contest.deadline.isoformat()}. A paper counts as reproduced by the first submission, in "
              "the order the maintainers recorded them, that reaches its bar in a full review (logs, code identity, "
              "recomputed metrics and the replay audit" + ("; for a text-to-image paper: the bundle's files, model card "
                                                           "and works, every work redrawn from its weights, and the "
                                                           "scores computed from the redrawn works"
                                                           if any(getattr(e, "kind", "") == "text_to_image"
                                                                  for e in contest.papers) else "") + ").", ""]
    full_papers = {p.get("paper"): p for p in (full or {}).get("papers") or []}
    extra = " last full review |" if full else ""
    lines += ["| paper | experiment | bar | policy | replay | status | by | recorded |" + extra,
              "| --- | --- | --- | --- | --- | --- | --- | --- |" + (" --- |" if full else "")]
    for p in papers:
        was = full_papers.get(p["paper"]) or {}
        lines.append(f"| {md(p['paper'])} | {md(p['experiment'])} | {md(p['bar'])} | {md(p['policy'])} | "
                     f"{md(p['replay'])} | {md(p['status'])} | {md(p['reproduced_by'] or '-')} | {md(p['at'] or '-')} |"
                     + (f" {md(str(was.get('status', '-')) + (' by ' + str(was['reproduced_by']) if was.get('reproduced_by') else ''))} |"
                        if full else ""))
    lines += ["", "### Submissions, in the order they were recorded", "",
              "| # | recorded | team | paper | commit | tree | checks | audit | public / private | result | why |" + extra,
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |" + (" --- |" if full else "")]
    for i, r in enumerate(results, 1):
        lines.append(f"| {i} | {md(r['time'])} | {md(r['team'])} | {md(r['paper'])} | {md(r['commit'][:12])} | "
                     f"{md((r.get('tree') or '-')[:12])} | {md(checks_told(r))} | {md(audit_summary(r))} | "
                     f"{md(private_summary(r))} | {md(r['status'])} | {md(_why_cell(r))} |"
                     + (f" {md(full_status(full, r))} |" if full else ""))
    flagged = [(r, f) for r in results for f in r.get("flags") or []]
    if flagged:
        lines += ["", "### For a human", ""] + [f"- {md(r['team'])} / {md(r['paper'])} ({md(r['time'])}): {md(f)}"
                                                 for r, f in flagged]
    return "\n".join(lines) + "\n"


def _header_html(r, options, sandbox_banner=True):
    """The top of a submission's page: who, what, which commit and tree, when, and where it stands
    (sandbox_banner: say --no-sandbox here; repro.pages.run.render says it on a page it writes)."""
    e = lambda v: html.escape(str(v if v is not None else "-"))
    rows = [("team", r["team"]), ("paper", r["paper"]), ("announced commit", r["commit"]),
            ("checked-out commit", r.get("head")), ("git tree", r.get("tree")), ("recorded", r["time"]),
            ("ledger", r["status"]), ("checks that ran", checks_told(r)),
            ("audit", audit_summary(r)), ("public / private", private_summary(r)),
            ("submitted code ran", r.get("sandbox") or "no code run")]
    banner = "".join(f"<p class='FAIL'>{html.escape(b.replace('**', ''))}</p>" for b in _banners(options, [r])
                     if sandbox_banner or not options.runs_code)
    return (banner + "<table>" + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows) + "</table>"
            + "".join(f"<p class='FAIL'>For a human: {e(f)}</p>" for f in r.get("flags") or [])
            + ("<ul>" + "".join(f"<li>{e(p)}</li>" for p in r["problems"]) + "</ul>" if r["problems"] else ""))


def write_page(r, out_dir, options):
    verdict = ("REPRODUCED" if r["status"].startswith("REPRODUCED") else
               "PENDING FULL REVIEW" if r["status"].startswith("pending") else
               "PASSES (does not count)" if r["ok"] else "NOT REPRODUCED")
    title = f"{r['team']} / {r['paper']}"
    if r.get("bundle") is not None:
        verdict += "".join(f" ({c})" for c in r["bundle"].get("caveats") or [] if r["ok"])
        if r.get("_card"):  # the card the contest publishes: the bundle's, the judge's scores first
            with open(os.path.join(out_dir, r["page"][:-len(".html")] + ".card.md"), "w", encoding="utf-8") as f:
                f.write(r["_card"])
        body = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                f"<style>{CSS}</style></head><body><h1>Review: {html.escape(title)}</h1>"
                f"<p><span class='verdict {'PASS' if verdict.startswith('REPRODUCED') else 'FAIL'}'>{html.escape(verdict)}"
                f"</span></p>{_header_html(r, options)}{_bundle_html(r)}</body></html>")
    elif r.get("_render"):
        rows, runs, opts, scrub = r["_render"]
        body, _, _ = render(rows, runs, r["ok"], opts, preamble=_header_html(r, options, sandbox_banner=False),
                            title=title,
                            verdict=verdict, show=scrub)
    else:
        body = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                f"<style>{CSS}</style></head><body><h1>Review: {html.escape(title)}</h1>"
                f"<p><span class='verdict FAIL'>{html.escape(verdict)}</span></p>{_header_html(r, options)}"
                f"<p>Not verified further: the problems above stop the review before its runs are read.</p>"
                f"</body></html>")
    with open(os.path.join(out_dir, r["page"]), "w", encoding="utf-8", errors="replace") as f:
        f.write(body)


def _bundle_html(r):
    """A text-to-image bundle's review: every work redrawn and compared, the scores, the base model."""
    e = lambda v: html.escape(str(v if v is not None else "-"))
    b = r["bundle"]
    plat = b.get("platform") or {}
    rows = "".join(
        f"<tr><td>{e(w.get('file'))}</td><td>{e(w.get('prompt'))}</td><td>{e(w.get('seed'))}</td>"
        f"<td>{e(w.get('largest_difference'))}</td>"
        f"<td>{e('-' if w.get('differing') is None else format(w['differing'], '.2%'))}</td>"
        f"<td class='{'PASS' if w.get('ok') else 'FAIL'}'>"
        f"{e('from the weights' if w.get('ok') else ('not redrawn' if 'ok' not in w else 'NOT from the weights'))}"
        f"</td></tr>" for w in b.get("works") or [])
    scores = "".join(
        f"<tr><td>{e(t['metric'])}</td><td>{e(t['value'] if t.get('value') is None else format(t['value'], '.4f'))}"
        f"</td><td>{e(t.get('bar'))}</td><td class='{'PASS' if t.get('passed') else 'FAIL'}'>"
        f"{'reached' if t.get('passed') else 'not reached'}</td><td>{e((b.get('score_models') or {}).get(t['metric']))}"
        f"</td></tr>" for t in r.get("targets") or [])
    base = b.get("base_model") or {}
    declared = "; ".join(f"{k}: {v or 'none'}" for k, v in (base.get("declared") or {}).items())
    facts = [("bundle folder", b.get("folder")), ("weights (digest of the LoRA tensors)", b.get("weights_sha256")),
             ("the contest's base model", base.get("contest")), ("base model the bundle names", declared or "-"),
             ("redraw", b.get("summary")),
             ("platform", "-" if not plat else ("the works' own: exact comparison" if plat.get("same") else
                                               f"not the works' own: largest difference allowed {b.get('tolerance')}")),
             ("copy of", "{team} ({time})".format(**b["copy_of"]) if b.get("copy_of") else "-")]
    return ("<h2>Bundle</h2><table>" + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in facts)
            + "</table><h2>Works, redrawn from the weights</h2><table><tr><th>work</th><th>prompt</th>"
            "<th>claimed seed</th><th>largest difference (of 255)</th><th>values differing</th><th>result</th></tr>"
            + rows + "</table>" + ("<h2>Scores (computed by the judge from the redrawn works)</h2><table><tr>"
                                   "<th>score</th><th>value</th><th>bar</th><th>result</th><th>model</th></tr>"
                                   + scores + "</table>" if scores else ""))


def page_name(i, sub):
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in f"{sub['team']}-{sub['paper']}")
    tag = hashlib.sha256(f"{sub['team']}\0{sub['paper']}\0{sub['time']}".encode("utf-8", "replace")).hexdigest()[:8]
    return f"{i:03d}-{safe[:48]}-{tag}.html"


def index_html(contest, papers, results, options, full=None):
    e = lambda v: html.escape(str(v))
    banners = "".join(f"<p class='FAIL'>{e(b.replace('**', ''))}</p>" for b in _banners(options, results))
    if full:
        banners += f"<p>The last full review ({e(full['at'])}) stands: its results are in the column 'last full review'.</p>"
    rows = "".join(
        f"<tr><td>{i}</td><td>{e(r['time'])}</td><td>{e(r['team'])}</td><td>{e(r['paper'])}</td>"
        f"<td>{e(r['commit'][:12])}</td><td>{e(checks_told(r))}</td><td>{e(audit_summary(r))}</td>"
        f"<td class='{'PASS' if r['status'].startswith('REPRODUCED') else 'FAIL'}'>{e(r['status'])}</td><td>"
        + (f"<a href='{e(r['page'])}'>review page</a>" if r.get("page") else "-")
        + f"</td><td>{e(_why_cell(r, 400))}</td>" + (f"<td>{e(full_status(full, r))}</td>" if full else "")
        + "</tr>" for i, r in enumerate(results, 1))
    table = "".join(f"<tr><td>{e(p['paper'])}</td><td>{e(p['bar'])}</td><td>{e(p['replay'])}</td>"
                    f"<td>{e(p['status'] + (' by ' + p['reproduced_by'] if p['reproduced_by'] else ''))}</td></tr>"
                    for p in papers)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{e(contest.name)}</title>"
            f"<style>{CSS}</style></head><body><h1>{e(contest.name)}</h1>{banners}"
            f"<h2>Papers</h2><table><tr><th>paper</th><th>bar</th><th>replay</th><th>status</th></tr>{table}</table>"
            f"<h2>Submissions (maintainers' time order)</h2><table><tr><th>#</th><th>recorded</th><th>team</th>"
            f"<th>paper</th><th>commit</th><th>checks</th><th>audit</th><th>result</th><th>page</th><th>why</th>"
            + ("<th>last full review</th>" if full else "") + f"</tr>{rows}</table></body></html>")


def write_worker_log(out_dir, lines):
    """Append lines to OUT/workers.log: the full text of what workers wrote, for the maintainers
    alone (status.md, review.json and the pages say only how a worker failed and a digest, so a
    worker's last words are no channel to the public outputs). Created 0600 and never linked;
    each line is kept to one line (printable); a link or FIFO in its place is refused."""
    path = os.path.join(out_dir, WORKER_LOG)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                     | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as e:
        raise ReproError(f"the workers' log {WORKER_LOG} cannot be opened ({e.strerror or e})") from None
    with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ReproError(f"the workers' log {WORKER_LOG} is not a regular file")
        os.fchmod(fd, 0o600)
        f.write("".join(printable(line) + "\n" for line in lines))


def public(r):
    """A result as review.json has it (no objects, no paths of this machine)."""
    return {k: v for k, v in r.items() if not k.startswith("_")}


def to_json(data):
    """JSON whose strings carry no <, > or & (escaped as \\u003c...): safe to embed or show anywhere."""
    text = json.dumps(data, indent=1, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def plain_lines(text):
    """status.md as terminal text: its Markdown escapes (&#62; ...) turned back into characters,
    then every line made safe for a terminal."""
    return "\n".join(plain(line) for line in html.unescape(text).splitlines())
