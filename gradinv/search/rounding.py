"""Exact rounding: from polished labels to an exact column of dL/dZ (the null vector of the rows kept), or None."""

import torch

from sudl._array_api import svd

from ..certificate import MAX_BLOCK
from .polish import NEAR_FOUND_ROWS, _active_products, _misfit, _polish, _rows_from_found


ROUNDING_ROW_FRACTIONS = (1.0, 0.95, 0.85, 0.7, 0.5)
"""Fractions of the most confident rows the exact rounding keeps, in turn (arbitrary, not measured)."""
FRAGILE_LEVERAGE = 0.99
"""Rows of L with leverage ‖L_k‖² above this are fragile: see :func:`fragile_rows` (arbitrary: a row that
alone carries 99 % of a direction of L)."""
MAX_POLISH_MISFIT = 0.01
"""Exact mode: a polish whose fit leaves more than this fraction ‖min(|L_k q|, |L_k q − w_kᵀu|)‖² /
‖W₂_Aᵀu‖² unexplained is not rounded.  Measured (cross-entropy client, b = 400, m = 4000, one
round of 100 descents at the start and three after 169 columns): the 77 candidates that rounded
to a new column left ≤ 7.6e-3, the others' median 0.06–0.1 (10 % quantile 0.011–0.048); at
b = 600, m = 4000 after 142 columns (1200 descents) the 21 that did left ≤ 6e-4, and the failures
between 0.01 and 0.03 took a quarter of the rounding's time: the rounding of most doomed
candidates, the larger part of a late round's time, is skipped."""
NEAR_EXACT = 3e-6
"""A system with σ_min ≲ 10·NEAR_EXACT·σ_max is *near* exact (:func:`_may_be_singular`'s scale; the
kernel tolerance instead where that is looser, as in approximate mode): only then is the exact
test run, and are the fragile rows' other labels tried.  Measured (b=300, m=2000, 60 failed
roundings): those the other label rescued had σ_min/σ_max 6e-8…1.4e-5, the rest ≥ 4.5e-5."""


def fragile_rows(L):
    """Indices k of the rows of L (orthonormal columns) with leverage ‖L_k‖² > :data:`FRAGILE_LEVERAGE`.

    Row k has leverage 1 − δ² when e_k lies in col(L) = col(dL/dZ) to within δ: typically a
    near-duplicate pair of inputs whose masks differ in neuron k alone, so that their columns
    differ by ≈ e_k (measured on the cross-entropy client: one such row at b=300, m=2000, touching
    170 of the 299 columns; two at b=600, m=4000, touching 453 of 598).  The other rows then pin
    L_k q only to δ, and no least-squares fit can tell which side of zero row k is on.
    """
    return torch.nonzero((L**2).sum(1) > FRAGILE_LEVERAGE)[:, 0]


def _stacked_rows(L, J, active, rows):
    """Rows ``rows`` (boolean) of M = [L_I, 0; L_A, −W₂_A], A = ``active``: M's null vectors (q, u)
    have L_I q = 0 and L_A q = W₂_A u."""
    return torch.cat([L[rows], -J[rows] * active[rows, None]], 1)


def _nested_grams(gram, rows_of, keeps):
    """M_Kᵀ M_K for each row set K in ``keeps`` (boolean masks, each inside the one before), from
    ``gram`` = MᵀM (all rows) by subtracting the rows dropped (``rows_of(mask)``: those rows of
    M): all the sets cost as much as the rows dropped from all to the smallest, not the rows
    kept in each."""
    kept = torch.ones_like(keeps[0])
    for keep in keeps:
        dropped = rows_of(kept & ~keep)
        gram = gram - dropped.T @ dropped
        kept = keep
        yield gram


def _may_be_singular(gram, scale, tol_kernel):
    """False when the Gram matrix MᵀM surely has λ_min > max(1e-12, 100·``tol_kernel``²)·``scale``
    (``scale`` ≥ λ_max): then M has no exact null vector.  Decided by whether a Cholesky of the
    Gram matrix shifted by that much fails, a fraction of an SVD's cost; exact enough above
    σ_min/σ_max ≈ 1e-6, where the Gram matrix holds its eigenvalues to ε·σ_max²."""
    shift = max(1e-12, 100 * tol_kernel**2) * scale
    eye = torch.eye(gram.shape[0], dtype=gram.dtype)
    return int(torch.linalg.cholesky_ex(gram - shift * eye)[1]) != 0


def _null_space(M, tol_kernel, tol_unique, max_dim=1, gram=None, scale=None, tols=None):
    """Orthonormal rows (d × k) spanning the null space of M (a matrix, or a function building it), or None.

    Accepted when M has an exact null vector (σ_min ≤ ``tol_kernel``·σ_max) and d, the number of
    singular values below ``tol_unique``·σ_max, is at most ``max_dim``; the most exact row first.
    ``tols`` (:class:`~gradinv.search.tolerances.Tolerances`): the thresholds of the null vector
    found instead (its rounding floor), ``tol_kernel`` and ``tol_unique`` then ignored.
    d > 1 is a *block*: samples so alike (near-duplicate inputs) that their columns share one
    zero set, so no single column of the block is identified, only their span (the difference
    of two nearly parallel columns is a null vector only to ε/angle: measured σ ≈ 1e-9·σ_max
    against 0.06 for the next).  Most candidates fail, and :func:`_may_be_singular` on ``gram``
    = MᵀM (computed when None; ``scale`` ≥ its λ_max, default its trace) rejects them before
    M is built.  The rest are decided by the eigenvectors of MᵀM when its second eigenvalue is
    clear of zero (σ₂ > 1e-4·σ_max, so d ≤ 1, and the eigenvector is exact to ε·σ_max²/σ₂²):
    M's own residual on the first tells whether it is exact, at a seventh of an SVD's cost
    (m=4000, b=600); otherwise (blocks) by the SVD of M.
    """
    if tols is not None:
        tol_kernel = tols.kernel_max
    kernel_at = tols.kernel_at if tols is not None else (lambda v: tol_kernel)
    unique_at = tols.unique_at if tols is not None else (lambda v: tol_unique)
    if gram is None:
        gram = M.T @ M
        scale = float(torch.trace(gram))
    if not _may_be_singular(gram, scale, tol_kernel):
        return None
    M = M() if callable(M) else M
    lam, vec = torch.linalg.eigh(gram)
    v = vec[:, 0]
    if unique_at(v) <= 1e-4 and lam[1] > 1e-8 * lam[-1]:
        return v[None] if float((M @ v).norm()) <= kernel_at(v) * float(lam[-1]) ** 0.5 else None
    _, sv, vh = svd(M)
    d = int((sv < unique_at(vh[-1]) * sv[0]).sum())
    if sv[-1] >= kernel_at(vh[-1]) * sv[0] or not 1 <= d <= max_dim:
        return None
    return vh[-d:].flip(0)


def _gram_scale(J):
    """An upper bound on λ_max of MᵀM = [LᵀL, −P; −Pᵀ, D] for orthonormal L."""
    return float(torch.linalg.matrix_norm(J.T @ J, 2)) + 1.0


def _round_on_labels(L, J, inactive, conf_i, conf_a, P, D, LtL, tols, max_block, fracs=ROUNDING_ROW_FRACTIONS):
    """(directions, near): exact directions (d × b) from the row labels ``inactive`` (with (P, D) =
    :func:`_active_products` of the active rows), or None: M = [L_I, 0; L_A, −W₂_A] loses its
    least confident rows (``conf_i``, ``conf_a``: residual ratios, small = sure; ``fracs`` of each
    label kept in turn) until its null space is exact; ``near``: some row set came within
    :data:`NEAR_EXACT` of it."""
    b = L.shape[1]
    I = torch.nonzero(inactive)[:, 0]
    I = I[torch.argsort(conf_i[I])]
    Act = torch.nonzero(~inactive)[:, 0]
    Act = Act[torch.argsort(conf_a[Act])]
    active = (~inactive).to(L.dtype)
    H = torch.cat([torch.cat([LtL, -P], 1), torch.cat([-P.T, D], 1)])  # MᵀM, all rows
    scale = _gram_scale(J)

    def stacked(rows):
        return _stacked_rows(L, J, active, rows)

    keeps = [_first(I, f, inactive) | _first(Act, f, inactive) for f in fracs]
    near = False
    for keep, G in zip(keeps, _nested_grams(H, stacked, keeps)):
        if not _may_be_singular(G, scale, max(NEAR_EXACT, tols.kernel_max)):
            continue  # not even near (nor, with loose tolerances, exact): surely not exact
        near = True
        v = _null_space(lambda keep=keep: stacked(keep), tols.kernel, tols.unique, max_block, gram=G, scale=scale,
                        tols=tols)
        if v is not None:
            return torch.linalg.qr(v[:, :b].T)[0].T, near  # the q parts, orthonormalised, most exact first
    return None, near


def _round_polished(polished, L, tols, found=None, max_block=MAX_BLOCK, gram=None, fragile=None,
                    max_misfit=None, found_zeros=None, zeros_only=False):
    """Exact directions (d × b, orthonormal rows) from a :func:`_polish` result, or None.

    d = 1 but for a block of up to ``max_block`` samples sharing the mask (:func:`_null_space`):
    then the rows span the block's columns, the most exact row first.  ``found`` (f × b, unit
    rows): columns already found, never returned.  ``gram``: LᵀL (b × b), computed when None.
    ``fragile``: :func:`fragile_rows` of L, whose other labels are tried when the polished labels
    give no exact column.  ``max_misfit``: give up without rounding when the polished fit leaves
    more than this of ‖W₂_Aᵀu‖² unexplained (:data:`MAX_POLISH_MISFIT`).  ``found_zeros`` (f × m,
    boolean): the found columns' zero sets; a polish whose labels come within
    :data:`NEAR_FOUND_ROWS` rows of one is rounded on all its rows alone (with the fragile rows'
    other labels): it is that column with a few rows mislabelled, which smaller row sets would
    only find again, or a near-duplicate *twin* of it, exact as labelled; a label set (as
    polished, or with a fragile row's other label) that *is* a found zero set is not rounded.
    Measured (cross-entropy client, b = 600, m = 4000, 142 columns found, 1200 descents): 181
    polishes came that near, the rounding of all but 4 (twins 1–3 rows from a found column)
    returned a found column, and they took 57 % of the rounding's time.  With ``max_misfit`` (exact
    mode) the zeros-only rounding is not tried.  ``zeros_only``: the polish's Jᵀ is that of a
    candidate near the sample, not the sample's own (a deep downstream network: a few of its
    later neurons may differ), so the active rows carry no exact equation and the column is
    the null vector of L on the most confidently inactive rows (:func:`_round_on_zeros`).
    """
    margin, inactive, q, u, r0, r1, P, D, J = polished
    conf_i, conf_a = r0 / (r1 + 1e-300), r1 / (r0 + 1e-300)
    if max_misfit is not None and _misfit(polished) > max_misfit:
        return None  # too many rows on the wrong side for the rounding to find an exact subset
    LtL = L.T @ L if gram is None else gram
    if zeros_only:
        if _rows_from_found(inactive, found_zeros) == 0:
            return None
        I = torch.nonzero(inactive & (margin <= 0))[:, 0]  # inactive by the fit and by the cell
        return _round_on_zeros(L, I[torch.argsort(conf_i[I])], LtL, tols, found)
    rows_from_found = _rows_from_found(inactive, found_zeros)
    near_found = rows_from_found <= NEAR_FOUND_ROWS
    fracs = ROUNDING_ROW_FRACTIONS[:1] if near_found else ROUNDING_ROW_FRACTIONS
    near = True
    if rows_from_found > 0:  # labels that are a found column's zeros would only give it again
        directions, near = _round_on_labels(L, J, inactive, conf_i, conf_a, P, D, LtL, tols, max_block, fracs)
        if directions is not None:
            return _unless_found(directions, found)
    # fragile rows (leverage ≈ 1: the other rows pin L_k q only to (1 − leverage)^½): the
    # least-squares polish fits either label of such a row, and the confidence ratio of the
    # label it picks is meaningless, so when the system came near exact, the other label of
    # each fragile row (and of all) is tried.
    if near and fragile is not None and len(fragile):
        for rows in [fragile[i:i + 1] for i in range(len(fragile))] + ([fragile] if len(fragile) > 1 else []):
            flipped = inactive.clone()
            flipped[rows] = ~flipped[rows]
            if _rows_from_found(flipped, found_zeros) == 0:
                continue
            dP, dD = _active_products(L[rows], J[rows], inactive[rows].to(L.dtype) * 2 - 1)
            directions = _round_on_labels(L, J, flipped, conf_i, conf_a, P + dP, D + dD, LtL, tols, max_block,
                                          fracs)[0]
            if directions is not None:
                return _unless_found(directions, found)
    if near_found or max_misfit is not None:
        return None
    # zeros only (SPEAR's rounding inside the predicted cell), without a misfit gate (approximate
    # mode): when the classifier W₂ no longer explains the active rows exactly (FedAvg: W₂ and the
    # masks drift over the local steps), the rows most confidently inactive under (W, b) still pin
    # the column.  (In exact mode it found nothing: 0 of 14 late candidates at b = 600, m = 4000.)
    I = torch.nonzero(margin <= 0)[:, 0]
    return _round_on_zeros(L, I[torch.argsort(margin[I])], LtL, tols, found)


def _polish_and_round(c, A, bias, L, J, tols, found=None, iters=15, **kwargs):
    """Exact directions (d × b, orthonormal rows) for the column whose mask is near that of c, or
    None: :func:`_polish` of c (``J``: Jᵀ, m × C), then :func:`_round_polished`."""
    polished = _polish(c[None], A, bias, L, J, found, iters)[0]
    return None if polished is None else _round_polished(polished, L, tols, found, **kwargs)


def _round_on_zeros(L, order, LtL, tols, found=None, fracs=ROUNDING_ROW_FRACTIONS):
    """The exact direction (1 × b) that vanishes on the first ``fracs`` of the rows ``order`` (most
    confidently inactive first), in turn, or None: SPEAR's rounding, from the zeros alone (the
    null space of L on those rows, :func:`_null_space`, exactly one-dimensional)."""
    like = torch.zeros(L.shape[0], dtype=torch.bool)
    keeps = [_first(order, f, like) for f in fracs]
    for keep, G in zip(keeps, _nested_grams(LtL, lambda rows: L[rows], keeps)):
        v = _null_space(lambda keep=keep: L[keep], tols.kernel, tols.unique, gram=G, scale=1.0, tols=tols)
        if v is not None:
            return _unless_found(v, found)
    return None


def _unless_found(directions, found):
    """``directions`` (d × b, unit rows), or None when the first is a column already found (``found``)."""
    if found is not None and len(found) and float((found @ directions[0]).abs().max()) > 1 - 1e-8:
        return None
    return directions


def _first(idx, frac, like):
    """Boolean mask (shaped like ``like``) of the first ``frac`` of the indices ``idx``."""
    mask = torch.zeros_like(like)
    mask[idx[: int(frac * len(idx))]] = True
    return mask


def _refine_on_zeros(L, q, tols, exact_kernel=1e-6, unique=1e-4):
    """q re-fitted to its column's smallest entries alone, when they are exact zeros.

    Among the rows with |L q| ≤ ``tols.zero_at(q)``·max (:class:`~gradinv.search.tolerances.Tolerances`),
    all, then the half, then the quarter with the
    smallest entries are taken; if L restricted to them has an exact one-dimensional kernel
    (σ_min ≤ ``exact_kernel``·σ_max and σ_(b−1) ≥ ``unique``·σ_max), that kernel is the column.
    A no-op for an exact column; when W₂ only approximately explains the active rows (FedAvg: W₂
    drifts over the local steps) it makes the column exact again; under noise (DP) no kernel is
    exact and q is kept.
    Returns (q, L q, zero mask).
    """
    g = (L @ q).abs()
    small = torch.nonzero(g <= tols.zero_at(q) * g.max())[:, 0]
    small = small[torch.argsort(g[small])]
    for frac in (1.0, 0.5, 0.25):
        rows = small[: int(frac * len(small))]
        if len(rows) < L.shape[1]:
            break
        v = _null_space(L[rows], exact_kernel, unique)
        if v is not None:
            q = v[0] * torch.sign(v[0] @ q)
            break
    q = q / q.norm()
    g = L @ q
    return q, g, g.abs() <= tols.zero_at(q) * g.abs().max()
