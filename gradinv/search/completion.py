"""The last sample, from all the others: an exhaustive scan of one line of the arrangement.

When every sample but one is found, the missing input is known up to its scale: x = (Q⁻¹)_k R
with (Q⁻¹)_k orthogonal to the b − 1 found q's, so its coordinates are c = t p for a known p
(:func:`~gradinv.search.starts._remaining_inputs_coords`) and one unknown t ∈ ℝ.  Neuron i is
inactive iff t a_i + b_i ≤ 0 (a = A p), so as t runs over ℝ the zero set I(t) changes one row at
each breakpoint t_i = −b_i / a_i, and the sample's own cell is one of the m + 1 intervals
between them.  On it, and on every interval whose I(t) lies inside the sample's zero set, L
restricted to I(t) has an exactly one-dimensional kernel: the column's q.  So testing every
interval finds the last column whenever the others are right, with no descent and no start.
The descents miss it where the sample's coordinates are far from the typical input's, along the
weakest singular directions (measured, zoo clients at b = 20: of mlp2_trained the descents found
19 columns in 66 s and never the last, a well-classified sample's column 7e-8 of the largest;
of mlp2_grey_windows 19 in 62 s; the scan finds both in 0.1 s).

The m + 1 Gram matrices L_Iᵀ L_I are built by running rank-one updates (in chunks, each restarted
from an exact product), a shifted Cholesky rules out those that
surely have no kernel (:func:`~gradinv.search.rounding._may_be_singular`), and the null space of
L on the rest decides (:func:`~gradinv.search.rounding._null_space`).
"""

import torch

from .rounding import _null_space, _unless_found

LAST_UNDETERMINED = ("the last column's zero set does not determine it (a sample whose inactive neurons lie inside "
                     "another's, or the column two inputs that are multiples of one another share, which is not "
                     "sparse): left to the pipeline's last_column and reconstruct steps")
"""Why a search with exact zeros stops when :func:`scan_line` finds no last column: the scan tests
every cell on the sample's line, so no round can find it (:mod:`gradinv.last_column` then may, or
:mod:`gradinv.collinear` splits it)."""


SCAN_CHUNK_ENTRIES = 2**23
"""Gram entries (b² each) held at once by :func:`scan_line`: chunks of max(1, 2²³ / b²) intervals,
at most :data:`SCAN_CHUNK` (each restarted from an exact product, so that the rank-one updates
accumulate no more than that many roundings)."""
SCAN_CHUNK = 256


def _breakpoints(a, bias):
    """(order, joins, inactive at −∞): the rows whose sign flips along c = t p, by breakpoint; whether
    each joins the zero set there (a_i < 0) or leaves it (a_i > 0); the zero set for t → −∞."""
    moving = torch.nonzero(a != 0)[:, 0]
    order = moving[torch.argsort(-bias[moving] / a[moving])]
    start = (a > 0) | ((a == 0) & (bias <= 0))
    return order, a[order] < 0, start


def _zero_set(start, order, joins, k):
    """The zero set after the first ``k`` breakpoints (:func:`_breakpoints`), from ``start`` at t → −∞."""
    zero = start.clone()
    zero[order[:k][joins[:k]]] = True
    zero[order[:k][~joins[:k]]] = False
    return zero


def scan_line(p, L, A, bias, tols, min_zeros, found=None, accepts=None):
    """The exact direction q (b,) whose column L q vanishes on I(t) = {i : t (A p)_i + bias_i ≤ 0}
    for some t, with ≥ ``min_zeros`` rows and not a column of ``found``; or None (module docstring).

    ``p`` (b,) the coordinates' direction, L (m' × b), A (m' × b) = W V and ``bias`` on the same
    rows, ``tols`` the :class:`~gradinv.search.tolerances.Tolerances`.  Intervals are tried from the
    largest zero set down; ``accepts`` (q → bool, default: any) the caller's checks, so that an
    interval whose kernel passes the tolerances but not the checks does not end the scan (a noisy
    update's loose kernel threshold lets zero sets with a few active rows more through).
    """
    a = A @ p
    order, joins, inactive = _breakpoints(a, bias)
    sign = joins.to(L.dtype) * 2 - 1
    counts = int(inactive.sum()) + torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(sign.long(), 0)])
    b = L.shape[1]
    chunk = max(1, min(SCAN_CHUNK, SCAN_CHUNK_ENTRIES // (b * b)))
    eye = torch.eye(b, dtype=L.dtype)
    candidates = []
    for start in range(0, len(order) + 1, chunk):
        steps = order[start:start + chunk - 1]  # the flips inside this chunk
        zero = _zero_set(inactive, order, joins, start)
        G0 = L[zero].T @ L[zero]
        rows = L[steps]
        updates = torch.cumsum(sign[start:start + len(steps), None, None] * rows[:, :, None] * rows[:, None, :], 0)
        grams = torch.cat([G0[None], G0[None] + updates])
        size = counts[start:start + len(grams)]
        keep = size >= min_zeros
        shift = max(1e-12, 100 * tols.kernel_max**2)
        maybe = torch.linalg.cholesky_ex(grams[keep] - shift * eye)[1] != 0
        candidates += [start + int(k) for k in torch.nonzero(keep)[:, 0][maybe]]
    if not candidates:
        return None
    for k in sorted(candidates, key=lambda k: -int(counts[k])):
        v = _null_space(L[_zero_set(inactive, order, joins, k)], tols.kernel, tols.unique, tols=tols)
        if v is not None and _unless_found(v, found) is not None and (accepts is None or accepts(v[0])):
            return v[0]
    return None

