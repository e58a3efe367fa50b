"""Copy detection, the one place it is decided: runs of one verify whose weights are the same
(a run relabelled or spliced), a contest submission whose runs hold an earlier-recorded
submission's weights, and a text-to-image bundle whose LoRA tensors are an earlier bundle's.
A copy is found before the targets are judged (repro.verify takes the earlier submissions'
weights as Options.earlier), so a copied run never counts towards a target."""
import math
from dataclasses import dataclass

import numpy as np

from repro.boundary import exchange
from repro.errors import ReproError

NEAR_COPY = 1e-3  # relative distance under which two bundles' LoRA tensors are the same weights


# ------------------------------------------------------------------ within one verify

def flag_copies(runs):
    """Runs whose weights at any kept checkpoint (the final one included) are the same as another
    run's, in any cell verify sees: one run relabelled, or stretches of one spliced into another.
    Within a cell (one experiment), also the same initial weights: a seed relabelled (across cells
    the same seed legitimately gives the same initial weights to the same architecture)."""
    cells = {}
    for run in runs:
        if run.events:
            cells.setdefault((run.header.get("paper"), run.header.get("exp")), []).append(run)
    for group in cells.values():
        _same(group, "initial weights (as logged)", lambda r: [r.header.get("init_weights_sha256")])
    _same([r for r in runs if r.events], "weights", lambda r: [r.final_weights] + list(r.kept_weights.values()))


def _same(runs, what, keys):
    by = {}
    for run in runs:
        for key in dict.fromkeys(k for k in keys(run) if k):
            by.setdefault(key, []).append(run)
    flagged = set()
    for copies in by.values():
        for run in copies if len(copies) > 1 else ():
            if id(run) in flagged:
                continue
            flagged.add(id(run))
            others = ", ".join(r.path for r in copies if r is not run)
            where = what if what.startswith("initial") else \
                ("final weights" if run.final_weights in {r.final_weights for r in copies if r is not run}
                 else "weights at a kept checkpoint")
            run.problems.append(f"its {where} are identical to those of {others} (a copied or spliced run)")


# ------------------------------------------------------------------ across a contest's submissions

@dataclass(frozen=True)
class Earlier:
    """An earlier-recorded submission's run that holds some weights: what a copy of it is told."""
    team: str
    time: str
    paper: str
    run: str
    note: str = ""  # a same-name note (same_name)

    def why(self, what):
        return (f"its {what} are identical to those of {self.team}'s run {self.run} ({self.paper}, recorded "
                f"earlier: {self.time}): a copy of that submission{self.note}")


def run_weights(run):
    """A reviewed run's (what, sha256): its final weights, then each kept checkpoint's."""
    return [("final weights", run.get("final_weights"))] + \
        [("weights at a kept checkpoint", w) for w in run.get("kept_weights") or []]


def earlier_weights(earlier, result):
    """{weights_sha256: Earlier} of the runs of the earlier-recorded results (in the maintainers' time
    order) that result may not hold: the first holder of each weights, unless it is result's own team's
    earlier submission of the same repository (a resubmission)."""
    first = {}
    for r in earlier:
        for run in r.get("runs") or []:
            for _, w in run_weights(run):
                if w and w not in first:
                    first[w] = (r, run)
    return {w: Earlier(r["team"], r["time"], r["paper"], run["path"], same_name(r, result))
            for w, (r, run) in first.items() if not resubmission(r, result)}


def flag_earlier(runs, earlier):
    """Each run holding weights of an earlier submission (earlier: earlier_weights) is a copy: its
    problem says of whose run, and run.copy_of names it."""
    if not earlier:
        return
    for run in runs:
        kept = sorted(set(run.kept_weights.values())) if run.events else []
        for what, w in run_weights({"final_weights": run.final_weights if run.events else None,
                                    "kept_weights": kept}):
            if w and w in earlier:
                e = earlier[w]
                run.problems.append(e.why(what))
                run.copy_of = {"team": e.team, "time": e.time, "run": e.run}
                break


def same_repository(a, b):
    """Whether two reviewed submissions are one repository: a root commit in common and, where both
    name remotes, a remote in common. False where either could not be read (no git checkout)."""
    ia, ib = a.get("_repository"), b.get("_repository")
    if not ia or not ib or not set(ia["roots"]) & set(ib["roots"]):
        return False
    return not (ia["remotes"] and ib["remotes"] and not set(ia["remotes"]) & set(ib["remotes"]))


def why_other_repository(a, b):
    ia, ib = a.get("_repository"), b.get("_repository")
    if not ia or not ib:
        return "one of them is not a readable git checkout"
    if not set(ia["roots"]) & set(ib["roots"]):
        return (f"another root commit: {', '.join(r[:12] for r in ia['roots'][:3])} against "
                f"{', '.join(r[:12] for r in ib['roots'][:3])}")
    return "another remote URL in its git config"


def resubmission(first, later):
    """A team's own earlier submission (resubmitted with its layout fixed) may lend the later one
    its runs: the same team name and the same repository (same_repository)."""
    return first["team"] == later["team"] and same_repository(first, later)


def same_name(first, later):
    return (f" (recorded under the same team name, but {why_other_repository(later, first)}: only a "
            f"resubmission of the same repository may carry its runs)" if first["team"] == later["team"] else "")


# ------------------------------------------------------------------ text-to-image bundles

def _lora_tensors(r):
    """{name: array} of a reviewed bundle's LoRA (the judge read it already), or None."""
    path = r.get("_weights")
    if not path:
        return None
    try:
        arrays, _ = exchange.read_arrays(path, "the bundle's LoRA weights", 2 << 30)
    except (ReproError, OSError):
        return None
    return arrays


def weights_distance(a, b):
    """|a - b| / |b| over every tensor (b the earlier bundle's), or None where they are not the
    same tensors (names, shapes) or b is all zeros."""
    if a is None or b is None or set(a) != set(b) or any(a[k].shape != b[k].shape for k in a):
        return None
    f64 = lambda v: np.asarray(v, np.float64)
    norm = math.sqrt(sum(float(np.sum(f64(v) ** 2)) for v in b.values()))
    if not norm:
        return None
    return math.sqrt(sum(float(np.sum((f64(a[k]) - f64(b[k])) ** 2)) for k in a)) / norm


def flag_copied_bundles(results):
    """A text-to-image bundle whose LoRA tensors are those of another team's earlier-recorded
    bundle, or within NEAR_COPY of them (relative distance), is a copy of it: the later one
    fails, the earlier is unaffected (a team's resubmission of the same repository is not a copy)."""
    seen = []
    for r in results:  # in the maintainers' time order
        digest = (r.get("bundle") or {}).get("weights_sha256")
        if not digest:
            continue
        tensors = _lora_tensors(r)
        for first, first_digest, first_tensors in seen:
            if resubmission(first, r):
                continue
            where = f"{first['team']}'s bundle ({first['paper']}, recorded earlier: {first['time']})" + same_name(first, r)
            if first_digest == digest:
                why = f"its weights are identical to those of {where}: a copy of that submission"
            else:
                d = weights_distance(tensors, first_tensors)
                if d is None or d >= NEAR_COPY:
                    continue
                why = (f"its weights are those of {where} but for a relative difference of {d:.1e} (under "
                       f"{NEAR_COPY:g}): a copy of that submission")
            r["problems"].append(why)
            r["bundle"]["copy_of"] = {"team": first["team"], "time": first["time"]}
            r["ok"] = False
            for t in r.get("targets") or []:  # the refusal is the verdict: no score of a copy is reached
                t.update(passed=False, refused=True, why=f"not reached: the submission is refused: {why}")
            break
        seen.append((r, digest, tensors))
