"""Verifiable training's record (train.verifiable): the rounding arithmetic both
sides of a replay share, and the per-segment file of rounding decisions and
per-update state hashes. numpy only: the trainer, the replay worker and the
judge all read it; nothing here imports Paddle or paper code.

A verifiable update is computed in float64 from float32 state, and the new
state (weights, buffers, optimizer state) is rounded to the nearest float32
(repro.run.verifiable). Two machines whose float64 kernels sum in other orders get
float64 results a few float64 ulps apart (median a few 1e-9 of a float32
spacing, measured), so they round to the same float32 except where a result
lies next to a rounding boundary (the midpoint between two adjacent float32
numbers). There the trainer records the direction it took: every value whose
float64 result lies within MARGIN (a fraction of the float32 spacing there) of
a boundary, exact ties aside (those come from exact arithmetic, which every
machine does alike, and go to the even neighbour on both sides). A replay takes
the logged direction wherever its own value lies within the margin, and
requires one where its value lies within margin / DEEP (where the trainer's
value lay inside the margin unless the machines differ by almost all of it).
Sums with heavy cancellation give a few results a long tail of differences
(up to 1e-2 of a spacing, measured), which no affordable margin covers: a
value of those can cross a boundary from outside the margin, about once in
10,000 updates of an MNIST-1D model. A sum that cancels to pure rounding noise
(a gradient that is zero but for rounding) is worse: its tiny value differs
between machines by whole float32 spacings of itself. So below a floor of
2**-FLOOR_DEPTH of the tensor's largest value (floor_of, from the float32 state
before the update) the grid stops getting finer: values there are rounded to
multiples of the floor's float32 spacing, on which that noise is a small
fraction of a step again. The per-update state hash catches what is left, and
the replay looks for the one or two of its values within LIMIT of a boundary
whose other rounding gives the logged hash (a log cannot steer more than that:
a logged direction is taken only inside the margin, anything else must
reproduce the logged hash). Srivastava, Arora & Boneh, "Optimistic verifiable
training by controlling hardware nondeterminism" (NeurIPS 2024), log rounding
decisions this way on GPUs; the hash-guided resolution is this harness's.

The file, `checkpoints/step-<b>.decisions` beside each checkpoint (its sha256 in
the checkpoint's log line, `decisions_sha256`), covers the updates a+1..b since
the last kept checkpoint a. It is safetensors (no code runs on reading):

  hash       uint32 [n]       a hash of the whole float32 state after each update
  tags       uint8  [n, G]    one byte per group after each update (a parameter with
                              its optimizer state, or a buffer): which ones differ
                              when a replay's hash does (a differing group shows a
                              different byte with probability 255/256; a group whose
                              bytes are the same never does)
  decisions  uint32 [k, 3]    (update - a - 1, 2 * tensor + up, flat index), sorted;
                              up: the larger of the two float32 numbers was taken

metadata: format, a, b, margin, names (JSON: the state tensors' checkpoint names,
indexed by `tensor`), groups (JSON: the group names, the columns of tags).
"""
import hashlib
import json
import os

import numpy as np

from repro.errors import ReproError
from repro.run.checkpoint import save_atomic

FORMAT = "repro-decisions/1"
# the trainer logs every value within MARGIN of a float32 spacing from a rounding boundary; a replay
# tolerates float64 results up to MARGIN / 2 of a spacing away from the trainer's. Chosen by measurement
# (README, "Verifiable training"): the largest difference between two kernels' float64 results seen on
# the MNIST-1D models, times a safety factor.
MARGIN = 2.0 ** -20
MARGIN_RANGE = (2.0 ** -30, 2.0 ** -8)  # a file's margin must lie here
# a replay requires a logged decision for a value within margin / DEEP of a boundary: the trainer's
# own value then lay inside its margin unless the machines differ by more than (1 - 1/DEEP) of it
DEEP = 64
# a replay whose state after an update does not have the logged hash rounds its values within LIMIT
# of a boundary the other way, one or two of them (among the PAIRS nearest), to find the logged
# state: the rare values that two machines' float64 results put on either side of a boundary from
# farther than the margin (sums with heavy cancellation; README, "Verifiable training")
LIMIT = 2.0 ** -5
# below 2**-FLOOR_DEPTH of a tensor's largest value (a power of two below it) the grid stops getting
# finer: a sum that cancels to rounding noise (a gradient that is zero but for rounding) differs
# between machines by float64 ulps of its terms, many float32 spacings of its own tiny value, and no
# margin covers that; on the floor's fixed grid it is a small fraction of a spacing again
FLOOR_DEPTH = 12
PAIRS = 16
SINGLES = 4096  # candidates tried one at a time (nearest first), each one group's digest
MAX_BYTES = 1 << 30
_INF32 = np.float32(np.inf)


def group_of(name):
    """The group of a state tensor: model/<k> -> k; optim/<param>/<acc> -> param."""
    kind, _, rest = name.partition("/")
    return rest.rsplit("/", 1)[0] if kind == "optim" else rest


# ------------------------------------------------------------------ the rounding

def floor_of(state, depth=None):
    """The floor of a float32 tensor's grid: 2**(floor(log2(max |state|)) - FLOOR_DEPTH), 0 for an
    all-zero or empty tensor. Below it a verifiable state keeps the float32 spacing of the floor
    itself (a fixed grid) rather than ever finer ones. It is a function of the float32 state
    before an update, so trainer and replay take the same."""
    depth = FLOOR_DEPTH if depth is None else depth
    a = np.asarray(state)
    top = max(float(a.max()), -float(a.min())) if a.size else 0.0
    if not np.isfinite(top) or top == 0.0:
        return 0.0
    return float(2.0 ** (np.floor(np.log2(top)) - depth))


def nearest(v, floor=0.0):
    """Round float64 v to the verifiable grid as the hardware rounds to float32 (to nearest, ties
    to even), and say where v lies: (r float32, the other neighbour on v's side, distance of v
    from the boundary between them in units of their spacing: 0 at the boundary, 0.5 when v is
    r). The grid is float32's, except that below `floor` (a scalar, or one per value; a power of
    two) it is the multiples of floor * 2**-23, the float32 spacing at the floor."""
    v = np.asarray(v, np.float64)
    with np.errstate(all="ignore"):  # non-finite values (a diverged run) are never near a boundary
        r = v.astype(np.float32)
        r64 = r.astype(np.float64)
        d = v - r64  # exact: v and r64 are within a float32 spacing
        other = np.nextafter(r, np.where(d < 0, -_INF32, _INF32))
        gap = np.abs(other.astype(np.float64) - r64)
        dist = 0.5 - np.abs(d) / gap
        floor = np.broadcast_to(np.asarray(floor, np.float64), v.shape)
        low = np.abs(v) < floor
        if low.any():
            q = floor[low] * 2.0 ** -23
            f = v[low] / q  # exact: q is a power of two
            n = np.rint(f)  # ties to even
            frac = f - n
            r[low] = (n * q).astype(np.float32)
            other[low] = ((n + np.where(frac < 0, -1.0, 1.0)) * q).astype(np.float32)
            dist[low] = 0.5 - np.abs(frac)
    return r, other, dist


_LOW = np.uint64((1 << 29) - 1)  # the bits of a float64 mantissa below float32's
_MID = np.int64(1 << 28)
_NORMAL = (2.0 ** -126, float(np.finfo(np.float32).max))


def near_boundary(v, margin, floor=0.0):
    """Flat indices of v's values within margin of a rounding boundary of the grid, exact ties
    left out: what nearest() says, computed from the bits a float32 drops (where float32 is
    normal and finite and the value not below its floor; exactly, by nearest(), elsewhere)."""
    flat = np.ascontiguousarray(v, np.float64).reshape(-1)
    low = (flat.view(np.uint64) & _LOW).astype(np.int64) - _MID  # 2**-29 spacings from the boundary
    a = np.abs(flat)
    floor = np.broadcast_to(np.asarray(floor, np.float64).reshape(-1) if np.ndim(floor) else
                            np.asarray(floor, np.float64), flat.shape)
    normal = (a >= _NORMAL[0]) & (a < _NORMAL[1]) & (a >= floor)
    found = np.flatnonzero((np.abs(low) < margin * 2.0 ** 29) & (low != 0) & normal)
    odd = np.flatnonzero(~normal)
    if odd.size:
        _, _, dist = nearest(flat[odd], floor[odd])
        found = np.union1d(found, odd[(dist < margin) & (dist > 0)])
    return found


def record(v, margin=MARGIN, floor=0.0):
    """The trainer's rounding: (float32 values, flat indices within margin of a boundary,
    up for each: whether the larger neighbour was taken). An exact tie (a float64 result
    that is the boundary itself) goes to the even neighbour, as rounding to nearest does, and
    is not logged: ties come from exact arithmetic (a dead unit's zero gradient leaves Adam's
    first moment 0.9 times a float32 number, a tie one time in twelve), which every machine
    computes alike; a replay whose value is an exact tie rounds it the same way."""
    v = np.asarray(v, np.float64)
    r, _, _ = nearest(v, floor)
    near = near_boundary(v, margin, floor)
    flat_floor = np.broadcast_to(np.asarray(floor, np.float64), v.shape).reshape(-1)
    r_near, other, _ = nearest(v.reshape(-1)[near], flat_floor[near])
    return r, near, r_near > other


def replay(v, logged_index, logged_up, margin=MARGIN, floor=0.0):
    """A replay's rounding of one tensor after one update, with the trainer's decisions for it.
    Returns (float32 values, Near, problem or None). A logged direction is taken wherever this
    value lies within the margin of a boundary; a logged direction against rounding to nearest
    farther out is left for the hash (Near.logged_far). A problem names the flat index: a value
    deep inside the margin (within margin / DEEP of a boundary, where the trainer's own value
    lay within the margin unless the two machines differ by almost all of it) with no logged
    decision, or a decision for an element the tensor does not have."""
    r, other, dist = nearest(v, floor)
    flat_r, flat_o, flat_d = r.reshape(-1), other.reshape(-1), dist.reshape(-1)
    idx = np.asarray(logged_index, np.int64)
    up = np.asarray(logged_up, bool)
    if idx.size and idx[-1] >= flat_r.size:
        return r, Near(flat_o, flat_d, idx[:0], idx[:0]), \
            f"a logged decision names element {int(idx[-1])} of a tensor of {flat_r.size}"
    problem = None
    deep = np.flatnonzero((flat_d < margin / DEEP) & (flat_d > 0))
    missing = np.setdiff1d(deep, idx, assume_unique=True)
    if missing.size:
        i = int(missing[0])
        problem = (f"element {i} lies {flat_d[i]:.1e} of a float32 spacing from a rounding boundary, inside the "
                   f"margin ({margin:.1e}), and the run logged no decision for it")
    against = up != (flat_r[idx] > flat_o[idx]) if idx.size else np.zeros(0, bool)
    inside = flat_d[idx] < margin if idx.size else np.zeros(0, bool)
    apply = idx[against & inside]
    if apply.size:
        flat_r = flat_r.copy()
        flat_r[apply], flat_o = flat_o[apply], flat_o.copy()
        flat_o[apply] = r.reshape(-1)[apply]
        r = flat_r.reshape(r.shape)
    near = Near(flat_o, flat_d, idx, idx[against & ~inside])
    near.taken = int(apply.size)
    return r, near, problem


class Near:
    """What a replay knows of one tensor's values near a boundary after rounding: for each
    element the float32 neighbour it did not take and its distance from the boundary between
    them, the elements with a logged decision, and those of them whose logged direction it did
    not take (logged_far: the value here lies outside the margin)."""

    taken = 0  # logged directions taken against rounding to nearest here (where the log mattered)

    def __init__(self, other, dist, logged, logged_far):
        self.other, self.dist, self.logged, self.logged_far = other, dist, logged, logged_far

    def candidates(self, limit):
        """(logged directions not taken, unlogged values within `limit` of a boundary), each
        nearest first: what could have gone the other way at the trainer (never a tie)."""
        d = self.dist
        close = np.flatnonzero((d < limit) & (d > 0))
        close = np.setdiff1d(close, self.logged.astype(np.int64), assume_unique=True)
        close = close[np.argsort(d[close], kind="stable")]
        far = self.logged_far[np.argsort(d[self.logged_far], kind="stable")]
        return far, close


# ------------------------------------------------------------------ state hashes

def digests(named):
    """{group: 8-byte digest} of float32 state {name: array} (a group: a parameter with its
    optimizer state, or a buffer)."""
    groups = {}
    for name in sorted(named):
        groups.setdefault(group_of(name), []).append(name)
    out = {}
    for gname in sorted(groups):
        h = hashlib.blake2b(digest_size=8)
        for name in groups[gname]:
            a = np.ascontiguousarray(named[name])
            h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
            h.update(memoryview(a).cast("B"))
        out[gname] = h.digest()
    return out


def combine(group_digests):
    """(hash uint32, tags uint8 [G], group names) of the per-group digests."""
    names = sorted(group_digests)
    total = hashlib.blake2b(digest_size=4)
    for g in names:
        total.update(group_digests[g])
    tags = np.array([group_digests[g][0] for g in names], np.uint8)
    return int.from_bytes(total.digest(), "little"), tags, names


def state_hash(named):
    """(hash uint32, tags uint8 [G], group names) of float32 state {name: array}."""
    return combine(digests(named))


def resolve(named, near, want_hash, want_tags, logged_groups, limit=None, pairs=None):
    """When a replay's state after an update does not have the logged hash: which of its values
    near a boundary, rounded the other way, give it. named: {name: float32 array} (changed in
    place when found); near: {name: Near} of the tensors rounded in this update. Candidates lie in
    the groups whose tags differ (every group when none does: a 1-in-256 collision): logged
    directions not taken first, then unlogged values within `limit` of a boundary, nearest first;
    one flipped (up to SINGLES of them), then two among the `pairs` first. Returns [(name, index,
    distance)] flipped, or None when nothing within those bounds gives the logged hash (named is
    then unchanged)."""
    limit = LIMIT if limit is None else limit
    pairs = PAIRS if pairs is None else pairs
    dig = digests(named)
    groups = sorted(dig)
    differ = {g for g, t in zip(groups, want_tags) if dig[g][0] != t} if groups == list(logged_groups) else set()
    differ = differ or set(groups)
    cands = []
    for name in sorted(near):
        if group_of(name) in differ:
            far, close = near[name].candidates(limit)
            cands += [(-1.0, name, int(i)) for i in far[:SINGLES]]
            cands += [(float(near[name].dist[i]), name, int(i)) for i in close[:SINGLES]]
    cands.sort(key=lambda c: c[0])
    cands = cands[:SINGLES]

    def flip(name, i):
        flat, other = named[name].reshape(-1), near[name].other
        flat[i], other[i] = other[i], flat[i]

    members = {}
    for n in named:
        members.setdefault(group_of(n), {})[n] = named[n]

    def matches(touched):
        trial = dict(dig)
        for g in touched:
            trial.update(digests(members[g]))
        return combine(trial)[0] == want_hash

    for _, name, i in cands:
        flip(name, i)
        if matches({group_of(name)}):
            return [(name, i, float(near[name].dist[i]))]
        flip(name, i)
    for j, (_, n1, i1) in enumerate(cands[:pairs]):
        for _, n2, i2 in cands[j + 1:pairs]:
            flip(n1, i1)
            flip(n2, i2)
            if matches({group_of(n1), group_of(n2)}):
                return [(n1, i1, float(near[n1].dist[i1])), (n2, i2, float(near[n2].dist[i2]))]
            flip(n1, i1)
            flip(n2, i2)
    return None


# ------------------------------------------------------------------ the segment record

class Segment:
    """What a verifiable run records over the updates a+1..b of one segment (or a replay
    computes over them): per-update hashes and tags, the rounding decisions, the names."""

    def __init__(self, a, margin=None):
        self.a, self.margin = a, MARGIN if margin is None else margin
        self.names, self.groups = [], None
        self.hashes, self.tags, self.decisions = [], [], []

    @property
    def b(self):
        return self.a + len(self.hashes)

    def tensor_index(self, name):
        if name not in self.names:
            self.names.append(name)
        return self.names.index(name)

    def add_update(self, hash_, tags, groups):
        if self.groups is None:
            self.groups = list(groups)
        elif list(groups) != self.groups:
            raise ReproError(f"update {self.b + 1}: the state's groups changed ({len(groups)} now, "
                             f"{len(self.groups)} before)")
        self.hashes.append(hash_)
        self.tags.append(tags)

    def arrays(self):
        n, g = len(self.hashes), len(self.groups or [])
        dec = np.array(self.decisions, np.uint32).reshape(-1, 3)
        return {"hash": np.array(self.hashes, np.uint32).reshape(n),
                "tags": np.array(self.tags, np.uint8).reshape(n, g), "decisions": dec}

    def metadata(self):
        return {"format": FORMAT, "a": str(self.a), "b": str(self.b), "margin": repr(self.margin),
                "names": json.dumps(self.names), "groups": json.dumps(self.groups or [])}


def write(path, segment):
    """The segment's file, atomically (checkpoint.save_atomic); returns its sha256."""
    return save_atomic(path, segment.arrays(), segment.metadata())




class Logged:
    """A decisions file as read back (checked): a, b, margin, names, groups, hash [n],
    tags [n, G], and the decisions grouped by (update, tensor name)."""

    def __init__(self, a, b, margin, names, groups, hashes, tags, decisions):
        self.a, self.b, self.margin, self.names, self.groups = a, b, margin, names, groups
        self.hashes, self.tags, self.decisions = hashes, tags, decisions
        self._by = None

    def at(self, step, name):
        """(flat indices, up) logged for update `step` of tensor `name` (empty when none)."""
        if self._by is None:
            self._by = {}
            d = self.decisions
            if len(d):
                keys = d[:, 0].astype(np.int64) * (1 << 32) + (d[:, 1] >> 1)
                cuts = np.flatnonzero(np.diff(keys)) + 1
                for block in np.split(np.arange(len(d)), cuts):
                    u, t = int(d[block[0], 0]), int(d[block[0], 1] >> 1)
                    self._by[(u, t)] = (d[block, 2].astype(np.int64), (d[block, 1] & 1).astype(bool))
        t = self.names.index(name) if name in self.names else -1
        return self._by.get((step - self.a - 1, t), (np.zeros(0, np.int64), np.zeros(0, bool)))

    def count(self):
        return len(self.decisions)


def read(path, what="the decisions file", max_bytes=MAX_BYTES):
    """A Logged from a decisions file; a ReproError naming what is wrong with it."""
    from safetensors import safe_open
    try:
        size = os.stat(path).st_size
    except OSError:
        raise ReproError(f"{what} not found: {path}") from None
    if size > max_bytes:
        raise ReproError(f"{what} is {size:,} bytes, over the limit {max_bytes:,}")
    try:
        with safe_open(path, framework="np") as f:
            meta = f.metadata() or {}
            keys = set(f.keys())
            if keys != {"hash", "tags", "decisions"}:
                raise ReproError(f"{what} holds {sorted(keys)[:5]}, not hash, tags and decisions")
            arrays = {k: f.get_tensor(k) for k in keys}
    except ReproError:
        raise
    except Exception as e:
        raise ReproError(f"{what} is not a readable safetensors file ({type(e).__name__})") from None
    if meta.get("format") != FORMAT:
        raise ReproError(f"{what} is not a {FORMAT} file")
    try:
        a, b, margin = int(meta["a"]), int(meta["b"]), float(meta["margin"])
        names, groups = json.loads(meta["names"]), json.loads(meta["groups"])
    except (KeyError, ValueError, TypeError):
        raise ReproError(f"{what}: its metadata (a, b, margin, names, groups) is malformed") from None
    if not (isinstance(names, list) and all(isinstance(x, str) for x in names)
            and isinstance(groups, list) and all(isinstance(x, str) for x in groups)):
        raise ReproError(f"{what}: names and groups must be lists of names")
    h, tags, dec = arrays["hash"], arrays["tags"], arrays["decisions"]
    n = b - a
    if not (0 <= a < b and h.dtype == np.uint32 and h.shape == (n,) and tags.dtype == np.uint8
            and tags.shape == (n, len(groups)) and dec.dtype == np.uint32 and dec.ndim == 2 and dec.shape[1] == 3):
        raise ReproError(f"{what}: its arrays do not describe updates {a + 1}..{b} "
                         f"(hash {h.dtype}{list(h.shape)}, tags {tags.dtype}{list(tags.shape)}, "
                         f"decisions {dec.dtype}{list(dec.shape)})")
    if not MARGIN_RANGE[0] <= margin <= MARGIN_RANGE[1]:
        raise ReproError(f"{what}: margin {margin!r} is outside {MARGIN_RANGE[0]:.1e}..{MARGIN_RANGE[1]:.1e} of a "
                         f"float32 spacing")
    if len(dec):
        u, t, i = (dec[:, 0].astype(np.int64), (dec[:, 1] >> 1).astype(np.int64), dec[:, 2].astype(np.int64))
        ordered = np.array_equal(np.lexsort((i, t, u)), np.arange(len(dec)))
        repeated = bool(np.any((np.diff(u) == 0) & (np.diff(t) == 0) & (np.diff(i) == 0)))
        if int(u.max()) >= n or int(t.max()) >= len(names) or not ordered or repeated:
            raise ReproError(f"{what}: its decisions are not sorted, unique, within updates {a + 1}..{b} "
                             f"and the {len(names)} named tensors")
    return Logged(a, b, margin, names, groups, h, tags, dec)


def first_divergence(logged, hashes, tags, groups):
    """Where a replay's per-update hashes first depart from the logged ones: None when they
    never do, else (update number, [group names whose tags differ there])."""
    n = min(len(logged.hashes), len(hashes))
    diff = np.flatnonzero(np.asarray(logged.hashes[:n]) != np.asarray(hashes[:n]))
    if not diff.size:
        return None if len(logged.hashes) == len(hashes) else (logged.a + n + 1, [])
    i = int(diff[0])
    named = []
    if list(groups) == list(logged.groups):
        named = [g for g, x, y in zip(groups, logged.tags[i], tags[i]) if x != y]
    return logged.a + i + 1, named
