"""A noisy update's columns fitted to their zeros at the noise floor (the approximate mode).

In a noisy update (DP noise) the searches tell a zero of a column L q from an active entry with
one loose tolerance t (:data:`~gradinv.pipeline.APPROXIMATE_ZERO_TOL`): loose enough that a candidate
q still some way off its column shows its zero set, so that the search can round to it.  The q
found is then the kernel of L on that set, spoilt by the active entries below t it took for zeros;
yet the noise itself moves L q only by its noise floor f_N(q) (:func:`~gradinv.factorize.noise_floor`),
often 100× below t.  :func:`fit_to_zeros` moves each found q to the sparsest column near it: the
minimiser of Σ_k |L_k q| subject to q₀ᵀq = 1 (q₀ the direction found), by iteratively reweighted
least squares, with weights 1/max(|L_k q|, ε) and ε the noise floor's zero tolerance times max|L q|
(:meth:`~gradinv.factorize.FactorizedGradient.noise_tols`): entries below the noise count as zeros
alike, the zeros pull L q to vanish, the active entries barely weigh.  That finds the column's zero
set Z, its entries at most ε; the least singular vector of L on Z, the least-squares fit of a column
vanishing on Z (the maximum-likelihood one under white noise), is then the q kept, where it is
unique (:func:`~gradinv.certificate.row_set_kernel`'s noisy test; a zero set shared by near-duplicate
samples' columns has a kernel of several dimensions, and the ℓ1 fit stays).
"""

import numpy as np

from sudl._array_api import array_namespace, device, to_numpy

from .certificate import row_set_kernel

FIT_PASSES = 10
"""Reweighted least-squares passes.  Measured (cross-entropy client, b = 20, m = 400, white noise 1e-6
and 1e-5 of max|dL/dW|, each true column's projection onto col(L) moved by 1e-3 at random): 1 − |cos|
from 9.5e-6 to 7.4e-12 and 7.4e-10 (median) after the passes, to 4e-14 and 4e-12 after the least-squares
fit on the zero set they find, which is the column's true zero set on every column: as close as the
kernel of L on the true zeros."""
MIN_AGREEMENT = 0.9
"""|cos| the fitted q must keep with the q found, else the q found stays (arbitrary: a guard against a
fit that slides to another column)."""


def fit_to_zeros(fg, directions):
    """The directions q₀ (rows of ``directions``, k × b) fitted as the module docstring says (ℓ1, then
    least squares on the zeros it finds) in the noisy update ``fg`` (a
    :class:`~gradinv.factorize.FactorizedGradient` with a ``noise_floor``), each kept as it was where
    the fit leaves it less than :data:`MIN_AGREEMENT` from q₀; an array of ``directions``' namespace."""
    xp = array_namespace(directions)
    L = np.asarray(to_numpy(fg.L), np.float64)
    D = np.asarray(to_numpy(directions), np.float64).copy()
    for j in range(len(D)):
        q0 = D[j] / np.linalg.norm(D[j])
        q = q0
        for _ in range(FIT_PASSES):
            codes = np.abs(L @ q)
            weights = 1.0 / np.maximum(codes, fg.noise_tols(q[None])[0] * codes.max())
            q = np.linalg.solve((L * weights[:, None]).T @ L, q0)
            q /= np.linalg.norm(q)
        codes = np.abs(L @ q)
        zeros = codes <= fg.noise_tols(q[None])[0] * codes.max()
        kernel = row_set_kernel(L, zeros, noise_tol=fg.zero_tol)
        if kernel is not None:
            q = kernel[:, 0]
        if abs(float(q @ q0)) >= MIN_AGREEMENT:
            D[j] = q * np.sign(q @ q0) * np.linalg.norm(D[j])
    return xp.asarray(D, dtype=directions.dtype, device=device(directions))
