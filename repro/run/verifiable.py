"""Verifiable training (train.verifiable: true), the Paddle side.

The state between updates is float32, as in any run: weights, buffers and
optimizer state, which checkpoints, evaluation, resume and the replay audit use
unchanged. Each update is computed in float64 from it: the state is raised to
float64 in place (the same tensors, so the optimizer keeps its bookkeeping),
the batch's float inputs are cast, the paper's train_step runs (forward,
backward, the optimizer's step, whatever else it does), and every float value
of the new state is rounded to the nearest float32 (below a floor of 2^-12 of
the tensor's largest value, to the floor's fixed grid: decisions.floor_of).
Where a float64 result lies within decisions.MARGIN of a rounding boundary the
trainer records which way it went; a replay applies those records
(repro.run.decisions says how, and what fails). A hash of the float32 state after every update goes into the same
per-segment record, so a replay that does not match names the first update
and the parameters that diverge.

The trainer (repro.run.recipe, repro.train) and the replay worker use this; the
judge only reads the files (repro.run.decisions).
"""
import numpy as np

from repro.errors import ReproError
from repro.run import decisions
from repro.strict import sha256_file


def _share(t, new):
    """Make tensor t hold new's data (and dtype), keeping t the same object."""
    dst, src = t.value().get_tensor(), new.value().get_tensor()
    if t._is_initialized():
        dst._share_data_with(src)
    else:
        dst._share_data_nocheck_with(src)


class Exact:
    """The verifiable arithmetic of one training state (recipe.State.exact). Records a
    segment's decisions (training) or applies the logged ones (replay: use_logged)."""

    def __init__(self, net, optimizer, start=0):
        import paddle
        self.paddle = paddle
        self.net, self.optimizer = net, optimizer
        # the learning rate tensor Paddle makes at the first step takes the optimizer's dtype: float64,
        # the config's value exactly (a float32 rate would not match float64 parameters)
        optimizer._dtype = paddle.float64
        self.segment = decisions.Segment(start)
        self.logged = None          # a replay: the trainer's decisions.Logged for this segment
        self.problem = None         # a replay: the first decision problem, naming update and tensor
        self.resolved = []          # a replay: [(name, index, distance)] rounded the other way to get the logged hash
        self.taken = 0              # a replay: logged directions taken against its own rounding to nearest
        self.departed = False       # a replay: its state left the logged ones (no resolution found)
        self._model = [(f"model/{k}", t) for k, t in net.state_dict().items()
                       if paddle.is_floating_point(t)]
        self._native = {decisions.group_of(n) for n, t in self._model if t.dtype != paddle.float32}
        self._by_param = {p.name: s for s, p in net.named_parameters()}
        self._floors = None         # {name: floor} of the float32 state before the next update

    # ------------------------------------------------------------------ the state

    def tensors(self):
        """[(checkpoint name, live tensor)] of the float state, sorted by name: the model's
        float tensors and the optimizer's accumulators (checkpoint.state_tensors' names)."""
        out = list(self._model)
        for acc in self.optimizer._accumulators.values():
            for pname, t in acc.items():
                sname = self._by_param.get(pname)
                if sname is None:
                    raise ReproError(f"the optimizer holds state for a tensor the model does not name ({pname})")
                out.append((f"optim/{sname}/{t.name[len(pname) + 1:]}", t))
        return sorted(out, key=lambda x: x[0])

    def _rounded(self, name):
        return decisions.group_of(name) not in self._native

    def _holder_names(self):
        """{checkpoint name: tensor} of optimizer state loaded from a checkpoint and not yet placed."""
        out = {}
        for key, value in self.optimizer._accumulators_holder.items():
            pname = max((n for n in self._by_param if key.startswith(n + "_")), key=len, default=None)
            if pname is not None and isinstance(value, self.paddle.Tensor):
                out[f"optim/{self._by_param[pname]}/{key[len(pname) + 1:]}"] = value
        return out

    def up(self):
        """Raise the float32 state to float64 in place (and state loaded from a checkpoint that
        the optimizer has not yet placed), after noting each tensor's floor (decisions.floor_of)
        from the float32 values."""
        p = self.paddle
        if self._floors is None:  # the first update here: from the state as loaded or built
            state = {**{n: t for n, t in self.tensors() if t.dtype == p.float32}, **self._holder_names()}
            self._floors = {n: decisions.floor_of(t.numpy()) for n, t in state.items() if self._rounded(n)}
        with p.no_grad():
            for name, t in self.tensors():
                if t.dtype == p.float32 and self._rounded(name):
                    _share(t, t.astype(p.float64))
            holder = self.optimizer._accumulators_holder
            for key, value in list(holder.items()):
                if isinstance(value, p.Tensor) and value.dtype == p.float32:
                    holder[key] = value.astype(p.float64)

    def batch(self, batch):
        """The batch with its float32 tensors cast to float64 (ids and labels unchanged)."""
        p = self.paddle
        cast = lambda x: x.astype(p.float64) if isinstance(x, p.Tensor) and x.dtype == p.float32 else x
        if isinstance(batch, (tuple, list)):
            return type(batch)(cast(x) for x in batch)
        if isinstance(batch, dict):
            return {k: cast(v) for k, v in batch.items()}
        return cast(batch)

    def down(self, step):
        """Round the float64 state after update `step` to float32, recording the near-boundary
        decisions (training) or applying the logged ones (replay), and record the state's hash.
        A replay whose state then lacks the logged hash resolves it (decisions.resolve) or
        notes the first problem, naming the update and the tensor, and goes on."""
        p = self.paddle
        seg, named, near, live = self.segment, {}, {}, {}
        u = step - seg.a - 1
        for name, t in self.tensors():
            if t.dtype == p.float64 and self._rounded(name):
                live[name] = t
            else:
                named[name] = t.numpy()
        floors = self._floors or {}
        if self.logged is None:  # training: rounded to nearest (by Paddle's cast above the floors), the near values recorded
            values = {name: t.numpy() for name, t in live.items()}
            sizes = [v.size for v in values.values()]
            ends = np.cumsum(sizes)
            flat = np.concatenate([v.ravel() for v in values.values()]) if values else np.zeros(0)
            flat_floor = np.repeat(np.array([floors.get(n, 0.0) for n in values], np.float64), sizes)
            idx = decisions.near_boundary(flat, seg.margin, flat_floor)
            r_near, other, _ = decisions.nearest(flat[idx], flat_floor[idx])
            up = r_near > other
            with p.no_grad():
                for name, t in live.items():
                    floor, v = floors.get(name, 0.0), values[name]
                    low = np.abs(v) < floor if floor > 0 else None
                    if low is not None and low.any():  # the fixed grid below the floor
                        r = v.astype(np.float32)
                        q = floor * 2.0 ** -23
                        r[low] = (np.rint(v[low] / q) * q).astype(np.float32)
                        _share(t, p.to_tensor(r, place=t.place))
                        named[name] = r
                    else:
                        lowered = t.astype(p.float32)
                        _share(t, lowered)
                        named[name] = lowered.numpy()
            got = np.concatenate([named[n].ravel() for n in values])[idx] if idx.size else r_near
            if not np.array_equal(got.view(np.uint32), r_near.view(np.uint32)):
                raise ReproError("Paddle's cast to float32 does not round to nearest here; verifiable training "
                                 "cannot record its rounding")
            live = {}  # lowered already
            if idx.size:
                which = np.searchsorted(ends, idx, side="right")
                ti = np.array([seg.tensor_index(n) for n in values], np.int64)[which]
                local = idx - (ends - np.array(sizes))[which]
                order = np.lexsort((local, ti))
                seg.decisions.extend(np.stack([np.full(idx.size, u), 2 * ti + up, local], 1)[order].tolist())
            else:
                for name in values:
                    seg.tensor_index(name)
        else:  # a replay: each tensor with the trainer's decisions for it
            for name, t in live.items():
                seg.tensor_index(name)
                index, ups = self.logged.at(step, name)
                r, near[name], problem = decisions.replay(t.numpy(), index, ups, self.logged.margin,
                                                          floors.get(name, 0.0))
                self.taken += near[name].taken
                if problem:
                    self._note(step, name, problem)
                named[name] = np.ascontiguousarray(r)
        hash_, tags, groups = decisions.state_hash(named)
        if self.logged is not None and 0 <= u < len(self.logged.hashes) and hash_ != int(self.logged.hashes[u]):
            # once a replay has departed from the logged states nothing brings it back: stop searching
            found = None if self.departed else decisions.resolve(
                named, near, int(self.logged.hashes[u]), self.logged.tags[u], self.logged.groups)
            self.departed = found is None
            if found is None:
                differ = [g for g, x, y in zip(groups, tags, self.logged.tags[u]) if x != y] \
                    if groups == list(self.logged.groups) else []
                self._note(step, ", ".join(differ[:3]) or "the state",
                           f"no rounding of the values near a boundary (one or two of them, within "
                           f"{decisions.LIMIT:g} of a float32 spacing) gives the logged state hash")
            else:
                self.resolved += found
                hash_, tags, groups = decisions.state_hash(named)
        for name, t in live.items():
            _share(t, p.to_tensor(named[name], place=t.place))
        seg.add_update(hash_, tags, groups)
        self._floors = {n: decisions.floor_of(a) for n, a in named.items() if self._rounded(n)}

    def _note(self, step, name, problem):
        if self.problem is None:
            self.problem = f"update {step}, tensor {name}: {problem}"

    # ------------------------------------------------------------------ segments (training)

    def checkpoint(self, path, step, kept):
        """Write the record of the updates since the last kept checkpoint beside the checkpoint
        of `step` (path: its decisions file); returns the log line's field. A kept checkpoint
        starts the next segment."""
        if self.segment.b != step:
            raise ReproError(f"the verifiable record covers updates {self.segment.a + 1}..{self.segment.b}, "
                             f"not up to the checkpoint at step {step}")
        sha = decisions.write(path, self.segment)
        if kept:
            self.segment = decisions.Segment(step, self.segment.margin)
        return {"decisions_sha256": sha}

    def resume(self, start, kept, path=None, sha=None):
        """Continue a run from its checkpoint at `start`: a new segment where it is kept (or 0),
        else the record written beside it (path), which must have the logged sha256."""
        self._floors = None
        if kept or start == 0:
            self.segment = decisions.Segment(start)
            return
        if path is None or sha is None or sha256_file(path) != sha:
            raise ReproError(f"the verifiable record beside the checkpoint at step {start} is missing or is not "
                             f"the one its log line names (decisions_sha256)")
        logged = decisions.read(path)
        if logged.b != start:
            raise ReproError(f"{path} covers updates {logged.a + 1}..{logged.b}, not up to step {start}")
        seg = decisions.Segment(logged.a, logged.margin)
        seg.names, seg.groups = list(logged.names), list(logged.groups)
        seg.hashes = [int(h) for h in logged.hashes]
        seg.tags = [row.copy() for row in logged.tags]
        seg.decisions = [tuple(int(x) for x in row) for row in logged.decisions]
        self.segment = seg

    # ------------------------------------------------------------------ replay

    def use_logged(self, start, logged):
        """Replay the segment from `start` with the trainer's record (a decisions.Logged, or None
        when there is none: every value inside the margin then fails)."""
        self.segment = decisions.Segment(start, logged.margin if logged is not None else None)
        self.logged = logged if logged is not None else decisions.Logged(
            start, start, decisions.MARGIN, [], [], np.zeros(0, np.uint32), np.zeros((0, 0), np.uint8),
            np.zeros((0, 3), np.uint32))
        self.problem, self.resolved, self.taken, self.departed = None, [], 0, False
        self._floors = None
