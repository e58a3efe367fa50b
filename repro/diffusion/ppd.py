"""ppdiffusers, imported once and quietly, and the per-process caches of the
text-to-image family (a real CLIP or Inception takes seconds to load).

The harness core never imports this package: only the diffusion papers and
their CLIs (repro.diffusion.generate, repro.diffusion.submit) do.
"""
import contextlib
import logging
import os
import sys

import numpy as np

def ppdiffusers():
    """The ppdiffusers package; the harness imports it only through here.

    Importing ppdiffusers 0.29 (its utils/load_utils.py) rebinds ``np.bool`` to
    Python's ``bool``, adds ``np.bfloat16 = np.uint16`` and, where torch is
    installed, sets ``torch.uint16 = torch.bfloat16`` (a stand-in for torch
    releases that had no uint16). numpy's own code calls ``np.bool(x).any()``, so
    afterwards ``np.testing``'s comparisons raise on float arrays, and ``torch.save`` writes
    every tensor in a format safe loaders refuse. ppdiffusers reads none of these
    names itself, so they are put back.

    USE_TORCH=0 (unless set): ppdiffusers would otherwise import PyTorch where it is
    installed (about 1.3 s more per process, measured), for PyTorch .bin checkpoints,
    which the harness never loads (it takes safetensors and pdparams only,
    repro.diffusion.pretrained). ppdiffusers reads the variable at each call, so it stays
    set for the process and the processes it starts."""
    os.environ.setdefault("USE_TORCH", "0")
    import ppdiffusers as module
    if np.__dict__.get("bool") is bool:
        if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
            np.bool = np.bool_  # numpy 2's own np.bool is np.bool_
        else:
            del np.bool
    if np.__dict__.get("bfloat16") is np.uint16:
        del np.bfloat16
    torch = sys.modules.get("torch")
    if torch is not None and getattr(torch, "uint16", None) is torch.bfloat16:
        try:
            torch.uint16 = torch.from_numpy(np.zeros(0, np.uint16)).dtype
        except TypeError:  # a torch without uint16 (< 2.3): ppdiffusers' stand-in stays
            pass
    return module


@contextlib.contextmanager
def quiet():
    """Silence ppdiffusers/paddlenlp INFO chatter (config dumps on every load)."""
    names = ("ppdiffusers", "paddlenlp", "PaddleNLP")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    try:
        ppdiffusers()
        from ppdiffusers.utils import logging as pl
        old = pl.get_verbosity()
        pl.set_verbosity_error()
    except ImportError:
        pl = None
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)
        if pl is not None:
            pl.set_verbosity(old)



_CACHE = {}


def cached(key, make):
    """make() once per process for the same key."""
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]
