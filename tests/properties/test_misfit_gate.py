"""The misfit gate of the exact rounding (gradinv.search._polish_and_round, ``max_misfit``).

After the polish, a candidate whose (q, u) leaves more than MAX_POLISH_MISFIT of ‖W₂_Aᵀu‖²
unexplained is not rounded.  Properties on planted columns g_j = mask_j ⊙ W₂ᵀu_j: from labels
within the rounding's reach (the true mask with a few rows flipped) the gate never loses the
column the ungated rounding finds; from random labels it returns what the ungated one does and
mostly skips the roundings that would find nothing.
"""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradinv.search import rounding
from gradinv.search.tolerances import tolerances


def planted(rng, b, C):
    m = 12 * b
    W2 = torch.as_tensor(rng.standard_normal((m, C)))
    mask = torch.as_tensor(rng.random((m, b)) < 0.5)
    G = mask * (W2 @ torch.as_tensor(rng.standard_normal((C, b))))
    return torch.linalg.svd(G, full_matrices=False)[0][:, :b], W2, mask, G


def cell(labels):
    """(c, A, bias) whose cell has ``labels`` (True = active) as its mask."""
    zero = torch.zeros(1, dtype=torch.float64)
    return zero, torch.zeros(len(labels), 1, dtype=torch.float64), labels.double() * 2 - 1


@settings(max_examples=30, deadline=None)
@given(b=st.integers(8, 24), C=st.integers(3, 6), flipped=st.floats(0, 0.04), seed=st.integers(0, 2**31 - 1))
def test_gate_keeps_every_column_within_reach(b, C, flipped, seed):
    rng = np.random.default_rng(seed)
    L, W2, mask, G = planted(rng, b, C)
    labels = mask[:, 0].clone()
    flip = torch.as_tensor(rng.random(len(labels)) < flipped)
    labels[flip] = ~labels[flip]
    tols = tolerances(1e-9)
    ungated = rounding._polish_and_round(*cell(labels), L, W2, tols)
    gated = rounding._polish_and_round(*cell(labels), L, W2, tols, max_misfit=rounding.MAX_POLISH_MISFIT)
    assert (gated is None) == (ungated is None)
    if gated is not None:
        assert torch.allclose(gated.abs(), ungated.abs())


def test_gate_skips_most_roundings_that_would_find_nothing():
    """Random labels (20 planted problems, b = 24): the gated rounding returns what the ungated one
    does (the polish often reaches a true column from them: measured 11 of 20), and where the
    ungated one finds nothing, the rounding is mostly not even attempted."""
    hopeless = skipped = 0
    original = rounding._round_on_labels
    for seed in range(20):
        rng = np.random.default_rng(seed)
        L, W2, _, _ = planted(rng, 24, 5)
        labels = torch.as_tensor(rng.random(L.shape[0]) < 0.5)
        tols = tolerances(1e-9)
        calls = []
        rounding._round_on_labels = lambda *a, **k: calls.append(1) or original(*a, **k)
        try:
            gated = rounding._polish_and_round(*cell(labels), L, W2, tols, max_misfit=rounding.MAX_POLISH_MISFIT)
        finally:
            rounding._round_on_labels = original
        ungated = rounding._polish_and_round(*cell(labels), L, W2, tols)
        assert (gated is None) == (ungated is None)
        if ungated is None:
            hopeless += 1
            skipped += not calls
    assert hopeless >= 5 and skipped >= 0.8 * hopeless
