"""Per-sample certificates: evidence that a recovered sample is the client's, not a lookalike.

Two tests, both necessary conditions that a true column g_j = L q_j of dL/dZ meets:

* :func:`zero_set_is_robust` (gradient only): the exact zeros of L q span the full
  (b−1)-dimensional hyperplane q^⊥ *robustly*: no single zero row carries a direction alone
  (max leverage < ``max_leverage``).  A true column vanishes on ~m/2 rows in general position;
  a combination of columns inside a common flat gets its last dimensions from one or two rows.
  This rejects most combinations but not all (on cross-entropy clients at b ≥ 50, exactly
  sparse combinations of ≥ 10 columns exist; ``shared/research/realistic-victims.md``).

* :func:`relu_consistent` (needs the layer's W and b, which the server knows): the reconstructed
  input x_j must reproduce the zero pattern of its column through the ReLU,
  g_kj = 0 ⇔ W_k x_j + b_k ≤ 0, on every neuron not within rounding distance of 0.
  A wrong sample fails this on about half the neurons.  It is the certificate to trust.
"""

import numpy as np

from sudl._array_api import array_namespace, to_numpy


def zero_set_is_robust(L, directions, zero_tol, *, max_leverage=0.99):
    """For each row q of ``directions``: do the exact zeros of L q span q^⊥ robustly?"""
    xp = array_namespace(L)
    b = L.shape[1]
    codes = xp.abs(L @ directions.T)
    is_zero = to_numpy(codes <= zero_tol * xp.max(codes, axis=0)[None, :])
    Lh = to_numpy(L)
    out = np.zeros(is_zero.shape[1], dtype=bool)
    for j in range(is_zero.shape[1]):
        rows = Lh[is_zero[:, j]]
        rows = rows[np.linalg.norm(rows, axis=1) > 0]
        if rows.shape[0] < b:
            continue
        rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        U, s, _ = np.linalg.svd(rows, full_matrices=False)
        if b > 1 and s[b - 2] <= 1e-6 * s[0]:
            continue
        out[j] = b == 1 or float(np.max(np.sum(U[:, : b - 1] ** 2, axis=1))) < max_leverage
    return out


def relu_consistent(grad_Z, X, weight, bias, zero_tol, *, rtol=None):
    """For each sample j: does the zero pattern of column j of ``grad_Z`` (m × b) equal the ReLU
    inactivity pattern of x_j (row j of ``X``) under the layer Z = W x + b?"""
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
    zero = G <= zero_tol * xp.max(G, axis=1, keepdims=True)
    wrong = (zero & (Z > margin)) | (~zero & (Z < -margin))
    return to_numpy(~xp.any(wrong, axis=1))
