"""The exact rounding's null-space test (gradinv.search._null_space) decides as an SVD would.

It rejects most candidates on the Gram matrix MᵀM and accepts clearly unique null vectors from
its eigenvectors; only blocks and near-ambiguous cases take the SVD.  These properties plant
null spaces of dimension 0–4 at chosen depths (exact: ≤ 3e-13; a block's graded partner: ~1e-9;
clear: ≥ 1e-6) and check the decision and the span against the SVD's, and that the nested Gram
matrices equal the direct ones.
"""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradinv.search.rounding import _nested_grams, _null_space

TOL_KERNEL, TOL_UNIQUE, MAX_DIM = 1e-10, 1e-8, 3
DEPTHS = (0.0, 1e-13, 1e-9, 1e-6, 1e-2)  # away from the thresholds 1e-10 and 1e-8 by a factor ≥ 3


def svd_decision(M):
    """The reference: the null space's rows from the SVD, or None."""
    _, sv, vh = torch.linalg.svd(M, full_matrices=False)
    d = int((sv < TOL_UNIQUE * sv[0]).sum())
    if sv[-1] >= TOL_KERNEL * sv[0] or not 1 <= d <= MAX_DIM:
        return None
    return vh[-d:]


@settings(max_examples=60, deadline=None)
@given(k=st.integers(3, 12), extra_rows=st.integers(5, 50), depths=st.lists(st.sampled_from(DEPTHS), max_size=4),
       as_function=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_null_space_decides_as_the_svd(k, extra_rows, depths, as_function, seed):
    rng = np.random.default_rng(seed)
    n = k + extra_rows
    sv = np.exp(rng.uniform(np.log(0.05), 0.0, k))
    sv[0] = 1.0
    for i, depth in enumerate(depths):  # the planted small singular values
        sv[k - 1 - i] = depth * rng.uniform(1.0, 3.0)
    U = np.linalg.qr(rng.standard_normal((n, k)))[0]
    V = np.linalg.qr(rng.standard_normal((k, k)))[0]
    M = torch.as_tensor((U * sv) @ V.T)
    expected = svd_decision(M)
    got = _null_space((lambda: M) if as_function else M, TOL_KERNEL, TOL_UNIQUE, MAX_DIM,
                      gram=M.T @ M if as_function else None, scale=float(sv[0] ** 2) if as_function else None)
    assert (got is None) == (expected is None)
    if got is not None:
        assert got.shape == expected.shape
        # the same span: projecting one basis onto the other keeps its norm
        assert torch.allclose((got @ expected.T).norm(dim=1), torch.ones(len(got), dtype=M.dtype), atol=1e-6)
        assert float((M @ got[0]).norm()) <= TOL_KERNEL


@settings(max_examples=30, deadline=None)
@given(n=st.integers(10, 80), k=st.integers(2, 8), cuts=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5),
       seed=st.integers(0, 2**31 - 1))
def test_nested_grams_equal_the_direct_ones(n, k, cuts, seed):
    rng = np.random.default_rng(seed)
    M = torch.as_tensor(rng.standard_normal((n, k)))
    order = torch.as_tensor(rng.permutation(n))
    keeps = []
    for frac in sorted(cuts, reverse=True):  # each set inside the one before
        keep = torch.zeros(n, dtype=torch.bool)
        keep[order[: int(frac * n)]] = True
        keeps.append(keep)
    for keep, G in zip(keeps, _nested_grams(M.T @ M, lambda rows: M[rows], keeps)):
        assert torch.allclose(G, M[keep].T @ M[keep], atol=1e-10 * n)
