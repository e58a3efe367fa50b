import numpy as np

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
