"""Batches by step number, and fingerprints of the data a run used.

The batch for update ``step`` is a pure function of (seed, step), so a resumed
run sees exactly the batches an uninterrupted one would.
"""
import hashlib

import numpy as np
import paddle


class Batches:
    """order='sequential': rows [step*bs % N, +bs), as the MNIST-1D authors train.
    order='shuffle': a fresh permutation each epoch from (seed, epoch); the
    incomplete last batch of an epoch is dropped."""

    def __init__(self, x, y, batch_size, order="sequential", seed=0):
        self.x = paddle.to_tensor(x)
        self.y = paddle.to_tensor(y)
        self.n = len(x)
        self.batch_size = batch_size
        self.order = order
        self.seed = seed
        self.steps_per_epoch = max(1, self.n // batch_size)
        self._perm_epoch, self._perm = None, None

    def epoch(self, step):
        return step * self.batch_size // self.n if self.order == "sequential" else step // self.steps_per_epoch

    def __call__(self, step):
        bs = self.batch_size
        if self.order == "sequential":
            b = (step * bs) % self.n
            return self.x[b:b + bs], self.y[b:b + bs]
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._perm_epoch:
            perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            self._perm_epoch, self._perm = epoch, paddle.to_tensor(perm)
        idx = self._perm[i * bs:(i + 1) * bs]
        return paddle.gather(self.x, idx), paddle.gather(self.y, idx)


def fingerprint(*arrays):
    """sha256 over dtype, shape and bytes of each array, in order."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()
