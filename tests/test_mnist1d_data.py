import numpy as np
import pytest

from conftest import shared_file
from repro.papers.mnist1d import data as mdata


def test_generated_data_matches_the_authors_frozen_copy():
    frozen = mdata.load_frozen(shared_file("mnist1d", "mnist1d_data.pkl"))
    gen = mdata.generate(42, False)
    assert gen["x"].shape == (4000, 40) and gen["x_test"].shape == (1000, 40)
    np.testing.assert_array_equal(gen["y"], frozen["y"])
    np.testing.assert_array_equal(gen["y_test"], frozen["y_test"])
    np.testing.assert_allclose(gen["x"], frozen["x"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(gen["x_test"], frozen["x_test"], rtol=0, atol=1e-12)


def test_shuffled_variant_is_one_fixed_permutation_of_positions():
    plain, shuffled = mdata.generate(42, False), mdata.generate(42, True)
    np.testing.assert_array_equal(plain["y"], shuffled["y"])
    # recover the permutation from the training set and check it explains the test set too
    perm = [int(np.argmin(np.abs(plain["x"] - shuffled["x"][:, [j]]).sum(0))) for j in range(40)]
    assert sorted(perm) == list(range(40)) and perm != list(range(40))
    np.testing.assert_allclose(plain["x"][:, perm], shuffled["x"], atol=1e-12)
    np.testing.assert_allclose(plain["x_test"][:, perm], shuffled["x_test"], atol=1e-12)


def test_frozen_loader_refuses_code(tmp_path):
    import os
    import pickle

    import pytest
    from repro.errors import ReproError

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(ReproError, match="refusing to load posix.system"):
        mdata.load_frozen(str(path))


def test_registered_eval_fingerprints_match_the_generated_data():
    from repro.data import fingerprint
    from repro.registry import get_paper

    paper = get_paper("mnist1d")
    for exp in paper.experiments:
        data = paper.build_data(paper.config(exp))
        x, y = data.eval["test"]
        assert exp.eval_data["test"] == (len(x), fingerprint(x, y)), exp.name


def test_a_kept_copy_is_read_back_only_when_it_is_the_pinned_data(tmp_path, monkeypatch):
    """Generating takes seconds in every process that trains or audits, so a registered dataset is
    kept on disk; a copy that is not the pinned bytes (stale, truncated, planted) is never used."""
    import mnist1d.data
    import pytest

    from repro.data import fingerprint

    made = mdata.generate(42, False)  # this process's copy (generated, or read back from the real folder)
    # the generator stands in for itself: the same arrays, without its seconds
    real = lambda args: {k: np.array(v) for k, v in made.items()}
    monkeypatch.setattr(mnist1d.data, "make_dataset", real)
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    generate = mdata.generate.__wrapped__  # without the in-process cache
    generate(42, False)
    path = tmp_path / "mnist1d" / "generated-seed42-plain.npz"
    assert path.is_file() and path.stat().st_mode & 0o777 == 0o644  # the sandboxed workers read it too

    def refuse(args):
        raise AssertionError("generated again although a good copy was kept")

    monkeypatch.setattr(mnist1d.data, "make_dataset", refuse)
    kept = generate(42, False)
    assert all(np.array_equal(kept[k], made[k]) and kept[k].dtype == made[k].dtype for k in mdata.KEYS)

    planted = {k: np.array(v) for k, v in made.items()}
    planted["y"][0] = (planted["y"][0] + 1) % 10
    for bad in (lambda: np.savez(path, **planted), lambda: path.write_bytes(path.read_bytes()[:1000]),
                lambda: path.write_bytes(b"not an npz")):
        bad()
        with pytest.raises(AssertionError, match="generated again"):
            generate(42, False)  # not taken: the generator is asked
    monkeypatch.setattr(mnist1d.data, "make_dataset", real)
    again = generate(42, False)  # and the copy is made good
    assert fingerprint(*(again[k] for k in mdata.KEYS)) == mdata.PINNED[42, False]
    monkeypatch.setattr(mnist1d.data, "make_dataset", refuse)
    generate(42, False)

    path.unlink()
    (tmp_path / "mnist1d").chmod(0o555)  # a folder made read-only (../shared/data): never written
    monkeypatch.setattr(mnist1d.data, "make_dataset", real)
    generate(42, False)
    assert not path.exists() and not list((tmp_path / "mnist1d").iterdir())
    # a seed nobody pinned is generated, never kept
    (tmp_path / "mnist1d").chmod(0o755)
    generate(7, False)
    assert not list((tmp_path / "mnist1d").iterdir())


@pytest.mark.slow  # draws the public split again (about 4 s with the package's import)
def test_the_pinned_public_statistics_are_the_generators():
    """A fresh split is normalised (and, shuffled, permuted) as make_dataset(seed 42) does its public
    split: the pinned values are what drawing the public split again gives."""
    for shuffle_seq in (False, True):
        mean, std, perm = mdata._public_stats(shuffle_seq)
        assert (mean, std, None if perm is None else tuple(int(i) for i in perm)) == mdata.PUBLIC_STATS[shuffle_seq]
