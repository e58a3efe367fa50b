"""Unpickling that cannot run code: only NumPy arrays inside plain containers.

pickle.load runs whatever a file asks for; files from elsewhere (a frozen
dataset, a reprod_log dump) are read with this instead.
"""
import io
import pickle

import numpy as np
from numpy.lib import format as npy_format


class NumpyOnlyUnpickler(pickle.Unpickler):
    ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing persistent references")


def loads(data):
    return NumpyOnlyUnpickler(io.BytesIO(data)).load()


def load_npy(path):
    """np.load(path, allow_pickle=True) without the code execution: an object
    array's pickle is read with NumpyOnlyUnpickler."""
    with open(path, "rb") as f:
        version = npy_format.read_magic(f)
        read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        if dtype.hasobject:
            return loads(f.read())
    return np.load(path, allow_pickle=False)
