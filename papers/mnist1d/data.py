"""MNIST-1D data: generated offline with the authors' `mnist1d` package.

`mnist1d.data.get_dataset` is never called: it defaults to an HTTP download
with no timeout. `make_dataset(get_dataset_args())` builds the same arrays as
the authors' frozen pickle (see tests/test_mnist1d_data.py). The shuffled
variant is the authors' own `shuffle_seq=True`: one fixed permutation of the 40
positions, drawn from the dataset's seed, applied to train and test alike.
"""
import functools
import pickle

import numpy as np

from repro import safe_pickle
from repro.errors import ReproError


@functools.lru_cache(maxsize=4)
def generate(seed=42, shuffle_seq=False):
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = seed
    args.shuffle_seq = shuffle_seq
    d = make_dataset(args)
    arrays = {k: np.asarray(d[k]) for k in ("x", "y", "x_test", "y_test")}
    for a in arrays.values():
        a.setflags(write=False)  # cached: nobody may edit the shared copy
    return arrays


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
