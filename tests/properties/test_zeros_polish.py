"""The zeros-only polish and rounding for a deep downstream network (gradinv.search.polish._polish_zeros,
rounding._round_polished(zeros_only=True)): from a sample's coordinates plus noise, it finds the
sample's exact column without any knowledge of the network after the layer, and a column of no
sample is never returned."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradinv.search import polish, rounding
from gradinv.search.tolerances import tolerances


def planted(rng, b, m):
    """(A, bias, true coordinates (rows), L, dL/dZ) with upstream values of no structure (any network)."""
    A = torch.as_tensor(rng.standard_normal((m, b)))
    bias = torch.as_tensor(0.1 * rng.standard_normal(m))
    coords = torch.as_tensor(rng.standard_normal((b, b))) + 2.0 * torch.as_tensor(rng.standard_normal(b))
    G = (coords @ A.T + bias > 0).T * torch.as_tensor(rng.standard_normal((m, b)))
    return A, bias, coords, torch.linalg.svd(G, full_matrices=False)[0][:, :b], G


@settings(max_examples=15, deadline=None)
@given(b=st.integers(4, 16), noise=st.floats(0.0, 0.05), seed=st.integers(0, 2**31 - 1))
def test_zeros_polish_rounds_a_noisy_start_to_its_column(b, noise, seed):
    rng = np.random.default_rng(seed)
    A, bias, coords, L, G = planted(rng, b, 20 * b)
    Q = L.T @ G
    Q = Q / Q.norm(dim=0)
    starts = coords + noise * coords.norm(dim=1, keepdim=True) * torch.as_tensor(rng.standard_normal((b, b))) / b**0.5
    tols = tolerances(1e-9)
    hits = 0
    for j, polished in enumerate(polish._polish_zeros(starts, A, bias, L)):
        directions = rounding._round_polished(polished, L, tols, zeros_only=True)
        if directions is None:
            continue
        cos = (directions[0] @ Q).abs()
        assert float(cos.max()) > 1 - 1e-9  # whatever it returns is a true column
        hits += float(cos[j]) > 1 - 1e-9
    if noise == 0.0:
        assert hits == b  # from the true cells: every column
