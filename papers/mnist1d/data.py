"""MNIST-1D data: generated offline with the authors' `mnist1d` package.

`mnist1d.data.get_dataset` is never called: it defaults to an HTTP download
with no timeout. `make_dataset(get_dataset_args())` builds the same arrays as
the authors' frozen pickle (see tests/test_mnist1d_data.py). The shuffled
variant is the authors' own `shuffle_seq=True`: one fixed permutation of the 40
positions, drawn from the dataset's seed, applied to train and test alike.
"""
import functools
import os
import pickle
import stat
import tempfile
import zipfile

import numpy as np

from repro import safe_pickle
from repro.data import fingerprint
from repro.datasets.download import resolve_data_dir
from repro.errors import ReproError

KEYS = ("x", "y", "x_test", "y_test")
# repro.data.fingerprint of the generated (x, y, x_test, y_test) for the registered datasets: a copy
# on disk is used only when it hashes to this, so a stale or planted file is never trained on
PINNED = {(42, False): "221f6a5ff65fb178941f4d795fc31d407305d64f4c06190dd93ea1756a476e8e",
          (42, True): "b29ce566e384e6f793dc5e0697e96b12b74e97600edb19e99db19d5175dc3259"}


@functools.lru_cache(maxsize=4)
def generate(seed=42, shuffle_seq=False):
    """The authors' generator's arrays (x, y, x_test, y_test). Generating takes about 4 s (1.3 s of
    it importing the package, which imports matplotlib and scipy), paid by every process that
    trains or audits a run; so a registered dataset is kept, once made, as an .npz in the
    datasets folder (mnist1d/ under --data-dir, $REPRO_DATA_DIR or ~/.cache/repro) and read back
    only when its bytes hash to PINNED (no code runs: allow_pickle=False)."""
    pinned = PINNED.get((seed, bool(shuffle_seq)))
    name = f"generated-seed{seed}-{'shuffled' if shuffle_seq else 'plain'}.npz"
    path = os.path.join(resolve_data_dir(None, "mnist1d"), name)
    arrays = _read_kept(path, pinned) if pinned else None
    if arrays is None:
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.seed = seed
        args.shuffle_seq = shuffle_seq
        d = make_dataset(args)
        arrays = {k: np.asarray(d[k]) for k in KEYS}
        if pinned and fingerprint(*(arrays[k] for k in KEYS)) == pinned:
            _keep(path, arrays)
    for a in arrays.values():
        a.setflags(write=False)  # cached: nobody may edit the shared copy
    return arrays


def _read_kept(path, pinned):
    """The arrays kept at path, or None where there are none or they are not the pinned ones."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in KEYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # absent, unreadable, truncated, other
        return None
    return arrays if fingerprint(*(arrays[k] for k in KEYS)) == pinned else None


def _keep(path, arrays):
    """Write the arrays to path atomically; silently not where the folder cannot or should not be
    written (a sandboxed worker's read-only datasets folder, a shared folder made read-only)."""
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        if not os.stat(folder).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
            return  # read-only by its mode: root could write, but the owner said not to
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".generated-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.chmod(tmp, 0o644)  # the sandboxed workers (another user) read it too
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        return


def _raw(seed, n):
    """make_dataset's draws, before its spatial shuffle and normalisation: (x [n, 40], y [n])."""
    from mnist1d.data import get_dataset_args, get_templates
    from mnist1d.transform import transform
    from mnist1d.utils import set_seed

    args, templates = get_dataset_args(), get_templates()
    set_seed(seed)
    xs, ys = [], []
    classes = len(templates["y"])
    for label in range(classes):
        for _ in range(-(-n // classes)):
            x, _ = transform(templates["x"][label], templates["t"], args)
            xs.append(x)
            ys.append(templates["y"][label])
    order = np.random.permutation(len(ys))
    return np.stack(xs)[order], np.stack(ys)[order], args


# _public_stats(shuffle_seq) of the registered generator: (mean, std, the permutation or None). Computing
# them draws the whole public split again (about 2.4 s in every worker that makes a fresh split);
# tests/test_mnist1d_data.py checks them against _public_stats.
PUBLIC_STATS = {
    False: (-0.0055075064312771795, 0.15467803420593054, None),
    True: (-0.0055075064312771795, 0.15467803420593054,
           (19, 22, 4, 32, 17, 18, 28, 31, 11, 24, 23, 7, 25, 35, 34, 6, 3, 13, 12, 26, 1, 27, 20, 10, 36, 9, 37, 29, 8,
            30, 5, 38, 16, 15, 33, 39, 14, 21, 0, 2)),
}


def _public_stats(shuffle_seq):
    """What make_dataset(seed 42) normalises with and the permutation it shuffles positions
    by: the public split's distribution, which a fresh split must share."""
    x, _, args = _raw(42, args_samples())
    perm = np.random.permutation(args.final_seq_length) if shuffle_seq else None
    if perm is not None:
        x = x[..., perm]
    return float(x.mean()), float(x.std()), perm


def args_samples():
    from mnist1d.data import get_dataset_args
    return get_dataset_args().num_samples


def fresh(n, seed, shuffle_seq=False, permutation="shuffle_seq"):
    """n new samples (x float32 [n, 40], y int64 [n]) from the same distribution as the public
    split: the authors' generator drawn from another seed, then positioned and normalised
    exactly as make_dataset(seed 42) does its own (so only the draws differ). The private
    evaluation of a contest (repro/judge/private.py) takes its seed from the maintainers alone."""
    if seed == 42:
        raise ReproError("a fresh split needs a seed other than the public data's (42)")
    x, y, _ = _raw(seed, n)
    x, y = x[:n], y[:n]
    mean, std, perm = PUBLIC_STATS[bool(shuffle_seq and permutation == "shuffle_seq")]
    if perm is not None:
        x = x[..., list(perm)]
    x = (x - mean) / std
    if shuffle_seq and permutation == "notebook":
        x = x[:, np.random.RandomState(42).permutation(40)]
    return x.astype(np.float32), np.asarray(y).astype(np.int64)


def notebook_permutation(data):
    """The 2024 classification notebook's spatial shuffle of unshuffled arrays:
    np.random.seed(42), then one permutation of the 40 positions for train and test."""
    perm = np.random.RandomState(42).permutation(40)
    return {k: (v[:, perm] if k in ("x", "x_test") else v) for k, v in data.items()}


def load_frozen(path):
    """The authors' frozen mnist1d_data.pkl, read without executing code."""
    try:
        with open(path, "rb") as f:
            data = safe_pickle.loads(f.read())
    except FileNotFoundError:
        raise ReproError(f"frozen MNIST-1D file not found: {path}") from None
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise ReproError(f"cannot read {path} as MNIST-1D arrays: {e}") from None
    if not isinstance(data, dict) or not {"x", "y", "x_test", "y_test"} <= set(data):
        raise ReproError(f"{path} is not an MNIST-1D dataset (needs x, y, x_test, y_test)")
    return data
