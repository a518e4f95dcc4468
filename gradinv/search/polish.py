"""The polish: from a descent's cell, labels (inactive or active) of the rows that fit the column structure,
alternated with the nearest cell of the arrangement (projection passes)."""

import time

import torch

from .objective import _project, as_jacobian
from .starts import cell_point


EXACT_MISFIT = 1e-20
""":func:`_misfit` of a polish that fits its labels to rounding error (a true column's: ~1e-30)."""
PROJECTION_PASSES = 10
"""Times a descent's polish is moved to its nearest cell and polished again (:func:`_polish_projected`;
arbitrary, not measured)."""
POLISH_ITERS = 15
"""Alternations of the fit and the labels in one :func:`_polish` (arbitrary; measured with 8 instead,
one seed each, every input exact either way: m = 1000, b = 200, 107 / 136 / 228 s on mlp2_photos /
mlp2_batchstd / mlp2_grey28 against 135 / 208 / 294 s; b = 150 the same within 5 s; but the
cross-entropy victim at m = 4000, b = 400 took 589 s against 523 s, so 15 stays)."""
NEAR_FOUND_ROWS = 5
"""A polish whose labels are within this many rows of a found column's zeros is only rounded on all
its rows (:func:`_round_polished`; arbitrary, not measured)."""


def _active_products(L, J, active):
    """P = Lᵀ D_A W₂ (b × C) and W₂ᵀ D_A W₂ (C × C), D_A the diagonal of the active rows; the
    same update with ``active`` = ±1 weights adds or removes rows."""
    WA = J * active[:, None]
    return L.T @ WA, J.T @ WA


def _fit_active_rows(P, D):
    """(q, u, ok) minimising ‖L_I q‖² + ‖L_A q − W₂_A u‖² with ‖W₂_A u‖ = 1, for orthonormal L.

    From (P, D) = :func:`_active_products` (or a batch of them, leading dimension first): with
    LᵀL = I the best q is P u, and u is the smallest generalised eigenvector of D − PᵀP against
    D: a C × C problem instead of an SVD of an m × (b + C) matrix.  ``ok`` is False where D is
    singular (too few active rows: W₂ᵀu is not determined).
    """
    eye = torch.eye(D.shape[-1], dtype=D.dtype)
    trace = D.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None]
    chol, info = torch.linalg.cholesky_ex(D + 1e-12 * trace * eye)
    chol = torch.where((info == 0)[..., None, None], chol, eye)  # no fit there: keep the rest finite
    inv = torch.linalg.solve_triangular(chol, eye.expand_as(chol), upper=False)
    w = torch.linalg.eigh(inv @ (D - P.mT @ P) @ inv.mT)[1][..., 0]
    u = (inv.mT @ w[..., None])[..., 0]
    return (P @ u[..., None])[..., 0], u, info == 0


def _polish(C, A, bias, L, J, found=None, iters=POLISH_ITERS):
    """The polish of each row c of ``C`` (a batch of candidates), or None where it fails.

    From the cell of c (neuron k inactive iff A_k c + bias_k ≤ 0), alternate the fit of (q, u) to
    the labels (:func:`_fit_active_rows`) and the labels to the fit (inactive iff |L_k q| <
    |L_k q − (Jᵀu)_k|), up to ``iters`` times; ``J`` holds Jᵀ (m × C, shared: the classifier W₂ᵀ)
    or one per candidate (B × m × C).  None where the fit is undetermined or converges onto
    a column already ``found`` (f × b, unit rows).  Each result is (margin, inactive, q, u, r0, r1,
    P, D, Jᵀ): r0 = |L q|, r1 = |L q − Jᵀ u| and (P, D) = :func:`_active_products` of the labels.  Every
    step is batched over the candidates: one m × b × B product with L per iteration, and the
    update of (P, D) by the rows whose label flips in one gathered product (:func:`_flipped_products`).
    """
    margin = C @ A.T + bias  # B × m
    inactive = margin <= 0
    active = (~inactive).to(L.dtype)
    AJ = active[..., None] * J
    P, D = _project(L, AJ), _project(J, AJ)
    out = [None] * len(C)
    live = torch.arange(len(C))
    for it in range(iters):
        J_live = J if J.ndim == 2 else J[live]
        q, u, ok = _fit_active_rows(P[live], D[live])
        Lq = q @ L.T
        Ju = u @ J.T if J.ndim == 2 else (J_live @ u[..., None])[..., 0]  # not a broadcast matmul: 20× slower
        r0, r1 = Lq.abs(), (Lq - Ju).abs()
        new = r0 < r1
        dead = ~ok
        if found is not None and len(found):  # converged onto a found column (distinct ones reach |cos| 0.998)
            dead |= (q @ found.T).abs().max(1).values > (1 - 1e-8) * q.norm(dim=1)
        done = (new == inactive[live]).all(1) | (it == iters - 1)
        flip = (new != inactive[live]) & ~dead[:, None]  # rows leaving (+1) or joining (−1) the inactive set
        if bool(flip.any()):
            dP, dD = _flipped_products(L, J_live, flip, inactive[live].to(L.dtype) * 2 - 1)
            P[live], D[live] = P[live] + dP, D[live] + dD
            inactive[live] = torch.where(dead[:, None], inactive[live], new)
        for k in torch.nonzero(done & ~dead)[:, 0].tolist():
            i = int(live[k])
            out[i] = (margin[i], inactive[i], q[k], u[k], r0[k], r1[k], P[i], D[i], J if J.ndim == 2 else J[i])
        live = live[~(done | dead)]
        if not len(live):
            break
    return out


FLIP_CHUNK = 2 ** 22
"""Elements of the gathered rows (candidates × flipped rows × b) per chunk of :func:`_flipped_products`
(32 MiB in float64: bounds the memory at m = 4000, b = 800; arbitrary, not measured)."""


def _flipped_products(L, J, flip, sign):
    """(ΔP, ΔD) = :func:`_active_products` of each candidate's flipped rows (``flip``, B × m) weighted
    by ``sign`` (B × m, ±1), for all candidates at once: the flipped rows are gathered (padded to
    the most any candidate has, weight 0) and multiplied in one batched product, instead of one
    small product per candidate.  ``J``: Jᵀ shared (m × C) or one per candidate (B × m × C)."""
    counts = flip.sum(1)
    n_rows = int(counts.max())
    rows = torch.argsort(flip.to(torch.int8), dim=1, descending=True, stable=True)[:, :n_rows]  # flipped rows first
    weight = torch.where(torch.arange(n_rows) < counts[:, None], sign.gather(1, rows), 0)
    dP, dD = [], []
    step = max(1, FLIP_CHUNK // max(n_rows * L.shape[1], 1))
    for lo in range(0, len(rows), step):
        idx = rows[lo:lo + step]
        Jf = J[idx] if J.ndim == 2 else J[lo:lo + step].gather(1, idx[..., None].expand(-1, -1, J.shape[-1]))
        WJ = weight[lo:lo + step, :, None] * Jf
        dP.append(L[idx].mT @ WJ)
        dD.append(Jf.mT @ WJ)
    return torch.cat(dP), torch.cat(dD)


def _polish_zeros(C, A, bias, L, found=None, iters=15):
    """The zeros-only polish of each row c of ``C``, or None where it converges onto a ``found`` column.

    From the cell of c, with n_I = its number of inactive rows: alternate q = the least singular
    vector of L on the rows labelled inactive and the labels = the n_I rows of smallest |L_k q|,
    up to ``iters`` times.  No downstream knowledge: where J(c) is only that of a candidate near
    the sample (a deep network, whose later neurons flip with c), the fit of the active rows by
    J(c)ᵀu mislabels rows, this does not.  Measured on a 3-layer client (b = 20, m = 1000, starts
    at the true c plus relative noise 0.02 / 0.05 / 0.1 / 0.2): median 1 / 2 / 5 / 6 mislabelled
    rows, against 32 / 58 / 79 / 120 for the polish with J(c) (6 / 16 / 27 / 58 in the start's
    own cell).  Results have the layout of :func:`_polish`'s, r0 = |L q|, r1 = 1 (the rounding
    ranks the inactive rows by r0), u, P, D, Jᵀ None.
    """
    margin = C @ A.T + bias
    inactive = margin <= 0
    n_inactive = inactive.sum(1)
    ranks = torch.arange(L.shape[0])
    gram = (L.T[None] * inactive[:, None, :].to(L.dtype)) @ L  # L_Iᵀ L_I per candidate
    q = torch.zeros(len(C), L.shape[1], dtype=L.dtype)
    r0 = torch.zeros(len(C), L.shape[0], dtype=L.dtype)
    live = torch.arange(len(C))
    for _ in range(iters):
        q[live] = torch.linalg.eigh(gram[live])[1][..., 0]
        r0[live] = (q[live] @ L.T).abs()
        new = torch.zeros_like(inactive[live])
        new.scatter_(1, torch.argsort(r0[live], dim=1), ranks[None, :] < n_inactive[live, None])
        flip = new != inactive[live]
        moving = flip.any(1)
        for k in torch.nonzero(moving)[:, 0].tolist():  # rows joining (+) or leaving (−) the inactive set
            rows = L[flip[k]]
            gram[live[k]] += rows.T @ (rows * (new[k, flip[k]].to(L.dtype) * 2 - 1)[:, None])
        inactive[live] = new
        live = live[moving]
        if not len(live):
            break
    dead = torch.zeros(len(C), dtype=torch.bool)
    if found is not None and len(found):
        dead = (q @ found.T).abs().max(1).values > 1 - 1e-8
    one = torch.ones(L.shape[0], dtype=L.dtype)
    return [None if dead[i] else (margin[i], inactive[i], q[i], None, r0[i], one, None, None, None)
            for i in range(len(C))]


def _polish_projected(C, A, A_pinv, bias, L, jacobian, margin, passes=PROJECTION_PASSES, found=None,
                      found_zeros=None, deadline=float("inf"), zeros_only=False):
    """:func:`_polish` of each row of ``C``, then ``passes`` times: the point of the cell nearest the
    polished labels (:func:`cell_point`, ``margin``), polished again; ``jacobian``: Jᵀ (m × C, shared)
    or a function of the candidates (:func:`as_jacobian`), evaluated at each pass's points.  Returns the last polish of
    each (None where one failed or converged onto a ``found`` column; a polish that fits exactly
    (:data:`EXACT_MISFIT`) is returned as it is — a cell point need not be exactly in its cell, and
    a pass could walk it off — and so is one within :data:`NEAR_FOUND_ROWS` of ``found_zeros``,
    for the rounding to try a twin; past ``deadline`` (a ``time.perf_counter()`` value) no further
    pass starts).

    The polished labels fit the column structure (zeros, or W₂ᵀu) but need not be a cell of the
    hyperplane arrangement {A_k c + bias_k = 0}; a true mask is both.  Alternating the two is
    alternating projections between the two sets, and it walks descents that ended far from any
    true mask onto one: measured on the cross-entropy client, b = 600, m = 4000, from a state of
    142 columns found, 600 descents: the median mask distance to the nearest missing sample went
    from 0.24 after the descent to 0.18 after 5 passes, and the rounding found 54 distinct new
    columns after 5 passes (71 s in all), 77 after 10 (88 s), 85 after 20 (110 s), against 7 with
    none (50 s).
    """
    jacobian = as_jacobian(jacobian)
    out = [None] * len(C)
    live = torch.arange(len(C))
    for k in range(passes + 1):
        again = []
        polishes = _polish_zeros(C, A, bias, L, found) if zeros_only else _polish(C, A, bias, L, jacobian(C, L.dtype),
                                                                                    found)
        for i, polished in zip(live.tolist(), polishes):
            if polished is None:
                continue
            if k == passes or time.perf_counter() > deadline or (not zeros_only and _misfit(polished) <= EXACT_MISFIT) or \
                    _rows_from_found(polished[1], found_zeros) <= NEAR_FOUND_ROWS:
                out[i] = polished
            else:
                again.append((i, polished[1]))
        if not again:
            break
        live = torch.as_tensor([i for i, _ in again])
        C = cell_point(A, A_pinv, bias, torch.stack([labels for _, labels in again]), margin)
    return out


def _misfit(polished):
    """‖min(|L_k q|, |L_k q − (Jᵀu)_k|)‖² / ‖(Jᵀu)_A‖² of a :func:`_polish` result: how much of the
    fit its labels leave unexplained (0 at a true column)."""
    _, inactive, _, u, r0, r1, _, _, J = polished
    return float(torch.minimum(r0, r1).pow(2).sum() / (J[~inactive] @ u).pow(2).sum())


def _rows_from_found(inactive, found_zeros):
    """How many rows the labels ``inactive`` are from the nearest found zero set (inf without any)."""
    if found_zeros is None or not len(found_zeros):
        return float("inf")
    return int((found_zeros != inactive).sum(1).min())
