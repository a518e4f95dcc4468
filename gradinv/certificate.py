"""Per-sample certificates: evidence that a recovered sample is the client's, not a lookalike.

Two tests, both necessary conditions that a true column g_j = L q_j of dL/dZ meets:

* :func:`zero_set_kernels` (gradient only): the exact zeros of L q span the full
  (b−1)-dimensional hyperplane q^⊥ *robustly*: leave any one zero row out and the kernel is
  still q alone (leave-one-out: every row's leverage in the zeros' span is below
  :data:`MAX_LEVERAGE` = 1 − 1e-9; a leverage of 1 means that row alone carries a direction).  A true column vanishes on ~m/2 rows in general position;
  a combination of columns inside a common flat gets its last dimensions from one or two rows.
  This rejects most combinations but not all (on cross-entropy clients at b ≥ 50, exactly
  sparse combinations of ≥ 10 columns exist).
  Near-duplicate inputs give *blocks* of columns sharing their zeros; :func:`proven_blocks`
  then proves the block's span; a member whose own zero set determines it is then a true column.

* :func:`relu_consistent` (needs the layer's W and b, which the server knows): the reconstructed
  input x_j must reproduce the zero pattern of its column through the ReLU,
  g_kj = 0 ⇔ W_k x_j + b_k ≤ 0, on every neuron not within rounding distance of 0.
  A wrong sample fails this on about half the neurons.  It is the certificate to trust.
"""

import numpy as np

from sudl._array_api import array_namespace, device, svd, to_numpy
from sudl.rounding import MAX_BLOCK, MAX_LEVERAGE


PATTERN_RTOL = {"float64": 1e-7, "float32": 1e-3}
"""How far from 0, relative to ‖w_r‖‖x̂_k‖ + |b_r|, a pre-activation must be to be read as active or
inactive (neurons nearer are left out); the margin of :func:`~gradinv.certificate.relu_consistent`."""


def predicted_pattern(x, weight, bias, rtol):
    """(inactive, active) boolean masks over the rows of ``weight``: neurons the input ``x`` leaves
    at most −margin, at least +margin (margin = ``rtol``·(‖w_r‖‖x‖ + |b_r|))."""
    z = weight @ x + bias
    margin = rtol * (np.linalg.norm(weight, axis=1) * np.linalg.norm(x) + np.abs(bias))
    return z < -margin, z > margin


def zero_set_kernels(L, directions, zero_tol, *, max_dim=MAX_BLOCK, max_leverage=MAX_LEVERAGE):
    """For each row q of ``directions``: an orthonormal basis (b × d) of the kernel of L restricted
    to the exact zeros of L q, when that kernel is robust and at most ``max_dim``-dimensional; else None.

    d = 1 for a true column: its zeros span q^⊥.  d > 1 for a *block*, columns of samples so alike
    (near-duplicate inputs) that they share their zeros: the kernel is then the span of the block.
    ``zero_tol``: one relative zero tolerance, or one per direction
    (:meth:`~gradinv.factorize.FactorizedGradient.zero_tols`).
    """
    xp = array_namespace(L)
    codes = to_numpy(xp.abs(L @ directions.T))
    is_zero = codes <= np.asarray(zero_tol, dtype=np.float64) * np.max(codes, axis=0)[None, :]
    Lh = to_numpy(L)
    return [row_set_kernel(Lh, is_zero[:, j], max_dim=max_dim, max_leverage=max_leverage)
            for j in range(is_zero.shape[1])]


def row_set_kernel(L, rows, *, max_dim=MAX_BLOCK, max_leverage=MAX_LEVERAGE, noise_tol=None):
    """An orthonormal basis (b × d) of the kernel of L (m' × b, NumPy) restricted to ``rows`` (a
    boolean mask of the rows that vanish), when it is robust and 1 ≤ d ≤ ``max_dim``; else None.

    Robust: no single row carries a direction of the rows' span alone (max leverage <
    ``max_leverage``: the kernel survives leaving any one row out).  ``noise_tol`` t: L carries
    noise (a DP update), so the kernel is the one right singular vector of L on the rows with
    σ_min ≤ t·σ_max when the next is above 10·t·σ_max (the thresholds of the noisy searches,
    :func:`gradinv.search.tolerances.tolerances`); else None.
    """
    b = L.shape[1]
    rows = L[rows]
    rows = rows[np.linalg.norm(rows, axis=1) > 0]
    if rows.shape[0] < b:
        return None
    if noise_tol is not None:
        s, Vh = svd(rows)[1:]
        ok = s[-1] <= noise_tol * s[0] and (b == 1 or s[-2] > 10 * noise_tol * s[0])
        return Vh[-1:].T if ok else None
    rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    U, s, Vh = svd(rows)
    # a kernel direction is expected; a tiny row scaled to unit norm can hide it, so at most b − 1
    rank = min(int(np.sum(s > 1e-6 * s[0])), b - 1)
    if b - rank > max_dim:
        return None
    if rank == 0 or float(np.max(np.sum(U[:, :rank] ** 2, axis=1))) < max_leverage:
        return Vh[rank:].T
    return None


def proven_blocks(kernels, directions, *, rtol=1e-6):
    """The proven block of each direction (an int label, −1 for none): d ≥ 2 directions that fill
    the d-dimensional kernel of one direction's zero set (:func:`zero_set_kernels`).

    The kernel of the zeros Z of any vector of col(L) is, for rows in general position, the span
    of the true columns vanishing on all of Z (restricted to Z the others stay independent).  So
    the block's span is that of true columns and does not spoil the other samples, though its own
    samples are identified only where the other members are (:func:`~gradinv.reconstruct.certified_samples`).
    """
    block = np.full(len(kernels), -1)
    for K in kernels:
        if K is None or K.shape[1] < 2:
            continue
        members = np.flatnonzero(directions_in(K, directions, rtol=rtol))
        if len(members) == K.shape[1] and np.all(block[members] < 0):
            block[members] = block.max() + 1
    return block


def directions_in(K, directions, *, rtol=1e-6):
    """Boolean mask of the rows of ``directions`` (k × b) that lie in the span of K (b × d,
    orthonormal columns), to ``rtol`` after scaling each to unit norm."""
    Q = np.asarray(to_numpy(directions), dtype=np.float64)
    Q = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    return np.linalg.norm(Q - (Q @ K) @ K.T, axis=1) <= rtol


def relu_consistent(grad_Z, X, weight, bias, zero_tol, *, rtol=None):
    """For each sample j: does the zero pattern of column j of ``grad_Z`` (m × b) equal the ReLU
    inactivity pattern of x_j (row j of ``X``) under the layer Z = W x + b?  ``zero_tol``: one
    relative zero tolerance, or one per column."""
    xp = array_namespace(X)
    weight = xp.asarray(weight, dtype=X.dtype)
    bias = xp.asarray(bias, dtype=X.dtype)
    if rtol is None:
        rtol = 1e-7 if xp.finfo(X.dtype).eps < 1e-10 else 1e-3
    Z = X @ weight.T + bias[None, :]  # b × m
    # rounding scale of w_kᵀx_j + b_k, bounded by ‖x_j‖‖w_k‖ + |b_k| (no copy of W)
    norms = xp.sqrt(xp.linalg.vecdot(X, X, axis=1))[:, None] * xp.sqrt(xp.linalg.vecdot(weight, weight, axis=1))[None, :]
    margin = rtol * (norms + xp.abs(bias)[None, :])
    G = xp.abs(grad_Z.T)
    tol = xp.asarray(np.zeros((G.shape[0], 1)) + np.reshape(zero_tol, (-1, 1)), dtype=G.dtype,
                     device=device(G))
    zero = G <= tol * xp.max(G, axis=1, keepdims=True)
    wrong = (zero & (Z > margin)) | (~zero & (Z < -margin))
    return to_numpy(~xp.any(wrong, axis=1))
