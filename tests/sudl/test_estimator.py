import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import check_estimator

from sudl import (
    SparselyUsedDictionaryLearning,
    dictionary_recovery_error,
    exact_recovery_rate,
    make_sparsely_used_signal,
)
from sudl.datasets import make_relu_gradient_signal


def test_check_estimator():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check_estimator(SparselyUsedDictionaryLearning(n_restarts=1))


def test_exact_recovery_small(bg_small):
    Y, code, D = bg_small
    est = SparselyUsedDictionaryLearning(random_state=0).fit(Y)
    assert est.exact_.all()
    assert np.max(dictionary_recovery_error(D, est.components_)) <= 1e-8
    C = est.transform(Y)
    # true zeros are exactly 0.0 and the support matches the truth up to permutation
    assert np.sum(C == 0) == np.sum(code == 0)
    np.testing.assert_allclose(est.inverse_transform(C), Y, atol=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_acceptance_bernoulli_gaussian_100(seed):
    """Issue 3: n_features=100, n_samples=1000, density 0.5: >= 99% of atoms with error <= 1e-8."""
    Y, code, D = make_sparsely_used_signal(1000, 100, density=0.5, random_state=seed)
    est = SparselyUsedDictionaryLearning(random_state=seed).fit(Y)
    assert exact_recovery_rate(D, est.components_, tol=1e-8) >= 0.99


@pytest.mark.slow
def test_acceptance_relu_gradient_100():
    """Issue 3: columns of dL/dZ of a linear+ReLU layer, b=100 atoms, m=1000 samples: all exact."""
    Y, code, D = make_relu_gradient_signal(1000, 100, random_state=0)
    est = SparselyUsedDictionaryLearning(random_state=0).fit(Y)
    assert est.exact_.all()
    assert exact_recovery_rate(D, est.components_, tol=1e-8) == 1.0


@pytest.mark.parametrize("seed", range(3))
def test_every_atom_exact_on_correlated_supports_at_spearpps_ratio(seed):
    """n = 65, p = 3.5·n·ln n, density ½, support correlation 0.7 (the samples using many atoms at once):
    unscaled samples gave no atom (``docs/sudl_benchmark_spearpp.md``), unit samples every one."""
    n = 65
    Y, code, D = make_sparsely_used_signal(int(3.5 * n * np.log(n)), n, density=0.5, support_correlation=0.7,
                                           random_state=seed)
    est = SparselyUsedDictionaryLearning(random_state=seed).fit(Y)
    assert est.exact_.all()
    assert exact_recovery_rate(D, est.components_, tol=1e-8) == 1.0


def test_unit_samples_keep_the_zeros_and_the_atoms(bg_small):
    """Scaling a sample moves none of its zeros: the unmixing fitted on unit samples gives Y's own code."""
    Y, code, D = bg_small
    est = SparselyUsedDictionaryLearning(random_state=0).fit(Y * np.linspace(0.01, 100, len(Y))[:, None])
    assert est.exact_.all()
    assert np.sum(est.transform(Y) == 0) == np.sum(code == 0)
    with pytest.raises(ValueError, match="sample_scaling"):
        SparselyUsedDictionaryLearning(sample_scaling="max").fit(Y)


def test_same_seed_bit_identical(bg_small):
    Y = bg_small[0]
    a = SparselyUsedDictionaryLearning(random_state=3).fit(Y)
    b = SparselyUsedDictionaryLearning(random_state=3).fit(Y)
    assert np.array_equal(a.components_, b.components_)
    assert np.array_equal(a.transform(Y), b.transform(Y))


def test_integer_input_is_converted():
    Y, _, _ = make_sparsely_used_signal(200, 5, density=0.5, random_state=1)
    Yi = np.round(Y * 100).astype(np.int64)
    est = SparselyUsedDictionaryLearning(random_state=0).fit(Yi)
    assert est.components_.dtype == np.float64


def test_float32_preserved(bg_small):
    Y = bg_small[0].astype(np.float32)
    est = SparselyUsedDictionaryLearning(random_state=0).fit(Y)
    assert est.transform(Y).dtype == np.float32


@pytest.mark.parametrize(
    "Y, message",
    [
        (np.ones(10), "Expected 2D array"),
        (np.array([[np.nan, 1.0], [1.0, 2.0], [3.0, 1.0]]), "NaN"),
        (np.array([[np.inf, 1.0], [1.0, 2.0], [3.0, 1.0]]), "infinity"),
        (np.random.default_rng(0).normal(size=(3, 5)), "fewer samples"),
        (np.outer(np.arange(1.0, 11.0), np.ones(3)), "rank deficient"),
        (np.ones((10, 3), dtype=complex), "Complex"),
        (np.array([[object()] * 3] * 10), "real numbers"),
        (np.zeros((0, 3)), "0 sample"),
    ],
)
def test_bad_input_raises_value_error(Y, message):
    with pytest.raises(ValueError, match=message):
        SparselyUsedDictionaryLearning().fit(Y)


def test_convergence_warning_when_max_iter_reached(bg_small):
    with pytest.warns(ConvergenceWarning):
        SparselyUsedDictionaryLearning(max_iter=2, n_restarts=1, random_state=0).fit(bg_small[0])


@pytest.mark.parametrize("solver", ["l1", "l4"])
def test_other_solvers_recover_easy_problem(solver):
    Y, code, D = make_sparsely_used_signal(1000, 10, density=0.3, random_state=0)
    est = SparselyUsedDictionaryLearning(solver=solver, random_state=0).fit(Y)
    assert exact_recovery_rate(D, est.components_) == 1.0


def test_er_spud_sparse_regime_and_warning():
    Y, code, D = make_sparsely_used_signal(300, 8, density=0.15, random_state=0)
    est = SparselyUsedDictionaryLearning(solver="er_spud", random_state=0).fit(Y)
    assert exact_recovery_rate(D, est.components_) == 1.0
    Y, _, _ = make_sparsely_used_signal(300, 8, density=0.7, random_state=0)
    with pytest.warns(UserWarning, match="ER-SpUD is valid only"):
        SparselyUsedDictionaryLearning(solver="er_spud", random_state=0).fit(Y)


def test_raw_output_without_rounding_is_not_exact(bg_small):
    est = SparselyUsedDictionaryLearning(rounding=None, random_state=0).fit(bg_small[0])
    assert not est.exact_.any()


def test_unknown_solver():
    with pytest.raises(ValueError, match="solver must be one of"):
        SparselyUsedDictionaryLearning(solver="nope").fit(np.eye(3))


def test_repeated_samples_do_not_make_a_certificate():
    """Copies of a sample are one sample: dense data repeated ten times must not look exactly sparse."""
    Y = np.vstack([np.random.default_rng(0).normal(size=(30, 5))] * 10)
    est = SparselyUsedDictionaryLearning(random_state=0, n_restarts=1).fit(Y)
    assert not est.exact_.any()
