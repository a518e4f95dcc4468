"""Where a round of the search starts: deflated input coordinates, spread by the singular values or
isotropic in the missing inputs' span, and the point of a cell of the arrangement A c + b = 0
nearest a set of labels."""

import numpy as np
import torch

from sudl import complete_basis


CELL_POINT_ITERS = 8
"""Least-squares passes of :func:`cell_point` (arbitrary, not measured)."""


def _remaining_inputs_coords(found_q, RV):
    """Matrix P (b × (b − f)) with c = P z, z ∈ ℝ^(b−f), the coordinates the samples not yet found can have.

    A missing sample's input is x_k = (Q⁻¹)_k R with (Q⁻¹)_k orthogonal to every found column
    q_i, so c_k = Vᵀx_k = (R V)ᵀ n with n in the orthogonal complement N of the found q's:
    deflation.  ``RV`` is R V (b × b).
    """
    N = torch.as_tensor(complete_basis(torch.stack(found_q).numpy() if found_q else np.zeros((0, RV.shape[0]))))
    return RV.T @ N.T


IDLE_BALANCED = 0.5
"""Share of balanced starts (:func:`_round_starts`) in a round that follows one without a new column
(arbitrary, not measured: half, so that the size-spread starts keep their share)."""


def _round_starts(coords, norm, n_starts, rng, balanced=0.0):
    """A round's starting points (rows, norm ``norm``) in the span of the missing inputs' coordinates
    (``coords`` = :func:`_remaining_inputs_coords`); the last ``round(balanced·n_starts)`` balanced.

    *S-spread*: c = Vᵀ Rᵀ n with n isotropic in the complement of the found q's (module docstring
    of :mod:`.informed`).  It weighs sample k by about ‖g_k‖ (c = Σ_k a_k Vᵀx_k with a_k ∝ ‖q_k‖),
    so a sample whose column is 1e-5 of the largest (a well-classified sample of a trained
    client) is almost never reached.  *Balanced*: isotropic in span(coords), which does not depend
    on ‖g_k‖ but loses the inputs' anisotropy (far from every input while many are missing).
    A round after one that found no column (evidence that the samples left are those the S-spread
    neglects) draws a share :data:`IDLE_BALANCED` balanced; the others none.  Measured
    (``docs/results.md``): on the zoo's mlp3_trained client, b = 50, the cell search with S-spread
    starts alone found 47 of 50 columns in 90 s (the three missing have columns 7e-6 to 0.25 of
    the largest), all 50 with them; on mlp2_grey_windows, b = 100, the informed search found 0
    exact samples in 70 s, 100 with them.  Balanced starts in every round slowed the
    cross-entropy victim, whose S-spread starts find almost every column (half of them: b = 150,
    27 s against 18 s; a share steered by each spread's yield: b = 200, 1.3× the time).
    """
    z = torch.as_tensor(rng.standard_normal((n_starts, coords.shape[1])))
    n_spread = n_starts - int(round(balanced * n_starts))
    c0 = torch.cat([z[:n_spread] @ coords.T, z[n_spread:] @ torch.linalg.qr(coords)[0].T])
    return c0 * (norm / c0.norm(dim=1, keepdim=True))


def cell_point(A, A_pinv, bias, inactive, margin, iters=CELL_POINT_ITERS):
    """A point c of the cell {c : A_k c + bias_k ≤ 0 exactly for the ``inactive`` rows k}, or near it
    (rows of ``inactive`` and of the result: one point per label set).

    Least squares A c + bias ≈ ±``margin`` (− on the inactive rows), with ``A_pinv`` = A⁺; the
    target of each row whose sign is still wrong is raised by another ``margin``, ``iters`` times.
    Polished labels are not always a cell of the arrangement: their point is that of a cell
    nearby (:func:`_polish_projected`).  From a true mask it is near the sample's coordinates
    c_j (measured on the cross-entropy client, b = 600, m = 4000, the masks of 142 samples: median
    cosine 0.97 to c_j, 11 of 4000 signs wrong).
    """
    sign = 1 - 2 * inactive.to(A.dtype)
    target = sign * margin
    for _ in range(iters):
        c = (target - bias) @ A_pinv.T
        wrong = (c @ A.T + bias > 0) == inactive
        if not bool(wrong.any()):
            break
        target = target + sign * margin * wrong
    return c


def _cell_margin(A, bias, RV, norm, rng, n_starts=64):
    """The ``margin`` of :func:`cell_point`: the median |A_k c + bias_k| over ``n_starts`` typical
    S-spread starts (:func:`_round_starts` before any column is found), i.e. typical of the inputs."""
    typical = _round_starts(_remaining_inputs_coords([], RV), norm, n_starts, rng)
    return float((typical @ A.T + bias).abs().median())
