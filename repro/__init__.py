"""repro: a PaddlePaddle paper-reproduction harness.

Installed, the package holds its metrics, built-in papers and their configs as
repro.metrics, repro.papers and repro/configs (no clash-prone top-level names in
site-packages). In a checkout those are the repository's top-level folders
metrics/, papers/ and configs/, which the line below makes the same modules.
"""
import logging
import os
import warnings

# Paddle warns at import about a C++ extension cache it never uses here.
warnings.filterwarnings("ignore", message="No ccache found")
# Some dependencies' imports say that setuptools replaces distutils; nothing here uses either.
warnings.filterwarnings("ignore", message="Setuptools is replacing distutils")

# huggingface datasets (imported by paddlenlp and ppdiffusers) logs "PyTorch version
# ... available." at import when torch is installed
logging.getLogger("datasets").setLevel(logging.WARNING)

__version__ = "0.2.0"

_here = os.path.dirname(os.path.abspath(__file__))
if not os.path.isdir(os.path.join(_here, "metrics")):  # a checkout: repro.metrics is ../metrics
    __path__.append(os.path.dirname(_here))  # noqa: F821 (a package's __path__)
