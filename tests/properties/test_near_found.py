"""Polishes that end next to a found column (gradinv.search._polish_and_round, ``found_zeros``).

A polish whose labels are within NEAR_FOUND_ROWS rows of a found column's zero set is either that
column with a few rows mislabelled, which smaller row sets would only find again, or a
near-duplicate twin of it, exact as labelled; only the full label set is rounded.  Properties on
planted columns g_j = mask_j ⊙ W₂ᵀu_j with a twin pair (masks 1…NEAR_FOUND_ROWS rows apart): the
twin is still found from its own labels with its sibling already found; from the found column's
labels with a few rows flipped, the found column is never rounded again, where without the found
zero sets it mostly is.
"""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradinv.search import polish, rounding
from gradinv.search.tolerances import tolerances


def planted_twins(rng, b, C, apart, rows_per_sample=12):
    """L (m × b), W₂, masks (m × b) and the columns G, samples 0 and 1 twins ``apart`` rows apart."""
    m = rows_per_sample * b
    W2 = torch.as_tensor(rng.standard_normal((m, C)))
    mask = torch.as_tensor(rng.random((m, b)) < 0.5)
    mask[:, 1] = mask[:, 0]
    rows = rng.choice(m, apart, replace=False)
    mask[rows, 1] = ~mask[rows, 0]
    U = torch.as_tensor(rng.standard_normal((C, b)))
    U[:, 1] = U[:, 0] + 0.1 * torch.as_tensor(rng.standard_normal(C))
    G = mask * (W2 @ U)
    return torch.linalg.svd(G, full_matrices=False)[0][:, :b], W2, mask, G


def cell(labels):
    """(c, A, bias) whose cell has ``labels`` (True = active) as its mask."""
    return torch.zeros(1, dtype=torch.float64), torch.zeros(len(labels), 1, dtype=torch.float64), labels.double() * 2 - 1


def unit(L, g):
    q = L.T @ g
    return q / q.norm()


@settings(max_examples=30, deadline=None)
@given(b=st.integers(8, 24), C=st.integers(3, 6), data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_twin_of_a_found_column_is_still_found(b, C, data, seed):
    apart = data.draw(st.integers(1, polish.NEAR_FOUND_ROWS))
    rng = np.random.default_rng(seed)
    L, W2, mask, G = planted_twins(rng, b, C, apart)
    tols = tolerances(1e-9)
    found, found_zeros = unit(L, G[:, 0])[None], ~mask[:, :1].T
    twin = unit(L, G[:, 1])
    plain = rounding._polish_and_round(*cell(mask[:, 1]), L, W2, tols, found)
    got = rounding._polish_and_round(*cell(mask[:, 1]), L, W2, tols, found, found_zeros=found_zeros)
    assert (got is None) == (plain is None)
    if plain is not None:
        assert float((got[0] @ twin).abs()) > 1 - 1e-9


def test_found_column_with_mislabelled_rows_is_rounded_on_all_rows_alone():
    """20 planted problems (b = 20, m = 3b: rows of high leverage, where the polish can keep a wrong
    label): labels = a found column's mask with 1–NEAR_FOUND_ROWS rows flipped.  Without the found
    zero sets the rounding drops rows until it finds the found column again; with them it tries
    the full label set alone; it never returns the found column."""
    rounded = []
    original = rounding._round_on_labels
    rounding._round_on_labels = lambda *a, **k: rounded.append((a[2], a[10] if len(a) > 10 else k.get("fracs", rounding.ROUNDING_ROW_FRACTIONS))) or original(*a, **k)
    again_without = 0
    try:
        for seed in range(20):
            rng = np.random.default_rng(seed)
            L, W2, mask, G = planted_twins(rng, 20, 5, apart=20, rows_per_sample=3)  # no twin within reach
            labels = mask[:, 0].clone()
            rows = rng.choice(len(labels), int(rng.integers(1, polish.NEAR_FOUND_ROWS + 1)), replace=False)
            labels[rows] = ~labels[rows]
            tols = tolerances(1e-9)
            q0 = unit(L, G[:, 0])
            rounded.clear()
            without = rounding._polish_and_round(*cell(labels), L, W2, tols, q0[None])
            near = bool(rounded) and int((rounded[0][0] != ~mask[:, 0]).sum()) <= polish.NEAR_FOUND_ROWS
            again_without += near and rounded[0][1] == rounding.ROUNDING_ROW_FRACTIONS and without is None
            rounded.clear()
            got = rounding._polish_and_round(*cell(labels), L, W2, tols, q0[None], found_zeros=~mask[:, [0]].T)
            assert got is None or float((got[0] @ q0).abs()) < 1 - 1e-9
            if near:  # the polish ended next to the found column: its full label set alone is rounded
                assert rounded[0][1] == rounding.ROUNDING_ROW_FRACTIONS[:1]
    finally:
        rounding._round_on_labels = original
    assert again_without >= 3  # the rounding the shortcut skips
