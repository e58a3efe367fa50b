"""Receipts: each submission's commit and tree, recorded at its first review and never edited,
so a later review finds a submission that changed; and the one time format of a review."""
import json
import os
from datetime import datetime

from repro import strict
from repro.errors import ReproError


RECEIPTS = "receipts.json"


def read_receipts(out_dir):
    """The receipts of earlier reviews ([] when none); a damaged file stops the review (it is never replaced)."""
    path = os.path.join(out_dir, RECEIPTS)
    if not os.path.lexists(path):
        return []
    data = strict.read_json(path, "receipts file")
    items = data.get("receipts") if isinstance(data, dict) else None
    if not isinstance(items, list) or not all(isinstance(r, dict) and {"team", "paper", "time"} <= set(r)
                                              for r in items):
        raise ReproError(f"receipts file {path} is not a list of receipts: restore it (it is never overwritten)")
    return items


def write_receipts(out_dir, receipts):
    path = os.path.join(out_dir, RECEIPTS)
    before = read_receipts(out_dir)  # written since we read them: keep those too (entries are only added)
    keys = {_receipt_key(r) for r in receipts}
    merged = receipts + [r for r in before if _receipt_key(r) not in keys]
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"note": "one receipt per submission, recorded at its first review; never edited",
                   "receipts": merged}, f, indent=1)
    os.replace(tmp, path)


def _receipt_key(r):
    return (r["team"], r["paper"], r["time"])


def check_receipt(sub, state, receipts):
    """Problems where the submission is not what its receipt recorded; adds its receipt at the first review."""
    key = (sub["team"], sub["paper"], sub["time"])
    found = next((r for r in receipts if _receipt_key(r) == key), None)
    if found is None:
        if state:
            receipts.append({"team": sub["team"], "paper": sub["paper"], "time": sub["time"],
                             "commit": state["head"], "tree": state["tree"],
                             "first_reviewed": now_iso()})
        return []
    now = (state.get("head"), state.get("tree"))
    if now != (found.get("commit"), found.get("tree")):
        return [f"it changed since its receipt of {found.get('first_reviewed', 'its first review')} (commit "
                f"{str(found.get('commit'))[:12]}, tree {str(found.get('tree'))[:12]} then; now "
                f"{str(now[0])[:12]}, {str(now[1])[:12]}): a recorded submission cannot change, so it cannot win"]
    return []


def now_iso():
    """The one time format of the review's outputs: ISO 8601 to the second, with the offset as
    the submissions file writes it (+08:00, never +0800)."""
    return datetime.now().astimezone().isoformat(timespec="seconds")
