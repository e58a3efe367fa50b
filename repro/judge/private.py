"""A private evaluation: data the submitter never had, to expose a model fitted to the
public test split (Kaggle's private leaderboard, for reproductions).

A contest entry's `private_eval` names where the data come from, always a source
the maintainers trust, never the submission's code:

    private_eval: {fresh: {n: 4000, source: mnist1d/cnn}}      # a registered paper of this
                                                              # harness regenerates n samples
    private_eval: {file: {path: /secure/sst2_private.safetensors, sha256: <64 hex>}}

A fresh split is drawn from a secret only the maintainers hold (`--private-seed`
or $REPRO_PRIVATE_SEED, never the contest file: any integer 0 <= N < 10**18) by
the source paper's `fresh_split`, in a worker of the sandbox, given the
generator seed generator_seed(N) (a hash of the secret, in [2**20, 2**31): a
range every generator takes, above the small seeds of public data); a file split is a safetensors file
with arrays `x` and `y`, checked against its sha256. Every final checkpoint's
outputs on it come from the submission's model worker, which gets the inputs
and never the labels; the judge scores them.

The rule (AGREEMENT): a run's private result must not be lower than its public
one by more than the sampling error: with the public and private accuracies p1,
p2 over n1 and n2 samples, and p their pooled value, the run is refused when
(p1 - p2) / sqrt(p (1 - p) (1/n1 + 1/n2)) > Z, the one-sided 99.9% point of the
normal approximation to the binomial (so an honest run is refused about once in a
thousand). Accuracy-type metrics only (a fraction of samples right).
"""
import hashlib
import math
import os
import re

from repro.boundary import exchange, task
from repro.errors import ReproError
from repro.judge.rates import PRIVATE_CONFIDENCE as CONFIDENCE, PRIVATE_Z as Z  # the check's level, in one place
from repro.run import checkpoint

SEED_ENV = "REPRO_PRIVATE_SEED"
MAX_SECRET = 10**18  # the README's recipe: secrets.randbelow(10**18)
# What a paper's generator is given: numpy's legacy seeding takes < 2**32, some generators a
# signed 32-bit int; public data use small seeds (42, 0-4, 2026), which this range never meets.
GENERATOR_SEEDS = (2**20, 2**31)


def agreement(public, n_public, private, n_private):
    """(agrees, z): public and private accuracies in percent over their sample counts."""
    p1, p2 = public / 100.0, private / 100.0
    pooled = (p1 * n_public + p2 * n_private) / (n_public + n_private)
    se = math.sqrt(max(pooled * (1 - pooled), 0.0) * (1 / n_public + 1 / n_private))
    if se == 0:
        return p1 <= p2, (math.inf if p1 > p2 else 0.0)
    z = (p1 - p2) / se
    return z <= Z, z


def why_not(metric, public, n_public, private, n_private, z):
    return (f"the model does much better on the public test split than on unseen data from the same "
            f"distribution: it was fitted to the test split ({metric} {public:.2f} on the public {n_public:,}, "
            f"{private:.2f} on the private {n_private:,}; {z:.1f} standard errors, over {Z:.2f} at "
            f"{CONFIDENCE:.1%} confidence)")


def seed_from(value):
    """The maintainers' private seed: --private-seed, else $REPRO_PRIVATE_SEED (never a file)."""
    text = value if value is not None else os.environ.get(SEED_ENV)
    if text is None:
        return None
    text = str(text).strip()
    if not re.fullmatch(r"[0-9]{1,18}", text):  # ASCII digits: str.isdigit() also takes '²'
        raise ReproError(f"the private seed must be a non-negative integer of at most 18 digits "
                         f"(--private-seed or ${SEED_ENV})")
    return int(text)


def generator_seed(secret):
    """The seed every source paper's generator gets for the maintainers' secret (0 <= secret <
    10**18): the first 8 bytes of sha256("repro private split <secret>") into GENERATOR_SEEDS.
    One mapping for every paper, the same secret always giving the same split."""
    if type(secret) is not int or not 0 <= secret < MAX_SECRET:
        raise ReproError(f"the private seed must be an integer between 0 and 10**18 - 1, got "
                         f"{type(secret).__name__} {repr(secret)[:40]}")
    digest = hashlib.sha256(f"repro private split {secret}".encode()).digest()
    lo, hi = GENERATOR_SEEDS
    return lo + int.from_bytes(digest[:8], "big") % (hi - lo)


class PrivateEval:
    """One contest entry's private split, built once (spec: the entry's private_eval)."""

    def __init__(self, spec, seed=None, where="private_eval"):
        self.spec, self.seed, self.where = spec, seed, where
        self._data = None
        kind = next(iter(spec))
        if kind == "fresh" and seed is None:
            raise ReproError(f"{where}: a fresh private split needs the maintainers' seed: --private-seed N or "
                             f"${SEED_ENV} (never written in the contest file)")
        if kind == "fresh":
            generator_seed(seed)  # a secret the generator cannot be given is said now, in one line

    def describe(self):
        kind, body = next(iter(self.spec.items()))
        if kind == "fresh":
            return f"{body['n']:,} fresh samples from {body['source']} (maintainers' seed)"
        return f"the maintainers' split {os.path.basename(body['path'])} (sha256 {body['sha256'][:12]}…)"

    def data(self, sandbox, timeout=3600):
        """(x, y) of the private split; a ReproError with one line when it cannot be built."""
        if self._data is None:
            kind, body = next(iter(self.spec.items()))
            self._data = self._fresh(body, sandbox, timeout) if kind == "fresh" else self._file(body)
        return self._data

    def _file(self, body):
        path = body["path"]
        if not os.path.isfile(path) or os.path.islink(path):
            raise ReproError(f"{self.where}: the private split {path} is not a regular file here")
        if checkpoint.sha256_file(path) != body["sha256"]:
            raise ReproError(f"{self.where}: the private split {path} does not have the sha256 the contest names")
        arrays, _ = exchange.read_arrays(path, "the private split")
        return _checked(arrays.get("x"), arrays.get("y"), self.where)

    def _fresh(self, body, sandbox, timeout):
        paper, _, exp = body["source"].partition("/")
        worker = task.Worker(sandbox, env={}, trusted=True)  # the harness's own papers, nothing submitted
        req = {"task": "fresh", "paper": paper, "exp": exp, "lite": False, "set": {}, "threads": 1,
               "n": int(body["n"]), "seed": generator_seed(self.seed)}
        answer, out = task.Staged(worker, req, {}, timeout, outputs=["data.safetensors"]).run()
        arrays, _ = exchange.take_arrays(out, "data.safetensors", "the fresh private split")
        x, y = _checked(arrays.get("private/x"), arrays.get("private/y"), self.where)
        if len(y) != int(body["n"]):
            raise ReproError(f"{self.where}: the fresh split has {len(y)} samples, not {body['n']}")
        return x, y


def _checked(x, y, where):
    if x is None or y is None or len(x) != len(y) or len(y) == 0 or y.ndim != 1 or y.dtype.kind not in "iu":
        raise ReproError(f"{where}: the private split is not arrays x and y of the same length (y integer labels)")
    return x, y
