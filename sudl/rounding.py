"""Rounding: turn approximate sparsifying directions into exact ones, and certify them.

A direction w (a row, in whitened coordinates) is *exact* when its code column y = Ȳ w
vanishes (|y_j| ≤ ``zero_tol``·max|y|) on at least ``min_zeros`` non-zero samples and those
samples span w^⊥ (:func:`zeros_determine`).  Any n−1 samples define a kernel direction, so n or
more exact zeros is a non-generic event; that they span w^⊥ says w is the only direction
vanishing on them, which a combination of two atoms is not: it vanishes on their common zeros
(a quarter of the samples at density ½), and so does every other direction in their span.

Three stages, all matrix products, batched over directions or candidates:

1. **IRLS-ℓ1** (`n_irls` iterations): w ← smallest eigenvector of Ȳᵀ diag(1/max(|y|, ε)) Ȳ
   with ε shrinking geometrically; pulls a rough direction to a vertex of the ℓ1 ball.
2. **Kernel polish**: w ← kernel direction of Ȳ restricted to the samples where |y| is at
   numerical zero level (the least right singular vector), making the zeros exact.
3. **Sampling** (SPEAR-style), only for directions still not exact: ``n_samples`` random
   (n−1)-subsets of the ``pool_fraction``·p samples with smallest |y|; each subset's kernel
   direction is a candidate; the one with most exact zeros wins.
"""

from dataclasses import dataclass

import numpy as np

from ._array_api import array_namespace, device, to_numpy

__all__ = ["RoundingResult", "count_zeros", "kernel_direction", "min_exact_zeros", "round_directions",
           "zeros_determine", "MAX_LEVERAGE"]


@dataclass
class RoundingResult:
    """Rounded directions (rows), their exact-zero counts and certificates."""

    directions: object
    n_zeros: np.ndarray
    exact: np.ndarray


def min_exact_zeros(n_features):
    """Exact zeros that certify a direction: one more than the n − 1 any kernel direction has, plus one."""
    return n_features + 1


def default_zero_tol(dtype_eps):
    """Relative threshold under which a code entry counts as an exact zero."""
    return 1e-9 if dtype_eps < 1e-10 else 1e-4


def count_zeros(codes, zero_tol, active=None):
    """Exact zeros per column of ``codes`` (relative to the column's max-abs), over rows ``active``."""
    xp = array_namespace(codes)
    A = xp.abs(codes)
    scale = xp.max(A, axis=0)
    is_zero = A <= zero_tol * scale[None, :]
    if active is not None:
        is_zero = is_zero & active[:, None]
    return xp.sum(xp.astype(is_zero, xp.int64), axis=0)


MAX_LEVERAGE = 1 - 1e-9
"""Leave-one-out test of a zero set: a zero sample of leverage h leaves, when dropped, the kernel
one-dimensional with a gap √(1 − h) ≥ 3e-5 (``docs/certificates.md``: no false certificate in the
fuzz with it)."""
LEVERAGE_CHECK = 0.99
"""Leverages above this, computed from the Gram matrix, are computed again from an SVD of the zero
samples: the Gram's eigenvectors are accurate to about eps·cond, too coarse to compare with
:data:`MAX_LEVERAGE` (a true atom's zero samples, ~p/2 of them in n − 1 dimensions, have leverages
near (n − 1)/(p/2), far below)."""


def zeros_determine(Y_white, W, zero_tol, active=None, max_leverage=MAX_LEVERAGE):
    """Whether the zero samples of each row w of ``W`` determine it robustly: they (rows of Ȳ
    scaled to unit norm) span w^⊥, and still do with any one of them left out.

    Any n − 1 samples have a kernel direction; so does any set of samples spanning only n − 1
    dimensions, whatever its size (a combination of atoms vanishes on their common zeros, and
    when supports are correlated, samples using few atoms give other exactly sparse directions).
    A true atom vanishes on ~p/2 samples in general position, where no sample alone carries a
    dimension (leverage < ``max_leverage``).  The rank counts singular values above √``zero_tol``
    of the largest.
    """
    xp = array_namespace(Y_white)
    n = Y_white.shape[1]
    if n == 1:
        return np.ones(W.shape[0], dtype=bool)
    unit = Y_white / xp.maximum(xp.linalg.vector_norm(Y_white, axis=1, keepdims=True),
                                xp.asarray(np.finfo(np.float64).tiny, dtype=Y_white.dtype, device=device(Y_white)))
    A = xp.abs(Y_white @ W.T)
    is_zero = A <= zero_tol * xp.max(A, axis=0)[None, :]
    if active is not None:
        is_zero = is_zero & active[:, None]
    out = []
    for lo, hi in _chunks(W.shape[0], Y_white.shape[0], n):
        mask = xp.astype(xp.matrix_transpose(is_zero[:, lo:hi]), Y_white.dtype)  # c × p
        B = mask[:, :, None] * unit[None, :, :]
        lam, V = xp.linalg.eigh(xp.matrix_transpose(B) @ B)  # ascending; λ_0 is w's own (zero) direction
        spans = to_numpy(lam[:, 1] > zero_tol * lam[:, -1])
        coords = (B @ V[:, :, 1:]) / xp.sqrt(xp.maximum(lam[:, None, 1:], xp.asarray(np.finfo(np.float64).tiny,
                                                                                      dtype=lam.dtype,
                                                                                      device=device(lam))))
        leverage = to_numpy(xp.max(xp.sum(coords * coords, axis=2), axis=1))
        for i in np.flatnonzero(spans & (leverage > LEVERAGE_CHECK)):
            rows = to_numpy(unit)[to_numpy(is_zero[:, lo + int(i)])]
            U, sv, _ = np.linalg.svd(rows, full_matrices=False)
            leverage[i] = float(np.max(np.sum(U[:, : n - 1] ** 2, axis=1)))
        out.append(spans & (leverage < max_leverage))
    return np.concatenate(out)


def kernel_direction(A):
    """Unit vector(s) q minimising ‖A q‖ for A (..., r, n): the kernel direction when r = n − 1.

    r = n − 1 uses a complete QR of Aᵀ (its last column spans the kernel; 3× cheaper than
    an SVD); otherwise the least right singular vector.
    """
    xp = array_namespace(A)
    if A.shape[-2] == A.shape[-1] - 1:
        Qf, _ = xp.linalg.qr(xp.matrix_transpose(A), mode="complete")
        return Qf[..., :, -1]
    _, _, Vh = xp.linalg.svd(A, full_matrices=A.shape[-2] < A.shape[-1])
    return Vh[..., -1, :]


def _chunks(k, p, n, budget=2**24):
    step = max(1, budget // max(1, p * n))
    return [(i, min(k, i + step)) for i in range(0, k, step)]


def _irls(Y_white, W, n_iter, *, zero_tol, active, min_zeros):
    """Batched IRLS for min ‖Ȳ w‖₁ on the sphere, warm-started at the rows of W.

    Each iteration: w ← smallest eigenvector of M = Bᵀ B, B = diag(√weights) Ȳ.  A direction
    leaves the loop once its code y = Ȳ w is exact (≥ ``min_zeros`` exact zeros) and its
    zero count stopped growing: its support is settled and the kernel polish makes it exact
    (on the sudl benchmark's density-0.5 data, p = 10·n·ln n, that happens after 16 of the 30
    iterations at n = 100 and 17 at n = 200, with the zero set of the 30th).
    """
    xp = array_namespace(Y_white)
    p, n = Y_white.shape
    out = []
    for lo, hi in _chunks(W.shape[0], p, n):
        w, eps = W[lo:hi, :], 1e-1
        y = xp.abs(Y_white @ w.T)  # p × c, the codes of w
        running = np.arange(hi - lo)  # rows of w still iterating
        done_rows, done_idx = [], []
        zeros = np.full(hi - lo, -1)
        for _ in range(n_iter):
            weights = 1.0 / xp.maximum(y, eps * xp.max(y, axis=0)[None, :])
            B = xp.sqrt(xp.matrix_transpose(weights))[:, :, None] * Y_white[None, :, :]  # c × p × n
            _, V = xp.linalg.eigh(xp.matrix_transpose(B) @ B)
            w_new = V[:, :, 0]
            w = w_new * xp.sign(xp.sum(w_new * w, axis=1))[:, None]
            eps = max(eps * 0.3, 1e-14)
            y = xp.abs(Y_white @ w.T)
            z = to_numpy(count_zeros(y, zero_tol, active)).astype(int)
            settled = (z >= min_zeros) & (z == zeros)
            zeros = z
            if settled.any():
                done_rows.append(xp.take(w, xp.asarray(np.flatnonzero(settled), device=device(w)), axis=0))
                done_idx.append(running[settled])
                keep = xp.asarray(np.flatnonzero(~settled), device=device(w))
                w, y = xp.take(w, keep, axis=0), xp.take(y, keep, axis=1)
                running, zeros = running[~settled], zeros[~settled]
                if running.size == 0:
                    break
        rows = xp.concat(done_rows + [w], axis=0)
        order = np.argsort(np.concatenate(done_idx + [running]), kind="stable")
        out.append(xp.take(rows, xp.asarray(order, device=device(rows)), axis=0))
    return xp.concat(out, axis=0)


def _polish(Y_white, w, zero_tol, active):
    """Kernel direction of Ȳ on the samples where Ȳ w is at zero level.

    The zero level is the largest relative gap in the sorted |Ȳ w| (over at least n−1
    samples), so a direction that is right to a few digits becomes exact.  Returns the new
    direction if it has at least as many exact zeros as ``w`` (it is the least singular
    vector of those rows, so its zeros are the sharper), else ``w``.
    """
    xp = array_namespace(Y_white)
    n = Y_white.shape[1]
    y = to_numpy(xp.abs(Y_white @ w))
    idx = np.flatnonzero(to_numpy(active))
    a = np.sort(y[idx]) / max(float(y.max()), np.finfo(float).tiny)
    if n == 1 or a.size <= n - 1:  # in one dimension every direction is ±1 already
        return w
    gaps = a[n - 1 :] / np.maximum(a[n - 2 : -1], np.finfo(float).tiny)
    k = n - 1 + int(np.argmax(gaps))  # a[:k] is the zero level
    rows = idx[np.argsort(y[idx], kind="stable")[:k]]
    q = kernel_direction(xp.take(Y_white, xp.asarray(rows, device=device(Y_white)), axis=0))
    q = q * xp.sign(xp.sum(q * w))
    before, after = (to_numpy(count_zeros(Y_white @ v[:, None], zero_tol, active))[0] for v in (w, q))
    return q if after >= before else w


def _sample_kernels(Y_white, w, *, rng, n_samples, pool_fraction, active_idx):
    """Best of ``n_samples`` kernel directions of random (n−1)-subsets of the smallest-|Ȳw| samples."""
    xp = array_namespace(Y_white)
    n = Y_white.shape[1]
    y = to_numpy(xp.abs(Y_white @ w))[active_idx]
    pool_size = min(active_idx.size, max(n - 1, int(pool_fraction * active_idx.size)))
    pool = active_idx[np.argsort(y, kind="stable")[:pool_size]]
    subsets = np.argsort(rng.random((n_samples, pool_size)), axis=1)[:, : n - 1]
    rows = xp.asarray(pool[subsets].reshape(-1), device=device(Y_white))
    A = xp.reshape(xp.take(Y_white, rows, axis=0), (n_samples, n - 1, n))
    return kernel_direction(A)  # n_samples × n


def round_directions(
    Y_white,
    W,
    *,
    random_state=None,
    zero_tol=None,
    min_zeros=None,
    n_irls=30,
    n_samples=64,
    pool_fraction=0.35,
):
    """Round approximate directions ``W`` (rows) on whitened data Ȳ to exact ones.

    Returns a :class:`RoundingResult`; ``exact[i]`` certifies that Ȳ w_i has at least
    ``min_zeros`` (default n_features + 1) exact zeros among the distinct non-zero samples
    (zero samples and repeats of a sample are ignored in every count: they would make any
    direction look sparse) and that they determine w_i (:func:`zeros_determine`).  A direction that ends uncertified is returned as it was given:
    rounding only replaces what it can make exact.
    """
    from sklearn.utils import check_random_state

    xp = array_namespace(Y_white)
    rng = check_random_state(random_state)
    p, n = Y_white.shape
    if zero_tol is None:
        zero_tol = default_zero_tol(float(xp.finfo(Y_white.dtype).eps))
    if min_zeros is None:
        min_zeros = min_exact_zeros(n)
    active_idx = _distinct_nonzero_samples(to_numpy(Y_white), zero_tol)
    active = np.zeros(p, dtype=bool)
    active[active_idx] = True
    active = xp.asarray(active, device=device(Y_white))

    if W.shape[0] == 0:
        return RoundingResult(directions=W, n_zeros=np.zeros(0, dtype=int), exact=np.zeros(0, dtype=bool))
    W = W / xp.linalg.vector_norm(W, axis=1, keepdims=True)
    given = W
    if n_irls:
        W = _irls(Y_white, W, n_irls, zero_tol=zero_tol, active=active, min_zeros=min_zeros)
    W = xp.stack([_polish(Y_white, W[i, :], zero_tol, active) for i in range(W.shape[0])])
    n_zeros = to_numpy(count_zeros(Y_white @ W.T, zero_tol, active)).astype(int)

    if n_samples and n > 1:
        rows = []
        for i in range(W.shape[0]):
            w = W[i, :]
            if n_zeros[i] < min_zeros:
                cand = _sample_kernels(Y_white, w, rng=rng, n_samples=n_samples, pool_fraction=pool_fraction,
                                       active_idx=active_idx)
                z = to_numpy(count_zeros(Y_white @ cand.T, zero_tol, active))
                best = int(np.argmax(z))
                if z[best] > n_zeros[i]:
                    w = _polish(Y_white, cand[best, :], zero_tol, active)
                    n_zeros[i] = int(to_numpy(count_zeros(Y_white @ w[:, None], zero_tol, active))[0])
            rows.append(w)
        W = xp.stack(rows)
    exact = (n_zeros >= min_zeros) & zeros_determine(Y_white, W, zero_tol, active)
    if not exact.all():  # keep the given direction where rounding found nothing exact
        keep = xp.asarray(exact, device=device(W))[:, None]
        W = xp.where(keep, W, given)
        n_zeros = np.where(exact, n_zeros, to_numpy(count_zeros(Y_white @ given.T, zero_tol, active)))
    return RoundingResult(directions=W, n_zeros=n_zeros, exact=exact)


def _distinct_nonzero_samples(Y, zero_tol):
    """Indices of the first occurrence of every distinct sample (row) that is not zero.

    Rows equal up to rounding (copies of a sample pass through the whitening SVD with 1e-16
    differences) count as one: they are compared after rounding to ``zero_tol`` of the largest entry.
    """
    norms = np.linalg.norm(Y, axis=1)
    scale = np.abs(Y).max() * max(zero_tol, 1e-12)
    _, first = np.unique(np.round(Y / scale), axis=0, return_index=True)
    first = np.sort(first)
    return first[norms[first] > zero_tol * norms.max()]
