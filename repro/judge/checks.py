"""Which checks ran, and what a target's runs left out, told one way: verify's table and JSON,
review.json, the pages, the index and status.md all take their words from here, so they
cannot disagree. A check is asked for (Options.checks()); it ran on a run only where it
gave a result there."""


def ran(run, asked):
    """The checks of asked (a list of words) that ran on this run: recompute only where the judge
    recomputed its metrics, replay only where segments were replayed, the private evaluation only
    where it gave a result."""
    done = {"recompute": run.recomputed is not None, "replay": bool(run.replayed),
            "private evaluation": getattr(run, "private", None) is not None}
    return [c for c in asked if done.get(c, True)]


def told(asked, per_run, challenge=None):
    """Which checks ran, in words: each asked check, with the share of the runs it ran on where it
    did not run on all (per_run: each run's list of checks that ran; a text-to-image bundle is one)."""
    n, parts = len(per_run), []
    for check in asked:
        k = sum(check in checks for checks in per_run)
        what = check + (f" (challenge {challenge})" if check == "replay" and k and challenge else "")
        parts.append(what if k == n and n else f"{what}: {'ran on none' if not k else f'{k} of {n} runs'}")
    return "; ".join(parts) or "none"


def excluded_note(row, where):
    """What a target row says of the runs that did not count for it: where says where they are
    listed in this rendering ('see below' on the terminal), or None where their reasons follow."""
    n = row.get("excluded") or 0
    if not n:
        return ""
    return f" ({n} run(s) excluded" + (f", {where})" if where else ")")


def refusals(reasons):
    """A refused submission's targets say why, in one line: its first reason and how many more."""
    return reasons[0] + (f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else "")
