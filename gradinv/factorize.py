"""Step 1: factor the layer gradient, dL/dW = L R (rank b = batch size).

The pipeline's input is the gradient of the affine map with the bias folded in as a last
input column, ``grad = [dL/dW | dL/db]`` (m × (n+1)); :func:`stack_gradient` builds it.
With the thin SVD dL/dW = U S Vᵀ, L = U[:, :b] (orthonormal columns), R = S_b V_bᵀ, and the
unknown dL/dZ = L Q for an invertible b × b matrix Q (the disaggregation matrix).
Rows of L for neurons that are inactive for the whole batch are exactly zero, carry no
information and are dropped.

Float32 gradients are factored in float64: the rounding error of the float32 gradient then
limits the exact zeros of L q to about 1e-7 of the column's scale (measured, ``docs/results.md``)
instead of float32's 1e-3 after a float32 SVD, and the zero tolerance is set from the gradient's
precision (:data:`ZERO_TOL`).
"""

ZERO_TOL = {"float64": 1e-9, "float32": 1e-5}

from dataclasses import dataclass, replace

import numpy as np

from sudl._array_api import array_namespace, device, eps, to_numpy
from sudl._validation import check_matrix

from ._step import GradientStep


class GradientError(ValueError):
    """The gradient violates a condition the attack needs (shape, rank, values); the message says which."""


@dataclass(frozen=True)
class FactorizedGradient:
    """What flows between the pipeline's steps.

    L (m' × b), R (b × n), grad_b (m',) are restricted to the ``rows`` kept (neurons active for
    some sample).  Later steps fill ``directions`` (k × b, rows q with L q a candidate column
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

    @property
    def batch_size(self):
        return self.L.shape[1]

    def with_directions(self, directions, n_zeros, exact):
        """A copy carrying candidate directions (rows; any array, moved to L's namespace and device)."""
        xp = array_namespace(self.L)
        directions = xp.asarray(directions, dtype=self.L.dtype, device=device(self.L))
        return replace(self, directions=directions, n_zeros=np.asarray(n_zeros), exact=np.asarray(exact))


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


def estimate_batch_size(singular_values, *, min_gap=1e2):
    """Batch size from the largest relative gap s_i / s_(i+1) of the singular values of dL/dW.

    Raises :class:`GradientError` when no gap of at least ``min_gap`` exists (full rank or noisy
    gradient): then the batch size must be given.
    """
    s = np.asarray(singular_values, dtype=np.float64)
    if s.size == 0 or s[0] == 0:
        raise GradientError("the gradient dL/dW is zero: nothing to invert")
    floor = np.finfo(np.float64).tiny + s[0] * 1e-300
    ratios = s[:-1] / np.maximum(s[1:], floor)
    if ratios.size == 0 or ratios.max() < min_gap:
        raise GradientError(
            f"no clear rank gap in the singular values of dL/dW (largest ratio "
            f"{ratios.max() if ratios.size else 1:.1e} < {min_gap:.0e}); the gradient is full rank or "
            "noisy: pass batch_size explicitly"
        )
    return int(np.argmax(ratios)) + 1


class GradientFactorization(GradientStep):
    """dL/dW = L R by thin SVD; batch size b from the rank gap unless given.

    Parameters
    ----------
    batch_size : int or None
        b; estimated from the singular values when None.
    drop_dead_rows : bool, default=True
        Drop neurons whose gradient row is zero (inactive for every sample).

    Attributes
    ----------
    batch_size_ : int
    singular_values_ : ndarray
    rows_ : ndarray of int, the neurons kept.
    """

    def __init__(self, batch_size=None, drop_dead_rows=True):
        self.batch_size = batch_size
        self.drop_dead_rows = drop_dead_rows

    def fit_transform(self, grad, y=None):
        grad = check_matrix(grad, name="grad", min_features=2)
        xp = array_namespace(grad)
        source_dtype = grad.dtype
        zero_tol = ZERO_TOL["float64" if eps(grad) < 1e-10 else "float32"]
        grad = xp.astype(grad, xp.float64)
        m, n = grad.shape[0], grad.shape[1] - 1
        row_norm = to_numpy(xp.linalg.vector_norm(grad[:, :n], axis=1))
        if row_norm.max() == 0:
            raise GradientError("the gradient dL/dW is zero: nothing to invert")
        # dead neurons first: their exactly zero rows would add a spurious gap at the number of live rows
        keep = row_norm > 100 * eps(grad) * row_norm.max() if self.drop_dead_rows else np.ones(m, bool)
        rows = np.flatnonzero(keep)
        idx = xp.asarray(rows, dtype=xp.int64, device=device(grad))
        live = xp.take(grad, idx, axis=0)
        grad_W, grad_b = live[:, :n], live[:, n]
        U, S, Vh = xp.linalg.svd(grad_W, full_matrices=False)
        s = to_numpy(S).astype(np.float64)
        b = estimate_batch_size(s) if self.batch_size is None else int(self.batch_size)
        if not 1 <= b <= min(rows.size, n):
            raise GradientError(
                f"batch size {b} is impossible for a layer with {rows.size} live neurons (of m={m}) and n={n} "
                "inputs: the method needs b <= min(m, n)"
            )
        if s[b - 1] <= max(m, n) * eps(grad) * s[0]:
            raise GradientError(
                f"dL/dW has numerical rank < batch size {b} (s_b/s_1 = {s[b - 1] / s[0]:.1e}): the batch has "
                "duplicate or linearly dependent inputs, or b is too large"
            )
        L = U[:, :b]
        R = S[:b, None] * Vh[:b, :]
        self.batch_size_, self.singular_values_, self.rows_ = b, s, rows
        return FactorizedGradient(L=L, R=R, grad_b=grad_b, rows=rows, n_neurons=m,
                                  singular_values=s, zero_tol=zero_tol, source_dtype=source_dtype)

