"""Step 1: factor the layer gradient, dL/dW = L R (rank b = batch size).

The pipeline's input is the gradient of the affine map with the bias folded in as a last
input column, ``grad = [dL/dW | dL/db]`` (m × (n+1)); :func:`stack_gradient` builds it.
With the thin SVD dL/dW = U S Vᵀ, L spans U[:, :b] (orthonormal columns), R = Lᵀ dL/dW, and
the unknown dL/dZ = L Q for an invertible b × b matrix Q (the disaggregation matrix).  The
factors come from the eigenvalues of the smaller Gram matrix, subspace iteration and one small
SVD (:func:`gram_spectrum`, :func:`leading_vectors`, :func:`leading_factors`): no copy of the
gradient, 0.3× the time of numpy's SVD at m = 1000 and 4000 (``benchmarks/factorize_speed.py``).
Rows of L for neurons that are inactive for the whole batch are exactly zero, carry no
information and are dropped.

Float32 gradients are factored in float64: the rounding error of the float32 gradient then
limits the exact zeros of L q to about 1e-7 of the column's scale (measured, ``docs/results.md``)
instead of float32's 1e-3 after a float32 SVD, and the zero tolerance is set from the gradient's
precision (:data:`ZERO_TOL`).
"""

ZERO_TOL = {"float64": 1e-9, "float32": 1e-5}
"""Relative size below which an entry of a column counts as an exact zero, by dtype (arbitrary: well
above the dtype's rounding; the exact tests widen it to :data:`FLOOR_FACTOR` times a direction's
rounding floor where that is larger)."""
ROUNDING_LEVEL = 100
"""Singular values below ROUNDING_LEVEL·ε·s₁ (ε of the gradient's dtype) may be rounding error."""
NOISE_LEVEL = 1e4
"""A rank-b residual ‖G − L R‖_F above NOISE_LEVEL·ε·s₁ is noise, not rounding (:func:`noise_evidence`):
measured 1.3e-15·s₁ to 1.6e-15·s₁ (float64) and 0.9e-7·s₁ to 1.4e-7·s₁ (float32) on clean
cross-entropy clients at b = 20…100, 1.6e-14·s₁ on a two-step FedAvg update, 5e-6·s₁ and more under
Opacus DP-SGD from σ = 1e-8 on (``docs/certificates.md``)."""

FLOOR_FACTOR = 30
"""How far above the rounding floor f(q) (:func:`rounding_floor`) the exact tests accept.  Measured
on the true columns of five zoo clients (mlp2_trained at b = 20 and 50, mlp2_trained_raw,
mlp2_photos, conv_trained at b = 50; ``benchmarks/rounding_floor.py``): σ_min of L on a column's
zeros ≤ 0.34·f(q) and its zero entries ≤ 0.98·f(q) of its largest in float64, ≤ 3.3·f(q) and
≤ 7.6·f(q) in float32 (``--float32``)."""
NOISE_FACTOR = 1.0
"""How far above the noise floor f_N(q) (:func:`noise_floor`) an entry of a noisy update's column L q
still counts as zero (the approximate mode; at most its zero tolerance).  Measured on the true
columns of Opacus DP-SGD updates (C = 1, b = 20, seeds 0–2; mlp2_raw, mlp2_trained_raw, mlp2_digits,
mlp2_grey28, mlp3_photos, conv_trained at σ = 1e-6, the first five and mlp2_sklearn_photos at
1e-5): the largest |L q| on the column's zeros is 0.17–0.68·f_N(q) of its largest entry, 1.02 on
mlp2_digits (n = 64), the same at both σ; beyond it only columns of samples lost in the noise."""

import warnings
from dataclasses import dataclass, replace

import numpy as np

from sudl._array_api import array_namespace, device, eps, random_normal, svd, to_numpy
from sudl._validation import check_matrix

from ._step import GradientStep


class GradientError(ValueError):
    """The gradient violates a condition the attack needs (shape, rank, values); the message says which."""


class NoRankGapError(GradientError):
    """No singular-value gap of the required size: a full-rank or noisy gradient."""


class NoSignalError(GradientError):
    """A noisy (or full-rank) update none of whose singular values rises above the noise edge: nothing to recover."""


class NoExactColumnError(GradientError):
    """No column of dL/dZ with exact zeros: no ReLU after the layer, a noisy update, or the time bound."""


def noise_evidence(factorization):
    """Why a fitted :class:`GradientFactorization`'s gradient looks noisy (DP noise), or None.

    Evidence: the residual of the rank-b factors, ‖G − L R‖_F / s₁ (an upper bound on
    s_(b+1)/s₁), above :data:`NOISE_LEVEL`·ε of the gradient's dtype: an exact gradient has
    rank b to rounding.  A multi-step FedAvg update keeps rank b; its drifted zeros show only
    in the search (:class:`NoExactColumnError`).
    """
    tail, level = factorization.tail_, NOISE_LEVEL * factorization.source_eps_
    if tail > level:
        return (f"the singular values of dL/dW have a tail of {tail:.1e}·s₁ beyond rank {factorization.rank_}, "
                f"above rounding ({level:.0e}·s₁): a noisy update")
    return None


class DependentInputsWarning(UserWarning):
    """dL/dW has rank r below the given batch size: b − r inputs are duplicates of, or linear
    combinations of, other inputs.  The attack goes on with the r independent ones."""


@dataclass(frozen=True)
class FactorizedGradient:
    """What flows between the pipeline's steps.

    L (m' × b), R (b × n), grad_b (m',) are restricted to the ``rows`` kept (neurons active for
    some sample).  ``exact_rank``: G = L R holds to rounding, ‖G − L R‖_F ≤ ROUNDING_LEVEL·ε·√b·s₁
    (false for noise, and for near-duplicate inputs whose small singular value was dropped).
    ``n_dependent_inputs``: the batch size given less the rank (inputs sent twice, or combinations).
    ``noisy``: the rank-b residual is above rounding (:func:`noise_evidence`: DP noise).
    ``floor`` (b × b): the rounding floor of the directions (:func:`rounding_floor`).
    ``noise_floor`` (b × b) or None: in a noisy update searched with the approximate zero tolerance,
    :data:`NOISE_FACTOR` times its noise floor (:func:`noise_floor`, :meth:`noise_tols`).
    Later steps fill ``directions`` (k × b, rows q with L q a candidate column
    of dL/dZ), ``n_zeros`` and ``exact``.
    """

    L: object
    R: object
    grad_b: object
    rows: np.ndarray
    n_neurons: int
    singular_values: np.ndarray
    zero_tol: float = 1e-9
    source_dtype: object = None
    directions: object = None
    n_zeros: np.ndarray = None
    exact: np.ndarray = None
    exact_rank: bool = True
    n_dependent_inputs: int = 0
    noisy: bool = False
    floor: np.ndarray = None
    noise_floor: np.ndarray = None

    @property
    def batch_size(self):
        return self.L.shape[1]

    def zero_tols(self, directions):
        """(k,) the zero tolerance of each column L q (rows q of ``directions``): the larger of
        ``zero_tol`` and FLOOR_FACTOR times its rounding floor (``floor``, :func:`rounding_floor`)."""
        Q = np.asarray(to_numpy(directions), np.float64)
        if self.floor is None or Q.size == 0:
            return np.full(len(Q), self.zero_tol)
        return np.maximum(self.zero_tol, _floor_at(Q, FLOOR_FACTOR * self.floor))

    def noise_tols(self, directions):
        """(k,) the level of the noise on each column L q of a noisy update, relative to max|L q|:
        ‖N q‖/‖q‖ (N = ``noise_floor``), at least FLOOR_FACTOR times the rounding floor and at most
        ``zero_tol``.  Needs ``noise_floor``."""
        Q = np.asarray(to_numpy(directions), np.float64)
        rounding = _floor_at(Q, FLOOR_FACTOR * self.floor)
        return np.minimum(self.zero_tol, np.maximum(_floor_at(Q, self.noise_floor), rounding))

    def bias_residual(self):
        """‖dL/db − L Lᵀ dL/db‖ / ‖dL/db‖: dL/db = dL/dZ·1 lies in col(L) to rounding, unless two inputs
        that are multiples of one another share a column of dL/dW (:mod:`gradinv.collinear`) or dL/db
        is not the client's; then no sample's scale can be read from it."""
        xp = array_namespace(self.L)
        db = self.grad_b[:, None]
        return float(xp.linalg.vector_norm(db - self.L @ (self.L.T @ db)) / xp.linalg.vector_norm(db))

    def with_directions(self, directions, n_zeros, exact):
        """A copy carrying candidate directions (rows; any array, moved to L's namespace and device)."""
        xp = array_namespace(self.L)
        directions = xp.asarray(directions, dtype=self.L.dtype, device=device(self.L))
        return replace(self, directions=directions, n_zeros=np.asarray(n_zeros), exact=np.asarray(exact))


def _floor_at(Q, F):
    """(k,) ‖F q‖/‖q‖ for each row q of Q (k × b): the floor F (b × b) of each direction."""
    return np.linalg.norm(Q @ F.T, axis=1) / np.linalg.norm(Q, axis=1)


def scatter_rows(A, rows, n_rows):
    """The (n_rows × k) array whose ``rows`` are those of A and whose other rows are zero."""
    xp = array_namespace(A)
    position = np.full(n_rows, A.shape[0])
    position[rows] = np.arange(len(rows))
    padded = xp.concat([A, xp.zeros((1, A.shape[1]), dtype=A.dtype, device=device(A))], axis=0)
    return xp.take(padded, xp.asarray(position, device=device(A)), axis=0)


def direction_floor(R, perturbation):
    """F (b × b) with ‖F q‖/‖q‖ = ``perturbation``·s₁ ‖(R Rᵀ)^(−½) q‖/‖q‖: how far a perturbation E of
    dL/dW of spectral norm ‖E‖₂ = ``perturbation``·s₁ moves the column L q (relative to ‖L q‖ = ‖q‖)
    once dL/dW = L R is factored: it moves the left singular vector u_i by about ‖E‖/s_i, so the
    directions along the weakest singular values are the least exact."""
    U, s, _ = svd(np.asarray(to_numpy(R), np.float64))  # not eigh(R Rᵀ): s_b ≪ ε^½ s₁
    s = np.maximum(s, np.finfo(np.float64).tiny)
    return perturbation * s[0] * (U / s) @ U.T


def rounding_floor(R, source_eps, n_neurons):
    """The rounding floor f(q) (:func:`direction_floor`) of a gradient of precision ``source_eps``
    with ``n_neurons`` rows, factored in float64: ‖E‖ is the SVD's own backward error, ε₆₄ s₁, plus
    the gradient's rounding, entrywise of relative size ``source_eps``, whose spectral norm is about
    source_eps·s₁·√(1/m + 1/n): ‖E‖₂ = ε′ s₁ with ε′ = ε₆₄ + source_eps·√(1/m + 1/n)
    (:mod:`gradinv.search.tolerances`)."""
    return direction_floor(R, np.finfo(np.float64).eps + source_eps * np.sqrt(1.0 / n_neurons + 1.0 / R.shape[1]))


def noise_floor(R, noise):
    """The noise floor f_N(q) (:func:`direction_floor`) of a noisy update whose noise has spectral norm
    ``noise``·s₁: the update's s_(b+1)/s₁, its largest singular value beyond the signal's rank
    (white noise of std σ on an m × n gradient: the Marchenko–Pastur edge σ(√m + √n); on Opacus
    DP-SGD updates s_(b+1) was within 5 % of that edge).  Entry k of L q then carries noise of std
    about σ‖(R Rᵀ)^(−½) q‖, which the zero tolerance must clear (:data:`NOISE_FACTOR`)."""
    return direction_floor(R, noise)


def stack_gradient(grad_W, grad_b):
    """[dL/dW | dL/db] as one (m × (n+1)) array of grad_W's namespace; checks the shapes agree."""
    xp = array_namespace(grad_W, grad_b)
    if grad_W.ndim != 2:
        raise GradientError(f"grad_W must be 2-D (m × n), got shape {tuple(grad_W.shape)}")
    if grad_b.ndim != 1 or grad_b.shape[0] != grad_W.shape[0]:
        raise GradientError(
            f"grad_b must have shape ({grad_W.shape[0]},) to match grad_W {tuple(grad_W.shape)}, "
            f"got {tuple(grad_b.shape)}"
        )
    return xp.concat([grad_W, xp.astype(grad_b, grad_W.dtype)[:, None]], axis=1)


def gram_spectrum(grad_W):
    """Singular values of dL/dW (descending, min(m, n) of them) and its smaller Gram matrix,
    G Gᵀ (m × m, ``left``) or Gᵀ G (n × n).

    The Gram matrix costs m·n·min(m, n) flops and min(m, n)² memory, and its eigenvalues alone
    (no eigenvectors: no n² workspace) replace a full SVD's copy of the gradient, workspace and
    Vᵀ.  They resolve singular values down to about √(min(m, n)·ε)·s₁ (smaller ones are set
    to that floor), ample for the rank gap; :func:`leading_vectors` and :func:`leading_factors`
    then recover the leading factors to full precision.
    """
    xp = array_namespace(grad_W)
    m, n = grad_W.shape
    left = m <= n
    # dead rows (not in ``rows``) are zero: they add zero eigenvalues, raised to the floor below
    gram = grad_W @ grad_W.T if left else grad_W.T @ grad_W
    evals = to_numpy(xp.linalg.eigvalsh(gram))[::-1].astype(np.float64)
    floor = evals[0] * evals.size * eps(grad_W)  # eigvalsh's rounding level: smaller eigenvalues are noise
    return np.sqrt(np.maximum(evals, floor)), gram, left


def leading_vectors(gram, b, *, n_iter=4):
    """Orthonormal basis (k × b) of the b leading eigenvectors of the Gram matrix, by subspace
    iteration from a fixed Gaussian start: each step shrinks the other directions by
    (s_(b+1)/s_b)², about 1e-20 for an exact gradient of rank b."""
    xp = array_namespace(gram)
    Y = random_normal(np.random.default_rng(0), (gram.shape[0], b), gram)
    for _ in range(n_iter):
        Y = xp.linalg.qr(gram @ Y)[0]
    return Y


def leading_factors(grad_W, rows, top_vectors, left):
    """Rank-b factors of dL/dW on ``rows``: L (m' × b, orthonormal, spanning the leading left
    singular vectors), the leading singular values S (b,), and R = Lᵀ dL/dW (b × n).

    From the leading Gram eigenvectors of :func:`leading_vectors` (left: L₀; right: V₀, L₀ = qr(G V₀)),
    whose rounding error (angle ε·s₁²/s_b²) only enters through the tiny s_(b+1): the SVD of
    L₀ᵀ G (b × n) gives V_b and S to a direct SVD's accuracy, and L = qr(G V_b).
    """
    xp = array_namespace(grad_W)
    idx = xp.asarray(rows, dtype=xp.int64, device=device(grad_W))
    L0 = top_vectors if left else xp.linalg.qr(grad_W @ top_vectors)[0]  # m × b, ~0 on dead rows
    _, S, Vh = svd(L0.T @ grad_W)
    GV = xp.take(grad_W @ Vh.T, idx, axis=0)  # = U_b S_b on the kept rows, to a direct SVD's accuracy
    L = xp.linalg.qr(GV)[0]  # the same span, orthonormal to rounding
    return L, S, (L.T @ GV) @ Vh


def residual_norm(grad_W, rows, L, R, *, block=256):
    """‖G − L R‖_F on the kept rows, computed in blocks of rows (no copy of G): an upper bound on
    s_(b+1), so a gap the Gram floor hides is still confirmed or refuted."""
    xp = array_namespace(grad_W)
    total = 0.0
    for start in range(0, rows.size, block):
        idx = xp.asarray(rows[start:start + block], dtype=xp.int64, device=device(grad_W))
        diff = xp.take(grad_W, idx, axis=0) - L[start:start + block, :] @ R
        total += float(xp.sum(diff * diff))
    return total**0.5


def estimate_batch_size(singular_values, *, min_gap=1e2, signal_floor=ROUNDING_LEVEL * float(np.finfo(np.float64).eps)):
    """Batch size from the relative gaps s_i / s_(i+1) ≥ ``min_gap`` of the singular values of dL/dW.

    The last such gap whose upper side s_i exceeds ``signal_floor``·s₁ (above the gradient's
    rounding, by default float64's: every singular value there is signal) is the rank; without
    one, the largest gap.
    Not simply the largest: near-duplicate inputs leave one tiny but real singular value (measured
    2e-9·s₁ on a cross-entropy client at b=150), and the gap above it can exceed the rank gap.
    Raises :class:`GradientError` when no gap of at least ``min_gap`` exists (full rank or noisy
    gradient): then the batch size must be given.
    """
    s = np.asarray(singular_values, dtype=np.float64)
    if s.size == 0 or s[0] == 0:
        raise GradientError("the gradient dL/dW is zero: nothing to invert")
    floor = np.finfo(np.float64).tiny + s[0] * 1e-300
    ratios = s[:-1] / np.maximum(s[1:], floor)
    if ratios.size == 0 or ratios.max() < min_gap:
        raise NoRankGapError(
            f"no clear rank gap in the singular values of dL/dW (largest ratio "
            f"{ratios.max() if ratios.size else 1:.1e} < {min_gap:.0e}); the gradient is full rank or "
            "noisy: pass batch_size explicitly"
        )
    gaps = np.flatnonzero(ratios >= min_gap)
    signal = gaps[s[gaps] > signal_floor * s[0]]
    return int(signal[-1] if signal.size else gaps[np.argmax(ratios[gaps])]) + 1


def noise_edge_rank(singular_values, shape):
    """The signal's rank in a matrix of ``shape`` (m × n) with white noise: the count of singular
    values above Gavish and Donoho's optimal hard threshold for an unknown noise level,
    ω(β)·median(s) with β = min(m, n)/max(m, n) and ω(β) ≈ 0.56β³ − 0.95β² + 1.82β + 1.43 (IEEE
    Trans. Inf. Theory 60(8), 2014): the median singular value measures the noise, whose largest
    singular value sits near the Marchenko–Pastur edge.  DP-SGD adds such noise (i.i.d. Gaussian,
    std σC/B, on every entry); a sample whose column is below the threshold is lost in it."""
    s = np.asarray(singular_values, dtype=np.float64)
    beta = min(shape) / max(shape)
    omega = 0.56 * beta**3 - 0.95 * beta**2 + 1.82 * beta + 1.43
    return int(np.sum(s > omega * np.median(s[: min(shape)])))


def _no_signal(singular_values, k):
    """The message of :class:`NoSignalError` for these singular values (the first ``k`` are the matrix's)."""
    return (f"dL/dW is noise at this layer, or full rank: no rank gap, and none of its singular values rises above "
            f"the noise edge (the largest {singular_values[0]:.2e}, the median {np.median(singular_values[:k]):.2e}; "
            "Gavish and Donoho's threshold): nothing of a batch to recover here (a defence's noise drowns it)")


class GradientFactorization(GradientStep):
    """dL/dW = L R by thin SVD; batch size b from the rank gap unless given.

    Parameters
    ----------
    batch_size : int or None
        b; estimated from the singular values when None.
    drop_dead_rows : bool, default=True
        Drop neurons whose gradient row is zero (inactive for every sample).
    zero_tol : float or None
        Relative threshold below which an entry of a column counts as zero; None: from the
        gradient's precision (:data:`ZERO_TOL`).  Larger for noisy gradients (approximate mode).
    min_gap : float, default=100
        Smallest singular-value ratio s_b / s_(b+1) accepted as the rank gap when b is estimated.
    noisy_zero_tol : float or None
        The zero tolerance instead of the precision's when ``zero_tol`` is None and the factors show
        noise (:func:`noise_evidence`): the approximate mode's, for DP noise.  An update of exact
        rank b (FedAvg's pseudo-gradient) keeps exact zeros and the precision's tolerance.
    rounding : float or None
        The gradient's relative rounding error: ε of its dtype when None.  Larger for an update
        read off parameters, (θ₀ − θ₁)/η, whose entries carry θ's rounding
        (:func:`~gradinv.models.pseudo_gradients`).
    noise_rank : bool, default=False
        Where no gap of ``min_gap`` exists, read b from the noise edge (:func:`noise_edge_rank`)
        instead of raising :class:`NoRankGapError` (the approximate mode); a noisy gradient with
        nothing above that edge raises :class:`NoSignalError`.  ``batch_size_source_``
        says which was used: "given", "rank gap" or "noise edge".
    with_bias_span : bool, default=False
        Where dL/db leaves col(dL/dW) by more than the zero tolerance (an exact gradient), factor
        col([dL/dW | dL/db]) instead: L gains the unit direction of dL/db's part off col(dL/dW) and R a
        zero row.  Two inputs that are multiples of one another, x₂ = α x₁ (α ≠ 1: blank frames of
        two levels), put one column α g₁ + g₂ in dL/dW but g₁ + g₂ in dL/db, so col(dL/dW) lacks a
        dimension of col(dL/dZ) that the stacked gradient has (its augmented inputs (x_j, 1) are
        independent); every column is then a sparse vector of col(L) again, and Xᵀ = Q⁻¹ R holds.

    Attributes
    ----------
    batch_size_ : int, the rank b used (the given batch size less the dependent inputs)
    n_dependent_inputs_ : int, given batch size − numerical rank (duplicates); 0 when b is estimated
    singular_values_ : ndarray
    rows_ : ndarray of int, the neurons kept.
    zero_tol_ : float, the zero tolerance used.
    bias_axis_ : bool, whether ``with_bias_span`` added dL/db's direction to L (its last column).
    tail_ : float, ‖G − L R‖_F / s₁ at rank ``rank_`` (before dependent inputs are dropped): the
        noise evidence of :func:`noise_evidence`
    """

    def __init__(self, batch_size=None, drop_dead_rows=True, zero_tol=None, min_gap=1e2, noisy_zero_tol=None,
                 noise_rank=False, rounding=None, with_bias_span=False):
        self.batch_size = batch_size
        self.drop_dead_rows = drop_dead_rows
        self.zero_tol = zero_tol
        self.min_gap = min_gap
        self.noisy_zero_tol = noisy_zero_tol
        self.noise_rank = noise_rank
        self.rounding = rounding
        self.with_bias_span = with_bias_span

    @staticmethod
    def _factors(grad_W, rows, gram, left, b):
        n = grad_W.shape[1]
        if not 1 <= b <= min(rows.size, n):
            raise GradientError(
                f"batch size {b} is impossible for a layer with {rows.size} live neurons (of m={grad_W.shape[0]}) "
                f"and n={n} inputs: the method needs b <= min(m, n)"
            )
        return leading_factors(grad_W, rows, leading_vectors(gram, b), left)

    def fit_transform(self, grad, y=None):
        grad = check_matrix(grad, name="grad", min_features=2)
        xp = array_namespace(grad)
        source_dtype = grad.dtype
        source_eps = max(eps(grad), self.rounding or 0.0)
        zero_tol = self.zero_tol or ZERO_TOL["float64" if eps(grad) < 1e-10 else "float32"]
        grad = xp.astype(grad, xp.float64, copy=False)
        m, n = grad.shape[0], grad.shape[1] - 1
        row_norm = np.sqrt(to_numpy(xp.linalg.vecdot(grad[:, :n], grad[:, :n], axis=1)))  # no temporary copy
        if row_norm.max() == 0:
            raise GradientError("the gradient dL/dW is zero: nothing to invert")
        # dead neurons first: their exactly zero rows would add a spurious gap at the number of live rows
        keep = row_norm > 100 * eps(grad) * row_norm.max() if self.drop_dead_rows else np.ones(m, bool)
        rows = np.flatnonzero(keep)
        s, gram, left = gram_spectrum(grad[:, :n])
        b = self.batch_size
        source = "given" if b is not None else "rank gap"
        rounding = ROUNDING_LEVEL * source_eps  # singular values above rounding·s₁ are signal
        if b is None:
            try:
                b = estimate_batch_size(s, min_gap=self.min_gap, signal_floor=rounding)
            except GradientError:  # perhaps a gap below the Gram floor: decided below
                b = None
        residual = None
        if b is not None:
            L, S, R = self._factors(grad[:, :n], rows, gram, left, b)
            residual = residual_norm(grad[:, :n], rows, L, R)
        if self.batch_size is None and (b is None or residual > min(S[-1] / self.min_gap, rounding * S[0])):
            # the Gram spectrum cannot resolve this gap, or hides signal below its floor (near-duplicate
            # inputs): read the rank from the singular values themselves
            idx = xp.asarray(rows, dtype=xp.int64, device=device(grad))
            s = to_numpy(xp.linalg.svdvals(xp.take(grad[:, :n], idx, axis=0))).astype(np.float64)
            try:
                b = estimate_batch_size(s, min_gap=self.min_gap, signal_floor=rounding)
            except NoRankGapError:
                if not self.noise_rank:
                    raise
                b, source = noise_edge_rank(s, (rows.size, n)), "noise edge"
                if b < 1:
                    raise NoSignalError(_no_signal(s, min(rows.size, n))) from None
            L, S, R = self._factors(grad[:, :n], rows, gram, left, b)
            residual = residual_norm(grad[:, :n], rows, L, R)
        del gram
        noise = (float(s[b]) if b < s.size else residual) / float(S[0])  # s_(b+1)/s₁: the noise's ‖E‖₂
        self.tail_, self.rank_, self.source_eps_ = residual / float(S[0]), b, float(source_eps)
        noisy = noise_evidence(self) is not None
        if self.noise_rank and noisy and noise_edge_rank(s, (rows.size, n)) == 0:
            raise NoSignalError(_no_signal(s, min(rows.size, n)))
        noise_tolerance = self.zero_tol is None and self.noisy_zero_tol is not None and noisy
        if noise_tolerance:
            zero_tol = self.noisy_zero_tol
        s[:b] = to_numpy(S)
        rank = int(np.sum(s[:b] > max(m, n) * source_eps * s[0]))
        self.n_dependent_inputs_ = b - rank
        if rank < b:
            warnings.warn(
                f"dL/dW has numerical rank {rank} < batch size {b}: {b - rank} input(s) are duplicates or linear "
                f"combinations of others; recovering the {rank} independent ones", DependentInputsWarning,
                stacklevel=2)
            b = rank
        L, R = L[:, :b], R[:b, :]
        kept_residual = float(np.sqrt(residual**2 + np.sum(s[b:self.rank_] ** 2))) / s[0]  # dropped values too
        # a value dropped for a dependent input above rounding may be a near-duplicate pair merged into one
        # input that is neither sample (measured in the false-certificate fuzz, mlp2_raw, b = 8, m = 200: a
        # pair 1e-4 apart dropped 111 ε·s₁); one at rounding is an exact dependency, as when the batch size
        # is read from the rank gap, which never counts it (so a given batch size decides nothing here)
        exact_rank = kept_residual <= rounding * np.sqrt(b) and bool(np.all(s[b:self.rank_] <= rounding * s[0]))
        grad_b = xp.take(grad[:, n], xp.asarray(rows, dtype=xp.int64, device=device(grad)), axis=0)
        R_floor, self.bias_axis_ = R, False
        if self.with_bias_span and not noisy and b < min(rows.size, n):
            off = grad_b - L @ (L.T @ grad_b)  # dL/db beyond col(dL/dW): g₁ + g₂ of a pair x₂ = α x₁
            norm = xp.linalg.vector_norm(off)
            if float(norm / xp.linalg.vector_norm(grad_b)) > zero_tol:
                L = xp.concat([L, (off / norm)[:, None]], axis=1)
                R = xp.concat([R, xp.zeros((1, n), dtype=R.dtype, device=device(R))], axis=0)
                # the floor of [dL/dW | dL/db] = L [R | Lᵀ dL/db], whose last row is ‖off‖ eₙ₊₁
                R_floor = xp.concat([R, (L.T @ grad_b)[:, None]], axis=1)
                b, self.bias_axis_ = b + 1, True
        self.batch_size_, self.singular_values_, self.rows_, self.zero_tol_ = b, s, rows, zero_tol
        self.batch_size_source_ = source
        return FactorizedGradient(L=L, R=R, grad_b=grad_b, rows=rows, n_neurons=m,
                                  singular_values=s, zero_tol=zero_tol, source_dtype=source_dtype,
                                  exact_rank=exact_rank, n_dependent_inputs=self.n_dependent_inputs_, noisy=noisy,
                                  floor=rounding_floor(R_floor, float(source_eps), rows.size),
                                  noise_floor=NOISE_FACTOR * noise_floor(R, noise) if noise_tolerance else None)

