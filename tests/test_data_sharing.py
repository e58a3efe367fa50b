"""The judge's DataCache: the evaluation splits a data worker built are used for another
run only when they are the ones that run logged (fingerprints, refitted artifact,
this machine's files); the cells of a paper that log the same data config share one
build. The data workers are replaced here by a counter (the whole path runs in
tests/test_shipped_logs.py, where ChnSentiCorp's three cells share one worker)."""
import types

import numpy as np
import pytest

from repro.data import fingerprint
from repro.errors import ReproError
from repro.judge import audit

DEV = (np.arange(12, dtype=np.float32).reshape(6, 2), np.array([0, 1, 0, 1, 1, 0], np.int64))
OTHER_DEV = (DEV[0] + 1, DEV[1])


def plan(exp, seed=0, dev=DEV, data_cfg=None, provenance=None, paper="p", more=None, sets_seed=True,
         registered_seed=42):
    header = {"paper": paper, "exp": exp, "lite": False, "artifact_sha256": None, "provenance": provenance or {},
              "config": {"data": data_cfg or {"source": "files"}, "train": {"seed": seed}},
              "data": {"train": {"n": 3, "sha256": "t" * 64}, "dev": {"n": len(dev[1]), "sha256": fingerprint(*dev)}, **(more or {})}}
    protocol = types.SimpleNamespace(registered_config=lambda lite: {"train.seed": registered_seed})
    run = types.SimpleNamespace(path=f"runs/{exp}/seed{seed}", header=header, cfg=None, protocol=protocol)
    worker = types.SimpleNamespace(env={"REPRO_PAPERS": "/papers"}, trusted=True)
    return audit.Plan(run, True, [], [], {"train.seed": seed} if sets_seed else {}, worker, False, 1)


@pytest.fixture
def builds(monkeypatch):
    """[(exp, seed, seeded)] of each data worker started; what it builds is what `world` says."""
    started, world = [], {}

    def build(p, timeout, seeded=True):
        exp, seed = p.request("data")["exp"], p.run.header["config"]["train"]["seed"]
        started.append((exp, seed, seeded))
        got = world.get((exp, seed if seeded else None), world.get(exp, DEV))
        if isinstance(got, Exception):
            raise got
        return {"dev": got}, None, None, world.get("provenance", {})
    monkeypatch.setattr(audit, "_build_data", build)
    return started, world


def test_cells_logging_the_same_data_share_one_build(builds):
    started, _ = builds
    cache = audit.DataCache()
    for p in (plan("bow"), plan("bilstm"), plan("textcnn"), plan("bow", seed=1)):
        assert cache.get(p, 60)[0]["dev"] is not None
    assert started == [("bow", 0, False)]


def test_a_cell_whose_logged_data_differ_gets_its_own_build(builds):
    started, world = builds
    world["cnn"] = OTHER_DEV
    cache = audit.DataCache()
    cache.get(plan("mlp"), 60)
    got = cache.get(plan("cnn", dev=OTHER_DEV), 60)
    assert fingerprint(*got[0]["dev"]) == fingerprint(*OTHER_DEV)
    assert started == [("mlp", 0, False), ("cnn", 0, False)]


def test_a_forged_log_claiming_another_cells_data_is_not_what_decides(builds):
    """A cell that logs the other cell's fingerprints but another data config does not
    share its build: it is built for its own experiment, which then disagrees with its log."""
    started, world = builds
    world["shuffled"] = OTHER_DEV
    cache = audit.DataCache()
    cache.get(plan("cnn"), 60)
    got = cache.get(plan("shuffled", data_cfg={"source": "files", "shuffle": True}), 60)
    assert started == [("cnn", 0, False), ("shuffled", 0, False), ("shuffled", 0, True)]
    assert fingerprint(*got[0]["dev"]) == fingerprint(*OTHER_DEV)


def test_a_cell_that_logs_other_splits_gets_its_own_build(builds):
    started, _ = builds
    cache = audit.DataCache()
    cache.get(plan("bow"), 60)
    cache.get(plan("bilstm", more={"test": {"n": 6, "sha256": fingerprint(*DEV)}}), 60)
    assert started == [("bow", 0, False), ("bilstm", 0, False)]


def test_another_cells_data_built_with_other_local_files_are_not_shared(builds):
    started, world = builds
    world["provenance"] = {"vectors": "sha256:aa"}
    cache = audit.DataCache()
    cache.get(plan("bow", provenance={"vectors": "sha256:aa"}), 60)
    cache.get(plan("bilstm", provenance={"vectors": "sha256:bb"}), 60)
    assert started == [("bow", 0, False), ("bilstm", 0, False)]


def test_another_cells_failed_build_is_not_this_cells_failure(builds):
    started, world = builds
    world["bow"] = ReproError("the ChnSentiCorp archive not found")
    cache = audit.DataCache()
    with pytest.raises(ReproError, match="archive not found"):
        cache.get(plan("bow"), 60)
    assert cache.get(plan("bilstm"), 60)[0]["dev"] is not None
    with pytest.raises(ReproError, match="not started again"):
        cache.get(plan("bow", seed=1), 60)
    assert started == [("bow", 0, False), ("bilstm", 0, False)]


def test_seeds_whose_data_depend_on_the_seed_are_built_for_their_own(builds):
    started, world = builds
    world[("logreg", 1)] = OTHER_DEV
    cache = audit.DataCache()
    cache.get(plan("logreg"), 60)
    got = cache.get(plan("logreg", seed=1, dev=OTHER_DEV), 60)
    assert fingerprint(*got[0]["dev"]) == fingerprint(*OTHER_DEV)
    assert started == [("logreg", 0, False), ("logreg", 1, True)]


@pytest.mark.parametrize("how", [{"sets_seed": False}, {"registered_seed": 0}])
def test_a_run_on_the_registered_seed_is_built_once_even_when_its_data_disagree(builds, how):
    """The registered config's seed is the run's: the data built without the run's seed are its
    own, and a mismatch with its log is the run's problem (reported by the recompute), not a reason
    to build them again."""
    started, world = builds
    world["textcnn"] = OTHER_DEV
    got = audit.DataCache().get(plan("textcnn", **how), 60)
    assert fingerprint(*got[0]["dev"]) == fingerprint(*OTHER_DEV)
    assert started == [("textcnn", 0, False)]
