"""Two inputs that are multiples of one another (a black and a white frame; any x₂ = α x₁, α ≠ 1):
the pair behind one column, split with the classifier the layer's ReLU feeds.

With x₁ = τ₁ d and x₂ = τ₂ d, dL/dW = Σ g_j x_jᵀ holds one column c = τ₁ g₁ + τ₂ g₂ for the pair
(its rank is b − 1) while dL/db = Σ g_j holds g₁ + g₂, which leaves col(L):
r = (I − L Lᵀ) dL/db ≠ 0, and no sample's scale can be read off dL/db.  With the layer's W, b and
the classifier W₂ (C × m) its ReLU feeds, g_k = M(τ_k) W₂ᵀ u_k, M(τ) = diag(τ W d + b > 0):

* **d**, the pair's input direction, is left by the b − 2 other columns: x̂ = row k of Q̂⁻¹ R
  depends on the columns i ≠ k only, whatever stands in column k's place.
* **τ₁, τ₂.**  c ∈ col(L) makes (I − L Lᵀ) g₁ and (I − L Lᵀ) g₂ both multiples of r, so r lies in
  the C-dimensional range of B(τ) = (I − L Lᵀ) M(τ) W₂ᵀ at both members' τ, and (m ≫ b + C) at
  no other.  M(τ) changes only at the m breakpoints τ = −b_k / (W d)_k: every interval between
  them is tested (running sums of the normal equations, then an exact least-squares fit of the
  intervals they pass), :func:`pair_masks`.
* **u_k** ∝ B(τ_k)⁺ r: g_k = κ_k h_k with h_k = M(τ_k) W₂ᵀ B(τ_k)⁺ r, κ₁ + κ₂ = 1, and
  dL/db = Σ_{i≠k} s_i L q̂_i + κ₁ h₁ + (1 − κ₁) h₂ is linear in the other samples' scales s and κ₁.
* **X** = Γ⁺ dL/dW with Γ = [L Q̂ diag(s) | κ₁ h₁ | (1 − κ₁) h₂]: all b inputs, the pair's included.
* **A member's mask shared.**  Another sample j with member k's ReLU pattern (a near-blank crop
  beside a blank frame) has its column M(τ_k) W₂ᵀ u_j in col(L): B(τ_k) then has a null space N,
  u_k is known only up to N, and h_k + M(τ_k) W₂ᵀ N λ moves weight between the member and sample j
  (x̂_j slides along the line through x_j and the member's input).  Every gradient the client sent
  is the same along that family (with one mask, h = M (W x + b) is affine and the u h_jᵀ terms
  cancel), only the softmax is not: the split keeps λ free (:attr:`SplitPair.refit`) and the
  end-to-end check, which runs the model, fits it (:func:`gradinv.end_to_end.fit_free_split`).

Each fit must hold to the zero tolerance on all m rows, and each of the pair's inputs must
reproduce its own mask; otherwise nothing is claimed.

Before a deeper network J(h) changes with τ inside an interval (J at eight points an interval
split 1 of 3 batches of mlp3_grey_blanks at b = 20, in up to 208 s).  There the weight gradient of
the network's first Linear, dL/dW₂ = Σ_j δ_j h_jᵀ, which the client sends too, holds every
sample's activation in its row space, and each input is where its activation meets that row space
(:func:`find_pair_by_activations`).  A sample with a member's ReLU pattern meets it along a whole
line (through its input and the member's): the same freedom as above, placed the same way (the
pair's zero check then waits for that fit).  Groups of three or more such inputs are not split.

Where no pair is split, :func:`gradinv.invert_layer` factors col([dL/dW | dL/db]) instead, which holds
both members' columns g₁, g₂ (:class:`~gradinv.factorize.GradientFactorization`'s ``with_bias_span``):
the search then finds them as any other column, and the pair is exact, or a group known by its span
where the members share their zero set's kernel."""

import itertools
from dataclasses import dataclass

import numpy as np

from sudl._array_api import to_numpy

from .certificate import PATTERN_RTOL, predicted_pattern
from .factorize import scatter_rows

MAX_MASK_PAIRS = 16
"""The (member 1, member 2) candidate masks tried per column, best fits first (arbitrary: runs of
adjacent passing intervals were 1 to 3 long where measured)."""
SCREEN_TOL = 1e-4
"""Relative residual below which the normal equations' screen passes an interval on to the exact
least-squares fit (arbitrary: the normal equations resolve about √ε ≈ 1e-8, true members reach it)."""


def _intervals(a, bias):
    """The breakpoints τ = −b_k / a_k in order and one τ inside each interval they bound (the two
    unbounded ones included): (the rows with a_k ≠ 0, by their breakpoint; the m′ + 1 interval points)."""
    rows = np.flatnonzero(a != 0)
    tau = -bias[rows] / a[rows]
    order = np.argsort(tau, kind="stable")
    bp = tau[order]
    span = 1.0 + np.abs(bp).max()
    points = np.concatenate([[bp[0] - span], (bp[:-1] + bp[1:]) / 2, [bp[-1] + span]])
    return rows[order], points


def _residuals(L, W2, r, a, bias, order):
    """Relative residual of r's fit by B(τ) on each interval of :func:`_intervals`, from running sums
    of the normal equations: ‖r‖² − vᵀ S⁺ v with S = W₂ M W₂ᵀ − (W₂ M L)(W₂ M L)ᵀ, v = W₂ M r."""
    active = (bias > 0) & (a == 0) | (a < 0)  # the mask for τ below every breakpoint
    step = np.where(a[order] > 0, 1.0, -1.0)  # passing its breakpoint turns a row on (a > 0) or off
    Wa, La = W2[:, active], L[active]
    S0, T0, v0 = Wa @ Wa.T, Wa @ La, Wa @ r[active]
    Wk = W2[:, order]
    S = S0 + np.concatenate([np.zeros((1,) + S0.shape), np.cumsum(step[:, None, None] * Wk.T[:, :, None]
                                                                  * Wk.T[:, None, :], axis=0)])
    T = T0 + np.concatenate([np.zeros((1,) + T0.shape), np.cumsum(step[:, None, None] * Wk.T[:, :, None]
                                                                  * L[order][:, None, :], axis=0)])
    v = v0 + np.concatenate([np.zeros((1,) + v0.shape), np.cumsum(step[:, None] * Wk.T * r[order][:, None], axis=0)])
    S = S - T @ np.swapaxes(T, 1, 2)
    fit = np.einsum("ic,ic->i", v, (np.linalg.pinv(S, hermitian=True) @ v[:, :, None])[:, :, 0])
    return np.sqrt(np.maximum(r @ r - fit, 0.0)) / np.linalg.norm(r)


def _factors(fg):
    """L (m × b) and dL/db (m,) on every neuron, R and Q̂ (the directions as columns), float64 NumPy."""
    L = scatter_rows(np.asarray(to_numpy(fg.L), np.float64), fg.rows, fg.n_neurons)
    db = scatter_rows(np.asarray(to_numpy(fg.grad_b), np.float64)[:, None], fg.rows, fg.n_neurons)[:, 0]
    return L, np.asarray(to_numpy(fg.R), np.float64), db, np.asarray(to_numpy(fg.directions), np.float64).T


def _project_out(L, A):
    """(I − L Lᵀ) A for L with orthonormal columns (A a matrix or a vector)."""
    return A - L @ (L.T @ A)


def pair_masks(L, W2, r, a, bias, tol):
    """The two members' candidates (M(τ), α = B(τ)⁺ r) whose B(τ) fits r to ``tol``: two lists, one
    per run of adjacent intervals that pass, best fit first; None unless exactly two runs pass.
    Several intervals of a run fit when another sample's column lies in the range of B there (a
    near-blank crop beside a blank frame): the members' own mask check picks (:func:`split_pair`).
    The intervals are screened by running sums first (:func:`_residuals`)."""
    order, points = _intervals(a, bias)
    fits = []
    for i in np.flatnonzero(_residuals(L, W2, r, a, bias, order) <= SCREEN_TOL):
        M = points[i] * a + bias > 0
        B = _project_out(L, M[:, None] * W2.T)
        alpha = np.linalg.lstsq(B, r, rcond=None)[0]
        fits.append((i, np.linalg.norm(B @ alpha - r) / np.linalg.norm(r), M, alpha))
    fits = [f for f in fits if f[1] <= tol]
    runs = []
    for fit in fits:
        if runs and fit[0] == runs[-1][-1][0] + 1:
            runs[-1].append(fit)
        else:
            runs.append([fit])
    if len(runs) != 2:
        return None
    return [[f[2:] for f in sorted(run, key=lambda f: f[1])] for run in runs]


@dataclass
class SplitPair:
    """The batch with column ``column`` split into the pair behind it: ``inputs`` (b + 1 × n), the
    other samples first in their columns' order, then the pair; ``grad_Z`` (m × b + 1) on every
    neuron; ``scales`` (b + 1,) the norm of each of its columns."""

    column: int
    inputs: np.ndarray
    grad_Z: np.ndarray
    scales: np.ndarray
    n_free: int = 0
    """q, the null directions of the members' B(τ_k) (see the module doc): 0 when the split is unique."""
    refit: object = None
    """λ (q,) → (inputs, grad_Z) of the split along its null directions (``inputs`` is λ = 0), or None."""


def find_pair(fg, weight, bias, next_weight):
    """:func:`split_pair` on each column in turn, fewest exact zeros first (a pair's column vanishes
    only where both members are inactive); the first split that holds, or None."""
    for k in np.argsort(np.asarray(fg.n_zeros), kind="stable"):
        split = split_pair(fg, weight, bias, next_weight, int(k))
        if split is not None:
            return split
    return None


def split_pair(fg, weight, bias, next_weight, k):
    """Column ``k`` of ``fg`` split into two inputs that are multiples of one another (see the module
    doc): a :class:`SplitPair`, or None when no pair explains dL/db to the zero tolerance or a member
    does not reproduce its mask.  Every array float64."""
    L, R, db, Q = _factors(fg)
    W, bias, W2 = (np.asarray(to_numpy(x), np.float64) for x in (weight, bias, next_weight))
    if fg.bias_residual() <= fg.zero_tol:  # dL/db in col(L): no pair to split
        return None
    r = _project_out(L, db)
    d = np.linalg.solve(Q.T, np.eye(len(Q))[k]) @ R  # row k of Q⁻¹ R
    runs = pair_masks(L, W2, r, W @ d, bias, fg.zero_tol)
    if runs is None:
        return None
    others = L @ np.delete(Q, k, axis=1)
    rtol = PATTERN_RTOL["float64" if fg.zero_tol < 1e-7 else "float32"]
    for (M1, a1), (M2, a2) in itertools.islice(itertools.product(*runs), MAX_MASK_PAIRS):
        h = np.column_stack([M1 * (W2.T @ a1), M2 * (W2.T @ a2)])
        gamma = _pair_gamma(others, h, db, fg.zero_tol)
        if gamma is None:
            continue
        X = np.linalg.lstsq(gamma, L, rcond=None)[0] @ R  # Γ⁺ dL/dW, dL/dW = L R
        if all(_reproduces_mask(x, M, W, bias, rtol) for x, M in zip(X[-2:], (M1, M2))):
            H = [_null_directions(L, W2, M, fg.zero_tol) for M in (M1, M2)]  # m × q_k each
            q = H[0].shape[1] + H[1].shape[1]
            return SplitPair(k, X, gamma, np.linalg.norm(gamma, axis=0), q,
                             _refit(others, h, H, db, L, R) if q else None)
    return None


def _reproduces_mask(x, M, W, bias, rtol):
    """Whether the member's input x has the ReLU pattern M (away from 0, :func:`predicted_pattern`)."""
    inactive, active = predicted_pattern(x, W, bias, rtol)
    return not (np.any(inactive & M) or np.any(active & ~M))


def _refit(others, h, H, db, L, R):
    """λ → (X, Γ): the split with the members' h shifted along their null directions H
    (:func:`_member_shifts`), X = Γ⁺ L R."""
    def refit(lam):
        gamma = _pair_gamma(others, h + _member_shifts(H, lam), db, np.inf)
        return np.linalg.lstsq(gamma, L, rcond=None)[0] @ R, gamma
    return refit


def _pair_gamma(others, h, db, tol):
    """Γ = [others diag(s) | κ₁ h₁ | (1 − κ₁) h₂] from dL/db = others s + κ₁ h₁ + (1 − κ₁) h₂ (least
    squares); None when the fit misses dL/db by more than ``tol`` (relative)."""
    h1, h2 = h[:, 0], h[:, 1]
    A = np.column_stack([others, h1 - h2])
    sol = np.linalg.lstsq(A, db - h2, rcond=None)[0]
    if np.linalg.norm(A @ sol - (db - h2)) > tol * np.linalg.norm(db):
        return None
    s, kappa = sol[:-1], sol[-1]
    return np.column_stack([others * s, kappa * h1, (1 - kappa) * h2])


def _null_directions(L, W2, M, tol):
    """M W₂ᵀ N (m × q): N spans the null space of B = (I − L Lᵀ) M W₂ᵀ (singular values ≤ ``tol`` of
    the largest), the directions of M W₂ᵀ u that stay in col(L): another sample with this mask."""
    _, s, Vt = np.linalg.svd(_project_out(L, M[:, None] * W2.T), full_matrices=False)
    return M[:, None] * (W2.T @ Vt[s <= tol * s[0]].T)


def _member_shifts(H, lam):
    """The (m × 2) change of the members' h₁, h₂ by their null directions H = [H₁, H₂] (m × q_k each)
    with coefficients λ (q₁ + q₂,)."""
    q1 = H[0].shape[1]
    return np.column_stack([H[0] @ lam[:q1], H[1] @ lam[q1:]])


def _row_space(next_weight_grad, b):
    """V (m × r): an orthonormal basis of the row space of dL/dW₂ (the next Linear's weight gradient,
    m₂ × m), its singular values above rounding (max(m₂, m)·ε·s₁); None when its rank is below b (a
    classifier with fewer classes than samples: its rows are not every sample's activation)."""
    G2 = np.asarray(to_numpy(next_weight_grad), np.float64)
    _, s, Vt = np.linalg.svd(G2, full_matrices=False)
    rank = int(np.sum(s > max(G2.shape) * np.finfo(np.float64).eps * s[0]))
    return Vt[:rank].T if rank >= b else None


def activation_scales(v, W, bias, V, tol):
    """Every t with ReLU(t W v + b) in span(V), interval by interval along the line (see
    :func:`find_pair_by_activations`): h(t) = t α + β with α, β the masked W v and b, so the
    distance to span(V) is a quadratic in t whose minimum is screened from running sums and then
    checked exactly (relative distance ≤ ``tol``, t inside its interval)."""
    a = W @ v
    order, points = _intervals(a, bias)
    active = (bias > 0) & (a == 0) | (a < 0)
    step = np.where(a[order] > 0, 1.0, -1.0)
    Va = V * a[:, None]
    Vb = V * bias[:, None]

    def running(first, per_row):
        return first + np.concatenate([np.zeros((1,) + np.shape(first)), np.cumsum(step.reshape(
            (-1,) + (1,) * np.ndim(first)) * per_row[order], axis=0)])

    aa = running((a[active] ** 2).sum(), a ** 2)
    ab = running((a[active] * bias[active]).sum(), a * bias)
    bb = running((bias[active] ** 2).sum(), bias ** 2)
    pa = running(Va[active].sum(0), Va)
    pb = running(Vb[active].sum(0), Vb)
    A = aa - np.einsum("ij,ij->i", pa, pa)
    B = ab - np.einsum("ij,ij->i", pa, pb)
    C = bb - np.einsum("ij,ij->i", pb, pb)
    t = -B / np.where(A > 0, A, np.inf)
    norm2 = aa * t ** 2 + 2 * ab * t + bb
    screen = np.maximum(C - B * B / np.where(A > 0, A, np.inf), 0) <= SCREEN_TOL ** 2 * np.maximum(norm2, 1e-300)
    hits = []
    for i in np.flatnonzero(screen):
        M = points[i] * a + bias > 0
        p, q = (_project_out(V, y) for y in (M * a, M * bias))
        if not p @ p > 0:  # no active row (h = 0), or h's slope inside the row space: no single t
            continue
        ti = -(p @ q) / (p @ p)  # the exact minimiser on interval i
        z = ti * a + bias
        h = np.maximum(z, 0)
        if np.array_equal(z > 0, M) and np.linalg.norm(ti * p + q) <= tol * np.linalg.norm(h):
            hits.append(ti)
    return hits


def find_pair_by_activations(fg, weight, bias, next_weight_grad, tol):
    """A pair of inputs that are multiples of one another, in front of a deeper network: the next
    Linear's weight gradient dL/dW₂ = Σ_j δ_j h_jᵀ holds every sample's activation
    h_j = ReLU(W x_j + b) in its row space (its rank is b when its width is ≥ b).

    * The pair's line: d = row k of Q̂⁻¹ R (exact whatever column k holds); along t·d, h is affine
      between breakpoints, so the members' scales are where h meets the row space
      (:func:`activation_scales`): two of them.
    * Every other sample: with column k unknown, x_j lies in the plane of d and row j of Q̂⁻¹ R; its
      found column's support is its mask M_j, so h_j = M_j (W x_j + b) is affine on that plane and
      x_j is the one point where it meets the row space (a least-squares fit in two unknowns).
    * Then every column of dL/dZ (:func:`_pair_columns`): the pair's two from dL/db and their shared one.

    Tries the columns fewest exact zeros first; a :class:`SplitPair` or None."""
    L, R, db, Q = _factors(fg)
    W, bias = (np.asarray(to_numpy(x), np.float64) for x in (weight, bias))
    V = _row_space(next_weight_grad, len(Q) + 1)
    if V is None or fg.bias_residual() <= fg.zero_tol:
        return None
    D = np.linalg.solve(Q, R)  # the inputs up to their scales, one per row (all but row k hold column k's error)
    C, G = L @ Q, L @ R
    tols = fg.zero_tols(fg.directions)
    for k in np.argsort(np.asarray(fg.n_zeros), kind="stable"):
        taus = activation_scales(D[k], W, bias, V, tol)
        if len(taus) != 2:
            continue
        found = [_input_on_plane(D[j], D[k], np.abs(C[:, j]) > tols[j] * np.abs(C[:, j]).max(), W, bias, V, tol)
                 for j in range(len(Q)) if j != k]
        if any(f is None for f in found):
            continue
        X = np.array([x for x, _ in found])
        free = [(i, f) for i, (_, f) in enumerate(found) if f is not None]
        # a free input's min-norm point need not be its own: the zero check waits for the end-to-end fit
        split = _pair_columns(X, D[k], taus, G, db, W, bias, None if free else fg.zero_tol)
        if split is not None:
            def refit(lam, X=X, d=D[k], taus=taus, free=free):
                shifted = X.copy()
                for (i, f), step in zip(free, lam):
                    shifted[i] += step * f
                return _pair_columns(shifted, d, taus, G, db, W, bias, None)

            return SplitPair(int(k), *split, np.linalg.norm(split[1], axis=0), len(free), refit if free else None)
    return None


def _pair_columns(X, d, taus, G, db, W, bias, tol):
    """Every column of dL/dZ once the inputs are known: the other samples' columns and the pair's
    c = τ₁ g₁ + τ₂ g₂ from dL/dW = [Γ | c] [X; d] (independent rows), then g₁ + g₂ = e = dL/db − Γ 1
    gives g₁ = (c − τ₂ e)/(τ₁ − τ₂) and g₂ = (τ₁ e − c)/(τ₁ − τ₂).  Each of the pair's columns must
    vanish where its input is inactive (to ``tol``; not checked when None); (X with the pair last, the
    columns) or None."""
    coef = np.linalg.lstsq(np.vstack([X, d]).T, G.T, rcond=None)[0].T
    gamma, c = coef[:, :-1], coef[:, -1]
    e = db - gamma.sum(axis=1)
    (t1, t2) = taus
    g1, g2 = (c - t2 * e) / (t1 - t2), (t1 * e - c) / (t1 - t2)
    for t, g in ((t1, g1), (t2, g2)) if tol is not None else ():
        if np.abs(g[t * (W @ d) + bias <= 0]).max(initial=0.0) > tol * np.abs(g).max():
            return None
    return np.vstack([X, t1 * d, t2 * d]), np.column_stack([gamma, g1, g2])


def _input_on_plane(v, d, M, W, bias, V, tol):
    """(x, free): the x = t v + u d whose activation M (W x + b) lies in span(V), with W x + b > 0
    exactly on the mask M, and None; or, where a whole line of the plane fits (a member of the pair
    has the mask M too: the line through x and the member, along which every gradient sent is the
    same, module doc), its min-norm point and the line's direction scaled to ‖x‖.  None when
    nothing fits to ``tol``."""
    A = _project_out(V, np.column_stack([M * (W @ v), M * (W @ d)]))
    rhs = -_project_out(V, M * bias)
    U, sv, Vt = np.linalg.svd(A, full_matrices=False)  # least squares and the null line from one SVD
    kept = sv > np.finfo(np.float64).eps * max(A.shape) * sv[0]  # numpy.linalg.lstsq's default cutoff
    t, u = Vt.T @ np.where(kept, (U.T @ rhs) / np.where(kept, sv, 1.0), 0.0)
    x = t * v + u * d
    z = W @ x + bias
    h = np.maximum(z, 0)
    if np.linalg.norm(A @ [t, u] - rhs) > tol * max(np.linalg.norm(h), np.finfo(np.float64).tiny):
        return None
    if sv[1] <= tol * sv[0]:
        tn, un = Vt[-1]
        free = tn * v + un * d
        return x, free * np.linalg.norm(x) / np.linalg.norm(free)
    return (x, None) if np.array_equal(z > 0, M) else None
