"""One code path for every backend: NumPy-only calls fail on array-api-strict's 'device1'."""

import array_api_strict
import numpy as np
import pytest
import torch

from sudl import SparselyUsedDictionaryLearning, make_sparsely_used_signal, whiten
from sudl.solvers import solve

DEVICE1 = array_api_strict.Device("device1")


def to_strict(a):
    return array_api_strict.asarray(a, device=DEVICE1)


BACKENDS = {
    "strict-device1": (to_strict, lambda a: np.asarray(a.to_device(array_api_strict.Device("CPU_DEVICE")))),
    "torch": (torch.asarray, lambda a: a.numpy()),
}


@pytest.fixture(scope="module")
def data():
    return make_sparsely_used_signal(300, 8, density=0.4, random_state=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", ["logcosh", "l1", "l4", "er_spud"])
def test_solvers_match_numpy(data, backend, method):
    to, back = BACKENDS[backend]
    Yw = whiten(data[0]).Y_white
    ref = solve(Yw, method, random_state=0, max_iter=50)
    res = solve(to(Yw), method, random_state=0, max_iter=50)
    assert type(res.directions) is type(to(Yw))
    np.testing.assert_allclose(back(res.directions), ref.directions, atol=1e-8)


@pytest.mark.parametrize("backend", BACKENDS)
def test_estimator_roundtrip_on_backend(data, backend):
    to, back = BACKENDS[backend]
    Y, code, D = data
    ref = SparselyUsedDictionaryLearning(random_state=0).fit(Y)
    est = SparselyUsedDictionaryLearning(random_state=0).fit(to(Y))
    C = est.transform(to(Y))
    assert type(C) is type(to(Y))
    np.testing.assert_allclose(back(est.components_), ref.components_, atol=1e-8)
    np.testing.assert_array_equal(back(C) == 0, ref.transform(Y) == 0)
    np.testing.assert_allclose(back(est.inverse_transform(C)), Y, atol=1e-10)
    assert est.exact_.all()


def test_torch_float32_input_stays_float32(data):
    Y = torch.asarray(data[0], dtype=torch.float32)
    est = SparselyUsedDictionaryLearning(random_state=0).fit(Y)
    assert est.transform(Y).dtype == torch.float32


def test_strict_nan_message():
    Y = to_strict(np.array([[np.nan, 1.0], [1.0, 2.0], [3.0, 4.0]]))
    with pytest.raises(ValueError, match="NaN"):
        SparselyUsedDictionaryLearning().fit(Y)


def test_svd_falls_back_to_gesvd_where_the_default_does_not_converge(monkeypatch):
    from sudl._array_api import svd

    M = np.random.default_rng(0).normal(size=(6, 4))

    def no_convergence(*args, **kwargs):
        raise np.linalg.LinAlgError("SVD did not converge")

    monkeypatch.setattr(np.linalg, "svd", no_convergence)
    U, s, Vh = svd(M)
    assert np.allclose((U * s) @ Vh, M) and U.shape == (6, 4)
    M[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        svd(M)
