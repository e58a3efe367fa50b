"""The contest's ledger: the first submission to pass the full review reaches its paper; and
what each submission's result says in words (its reasons, its audit, which checks ran), the
same in every output."""
import os

from repro import strict
from repro.errors import ReproError
from repro.judge import copies
from repro.judge.checks import excluded_note, told
from repro.strict import short


def private_summary(result):
    """The judged metric on the public split and on the contest's private one, mean over the runs
    evaluated on both ('-' where the contest names no private evaluation or nothing was run)."""
    both = [r["private"] for r in result.get("runs") or [] if isinstance(r.get("private"), dict)
            and isinstance(r["private"].get("public"), (int, float)) and isinstance(r["private"].get("private"), (int, float))]
    if not both:
        return "-"
    pub = sum(p["public"] for p in both) / len(both)
    priv = sum(p["private"] for p in both) / len(both)
    bad = sum(not p.get("agrees") for p in both)
    return f"{pub:.2f} / {priv:.2f} over {len(both)} runs" + (f"; {bad} disagree" if bad else "")


def audit_summary(result):
    """The weakest run's audit, in words: what status.md says per submission (for a text-to-image
    bundle: its works' redraw)."""
    if result.get("bundle") is not None:
        return result["bundle"].get("summary") or "-"
    runs = result.get("runs") or []
    if not runs:
        return "-"
    if not all("replay" in r["checks"] for r in runs):
        done = sum("replay" in r["checks"] for r in runs)
        return "no replay" if not done else f"replay on {done} of {len(runs)} runs only"
    covs = [r["coverage"] for r in runs if isinstance(r.get("coverage"), dict) and r["coverage"].get("segments")]
    if len(covs) < len(runs):
        return f"replay on {len(runs)} runs"
    share = min(c.get("steps", 0) / max(1, c.get("total_steps") or 0) for c in covs)
    escape = max(c.get("escape") or 0.0 for c in covs)
    return (f"weakest run: {share:.0%} of steps replayed; "
            + (f"a forged segment escapes with p <= {escape:.0%}" if escape > 0 else "every segment replayed"))


def checks_told(r):
    """Which checks ran on the submission's runs (of a text-to-image bundle: on it), in the words of
    every output (repro.judge.checks.told)."""
    if r.get("bundle") is not None:
        return told(r.get("checks") or [], [r.get("checks") or []])
    return told(r.get("checks") or [], [run["checks"] for run in r.get("runs") or []], r.get("challenge"))


def flag_team_names(results):
    """Two different repositories (same_repository) recorded under one team name are flagged for a
    human on both submissions, each naming the other: one team name is one team. A flag is said
    everywhere (status.md, review.json, the pages) and decides nothing by itself."""
    for i, later in enumerate(results):
        for first in results[:i]:
            if first["team"] == later["team"] and first.get("head") and later.get("head") \
                    and not copies.same_repository(first, later):
                why = copies.why_other_repository(later, first)
                later["flags"].append(f"the team name {short(later['team'])} was recorded earlier for another "
                                      f"repository ({_named(first)}; {why}): one team name is one team, so a human "
                                      f"must decide whether these are one team")
                first["flags"].append(f"the team name {short(first['team'])} was recorded later for another "
                                      f"repository ({_named(later)}; {why}): a human must decide whether these "
                                      f"are one team")
                break


def _named(r):
    return f"{r['paper']} at {r['time']}, commit {str(r.get('head') or r['commit'])[:12]}"


def _bar(e):
    return e.bar() if getattr(e, "kind", "") == "text_to_image" else f"{e.metric} {e.target().bar()}"


def _policy(e):
    return "one bundle" if getattr(e, "kind", "") == "text_to_image" else str(e.target().policy)


def ledger(results, contest):
    """Mark each submission: the first to pass the full review (in time order) reproduces its paper."""
    winners, pending = {}, {}
    for r in results:
        paper = r["paper"]
        if r["late"]:
            r["status"] = "late: recorded after the deadline"
        elif not r["ok"]:
            r["status"] = "not reproduced"
        elif not r["full_review"]:
            r["status"] = "pending full review: passes the checks that ran (no recompute and replay of every run)"
            pending.setdefault(paper, []).append(r)
        elif paper in winners:
            w = winners[paper]
            r["status"] = f"passes, but {w['team']} reproduced {paper} first ({w['time']}): does not count"
        elif paper in pending:
            r["status"] = (f"passes; {pending[paper][0]['team']}, recorded earlier, is pending its full review, "
                           f"so the winner is not decided")
            pending[paper].append(r)
        else:
            winners[paper] = r
            r["status"] = "REPRODUCED: first to reach the bar"
        caveats = (r.get("bundle") or {}).get("caveats")  # a tolerant redraw, a smoke run's weights: said
        if r["ok"] and not r["late"] and caveats:
            r["status"] += f" ({'; '.join(caveats)})"
    papers = []
    for name in dict.fromkeys(e.plugin for e in contest.papers):
        entries = contest.entries(name)
        papers.append({"paper": name, "experiment": ", ".join(e.experiment for e in entries),
                       "bar": "; ".join(f"{e.experiment} {_bar(e)}" for e in entries),
                       "policy": "; ".join(sorted({_policy(e) for e in entries})),
                       "replay": "; ".join(sorted({str(e.replay) for e in entries})),
                       "status": "reproduced" if name in winners else
                       ("pending full review" if name in pending else "open"),
                       "reproduced_by": winners[name]["team"] if name in winners else None,
                       "at": winners[name]["time"] if name in winners else None,
                       "pending": [r["team"] for r in pending.get(name, [])],
                       "not_reproduced": [r["team"] for r in results if r["paper"] == name and not r["ok"]]})
    return papers


def reasons(r):
    """Every reason the submission does not count, one line each: experiment and run named."""
    why = list(r.get("problems", []))
    for t in r.get("targets", []):
        if not t.get("passed") and not t.get("refused"):  # a refused submission's reasons are above
            why.append(f"{t['paper']}/{t['exp']} {t['metric']}: {t['why']}{excluded_note(t, None)}")
    for run in r.get("runs", []):
        # a run whose log could not be read names no experiment: its path alone
        cell = f"{run['paper']}/{run['exp']} " if run.get("paper") and run.get("exp") else ""
        why += [f"{cell}{run['path']}: {p}" for p in run["problems"]]
    return why


def last_full_review(out_dir):
    """What the last full review into out_dir found, as a quick pass (--logs-only) keeps it beside its
    own results: {'at', 'papers', 'submissions': [{team, paper, time, status, page}]}, or None (no full
    review there, or its review.json is unreadable)."""
    path = os.path.join(out_dir, "review.json")
    if not os.path.lexists(path):
        return None
    try:
        data = strict.read_json(path, "the earlier review")
    except ReproError:
        return None
    if data.get("logs_only"):
        return data.get("last_full_review")
    keep = ("team", "paper", "time", "status", "page")
    return {"at": data.get("reviewed_at") or "an earlier review", "papers": data.get("papers") or [],
            "submissions": [{k: s.get(k) for k in keep} for s in data.get("submissions") or []
                            if isinstance(s, dict)]}


def full_status(full, r):
    """The last full review's result of the submission r ('-' where it had none), as a quick pass shows it."""
    if not full:
        return "-"
    found = next((s for s in full["submissions"] if (s.get("team"), s.get("paper"), s.get("time"))
                  == (r["team"], r["paper"], r["time"])), None)
    return str(found.get("status")) if found else "not in it"
