"""Labels of the recovered samples, read off their columns of dL/dZ.

When the attacked layer's ReLU feeds a linear classifier W₂ (C × m) trained with mean
cross-entropy over a batch of B, column j of dL/dZ is g_j = mask_j ⊙ W₂ᵀ u_j with
u_j = (softmax(logits_j) − e_{y_j}) / B: every entry of u_j is positive except the label's.
So y_j = argmin u_j, with u_j the least-squares fit of g_j's active rows by W₂ᵀu.  The
classifier's bias or later layers do not change this; several local steps (FedAvg) sum such
u's and keep the sign pattern.  A duplicated input with two different labels has two negative
entries; the most negative one is reported and ``label_margin`` says how clear the call was.
:func:`label_counts` estimates how many samples each class has from the classifier's bias
gradient, which the informed search uses to aim at the classes still missing.
"""

import numpy as np

from sudl._array_api import to_numpy


def infer_labels(grad_Z, next_weight, *, zero_tol=1e-9):
    """Labels y (b,) and margins (b,) from recovered columns of dL/dZ (m × b) and W₂ (C × m), or
    one downstream Jacobian J(h_j) (b × C × m) per sample when the layer feeds a deeper network.

    The margin is (second smallest − smallest entry of u_j) / ‖u_j‖: near 0 means the column
    does not single out a class (an inexact column, or a duplicate with two labels).
    """
    G = np.asarray(to_numpy(grad_Z), np.float64)
    W2 = np.asarray(to_numpy(next_weight), np.float64)
    if W2.ndim not in (2, 3) or W2.shape[-1] != G.shape[0] or (W2.ndim == 3 and len(W2) != G.shape[1]):
        raise ValueError(f"next_weight must be (C × {G.shape[0]}) or ({G.shape[1]} × C × {G.shape[0]}), "
                         f"got {W2.shape}")
    labels = np.zeros(G.shape[1], dtype=int)
    margins = np.zeros(G.shape[1])
    for j, g in enumerate(G.T):
        active = np.abs(g) > zero_tol * np.abs(g).max()
        u = np.linalg.lstsq((W2 if W2.ndim == 2 else W2[j])[:, active].T, g[active], rcond=None)[0]
        order = np.argsort(u)
        labels[j] = order[0]
        margins[j] = (u[order[1]] - u[order[0]]) / max(np.linalg.norm(u), np.finfo(float).tiny)
    return labels, margins


def label_counts(next_bias_grad, batch_size, upstream=None, iterations=50):
    """Expected samples per class n (C,) from the classifier's bias gradient ∂L/∂b₂ (C,).

    Assumes one step of mean cross-entropy (not a DP-SGD or FedAvg update, not a summed loss).
    Mean cross-entropy over a batch of b gives ∂L/∂b₂ = (1/b) Σ_j (p_j − e_{y_j}), so
    n = Σ_j p_j − b ∂L/∂b₂, with Σ_j p_j estimated as b p̄.  Known upstream gradients u_j (rows of
    ``upstream``, k × C, each up to a positive scale and oriented so that its label is its
    smallest entry) give p_jc ∝ u_jc for c ≠ y_j; p̄ = softmax(ℓ) for the fit
    log u_jc ≈ a_j + ℓ_c over those entries (alternating least squares), exact when the batch
    shares its logits (``tests/properties/test_label_counts.py``); uniform 1/C without any u_j.
    Measured on the cross-entropy client (b = 150, 400, 600; seeds 0–1; ``benchmarks/label_counts.py``):
    largest error per class 2.8–14.5 samples with p̄ uniform, 0.9–10.5 from 10 known u_j, 0.7–4.1
    from 30.
    """
    g = np.asarray(to_numpy(next_bias_grad), np.float64)
    if g.ndim != 1:
        raise ValueError(f"next_bias_grad must be a vector (C,), got shape {g.shape}")
    if not np.all(np.isfinite(g)):
        raise ValueError("next_bias_grad has NaN or infinite entries")
    C = g.shape[0]
    ell = np.zeros(C)
    U = None if upstream is None else np.asarray(to_numpy(upstream), np.float64)
    if U is not None and (U.ndim != 2 or U.shape[1] != C):
        raise ValueError(f"upstream must be (k × {C}) to match next_bias_grad, got shape {U.shape}")
    if U is not None and len(U):
        known = U > 0  # the label's entry (negative) and any non-positive noise are left out
        known[np.arange(len(U)), U.argmin(1)] = False
        logs = np.log(np.where(known, U, 1.0))
        seen = np.maximum(known.sum(0), 1)
        for _ in range(iterations):
            a = ((logs - ell) * known).sum(1) / np.maximum(known.sum(1), 1)
            ell = np.where(known.any(0), ((logs - a[:, None]) * known).sum(0) / seen, ell.mean())
    p = np.exp(ell - ell.max())
    return batch_size * (p / p.sum() - g)
