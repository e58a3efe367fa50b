"""ChnSentiCorp (Tan Songbo, ICT CAS) as PaddleNLP distributes it: train (9,600
reviews), dev (1,200) and test (1,200, labels not included in this release).

The archive ChnSentiCorp.zip is looked for in the ``data_dir`` argument, else
``$REPRO_DATA_DIR/chnsenticorp/``, else ``~/.cache/repro/chnsenticorp``, and
downloaded from PaddleNLP's URL when missing; every file is md5-checked (the
values paddlenlp/datasets/chnsenticorp.py 2.8.1 checks) and read straight from
the archive.
"""

import numpy as np

from repro import strict
from repro.datasets.download import Archive, split_bytes
from repro.errors import ReproError

SOURCE = Archive("ChnSentiCorp", "https://bj.bcebos.com/paddlenlp/datasets/ChnSentiCorp.zip", "ChnSentiCorp.zip",
                 "7ef61b08ad10fbddf2ba97613f071561",
                 {"train": ("train.tsv", "689360c4a4a9ce8d8719ed500ae80907"),
                  "dev": ("dev.tsv", "20c77cc2371634731a367996b097ec0a"),
                  "test": ("test.tsv", "9b4dc7d1e4ada48c645b7e938592f49c")},
                 subdir="chnsenticorp", prefix="ChnSentiCorp/")


def read_split(split, data_dir=None, download=True):
    """(texts, labels int64) of a split; the test split's labels are -1 (this release has none)."""
    raw, where = split_bytes(SOURCE, split, data_dir, download)
    rows = [ln.split("\t") for ln in strict.utf8(raw, where).splitlines()[1:] if ln]
    if split == "train":  # label, text_a
        if any(len(r) != 2 or r[0] not in ("0", "1") for r in rows):
            raise ReproError(f"{where}: not label<TAB>text rows")
        return [r[1] for r in rows], np.array([int(r[0]) for r in rows], np.int64)
    if split == "dev":  # qid, label, text_a
        if any(len(r) != 3 or r[1] not in ("0", "1") for r in rows):
            raise ReproError(f"{where}: not qid<TAB>label<TAB>text rows")
        return [r[2] for r in rows], np.array([int(r[1]) for r in rows], np.int64)
    if any(len(r) != 2 for r in rows):  # qid, text_a
        raise ReproError(f"{where}: not qid<TAB>text rows")
    return [r[1] for r in rows], np.full(len(rows), -1, np.int64)
