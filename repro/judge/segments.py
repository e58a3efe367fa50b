"""What a replayed segment and a worker's outputs mean, from numbers alone: the distance of a
replay from the logged checkpoint against the rounding spread here (MARGIN, CHAOS_LIMIT), the
verdict on a segment (judge_segment), and the batches a worker evaluated, shuffled so that it
cannot tell the splits apart and put back in order here (repro.judge.audit runs the workers)."""
import secrets

import numpy as np

from repro.errors import ReproError


MARGIN = 10.0


CHAOS_LIMIT = 1e-4


def shuffled_batches(splits, bs):
    """(rows, chunk sizes, order): every split cut into the batches evaluation uses, the batches
    of all splits in a random order, concatenated; order[i] = (split, first row) of chunk i."""
    batches = [(s, i, x[i:i + bs]) for s, (x, y) in splits.items() for i in range(0, len(x), bs)]
    perm = np.random.default_rng(secrets.randbits(64)).permutation(len(batches))
    batches = [batches[i] for i in perm]
    rows = _concat([b for _, _, b in batches])
    return rows, [len(b) for _, _, b in batches], [(s, i) for s, i, _ in batches]


def _concat(parts):
    if parts and parts[0].dtype == object:
        out = np.empty(sum(len(p) for p in parts), dtype=object)
        k = 0
        for p in parts:
            for row in p:
                out[k] = row
                k += 1
        return out
    return np.concatenate(parts) if parts else np.zeros((0,), np.float32)


def unshuffled(rows, order, labels, bs):
    """{split: logits} from the logits of the shuffled batches (shuffled_batches)."""
    if rows is None or rows.ndim != 2 or rows.dtype.kind != "f" or order is None \
            or len(rows) != sum(len(y) for y in labels.values()):
        raise ReproError(f"the worker's outputs are not {sum(len(y) for y in labels.values())} rows of class scores")
    parts = {s: [None] * len(range(0, len(y), bs)) for s, y in labels.items()}
    k = 0
    for split, first in order:
        n = min(bs, len(labels[split]) - first)
        parts[split][first // bs] = rows[k:k + n]
        k += n
    return {s: np.concatenate(p) if p else np.zeros((0, rows.shape[1]), rows.dtype) for s, p in parts.items()}


def distance(x, y, start, scale_to):
    """|x - y| / |scale_to - start|, L2 over the model's weights."""
    keys = sorted(k for k in scale_to if k.startswith("model/"))
    if not all(k in x and k in y and k in start and x[k].shape == scale_to[k].shape == y[k].shape == start[k].shape
               and x[k].dtype.kind == "f" and y[k].dtype.kind == "f" for k in keys):
        return float("inf")
    vec = lambda t: np.concatenate([np.asarray(t[k], np.float64).ravel() for k in keys]) if keys else np.zeros(0)
    moved, diff = np.linalg.norm(vec(scale_to) - vec(start)), np.linalg.norm(vec(x) - vec(y))
    if not np.isfinite(diff):
        return float("inf")
    return float(diff / moved) if moved > 0 else (0.0 if diff == 0 else float("inf"))


def judge_segment(seg, cross_platform):
    """None when a replayed segment is acceptable, else why not (one line, without the
    segment's name). Same platform: bitwise only. Across platforms: see the module's doc.
    A train.verifiable run: bitwise on any platform, with the first diverging update named."""
    if seg.get("verifiable"):
        return _judge_verifiable(seg)
    if seg["exact"]:
        return None
    d = seg["distance"]
    if not cross_platform:
        return (f"re-training this segment with the registered recipe does not give the logged checkpoint "
                f"(distance {d:.2e}, required: bitwise equality on the same platform; --cross-platform for runs "
                f"made elsewhere)")
    spread = seg.get("spread", float("inf"))
    if spread > CHAOS_LIMIT:
        return (f"inconclusive across platforms: two replays of this segment here, one rounded differently on "
                f"purpose, end {spread:.2e} apart (over {CHAOS_LIMIT:g}), so rounding alone can carry it as far as "
                f"the logged checkpoint's {d:.2e}; replay it on the platform the run was made on, where it must be "
                f"bitwise")
    if d > MARGIN * spread:
        return (f"re-training this segment with the registered recipe does not give the logged checkpoint "
                f"(distance {d:.2e}, while rounding here moves it {spread:.2e}; consistent up to {MARGIN:g} times that)")
    return None


def _judge_verifiable(seg):
    problem, first = seg.get("decision_problem"), seg.get("first_diverging")
    if seg["exact"] and not problem:
        return None
    if seg["exact"]:
        return (f"the replay matched the logged checkpoint bit for bit, but not the run's record of the updates "
                f"before it: {problem}")
    why = (f"re-training this segment in verifiable mode does not give the logged checkpoint bit for bit "
           f"(distance {seg['distance']:.2e}; a train.verifiable run must match on any machine)")
    if first:
        where = f" in {', '.join(first['groups'])}" if first["groups"] else ""
        why += f"; the state first departs from the logged hashes after update {first['update']}{where}"
    elif "bisect_error" in seg:
        why += f"; no bisection: {seg['bisect_error']}"
    else:
        why += "; every update's logged state hash matches the replay's, so the checkpoint file is not the state the log describes"
    if problem:
        why += f"; the replay reports {problem}"
    return why
