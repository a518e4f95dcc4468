"""Informed search: exact columns of dL/dZ from what an honest-but-curious server knows.

Beyond the gradient, the server knows every weight.  Two facts follow:

1. **Input subspace.**  The inputs span the row space of dL/dW, so x_j = V c_j with V the right
   singular vectors (n × b) and c_j ∈ ℝ^b unknown.  Neuron k is inactive for sample j iff
   A_k c_j + b_k ≤ 0 with A = W V known: each column's zero set is one cell of a *known*
   hyperplane arrangement in ℝ^b, fixed by only b numbers.
2. **Next layer.**  When the attacked layer feeds a linear classifier W₂ (C × m), dL/dY_j lies
   in the row space of W₂, so every column is g_j = mask_j ⊙ W₂ᵀ u_j with u_j ∈ ℝ^C.

Search (per batch of starting points c):
  a. smooth objective over c (Adam on torch autograd): with the soft active mask
     s = sigmoid((A c + b)/τ), τ annealed geometrically, the smallest generalised eigenvalue over
     u of  W₂ S (I − L Lᵀ) S W₂ᵀ + W₂ diag(s − s²) W₂ᵀ  against  W₂ diag(s) W₂ᵀ:  it measures how
     far s ⊙ W₂ᵀu is from col(L), and is 0 only at a true column's mask.  *Class templates*:
     at initialisation the softmax is near uniform, so u_j ≈ α t_(y_j) with t_c = 1/C − e_c;
     once the columns found confirm it (:func:`_round_templates`), most rounds fix u to a
     template drawn per start and minimise ‖(I − LLᵀ)(s ⊙ W₂ᵀt)‖²/‖s ⊙ W₂ᵀt‖², with no C × C
     eigenproblem (measured at b = 400, m = 4000, classes drawn uniformly: descents 4.5×
     cheaper; full rank in 742 s against 368 of 400 columns after 1000 s without templates,
     ``benchmarks/search_yield.py``).  Given the classifier's bias gradient, the classes are
     drawn by how many of their samples are still missing (:func:`class_probabilities`, counts
     from :func:`~gradinv.labels.label_counts`);
  b. polish (:func:`_polish`, all of a round's descents at once): alternate (q, u) = null vector of
     [L_I, 0; L_A, −W₂_Aᵀ] and the row assignment (inactive iff |L_k q| < |L_k q − w_kᵀu|);
     then :data:`PROJECTION_PASSES` times move to the point of the arrangement's cell nearest the
     polished labels (:func:`cell_point`) and polish again (:func:`_polish_projected`): a true
     mask is both a cell and a fit of the column structure, and alternating the two walks late
     descents into the rounding's basin (measured at b = 600, m = 4000: 376 columns in 1500 s
     against 142 without, ``benchmarks/search_yield.py``);
  c. exact rounding (in exact mode, skipped when the polish leaves more than
     :data:`MAX_POLISH_MISFIT` unexplained): the same null vector on the most confident rows (failing that, with the
     other label of each *fragile* row, :func:`fragile_rows`, which the polish cannot place),
     accepted only when it is exactly one-dimensional, or up to
     :data:`~gradinv.certificate.MAX_BLOCK`-dimensional for a
     *block* of near-duplicate samples sharing one mask (then only the block's span is identified,
     and added as that many directions); a polish that ends within :data:`NEAR_FOUND_ROWS` rows of
     a found column's zeros is rounded on all its rows alone (:func:`_round_polished`); in
     approximate mode, failing that, the null vector of the rows most confidently inactive under
     (W, b) alone (SPEAR's rounding inside the predicted cell); then the column is re-fitted to
     its exact zeros (:func:`_refine_on_zeros`);
  d. checks: ≥ ``min_zero_fraction``·m exact zeros, the active rows fit W₂ᵀu to rounding error,
     linear independence from the columns already found.
Rounds of starts run until b columns are found or ``max_time`` runs out.  Deflation: a sample
not yet found has x_k = (Q⁻¹)_k R with (Q⁻¹)_k orthogonal to every column found, so each round
searches c only in that (b − found)-dimensional subspace.  **Starts** are c = Vᵀ Rᵀ n with n
isotropic in the complement of the found q's, i.e. spread along V by the singular values S of
dL/dW: (dL/dW)ᵀ dL/dW = X diag-ish(‖g_j‖²) Xᵀ, so S and V estimate the inputs' own spread and
axes.  Real inputs are far from isotropic in ℝ^b (natural images share a mean and low
frequencies), and isotropic starts do not reach a true cell beyond b ≈ 100: measured on the
cross-entropy client, b=150, m=1000, the median cosine from a start to the nearest true c is
0.85 for these starts against 0.18 for isotropic ones (``benchmarks/landing.py``), and all 150
columns were found in 61 s against 1/150 in 300 s (``docs/results.md``).

Measured on the cross-entropy client (``docs/results.md``).  This step runs in torch whatever
the input array type, since it needs automatic differentiation: the descents in float32 (they
only have to land in a cell; measured: as many columns per round as in float64, at 0.55–0.7 of
the time), the polish and the exact rounding in float64; results go back to the caller's
namespace.  Developed from probe B (``shared/research/realistic-victims.md``).
"""

import time

import numpy as np
import torch
from sklearn.utils import check_random_state
from tqdm.auto import tqdm

from sudl import complete_basis
from sudl._array_api import to_numpy

from ._step import GradientStep
from .certificate import MAX_BLOCK
from .factorize import GradientError
from .labels import label_counts


FRACS = (1.0, 0.95, 0.85, 0.7, 0.5)
"""Fractions of the most confident rows the exact rounding keeps, in turn."""
FRAGILE_LEVERAGE = 0.99
"""Rows of L with leverage ‖L_k‖² above this are fragile: see :func:`fragile_rows`."""
TEMPLATE_DEVIATION = 0.2
"""Descents fix u to a class template once the columns found are within this (median
:func:`template_deviation`) of theirs: :func:`_round_templates`."""
TEMPLATE_EVIDENCE = 10
"""Columns found before the class templates are trusted."""
GENERIC_EVERY = 4
"""With class templates in use, every GENERIC_EVERY-th round still runs the general descent."""
MAX_POLISH_MISFIT = 0.01
"""Exact mode: a polish whose fit leaves more than this fraction ‖min(|L_k q|, |L_k q − w_kᵀu|)‖² /
‖W₂_Aᵀu‖² unexplained is not rounded.  Measured (cross-entropy client, b = 400, m = 4000, one
round of 100 descents at the start and three after 169 columns): the 77 candidates that rounded
to a new column left ≤ 7.6e-3, the others' median 0.06–0.1 (10 % quantile 0.011–0.048); at
b = 600, m = 4000 after 142 columns (1200 descents) the 21 that did left ≤ 6e-4, and the failures
between 0.01 and 0.03 took a quarter of the rounding's time: the rounding of most doomed
candidates, the larger part of a late round's time, is skipped."""
NEAR_FOUND_ROWS = 5
"""A polish whose labels are within this many rows of a found column's zeros is only rounded on all
its rows (:func:`_round_polished`)."""
CELL_POINT_ITERS = 8
"""Least-squares passes of :func:`cell_point`."""
EXACT_MISFIT = 1e-20
""":func:`_misfit` of a polish that fits its labels to rounding error (a true column's: ~1e-30)."""
PROJECTION_PASSES = 10
"""Times a descent's polish is moved to its nearest cell and polished again (:func:`_polish_projected`)."""
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


def _tolerances(zero_tol):
    """(kernel, uniqueness, residual, zero) relative thresholds from the zero tolerance."""
    return zero_tol / 10, zero_tol * 10, zero_tol * 10, zero_tol


def _soft_objective(c, A, bias, LW, WW, b, C, tau, eye):
    """Smallest eigenvalue of D − (Lᵀ S W₂)ᵀ(Lᵀ S W₂) against D = W₂ᵀ S W₂, S = diag(sigmoid((A c + bias)/τ)), per row of c."""
    s = torch.sigmoid((c @ A.T + bias) / tau)
    LK = (s @ LW).reshape(-1, b, C)
    D = (s @ WW).reshape(-1, C, C)
    chol = torch.linalg.cholesky(D + torch.finfo(D.dtype).eps ** 0.75 * eye)
    inv = torch.linalg.solve_triangular(chol, eye.expand_as(chol), upper=False)
    return torch.linalg.eigvalsh(inv @ (D - LK.transpose(1, 2) @ LK) @ inv.transpose(1, 2))[:, 0]


def _template_objective(c, A, bias, L, w, tau):
    """‖(I − L Lᵀ) y‖² / ‖y‖², y = sigmoid((A c + bias)/τ) ⊙ w, per row of c and of w = W₂ t:
    the soft objective with u fixed to a class template t (:func:`_round_templates`), no C × C
    eigenproblem."""
    y = torch.sigmoid((c @ A.T + bias) / tau) * w
    yy = (y * y).sum(1)
    return (yy - ((y @ L) ** 2).sum(1)) / yy


def _descend(c0, basis, A, bias, L, W2, *, steps, lr, tau, deadline, templates=None, dtype=torch.float32):
    """Adam on the soft objective from each row of c0, moving c = t basisᵀ inside span(basis);
    computed in ``dtype`` (the descent only has to land in a cell: the rounding is exact).
    ``templates`` (rows t ∈ ℝ^C, one per start): u fixed to t (:func:`_template_objective`)."""
    c0, basis, A, bias, L, W2 = (a.to(dtype) for a in (c0, basis, A, bias, L, W2))
    m, b = L.shape
    C = W2.shape[1]
    if templates is None:
        LW = (L[:, :, None] * W2[:, None, :]).reshape(m, b * C)
        WW = (W2[:, :, None] * W2[:, None, :]).reshape(m, C * C)
        eye = torch.eye(C, dtype=dtype)
        objective = lambda c, temp: _soft_objective(c, A, bias, LW, WW, b, C, temp, eye)  # noqa: E731
    else:
        w = templates.to(dtype) @ W2.T
        objective = lambda c, temp: _template_objective(c, A, bias, L, w, temp)  # noqa: E731
    t = (c0 @ basis).clone().requires_grad_(True)
    opt = torch.optim.Adam([t], lr=lr * float(c0.norm(dim=1).mean()) / b**0.5)
    tau0, tau1 = tau
    for it in range(steps):
        temp = tau0 * (tau1 / tau0) ** (it / max(steps - 1, 1))
        loss = objective(t @ basis.T, temp).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if time.perf_counter() > deadline:
            break
    return (t @ basis.T).detach().to(torch.float64)


def _remaining_inputs_coords(found_q, RV):
    """Matrix P (b × (b − f)) with c = P z, z ∈ ℝ^(b−f), the coordinates the samples not yet found can have.

    A missing sample's input is x_k = (Q⁻¹)_k R with (Q⁻¹)_k orthogonal to every found column
    q_i, so c_k = Vᵀx_k = (R V)ᵀ n with n in the orthogonal complement N of the found q's:
    deflation.  ``RV`` is R V (b × b).
    """
    N = torch.as_tensor(complete_basis(torch.stack(found_q).numpy() if found_q else np.zeros((0, RV.shape[0]))))
    return RV.T @ N.T


def cell_point(A, A_pinv, bias, inactive, margin, iters=CELL_POINT_ITERS):
    """A point c of the cell {c : A_k c + bias_k ≤ 0 exactly for the ``inactive`` rows k}, or near it
    (rows of ``inactive`` and of the result: one point per label set).

    Least squares A c + bias ≈ ±``margin`` (− on the inactive rows), with ``A_pinv`` = A⁺; the
    target of each row whose sign is still wrong is raised by another ``margin``, ``iters`` times.
    Polished labels are not always a cell of the arrangement: their point is that of a cell
    nearby (:func:`_polish_projected`).  From a true mask it is near the sample's coordinates
    c_j (measured on the cross-entropy client, b = 600, m = 4000, the masks of 142 samples: median
    cosine 0.97 to c_j, 11 of 4000 signs wrong).
    """
    sign = 1 - 2 * inactive.to(A.dtype)
    target = sign * margin
    for _ in range(iters):
        c = (target - bias) @ A_pinv.T
        wrong = (c @ A.T + bias > 0) == inactive
        if not bool(wrong.any()):
            break
        target = target + sign * margin * wrong
    return c


def _cell_margin(A, bias, RV, norm, rng, n_starts=64):
    """The ``margin`` of :func:`cell_point`: the median |A_k c + bias_k| over ``n_starts`` typical
    starts (:func:`_round_starts` before any column is found), i.e. typical of the inputs."""
    typical = _round_starts(_remaining_inputs_coords([], RV), norm, n_starts, rng)
    return float((typical @ A.T + bias).abs().median())


def _round_starts(coords, norm, n_starts, rng):
    """A round's starting points (rows, norm ``norm``): c = Vᵀ Rᵀ n with n isotropic in the complement
    of the found q's (``coords`` = :func:`_remaining_inputs_coords`: spread by S, see the module
    docstring)."""
    c0 = torch.as_tensor(rng.standard_normal((n_starts, coords.shape[1]))) @ coords.T
    return c0 * (norm / c0.norm(dim=1, keepdim=True))


def _stacked_rows(L, W2, active, rows):
    """Rows ``rows`` (boolean) of M = [L_I, 0; L_A, −W₂_A], A = ``active``: M's null vectors (q, u)
    have L_I q = 0 and L_A q = W₂_A u."""
    return torch.cat([L[rows], -W2[rows] * active[rows, None]], 1)


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


def _null_space(M, tol_kernel, tol_unique, max_dim=1, gram=None, scale=None):
    """Orthonormal rows (d × k) spanning the null space of M (a matrix, or a function building it), or None.

    Accepted when M has an exact null vector (σ_min ≤ ``tol_kernel``·σ_max) and d, the number of
    singular values below ``tol_unique``·σ_max, is at most ``max_dim``; the most exact row first.
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
    if gram is None:
        gram = M.T @ M
        scale = float(torch.trace(gram))
    if not _may_be_singular(gram, scale, tol_kernel):
        return None
    M = M() if callable(M) else M
    lam, vec = torch.linalg.eigh(gram)
    if tol_unique <= 1e-4 and lam[1] > 1e-8 * lam[-1]:
        v = vec[:, 0]
        return v[None] if float((M @ v).norm()) <= tol_kernel * float(lam[-1]) ** 0.5 else None
    _, sv, vh = torch.linalg.svd(M, full_matrices=False)
    d = int((sv < tol_unique * sv[0]).sum())
    if sv[-1] >= tol_kernel * sv[0] or not 1 <= d <= max_dim:
        return None
    return vh[-d:].flip(0)


def _active_products(L, W2, active):
    """P = Lᵀ D_A W₂ (b × C) and W₂ᵀ D_A W₂ (C × C), D_A the diagonal of the active rows; the
    same update with ``active`` = ±1 weights adds or removes rows."""
    WA = W2 * active[:, None]
    return L.T @ WA, W2.T @ WA


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


def _gram_scale(W2):
    """An upper bound on λ_max of MᵀM = [LᵀL, −P; −Pᵀ, D] for orthonormal L."""
    return float(torch.linalg.matrix_norm(W2.T @ W2, 2)) + 1.0


def _round_on_labels(L, W2, inactive, conf_i, conf_a, P, D, LtL, tols, max_block, fracs=FRACS):
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
    scale = _gram_scale(W2)

    def stacked(rows):
        return _stacked_rows(L, W2, active, rows)

    keeps = [_first(I, f, inactive) | _first(Act, f, inactive) for f in fracs]
    near = False
    for keep, G in zip(keeps, _nested_grams(H, stacked, keeps)):
        if not _may_be_singular(G, scale, max(NEAR_EXACT, tols[0])):
            continue  # not even near (nor, with loose tolerances, exact): surely not exact
        near = True
        v = _null_space(lambda keep=keep: stacked(keep), tols[0], tols[1], max_block, gram=G, scale=scale)
        if v is not None:
            return torch.linalg.qr(v[:, :b].T)[0].T, near  # the q parts, orthonormalised, most exact first
    return None, near


def _polish(C, A, bias, L, W2, found=None, iters=15):
    """The polish of each row c of ``C`` (a batch of candidates), or None where it fails.

    From the cell of c (neuron k inactive iff A_k c + bias_k ≤ 0), alternate the fit of (q, u) to
    the labels (:func:`_fit_active_rows`) and the labels to the fit (inactive iff |L_k q| <
    |L_k q − w_kᵀu|), up to ``iters`` times.  None where the fit is undetermined or converges onto
    a column already ``found`` (f × b, unit rows).  Each result is (margin, inactive, q, u, r0, r1,
    P, D): r0 = |L q|, r1 = |L q − W₂ u| and (P, D) = :func:`_active_products` of the labels.  The
    products with L are batched (one m × b × B product per iteration instead of B matrix–vector
    products, which stream L from memory each time).
    """
    margin = C @ A.T + bias  # B × m
    inactive = margin <= 0
    m, b = L.shape
    n_classes = W2.shape[1]
    active = (~inactive).to(L.dtype)
    P = (L.T @ (active.T[:, :, None] * W2[:, None, :]).reshape(m, -1)).reshape(b, len(C), n_classes).transpose(0, 1)
    D = torch.einsum("Bm,mc,md->Bcd", active, W2, W2)
    out = [None] * len(C)
    live = torch.arange(len(C))
    for it in range(iters):
        q, u, ok = _fit_active_rows(P[live], D[live])
        Lq = q @ L.T
        r0, r1 = Lq.abs(), (Lq - u @ W2.T).abs()
        new = r0 < r1
        dead = ~ok
        if found is not None and len(found):  # converged onto a found column (distinct ones reach |cos| 0.998)
            dead |= (q @ found.T).abs().max(1).values > (1 - 1e-8) * q.norm(dim=1)
        done = (new == inactive[live]).all(1) | (it == iters - 1)
        for k, i in enumerate(live.tolist()):
            if dead[k]:
                continue
            if not done[k] or it == iters - 1:
                flip = new[k] != inactive[i]  # rows leaving (+1) or joining (−1) the inactive set: update P, D
                dP, dD = _active_products(L[flip], W2[flip], inactive[i, flip].to(L.dtype) * 2 - 1)
                P[i], D[i] = P[i] + dP, D[i] + dD
                inactive[i] = new[k]
            if done[k]:
                out[i] = (margin[i], inactive[i], q[k], u[k], r0[k], r1[k], P[i], D[i])
        live = live[~(done | dead)]
        if not len(live):
            break
    return out


def _polish_projected(C, A, A_pinv, bias, L, W2, margin, passes=PROJECTION_PASSES, found=None,
                      found_zeros=None, deadline=float("inf")):
    """:func:`_polish` of each row of ``C``, then ``passes`` times: the point of the cell nearest the
    polished labels (:func:`cell_point`, ``margin``), polished again.  Returns the last polish of
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
    out = [None] * len(C)
    live = torch.arange(len(C))
    for k in range(passes + 1):
        again = []
        for i, polished in zip(live.tolist(), _polish(C, A, bias, L, W2, found)):
            if polished is None:
                continue
            if k == passes or time.perf_counter() > deadline or _misfit(polished, W2) <= EXACT_MISFIT or \
                    _rows_from_found(polished[1], found_zeros) <= NEAR_FOUND_ROWS:
                out[i] = polished
            else:
                again.append((i, polished[1]))
        if not again:
            break
        live = torch.as_tensor([i for i, _ in again])
        C = cell_point(A, A_pinv, bias, torch.stack([labels for _, labels in again]), margin)
    return out


def _misfit(polished, W2):
    """‖min(|L_k q|, |L_k q − w_kᵀu|)‖² / ‖W₂_Aᵀu‖² of a :func:`_polish` result: how much of the
    fit its labels leave unexplained (0 at a true column)."""
    _, inactive, _, u, r0, r1, _, _ = polished
    return float(torch.minimum(r0, r1).pow(2).sum() / (W2[~inactive] @ u).pow(2).sum())


def _polish_and_round(c, A, bias, L, W2, tols, found=None, iters=15, **kwargs):
    """Exact directions (d × b, orthonormal rows) for the column whose mask is near that of c, or
    None: :func:`_polish` of c, then :func:`_round_polished`."""
    polished = _polish(c[None], A, bias, L, W2, found, iters)[0]
    return None if polished is None else _round_polished(polished, L, W2, tols, found, **kwargs)


def _round_polished(polished, L, W2, tols, found=None, max_block=MAX_BLOCK, gram=None, fragile=None,
                    max_misfit=None, found_zeros=None):
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
    mode) the zeros-only rounding is not tried.
    """
    margin, inactive, q, u, r0, r1, P, D = polished
    conf_i, conf_a = r0 / (r1 + 1e-300), r1 / (r0 + 1e-300)
    if max_misfit is not None and _misfit(polished, W2) > max_misfit:
        return None  # too many rows on the wrong side for the rounding to find an exact subset
    LtL = L.T @ L if gram is None else gram
    rows_from_found = _rows_from_found(inactive, found_zeros)
    near_found = rows_from_found <= NEAR_FOUND_ROWS
    fracs = FRACS[:1] if near_found else FRACS
    near = True
    if rows_from_found > 0:  # labels that are a found column's zeros would only give it again
        directions, near = _round_on_labels(L, W2, inactive, conf_i, conf_a, P, D, LtL, tols, max_block, fracs)
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
            dP, dD = _active_products(L[rows], W2[rows], inactive[rows].to(L.dtype) * 2 - 1)
            directions = _round_on_labels(L, W2, flipped, conf_i, conf_a, P + dP, D + dD, LtL, tols, max_block,
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
    I = I[torch.argsort(margin[I])]
    keeps = [_first(I, f, inactive) for f in FRACS]
    for keep, G in zip(keeps, _nested_grams(LtL, lambda rows: L[rows], keeps)):
        v = _null_space(lambda keep=keep: L[keep], tols[0], tols[1], gram=G, scale=1.0)
        if v is not None:
            return _unless_found(v, found)
    return None


def _rows_from_found(inactive, found_zeros):
    """How many rows the labels ``inactive`` are from the nearest found zero set (inf without any)."""
    if found_zeros is None or not len(found_zeros):
        return float("inf")
    return int((found_zeros != inactive).sum(1).min())


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


def _refine_on_zeros(L, q, zero_tol, exact_kernel=1e-6, unique=1e-4):
    """q re-fitted to its column's smallest entries alone, when they are exact zeros.

    Among the rows with |L q| ≤ zero_tol·max, all, then the half, then the quarter with the
    smallest entries are taken; if L restricted to them has an exact one-dimensional kernel
    (σ_min ≤ ``exact_kernel``·σ_max and σ_(b−1) ≥ ``unique``·σ_max), that kernel is the column.
    A no-op for an exact column; when W₂ only approximately explains the active rows (FedAvg: W₂
    drifts over the local steps) it makes the column exact again; under noise (DP) no kernel is
    exact and q is kept.
    Returns (q, L q, zero mask).
    """
    g = (L @ q).abs()
    small = torch.nonzero(g <= zero_tol * g.max())[:, 0]
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
    return q, g, g.abs() <= zero_tol * g.abs().max()


def _next_layer_fit(g, W2, zero):
    """(u, relative residual) of the least-squares fit of the active rows of g by W₂ᵀu."""
    act = ~zero
    u = torch.linalg.lstsq(W2[act], g[act, None]).solution[:, 0]
    return u, float((W2[act] @ u - g[act]).norm() / g[act].norm())


def _deviation_from_template(v):
    t = torch.full_like(v, 1.0 / v.shape[-1])
    t[int(torch.argmin(v))] -= 1
    return float((v - (v @ t) / (t @ t) * t).norm() / v.norm())


def template_deviation(u):
    """‖u − α t‖/‖u‖ for the class template t = 1/C − e_y, y = argmin(±u), and the best scale α.

    u = softmax(logits) − e_y (times 1/B) of a cross-entropy client is α t exactly when the softmax
    is uniform, as it nearly is at initialisation (measured on the cross-entropy client, b = 300:
    median 0.05, max 0.15).  The sign of a direction found is arbitrary, so both signs are tried.
    """
    return min(_deviation_from_template(u), _deviation_from_template(-u))


def oriented_upstream(u):
    """±u, the sign closer to its class template (:func:`template_deviation`): its label is argmin."""
    return u if _deviation_from_template(u) <= _deviation_from_template(-u) else -u


def class_probabilities(counts, found_labels, n_classes):
    """How often template descents draw each class: ∝ max(n_c − found_c, 0) + 1, with n the expected
    samples per class (:func:`gradinv.labels.label_counts`) and found_c the columns found with label
    c; the + 1 keeps every class in reach when n is misestimated (measured: up to 10.5 samples
    from 10 columns found, 4.1 from 30, at b ≤ 600; ``benchmarks/label_counts.py``)."""
    found = np.bincount(np.asarray(found_labels, dtype=int), minlength=n_classes)[:n_classes]
    weights = np.maximum(np.asarray(counts, np.float64) - found, 0.0) + 1.0
    return weights / weights.sum()


def _missing_class_probabilities(next_bias_grad, batch_size, found_u, n_classes):
    """:func:`class_probabilities` from the classifier's bias gradient and the oriented u of the
    columns found (their labels, and the softmax :func:`~gradinv.labels.label_counts` fits); None
    (uniform) without that gradient."""
    if next_bias_grad is None:
        return None
    counts = label_counts(next_bias_grad, batch_size, torch.stack(found_u) if found_u else None)
    return class_probabilities(counts, [int(torch.argmin(u)) for u in found_u], n_classes)


def _round_templates(deviations, n_starts, n_classes, round_index, rng, class_p=None):
    """Class templates (n_starts × C, classes drawn with probabilities ``class_p``, default uniform)
    for a round's descents, or None for the general descent: templates once
    :data:`TEMPLATE_EVIDENCE` columns are found and their median :func:`template_deviation` is at
    most :data:`TEMPLATE_DEVIATION`, but for every :data:`GENERIC_EVERY`-th round, which still
    reaches samples whose u is far from a template."""
    if (len(deviations) < TEMPLATE_EVIDENCE or float(np.median(deviations)) > TEMPLATE_DEVIATION
            or round_index % GENERIC_EVERY == 0):
        return None
    T = torch.full((n_starts, n_classes), 1.0 / n_classes, dtype=torch.float64)
    T[torch.arange(n_starts), torch.as_tensor(rng.choice(n_classes, n_starts, p=class_p))] -= 1
    return T


def informed_search(L, R, weight, bias, next_weight, *, random_state=None, max_time=60.0, steps=50,
                    lr=0.05, tau=(0.03, 0.001), batch=None, input_norm=None, min_zero_fraction=0.3,
                    zero_tol=1e-9, next_layer_rtol=None, rows=None, class_templates=True, next_bias_grad=None,
                    projection_passes=PROJECTION_PASSES, progress=False):
    """Exact directions q (rows, k ≤ b) with L q a column of dL/dZ, and their exact-zero counts.

    L (m' × b, orthonormal columns), R (b × n) from the factorisation; ``weight`` (m × n), ``bias`` (m,) of the attacked
    layer and ``next_weight`` (C × m) of the classifier it feeds; ``rows`` (m',) the neurons L
    keeps (default: all).  A column is accepted when its active rows are fitted by W₂ᵀu to
    ``next_layer_rtol`` (default 10·zero_tol: rounding level).  ``class_templates``: let rounds
    descend with u fixed to class templates when the columns found support it (:func:`_round_templates`);
    ``next_bias_grad`` (C,), the classifier's bias gradient of one mean cross-entropy step, lets
    them draw the classes still missing most often (:func:`class_probabilities`; uniform without
    it; the batch size in its counts is the rank b, the independent inputs).
    ``projection_passes``: alternations of the polish with the nearest cell before the rounding
    (:func:`_polish_projected`; 0: the polish of the descent alone).
    """
    rng = check_random_state(random_state)
    deadline = time.perf_counter() + max_time
    tols = _tolerances(zero_tol)
    next_layer_rtol = tols[2] if next_layer_rtol is None else next_layer_rtol
    max_misfit = MAX_POLISH_MISFIT if next_layer_rtol <= tols[2] else None  # approximate mode: W₂ drifts
    Lt = torch.as_tensor(to_numpy(L), dtype=torch.float64)
    m, b = Lt.shape
    LtL = Lt.T @ Lt
    fragile = fragile_rows(Lt)
    Rt = torch.as_tensor(to_numpy(R), dtype=torch.float64)
    V = torch.linalg.svd(Rt, full_matrices=False)[2].T  # n × b, spans the inputs
    RV = Rt @ V
    rows = torch.arange(len(bias)) if rows is None else torch.as_tensor(rows)
    A = (torch.as_tensor(np.asarray(weight, np.float64)) @ V)[rows]  # no copy of W
    bias = torch.as_tensor(np.asarray(bias, np.float64))[rows]
    W2 = torch.as_tensor(np.asarray(next_weight, np.float64)).T[rows]  # m' × C
    norm = float(Rt.shape[1]) ** 0.5 if input_norm is None else float(input_norm)
    B = batch or max(64, min(2 * b, 100))  # measured: small batches of short descents beat large ones
    A_pinv = torch.linalg.pinv(A)
    cell_margin = _cell_margin(A, bias, RV, norm, rng)
    found_q, found_z, deviations, found_u, found_zeros = [], [], [], [], []
    found = zeros = None  # torch.stack(found_q), torch.stack(found_zeros), kept up to date
    bar = tqdm(total=b, disable=not progress, desc="informed search", unit="column")
    rounds = 0
    while len(found_q) < b and time.perf_counter() < deadline:
        coords = _remaining_inputs_coords(found_q, RV)
        c0 = _round_starts(coords, norm, B, rng)
        basis = torch.linalg.qr(coords)[0]
        class_p = _missing_class_probabilities(next_bias_grad, b, found_u, W2.shape[1])
        templates = _round_templates(deviations, B, W2.shape[1], rounds, rng, class_p) if class_templates else None
        cf = _descend(c0, basis, A, bias, Lt, W2, steps=steps, lr=lr, tau=tau, deadline=deadline, templates=templates)
        rounds += 1
        for polished in _polish_projected(cf, A, A_pinv, bias, Lt, W2, cell_margin, projection_passes, found,
                                          zeros, deadline):
            if len(found_q) >= b or time.perf_counter() > deadline:
                break
            if polished is None:
                continue
            block = _round_polished(polished, Lt, W2, tols, found, gram=LtL, fragile=fragile,
                                    max_misfit=max_misfit, found_zeros=zeros)
            if block is None:
                continue
            q, g, zero = _refine_on_zeros(Lt, block[0], tols[3])
            if int(zero.sum()) < min_zero_fraction * m:
                continue
            u, residual = _next_layer_fit(g, W2, zero)
            if residual > next_layer_rtol:
                continue
            deviations.append(template_deviation(u))
            for i, direction in enumerate([q, *block[1:]]):  # a block's other rows share the zeros of its first
                if len(found_q) >= b:
                    break
                if found is not None and torch.linalg.svdvals(torch.cat([found, direction[None]]))[-1] < 1e-6:
                    continue  # dependent on the columns found
                if i == 0:  # u is q's; the block's other rows have their own
                    found_u.append(oriented_upstream(u))
                    found_zeros.append(zero)
                    zeros = torch.stack(found_zeros)
                found_q.append(direction)
                found = torch.stack(found_q)
                found_z.append(int(zero.sum()))
                bar.update(1)
    bar.close()
    Q = torch.stack(found_q).numpy() if found_q else np.zeros((0, b))
    return Q, np.asarray(found_z, dtype=int)


class InformedSearch(GradientStep):
    """Pipeline step (``solver="informed"``): :func:`informed_search` with the server's knowledge.

    Parameters
    ----------
    weight, bias : the attacked layer's parameters, (m × n) and (m,)
    next_weight : (C × m), the classifier the attacked layer's ReLU feeds
    max_time : seconds bound of the search
    input_norm : typical ‖x‖ of an input (default √n, standardised inputs)
    next_layer_rtol : how well W₂ᵀu must fit a column's active rows (default: rounding level;
        the approximate mode loosens it, since FedAvg's W₂ drifts: measured residuals 0.1–0.3)
    next_bias_grad : (C,), the gradient of the classifier's bias, which the client shares with the
        rest: class templates then favour the classes with more samples still missing
    """

    def __init__(self, weight=None, bias=None, next_weight=None, max_time=60.0, input_norm=None,
                 min_zero_fraction=0.3, next_layer_rtol=None, next_bias_grad=None, random_state=None, verbose=0):
        self.weight = weight
        self.bias = bias
        self.next_weight = next_weight
        self.next_bias_grad = next_bias_grad
        self.max_time = max_time
        self.input_norm = input_norm
        self.min_zero_fraction = min_zero_fraction
        self.next_layer_rtol = next_layer_rtol
        self.random_state = random_state
        self.verbose = verbose

    def fit_transform(self, fg, y=None):
        if self.weight is None or self.bias is None or self.next_weight is None:
            raise GradientError("solver='informed' needs the layer's weight and bias and the next layer's weight")
        W, bias, W2 = (np.asarray(to_numpy(a), np.float64) for a in (self.weight, self.bias, self.next_weight))
        if W.shape[0] != fg.n_neurons or W2.shape[1] != fg.n_neurons or bias.shape != (fg.n_neurons,):
            raise GradientError(
                f"weight {W.shape}, bias {bias.shape} and next_weight {W2.shape} do not match a layer with "
                f"{fg.n_neurons} neurons and {fg.R.shape[1]} inputs")
        next_bias_grad = None if self.next_bias_grad is None else np.asarray(to_numpy(self.next_bias_grad), np.float64)
        if next_bias_grad is not None and next_bias_grad.shape != (W2.shape[0],):
            raise GradientError(f"next_bias_grad {next_bias_grad.shape} does not match next_weight {W2.shape}")
        if next_bias_grad is not None and not np.all(np.isfinite(next_bias_grad)):
            raise GradientError("next_bias_grad has NaN or infinite entries")
        Q, zeros = informed_search(fg.L, fg.R, W, bias, W2, rows=fg.rows,
                                   random_state=self.random_state, max_time=self.max_time,
                                   input_norm=self.input_norm, min_zero_fraction=self.min_zero_fraction,
                                   zero_tol=fg.zero_tol, next_layer_rtol=self.next_layer_rtol,
                                   next_bias_grad=next_bias_grad, progress=bool(self.verbose))
        self.n_found_ = Q.shape[0]
        return fg.with_directions(Q, zeros, np.ones(len(zeros), bool))
