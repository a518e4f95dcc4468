import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sudl import (
    dictionary_recovery_error,
    exact_recovery_rate,
    make_sparsely_used_signal,
)


@given(n=st.integers(2, 12), seed=st.integers(0, 2**16))
def test_recovery_error_invariant_to_permutation_sign_scale(n, seed):
    rng = np.random.default_rng(seed)
    D = rng.normal(size=(n, n))
    perm = rng.permutation(n)
    scale = rng.uniform(0.1, 10, n) * rng.choice([-1, 1], n)
    assert np.max(dictionary_recovery_error(D, D[perm] * scale[:, None])) <= 1e-12
    assert exact_recovery_rate(D, D[perm] * scale[:, None]) == 1.0


def test_an_exact_atom_counts_even_where_an_inexact_estimate_sits_near_it():
    """Atoms t1, t2 at |cos| 0.6; estimates t1 (exact) and one 0.99 from t1: the total-|cos| assignment gives
    the exact estimate to t2, the rate still counts t1."""
    t1, t2 = np.array([1.0, 0.0, 0.0]), np.array([0.6, 0.8, 0.0])
    near = np.array([0.99, -np.sqrt(1 - 0.99**2), 0.0])
    D, E = np.stack([t1, t2]), np.stack([t1, near])
    assert dictionary_recovery_error(D, E)[0] > 0.1
    assert exact_recovery_rate(D, E) == 0.5


def test_recovery_error_detects_wrong_atom():
    D = np.eye(4)
    E = D.copy()
    E[2] = [0, 0, 1, 1e-3]
    err = dictionary_recovery_error(D, E)
    assert err[2] > 1e-4 and np.all(np.delete(err, 2) == 0)


@pytest.mark.parametrize("kind", ["gaussian", "orthogonal"])
def test_make_sparsely_used_signal(kind):
    Y, code, D = make_sparsely_used_signal(500, 6, density=0.3, dictionary=kind, random_state=0)
    np.testing.assert_allclose(Y, code @ D)
    assert abs(np.mean(code != 0) - 0.3) < 0.05
    if kind == "orthogonal":
        np.testing.assert_allclose(D @ D.T, np.eye(6), atol=1e-12)
    else:
        np.testing.assert_allclose(np.linalg.norm(D, axis=1), 1.0)


def test_bad_density():
    with pytest.raises(ValueError, match="density"):
        make_sparsely_used_signal(10, 2, density=0)
