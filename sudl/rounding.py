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

from ._array_api import array_namespace, device, svd, to_numpy

__all__ = ["RoundingResult", "count_zeros", "kernel_direction", "min_exact_zeros", "round_directions",
           "zeros_determine", "zeros_at_precision", "block_kernel", "split_block", "MAX_BLOCK", "MAX_LEVERAGE"]


@dataclass
class RoundingResult:
    """Rounded directions (rows), their exact-zero counts and certificates; ``block_atoms`` (rows, NumPy) and
    ``block_n_zeros`` are the other exact atoms of the blocks that were split and their zero counts (a
    direction takes one atom of its block, the one nearest it; the others come here, so that a search
    whose descents keep settling in one block gets all of its atoms)."""

    directions: object
    n_zeros: np.ndarray
    exact: np.ndarray
    block_atoms: np.ndarray
    block_n_zeros: np.ndarray


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
    out, unit_host = [], None
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
            unit_host = to_numpy(unit) if unit_host is None else unit_host
            rows = unit_host[to_numpy(is_zero[:, lo + int(i)])]
            U, sv, _ = svd(rows)
            leverage[i] = float(np.max(np.sum(U[:, : n - 1] ** 2, axis=1)))
        out.append(spans & (leverage < max_leverage))
    return np.concatenate(out) if out else np.zeros(0, dtype=bool)


ZERO_RESIDUAL_EPS = 1e4
"""An exact zero of a direction w is a sample ȳ at |ȳ·w| ≤ this many machine epsilons of ‖ȳ‖‖w‖, times the
condition number of the data before whitening (:func:`zeros_at_precision`).  Measured (random-upstream
client, b = 100, m = 1000, seed 0, log-cosh on unit samples; *probe*): the certified true columns' zeros reach 3e-13 (1.3e3 ε); a combination of about 40 columns
that vanishes to 1e-11 on 390 samples, and so passed the relative ``zero_tol`` = 1e-9 and
:func:`zeros_determine`, reaches 2.9e-10 (1.3e6 ε)."""


def zeros_at_precision(Y_white, W, zero_tol, condition=1.0):
    """Whether every exact zero of each row w of ``W`` (|ȳ·w| ≤ ``zero_tol``·max, over the samples not
    themselves zero) is a zero to working precision: |ȳ·w| ≤ :data:`ZERO_RESIDUAL_EPS`·ε·κ·‖ȳ‖‖w‖,
    κ = ``condition``, that of the data Y = Ȳ P⁻¹ (its rounding error reaches Ȳ amplified by up to κ).

    The relative ``zero_tol`` leaves room for rounding error in the data; a direction whose code is merely
    small (1e-11 of its largest entry) on many samples, and no column, fits inside that room.  A kernel
    direction of exactly dependent samples does not.
    """
    xp = array_namespace(Y_white)
    A = xp.abs(Y_white @ W.T)
    norms = xp.linalg.vector_norm(Y_white, axis=1)
    is_zero = (A <= zero_tol * xp.max(A, axis=0)[None, :]) & (norms > zero_tol * xp.max(norms))[:, None]
    scale = norms[:, None] * xp.linalg.vector_norm(W, axis=1)[None, :]
    residual = xp.where(is_zero, A / xp.where(is_zero, scale, xp.ones_like(scale)), xp.zeros_like(A))
    floor = ZERO_RESIDUAL_EPS * float(xp.finfo(Y_white.dtype).eps) * float(condition)
    return to_numpy(xp.max(residual, axis=0) <= min(floor, zero_tol))


MAX_BLOCK = 3
"""Largest block of atoms sharing one zero set that is split or proved as a span (arbitrary, not
measured: the split tries (d − 1)-subsets of samples and the proof's cost grows with the block)."""
BLOCK_SUBSETS = 512
"""Pivot sets ((d − 2)-subsets of a block's own samples, :func:`split_block`) tried at most: every one when there are
no more (d = 3 with ≤ 512 own samples; d = 2 has one, the empty set); arbitrary, not measured."""


BLOCK_CHECK_EVERY = 32
"""Pivot sets between two checks of whether the d atoms are found, when the split stops (arbitrary: a check tests
the candidates that came since the last one, :class:`_BlockAtoms`)."""


def block_kernel(Y_white, w, zero_tol, active=None, max_dim=MAX_BLOCK):
    """An orthonormal basis K (n × d) of the directions vanishing on the samples where Ȳ w is at zero
    level (a gap of the sorted |Ȳ w|, :func:`_zero_levels`), when 2 ≤ d ≤ ``max_dim``: a *block*,
    the span of d atoms whose codes share those zeros, as the gradients of near-duplicate images
    do; else None.  The direction need not be exact: descents settle inside a block's span on its
    shared zeros, at a combination of its atoms; a sample that alone carries a dimension of the
    zeros' span (leverage > :data:`MAX_LEVERAGE`, a sample below the gap by chance) is left out."""
    n = Y_white.shape[1]
    for rows in _zero_levels(Y_white, w, active):
        rows = np.asarray(to_numpy(rows), dtype=np.float64)
        rows = rows[np.linalg.norm(rows, axis=1) > 0]
        if rows.shape[0] < n - max_dim:
            continue
        rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        rank = n
        while rows.shape[0] >= max(n - max_dim, 1):  # a sample that alone carries a dimension is no shared zero: leave it out
            U, sv, Vh = svd(rows, full_matrices=True)
            rank = int(np.sum(sv > zero_tol**0.5 * sv[0]))
            alone = np.sum(U[:, :rank] ** 2, axis=1) > MAX_LEVERAGE
            if not alone.any() or n - rank > max_dim:
                break
            rows = rows[~alone]
        if 2 <= n - rank <= max_dim and rows.shape[0] >= max(n - max_dim, 1):
            return Vh[rank:].T
    return None


def split_block(Y_white, K, zero_tol, *, active=None, rng=None, n_subsets=BLOCK_SUBSETS):
    """The atoms inside the block K (n × d, :func:`block_kernel`): unit rows w = K c whose zero
    samples determine them (:func:`zeros_determine`), each once, most zeros first.

    Every direction of K vanishes on the block's shared zeros; an atom vanishes besides on zeros of
    its own, samples k where (Ȳ K)_k c = 0, at least d − 1 of them.  So c is the kernel of d − 1
    samples outside the shared zeros, all of them an atom's own zeros: d − 2 *pivot* samples
    (none when d = 2) fix a plane of K, and every other sample in turn gives the line of that plane
    it vanishes on.  A pivot set among one atom's own zeros thus yields that atom from each of its
    other own zeros, whatever their number; the pivot sets are every (d − 2)-subset of the block's
    own samples when there are at most ``n_subsets``, else ``n_subsets`` drawn at random.
    A candidate is kept only with more zeros than the shared ones and the d − 1 it was taken on.
    """
    from itertools import combinations
    from math import comb

    from sklearn.utils import check_random_state

    rng = check_random_state(rng)
    Yh = np.asarray(to_numpy(Y_white), dtype=np.float64)
    n, d = K.shape
    C = Yh @ K
    norms = np.linalg.norm(C, axis=1)
    own = norms > zero_tol * norms.max()
    live = np.ones(len(Yh), bool) if active is None else np.asarray(to_numpy(active), bool)
    own &= live
    idx = np.flatnonzero(own)
    if idx.size < d - 1:
        return np.zeros((0, n)), np.zeros(0, dtype=int)
    shared = int(np.sum(live & ~own))  # every direction of K vanishes there
    if d == 1:  # one direction: the atom, when its zeros determine it
        candidates, least = [np.ones((1, 1))], min_exact_zeros(n)
    else:  # a kernel of d − 1 samples vanishes on d − 1 samples more than the shared ones
        if comb(idx.size, d - 2) <= n_subsets:
            pivots = [list(P) for P in combinations(idx, d - 2)]
        else:
            pivots = [rng.choice(idx, d - 2, replace=False) for _ in range(n_subsets)]
        candidates, least = (_lines_on_samples(C[idx], C[P]) for P in pivots), max(shared + d, min_exact_zeros(n))
    atoms = _BlockAtoms(Y_white, d, zero_tol, active)
    unit = C[idx] / norms[idx, None]
    for i, c in enumerate(candidates, 1):
        codes = np.abs(C[idx] @ c.T)  # the other samples are zeros of every candidate
        zero = codes <= zero_tol * codes.max(axis=0, initial=0.0)
        n_zeros = shared + zero.sum(axis=0)
        keep = np.flatnonzero(n_zeros >= least)
        keep = keep[_own_zeros_determine(unit, zero[:, keep], c[keep], zero_tol)]
        atoms.add(c[keep] @ K.T, n_zeros[keep])
        if i % BLOCK_CHECK_EVERY == 0:  # stop once the d atoms are found
            basis = atoms.basis()
            if len(basis[0]) == d:
                return basis
    return atoms.basis()


def _own_zeros_determine(unit, zero, c, zero_tol):
    """Whether each candidate c (rows, in K's d coordinates) is fixed inside the block by its own
    zero samples, robustly: the unit rows ``unit`` of Ȳ K where it vanishes (``zero``, samples ×
    candidates) span c^⊥ and still do with any one left out (leverage below :data:`MAX_LEVERAGE`).
    The block's shared zeros span K^⊥, so this is :func:`zeros_determine` within K, in d dimensions:
    a cheap first test, which a combination of two atoms vanishing on one sample besides their
    common zeros fails at that sample (there are as many such combinations as samples)."""
    d = c.shape[1]
    if d == 1 or not len(c):
        return np.ones(len(c), dtype=bool)
    c = c / np.linalg.norm(c, axis=1, keepdims=True)
    gram = np.einsum("rj,rd,re->jde", zero.astype(np.float64), unit, unit)
    lam = np.linalg.eigvalsh(gram)  # ascending; λ_0 ≈ 0 is c's own direction
    ok = lam[:, 1] > zero_tol * lam[:, -1]
    j = np.flatnonzero(ok)
    inv = np.linalg.inv(gram[j] + c[j, :, None] * c[j, None, :] * lam[j, -1, None, None])
    leverage = np.einsum("rd,jde,re->rj", unit, inv, unit) * zero[:, j]
    ok[j] = leverage.max(axis=0, initial=0.0) < MAX_LEVERAGE
    return ok


class _BlockAtoms:
    """Up to d linearly independent candidate rows (n-dimensional) whose zeros determine them
    (:func:`zeros_determine`), most zeros first: a greedy basis of the block, grown as candidates come.

    A combination of two atoms that vanishes on one sample besides their common zeros is a
    candidate too, with more zeros than a third atom whose own zeros are few, and the leave-one-out
    test rejects it; so the test comes before the cut to d (measured on mlp3_grey_blanks, b = 100,
    seed 2: atoms with 14, 13 and 6 zeros of their own, the first two sharing 11; taking the d
    most zeros first and testing after kept two).  Each distinct direction is tested once, when it
    first comes (every pivot set yields the same atom again, and a block that is no block yields
    thousands of failing lines: testing them all again at every check took up to 57 s a call, and a
    SPEAR++ search bounded at 400 s ran over 14 minutes, mlp3_photos, b = 65, seed 1; *probe*); rows within :data:`SAME_ATOM` of the basis (the same
    atom from another pivot, or a combination of kept ones) add nothing to it."""

    def __init__(self, Y_white, d, zero_tol, active):
        self.Y_white, self.d, self.zero_tol, self.active = Y_white, d, zero_tol, active
        self.tested = set()
        self.W, self.n_zeros = np.zeros((0, Y_white.shape[1])), np.zeros(0, dtype=int)
        self.pending_W, self.pending_zeros = [], []

    def add(self, W, n_zeros):
        """Candidates ``W`` (rows) with their zero counts; tested at the next :meth:`basis`."""
        self.pending_W.append(np.asarray(W, dtype=np.float64))
        self.pending_zeros.append(np.asarray(n_zeros, dtype=int))

    def _test_pending(self):
        if not self.pending_W:
            return
        xp = array_namespace(self.Y_white)
        W, n_zeros = np.concatenate(self.pending_W), np.concatenate(self.pending_zeros)
        self.pending_W, self.pending_zeros = [], []
        W = W / np.maximum(np.linalg.norm(W, axis=1, keepdims=True), np.finfo(np.float64).tiny)
        largest = W[np.arange(len(W)), np.argmax(np.abs(W), axis=1)]
        W = W * np.where(largest < 0, -1.0, 1.0)[:, None]  # ±w is one direction
        new = []  # the same direction from several pivots is tested once
        for i in np.argsort(-n_zeros, kind="stable"):
            key = np.round(W[i] / SAME_ATOM).tobytes()
            if key not in self.tested:
                self.tested.add(key)
                new.append(i)
        for lo in range(0, len(new), ATOM_TEST_BATCH):
            batch = np.asarray(new[lo:lo + ATOM_TEST_BATCH])
            ok = np.asarray(zeros_determine(self.Y_white, xp.asarray(W[batch], dtype=self.Y_white.dtype,
                                                                     device=device(self.Y_white)),
                                            self.zero_tol, self.active), bool)
            self.W = np.vstack([self.W, W[batch[ok]]])
            self.n_zeros = np.concatenate([self.n_zeros, n_zeros[batch[ok]]])

    def basis(self):
        """(atoms (k × n, k ≤ d), their zero counts): the greedy basis of the determined candidates."""
        self._test_pending()
        kept, basis = [], np.zeros((0, self.W.shape[1]))
        for i in np.argsort(-self.n_zeros, kind="stable"):
            r = self.W[i] - (self.W[i] @ basis.T) @ basis
            if np.linalg.norm(r) > SAME_ATOM:
                kept.append(int(i))
                basis = np.vstack([basis, r / np.linalg.norm(r)])
            if len(kept) == self.d:
                break
        return self.W[kept].reshape(len(kept), self.W.shape[1]), self.n_zeros[kept].astype(int)


SAME_ATOM = 4.5e-5
"""Distance of a unit row from the span of the atoms kept below which it adds no atom: √(2·1e-9), the
sine of two unit rows with |cos| = 1 − 1e-9 (the same atom from two pivots agrees to ~1e-12)."""
ATOM_TEST_BATCH = 32
"""Candidates per call of :func:`zeros_determine` in :class:`_BlockAtoms` (arbitrary: a few calls
in all, each small at p = 1000)."""


def _lines_on_samples(C, P):
    """Rows c (unit-free, in K's d coordinates) vanishing on the pivot samples ``P`` (d − 2 rows of
    Ȳ K) and on each sample of ``C`` in turn: the line of the plane {c : P c = 0} on that sample."""
    d = C.shape[1]
    plane = svd(P, full_matrices=True)[2][d - 2:].T if d > 2 else np.eye(2)  # d × 2
    B = C @ plane
    c = (B[:, ::-1] * np.array([-1.0, 1.0])) @ plane.T
    return c[np.linalg.norm(c, axis=1) > 0]


def kernel_direction(A):
    """Unit vector(s) q minimising ‖A q‖ for A (..., r, n): the kernel direction when r = n − 1.

    r = n − 1 uses a complete QR of Aᵀ (its last column spans the kernel; 3× cheaper than
    an SVD); otherwise the least right singular vector.
    """
    xp = array_namespace(A)
    if A.shape[-2] == A.shape[-1] - 1:
        Qf, _ = xp.linalg.qr(xp.matrix_transpose(A), mode="complete")
        return Qf[..., :, -1]
    _, _, Vh = svd(A, full_matrices=A.shape[-2] < A.shape[-1])
    return Vh[..., -1, :]


def _chunks(k, p, n, budget=2**24):
    step = max(1, budget // max(1, p * n))
    return [(i, min(k, i + step)) for i in range(0, k, step)]


def _irls(Y_white, W, n_iter, *, zero_tol, active, min_zeros):
    """Batched IRLS for min ‖Ȳ w‖₁ on the sphere, warm-started at the rows of W.

    Each iteration: w ← smallest eigenvector of M = Bᵀ B, B = diag(√weights) Ȳ.  A direction
    leaves the loop once its code y = Ȳ w is exact (≥ ``min_zeros`` exact zeros that determine
    it, :func:`zeros_determine`) and its zero count stopped growing: its support is settled and
    the kernel polish makes it exact
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
            if settled.any():  # a block's shared zeros settle first: its atoms' own are still to come
                rows = np.flatnonzero(settled)
                settled[rows] = zeros_determine(Y_white, xp.take(w, xp.asarray(rows, device=device(w)), axis=0),
                                                zero_tol, active)
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


POLISH_CUTS = 4
"""Zero levels tried by the kernel polish and the block test, largest gap first (a block's shared zeros are sharper than
its atoms' own: their gap comes first and leaves a kernel of dimension ≥ 2)."""


def _zero_levels(Y_white, w, active):
    """The samples (rows of Ȳ) below each of the :data:`POLISH_CUTS` largest relative gaps of the
    sorted |Ȳ w| (at least n − 1 samples), largest gap first: the candidate zero sets of w."""
    xp = array_namespace(Y_white)
    n = Y_white.shape[1]
    y = to_numpy(xp.abs(Y_white @ w))
    idx = np.flatnonzero(to_numpy(active)) if active is not None else np.arange(y.size)
    a = np.sort(y[idx]) / max(float(y.max()), np.finfo(float).tiny)
    if n == 1 or a.size <= n - 1:
        return
    gaps = a[n - 1 :] / np.maximum(a[n - 2 : -1], np.finfo(float).tiny)
    order = idx[np.argsort(y[idx], kind="stable")]
    for cut in np.argsort(-gaps, kind="stable")[:POLISH_CUTS]:
        yield xp.take(Y_white, xp.asarray(order[: n - 1 + int(cut)], device=device(Y_white)), axis=0)


def _polish(Y_white, w, zero_tol, active):
    """Kernel direction of Ȳ on the samples where Ȳ w is at zero level.

    The zero level is a large relative gap in the sorted |Ȳ w| (:func:`_zero_levels`): the largest
    whose samples below it leave a one-dimensional kernel (a cut at a block's shared zeros leaves a
    larger one), so a direction that is right to a few digits becomes exact.  Returns the new
    direction if it has at least as many exact zeros as ``w`` (it is the least singular vector of
    those rows, so its zeros are the sharper), else ``w``.
    """
    xp = array_namespace(Y_white)
    n = Y_white.shape[1]
    if n == 1:  # in one dimension every direction is ±1 already
        return w
    for rows in _zero_levels(Y_white, w, active):
        _, sv, Vh = svd(rows, full_matrices=rows.shape[0] < n)
        if n - int(np.sum(to_numpy(sv) > zero_tol**0.5 * float(sv[0]))) != 1:  # not one direction: a block's zeros
            continue
        q = Vh[-1, :]
        q = q * xp.sign(xp.sum(q * w))
        before, after = (to_numpy(count_zeros(Y_white @ v[:, None], zero_tol, active))[0] for v in (w, q))
        return q if after >= before else w
    return w


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
    split_blocks=True,
):
    """Round approximate directions ``W`` (rows) on whitened data Ȳ to exact ones.

    Returns a :class:`RoundingResult`; ``exact[i]`` certifies that Ȳ w_i has at least
    ``min_zeros`` (default n_features + 1) exact zeros among the distinct non-zero samples
    (zero samples and repeats of a sample are ignored in every count: they would make any
    direction look sparse) and that they determine w_i (:func:`zeros_determine`).  With
    ``split_blocks`` a direction left vanishing on a block's shared zeros (:func:`block_kernel`)
    becomes the atom of the block nearest the given one (:func:`split_block`).  A direction that ends uncertified is returned as it was given:
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
        return RoundingResult(directions=W, n_zeros=np.zeros(0, dtype=int), exact=np.zeros(0, dtype=bool),
                              block_atoms=np.zeros((0, n)), block_n_zeros=np.zeros(0, dtype=int))
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
    block_atoms, block_n_zeros = np.zeros((0, n)), np.zeros(0, dtype=int)
    if split_blocks and not exact.all():
        W, n_zeros, exact, block_atoms, block_n_zeros = _split_blocks(Y_white, W, given, n_zeros, exact, zero_tol, active, rng)
    if not exact.all():  # keep the given direction where rounding found nothing exact
        keep = xp.asarray(exact, device=device(W))[:, None]
        W = xp.where(keep, W, given)
        n_zeros = np.where(exact, n_zeros, to_numpy(count_zeros(Y_white @ given.T, zero_tol, active)))
    return RoundingResult(directions=W, n_zeros=n_zeros, exact=exact, block_atoms=block_atoms,
                          block_n_zeros=block_n_zeros)


def _split_blocks(Y_white, W, given, n_zeros, exact, zero_tol, active, rng):
    """Stage 4 of :func:`round_directions`: each direction not exact whose zeros, or the given direction's,
    leave a block gets the block's atom nearest its given direction; the block's other atoms are returned beside.

    The given direction is tried too: the IRLS moves a combination of two atoms of one block, which vanishes
    exactly on their ~460 shared zeros, to a direction of lower ℓ1 with 55 (the columns of two same-label
    crops, SPEAR++ on mlp3_photos, b = 65, m = 1000, seed 1; *probe*)."""
    xp = array_namespace(Y_white)
    rows, others, other_zeros = [W[i, :] for i in range(W.shape[0])], [], []
    for i in np.flatnonzero(~exact):
        K = block_kernel(Y_white, W[i, :], zero_tol, active)
        if K is None:  # the given direction in a block's span, which the IRLS left for a lower ℓ1
            K = block_kernel(Y_white, given[i, :], zero_tol, active)
        if K is None:
            continue
        atoms, z = split_block(Y_white, K, zero_tol, active=active, rng=rng)
        if len(atoms):
            best = int(np.argmax(np.abs(atoms @ np.asarray(to_numpy(given[i, :]), dtype=np.float64))))
            rows[i] = xp.asarray(atoms[best], dtype=W.dtype, device=device(W))
            n_zeros[i], exact[i] = z[best], True
            others.extend(np.delete(atoms, best, axis=0))
            other_zeros.extend(np.delete(z, best))
    return (xp.stack(rows), n_zeros, exact, np.asarray(others).reshape(-1, W.shape[1]),
            np.asarray(other_zeros, dtype=int))


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
