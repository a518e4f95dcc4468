"""How exact a column must be: the thresholds of the exact tests, per direction q.

From the zero tolerance t (the factorisation's: 1e-9 for a float64 gradient), a kernel is exact
at σ_min ≤ t/10·σ_max, unique when the next singular value is ≥ 10 t·σ_max, the next layer fits
a column's active rows to 10 t, and g_k is a zero when |g_k| ≤ t·max|g|.

These cannot be asked of every direction alike.  The SVD of dL/dW rounds its left singular
vector u_i to about ε′ s₁/s_i (ε′ from the gradient's precision and shape), so L q itself is exact
only to the **rounding floor** f(q) = ε′ s₁ ‖(R Rᵀ)^(−½) q‖ / ‖q‖ (:func:`gradinv.factorize.rounding_floor`).
A sample whose column is tiny (a well-classified sample of a trained network: 7e-8 of the largest
column, s_b/s₁ = 5e-9) lies along the weakest singular directions, and its own exact zeros are
4.7e-9 of its scale, not 1e-9.  Every test takes the larger of its threshold and
:data:`FLOOR_FACTOR`·f(q); for the other columns f(q) ≈ 1e-14 and nothing changes.
"""

from typing import NamedTuple

import numpy as np
import torch

from ..factorize import FLOOR_FACTOR


class Tolerances(NamedTuple):
    """Relative thresholds (module docstring); ``floor`` (b × b, or None): F = FLOOR_FACTOR·ε′·s₁·(R Rᵀ)^(−½),
    so that ‖F q‖/‖q‖ is the floor of direction q (of the first b entries of a longer null vector);
    ``kernel_max``: the loosest kernel threshold of any direction, max(kernel, ‖F‖₂) (for the filters
    that run before q is known)."""

    kernel: float
    unique: float
    residual: float
    zero: float
    floor: torch.Tensor = None
    kernel_max: float = 0.0

    def floor_at(self, v):
        """FLOOR_FACTOR·f(q) for the direction q = v[:b] (0 without a floor)."""
        if self.floor is None:
            return 0.0
        q = v[: self.floor.shape[0]].to(self.floor.dtype)
        return float((self.floor @ q).norm() / q.norm())

    def kernel_at(self, v):
        """The kernel threshold for the null vector v."""
        return max(self.kernel, self.floor_at(v))

    def unique_at(self, v):
        """The uniqueness threshold for the null vector v (kept 100× the kernel's)."""
        return max(self.unique, 100 * self.floor_at(v))

    def zero_at(self, q):
        """The zero threshold of the column L q."""
        return max(self.zero, self.floor_at(q))


def tolerances(zero_tol, floor=None, noisy=False):
    """The :class:`Tolerances` of the zero tolerance ``zero_tol``, with the rounding floor ``floor``
    (b × b, :attr:`gradinv.factorize.FactorizedGradient.floor`) when given.  A ``noisy`` update
    (DP noise, :attr:`~gradinv.factorize.FactorizedGradient.noisy`) has kernels exact only to its noise: the kernel threshold is t itself
    (a DP-SGD update, σ = 1e-5, C = 1, of mlp3_photos, b = 20: L on a true column's zero set has
    σ_min/σ_max = 4e-4–1.4e-3, its next singular value 0.3–0.75)."""
    kernel, unique, residual = zero_tol / (1 if noisy else 10), zero_tol * 10, zero_tol * 10
    if floor is None:
        return Tolerances(kernel, unique, residual, zero_tol, None, kernel)
    F = FLOOR_FACTOR * torch.as_tensor(np.asarray(floor), dtype=torch.float64)
    return Tolerances(kernel, unique, residual, zero_tol, F, max(kernel, float(torch.linalg.matrix_norm(F, 2))))
