"""Whitening front end shared by every solver.

For data Y (n_samples × n_features, rows are samples) with thin SVD Y = U S Vᵀ,
the whitened data are  Ȳ = Y P = √p · U  with  P = V diag(√p / S),  p = n_samples.
Ȳ has orthogonal columns of norm √p, so the unknown dictionary becomes (nearly)
orthogonal and every solver can search over O(n) or the sphere.

No centring is done: removing a mean would destroy the exact zeros.
"""

from dataclasses import dataclass

from ._array_api import array_namespace, eps


class RankDeficientError(ValueError):
    """The data do not have full column rank, so no complete dictionary exists."""


@dataclass(frozen=True)
class Whitening:
    """Ȳ = Y @ P and Y = Ȳ @ P_inv."""

    Y_white: object
    P: object
    P_inv: object
    singular_values: object


def whiten(Y, *, rcond=None):
    """Whiten ``Y`` by its thin SVD; raise :class:`RankDeficientError` if rank(Y) < n_features.

    ``rcond`` is the relative singular-value threshold for the rank decision
    (default: ``max(Y.shape) * eps``, as ``numpy.linalg.matrix_rank``).
    """
    xp = array_namespace(Y)
    n_samples, n_features = Y.shape
    U, S, Vh = xp.linalg.svd(Y, full_matrices=False)
    if rcond is None:
        rcond = max(n_samples, n_features) * eps(Y)
    s_max = float(S[0])
    rank = int(xp.sum(xp.astype(S > rcond * s_max, xp.int64)))
    if s_max == 0.0 or rank < n_features:
        raise RankDeficientError(
            f"Y is rank deficient: numerical rank {rank} < n_features={n_features} "
            f"(relative threshold {rcond:.1e}); a complete dictionary needs full column rank."
        )
    scale = float(n_samples) ** 0.5
    P = Vh.T / (S / scale)[None, :]
    P_inv = (S / scale)[:, None] * Vh
    return Whitening(Y_white=U * scale, P=P, P_inv=P_inv, singular_values=S)
