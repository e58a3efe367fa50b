"""GLUE SST-2 (Socher et al. 2013, as GLUE distributes it): train (67,349 phrases
and sentences), dev (872 sentences) and test (1,821 sentences, no labels).

Where the files are looked for: the ``data_dir`` argument, else
``$REPRO_DATA_DIR/sst2/``, else ``~/.cache/repro/sst2``: the three tsv files
there (each with its official md5), or else the archive GLUE ships them in,
downloaded from PaddleNLP's mirror and md5-checked, and read member by member.
The md5 values are those paddlenlp/datasets/glue.py (2.8.1) checks.
"""

import numpy as np

from repro import strict
from repro.datasets.download import Archive, split_bytes
from repro.errors import ReproError

SOURCE = Archive("SST-2", "https://bj.bcebos.com/dataset/glue/SST.zip", "SST.zip", "9f81648d4199384278b86e315dac217c",
                 {"train": ("train.tsv", "da409a0a939379ed32a470bc0f7fe99a"),
                  "dev": ("dev.tsv", "268856b487b2a31a28c0a93daaff7288"),
                  "test": ("test.tsv", "3230e4efec76488b87877a56ae49675a")},
                 subdir="sst2", prefix="SST-2/", loose=True)


def read_split(split, data_dir=None, download=True):
    """(texts, labels int64) of a split; the test split's labels are -1 (GLUE does not publish them)."""
    raw, where = split_bytes(SOURCE, split, data_dir, download)
    return parse(raw, split, where)


def parse(raw, split, where):
    lines = strict.utf8(raw, where).splitlines()
    header, rows = lines[0].split("\t"), [ln.split("\t") for ln in lines[1:] if ln]
    if split == "test":
        if header != ["index", "sentence"]:
            raise ReproError(f"{where}: unexpected header {header}")
        return [r[1] for r in rows], np.full(len(rows), -1, np.int64)
    if header != ["sentence", "label"] or any(len(r) != 2 or r[1] not in ("0", "1") for r in rows):
        raise ReproError(f"{where}: not GLUE SST-2 rows (sentence<TAB>label, labels 0 or 1)")
    return [r[0].strip() for r in rows], np.array([int(r[1]) for r in rows], np.int64)
