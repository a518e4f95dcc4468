"""Synthetic data for complete sparsely-used dictionary learning."""

import numpy as np
import scipy.stats
from sklearn.utils import check_random_state


def make_sparsely_used_signal(n_samples, n_features, *, density=0.5, dictionary="gaussian", support_correlation=0.0,
                              random_state=None):
    """Draw Y = code @ dictionary with a Bernoulli(density)–Gaussian code.

    Parameters
    ----------
    n_samples, n_features : int
        Shape of Y; the dictionary is square (n_features × n_features), rows are atoms.
    density : float in (0, 1]
        Probability that a code entry is non-zero (ReLU gradients: about 0.5).
    dictionary : {"gaussian", "orthogonal"}
        Gaussian atoms of unit norm (complete, not orthogonal), or a Haar-random orthogonal matrix.
    support_correlation : float in [0, 1)
        ρ: code entry (i, j) is used iff √ρ·u_i + √(1−ρ)·e_ij > t, with u_i one Gaussian per
        sample, e_ij independent and t the (1 − density) quantile, so every entry keeps its
        density while the supports of the atoms' codes overlap more as ρ grows (0: independent
        Bernoulli).  The gradient of a batch of similar images has such supports: a neuron
        active for one image is likely active for the others (``docs/sudl_benchmark.md``).
    random_state : int, RandomState instance or None

    Returns
    -------
    Y : ndarray (n_samples, n_features)
    code : ndarray (n_samples, n_features), exactly zero where unused
    dictionary : ndarray (n_features, n_features), rows are atoms
    """
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")
    if dictionary not in ("gaussian", "orthogonal"):
        raise ValueError(f"dictionary must be 'gaussian' or 'orthogonal', got {dictionary!r}")
    if not 0 <= support_correlation < 1:
        raise ValueError(f"support_correlation must be in [0, 1), got {support_correlation}")
    rng = check_random_state(random_state)
    D = rng.standard_normal((n_features, n_features))
    if dictionary == "orthogonal":
        Q, R = np.linalg.qr(D)
        D = Q * np.sign(np.diag(R))
    else:
        D /= np.linalg.norm(D, axis=1, keepdims=True)
    values = rng.standard_normal((n_samples, n_features))
    if support_correlation == 0:
        used = rng.random((n_samples, n_features)) < density
    else:
        rho = float(support_correlation)
        latent = rho**0.5 * rng.standard_normal((n_samples, 1)) + (1 - rho) ** 0.5 * rng.standard_normal(values.shape)
        used = latent > scipy.stats.norm.ppf(1 - density)
    code = values * used
    return code @ D, code, D


def make_relu_gradient_signal(n_samples=1000, n_features=100, *, n_inputs=200, random_state=None):
    """Y = L, the left factor of the weight gradient of a linear+ReLU layer (SPEAR's SUDL instance).

    A layer Z = W X + bias with ``n_samples`` neurons and a batch of ``n_features`` inputs in
    [0, 1]^n_inputs (Gaussian W, bias centring the pre-activations), a Gaussian upstream
    gradient, code = dL/dZ = upstream ⊙ [Z > 0] (≈ half exact zeros).  With the thin SVD
    dL/dW = U S Vᵀ, Y = U[:, :n_features] = code @ dictionary for the square dictionary
    (Uᵀ code)⁻¹.

    Returns (Y, code, dictionary) like :func:`make_sparsely_used_signal`.
    """
    rng = check_random_state(random_state)
    X = rng.uniform(0, 1, size=(n_inputs, n_features))
    W = rng.normal(0, 1 / np.sqrt(n_inputs), size=(n_samples, n_inputs))
    bias = rng.normal(0, 0.1, size=(n_samples, 1)) - 0.5 * W.sum(axis=1, keepdims=True)
    code = rng.standard_normal((n_samples, n_features)) * (W @ X + bias > 0)
    U = np.linalg.svd(code @ X.T, full_matrices=False)[0][:, :n_features]
    return U, code, np.linalg.inv(U.T @ code)
