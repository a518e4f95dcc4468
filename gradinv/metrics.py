"""Reconstruction quality: pairing, relative error, exact-recovery rate, PSNR and SSIM.

The attack returns the batch in any order, so reconstructions are first paired with the true
inputs by ``scipy.optimize.linear_sum_assignment`` on their relative errors capped at 1: uncapped,
one wild reconstruction (a block of near-duplicate samples gives one, of norm 10× an input's)
is cheapest next to the largest input and pulls that input's exact copy onto another input.

A sample counts as **exact** when ‖x̂ − x‖ / ‖x‖ ≤ 1e-6 for float64 gradients and ≤ 1e-4 for
float32 gradients (:data:`EXACT_RTOL`): a few orders of magnitude above each precision's
rounding error after the SVD and two b × b solves, far below any visible difference.

PSNR is taken over the **batch's** data range (max − min over every input of the batch), so that a
blank (constant) image, whose own range is 0, gets a finite figure like any other.
"""

import numpy as np
from scipy.optimize import linear_sum_assignment

from sudl._array_api import to_numpy

EXACT_RTOL = {"float64": 1e-6, "float32": 1e-4}
"""Relative error of an input counted exact, by dtype (arbitrary: SPEAR's threshold in float64)."""
PSNR_CAP_DB = 150.0
"""PSNR reported for an exact reconstruction (arbitrary: finite, so that tables and means stay readable)."""


def match_inputs(X_true, X_hat):
    """Pair rows: returns (true_idx, hat_idx, relative_error) minimising the summed relative error,
    each capped at 1 (see the module docstring)."""
    X_true = np.asarray(to_numpy(X_true), dtype=np.float64).reshape(len(X_true), -1)
    X_hat = np.asarray(to_numpy(X_hat), dtype=np.float64).reshape(len(X_hat), -1)
    if not np.all(np.isfinite(X_hat)):
        X_hat = np.nan_to_num(X_hat, nan=0.0, posinf=0.0, neginf=0.0)
    D = np.linalg.norm(X_true[:, None, :] - X_hat[None, :, :], axis=2)
    D /= np.maximum(np.linalg.norm(X_true, axis=1)[:, None], np.finfo(float).tiny)
    rows, cols = linear_sum_assignment(np.minimum(D, 1.0))
    return rows, cols, D[rows, cols]


def exact_mask(relative_error, dtype="float64"):
    """Which samples are exact under the documented threshold of ``dtype``."""
    return np.asarray(relative_error) <= EXACT_RTOL[str(dtype).replace("torch.", "")]


def psnr(x_true, x_hat, data_range=None, cap=PSNR_CAP_DB):
    """Peak signal-to-noise ratio in dB, capped at ``cap`` (an exact reconstruction has MSE ≈ 0).

    ``data_range``: default the range of ``x_true``; where that is 0 (a constant image) its
    largest magnitude, and 1 for an all-zero one, so that the figure is always finite."""
    x_true, x_hat = np.asarray(x_true, dtype=np.float64), np.asarray(x_hat, dtype=np.float64)
    if data_range is None:
        data_range = np.ptp(x_true)
    if not data_range > 0:
        data_range = float(np.abs(x_true).max()) or 1.0
    mse = np.mean((x_true - x_hat) ** 2)
    if mse == 0:
        return cap
    return float(min(cap, 10 * np.log10(data_range**2 / mse)))


def ssim(image_true, image_hat):
    """Structural similarity of two images (H, W, C) with ``skimage.metrics.structural_similarity``."""
    from .cases.data import skimage_module

    structural_similarity = skimage_module("metrics").structural_similarity

    image_true, image_hat = np.asarray(image_true, np.float64), np.asarray(image_hat, np.float64)
    return float(structural_similarity(image_true, image_hat, channel_axis=-1,
                                       data_range=float(np.ptp(image_true)) or 1.0))


def distinct_inputs(inputs, return_index=False):
    """The batch's distinct inputs (b × n NumPy, an exact duplicate counted once: the gradient holds
    it once, with its multiplicity in the scale of its column), in their first order; with
    ``return_index``, also their rows in ``inputs``."""
    x = np.asarray(to_numpy(inputs), np.float64).reshape(len(inputs), -1)
    first = np.sort(np.unique(x, axis=0, return_index=True)[1])
    return (x[first], first) if return_index else x[first]


def evaluate(X_true, X_hat, certified, *, image_shape=None, dtype="float64"):
    """Summary of a reconstruction against the truth.

    Returns a dict: n, exact (count), exact_rate, certified, false_certificates (certified but
    not exact: must be 0), psnr (mean dB, over the batch's data range), ssim (mean, when ``image_shape`` is given), and the
    per-sample arrays ``relative_error``, ``psnr_per_sample`` and ``pairs``.
    """
    rows, cols, err = match_inputs(X_true, X_hat)
    exact = exact_mask(err, dtype)
    certified = np.asarray(certified, dtype=bool)[cols]
    Xt = np.asarray(to_numpy(X_true), np.float64)[rows]
    Xh = np.nan_to_num(np.asarray(to_numpy(X_hat), np.float64)[cols], nan=0.0, posinf=0.0, neginf=0.0)
    per_sample = np.array([psnr(a, b, data_range=np.ptp(Xt)) for a, b in zip(Xt, Xh)])
    out = {
        "n": len(rows),
        "exact": int(exact.sum()),
        "exact_rate": float(exact.mean()),
        "certified": int(certified.sum()),
        "false_certificates": int((certified & ~exact).sum()),
        "psnr": float(np.mean(per_sample)),
        "relative_error": err,
        "psnr_per_sample": per_sample,
        "pairs": (rows, cols),
    }
    if image_shape is not None:
        out["ssim"] = float(np.mean([ssim(a.reshape(image_shape), b.reshape(image_shape)) for a, b in zip(Xt, Xh)]))
    return out
