"""Step 4: fix each column's scale and sign with dL/db, then solve for the batch, Xᵀ = Q⁻¹ R.

With exact directions q̂_j (columns of Q̂, dL/dZ = L Q̂ diag(s)) the bias gradient
dL/db = dL/dZ · 1 = L Q̂ s gives the scales:  s = Q̂⁻¹ Lᵀ dL/db  (L has orthonormal columns).
Then Q = Q̂ diag(s) and X = Q⁻¹ R holds the inputs, one per row (Xᵀ in the paper's notation).
"""

import numpy as np

from sudl._array_api import array_namespace, device, to_numpy

from ._step import GradientStep
from .certificate import proven_blocks, relu_consistent, zero_set_kernels
from .factorize import GradientError


def reconstruct_inputs(fg):
    """Inputs X (b × n, one per row), scales s (b,) and dL/dZ on the kept rows (m' × b) from a
    :class:`~gradinv.factorize.FactorizedGradient` whose ``directions`` hold b rows q̂_j."""
    xp = array_namespace(fg.L)
    Q_hat = fg.directions.T
    if Q_hat.shape != (fg.batch_size, fg.batch_size):
        raise GradientError(f"need {fg.batch_size} directions to reconstruct the batch, got {Q_hat.shape[1]}")
    s = xp.linalg.solve(Q_hat, fg.L.T @ fg.grad_b[:, None])[:, 0]
    Q = Q_hat * s[None, :]
    X = xp.linalg.solve(Q, fg.R)
    return X, s, fg.L @ Q


def scatter_rows(A, rows, n_rows):
    """The (n_rows × k) array whose ``rows`` are those of A and whose other rows are zero."""
    xp = array_namespace(A)
    position = np.full(n_rows, A.shape[0])
    position[rows] = np.arange(len(rows))
    padded = xp.concat([A, xp.zeros((1, A.shape[1]), dtype=A.dtype, device=device(A))], axis=0)
    return xp.take(padded, xp.asarray(position, device=device(A)), axis=0)


class InputReconstruction(GradientStep):
    """Last step of the pipeline: fit_transform(factorized gradient) → X (b × n).

    Attributes
    ----------
    inputs_ : array (b, n)
    scales_ : array (b,), the scale and sign of each column from dL/db
    grad_Z_ : array (m, b), the recovered dL/dZ on all neurons (zero rows for dead neurons)
    sparse_ : ndarray of bool (b,), the gradient-only test: an exact column of dL/dZ with a robust
        zero set and a non-degenerate scale.  Necessary, not sufficient: on cross-entropy clients
        exactly sparse combinations of columns pass it.
    exact_ : ndarray of bool (b,), the certificate.  A column is *proved* when it passes ``sparse_``
        and its input's ReLU pattern reproduces the column's zeros under the layer's ``weight`` and
        ``bias`` (:mod:`gradinv.certificate`).  Since x_j = dL/dWᵀ y / (yᵀ dL/db) for any y
        orthogonal to the other columns, sample j is exact iff every column i ≠ j is proved
        (so one missing column spoils every sample but its own), or lies in a proved block of
        near-duplicate samples (:func:`~gradinv.certificate.proven_blocks`) that j is not part of.
        All False without the weights.

    Parameters
    ----------
    weight, bias : arrays (m × n) and (m,) or None
        The attacked layer's parameters (known to the server); enable the ReLU certificate.
    certify : bool, default=True
        False in the approximate mode: ``exact_`` is then all False.
    """

    def __init__(self, weight=None, bias=None, certify=True):
        self.weight = weight
        self.bias = bias
        self.certify = certify

    def fit_transform(self, fg, y=None):
        X, s, G = reconstruct_inputs(fg)
        xp = array_namespace(X)
        X = xp.astype(X, fg.source_dtype) if fg.source_dtype is not None else X
        scale = to_numpy(xp.abs(s))
        self.inputs_ = X
        self.scales_ = s
        self.grad_Z_ = scatter_rows(G, fg.rows, fg.n_neurons)
        zero_tol = fg.zero_tol
        sparse = np.asarray(fg.exact, dtype=bool) & (scale > 1e-12 * scale.max())
        kernels = zero_set_kernels(fg.L, fg.directions, zero_tol)
        self.sparse_ = sparse & np.array([K is not None and K.shape[1] == 1 for K in kernels])
        if self.weight is None or self.bias is None or not self.certify:
            self.exact_ = np.zeros_like(self.sparse_)
            return X
        column_ok = self.sparse_ & relu_consistent(self.grad_Z_, X, self.weight, self.bias, zero_tol,
                                                   rtol=1e-7 if zero_tol < 1e-7 else 1e-3)
        in_block = sparse & proven_blocks(kernels, fg.directions)
        # x_j = dWᵀy / (yᵀ db) for any y orthogonal to the columns i ≠ j: x_j is exact iff they all are
        # proved, or lie in a proved block (right span) that x_j is not part of.
        bad = ~(column_ok | in_block)
        self.exact_ = (bad.sum() - bad == 0) & ~in_block
        return X
