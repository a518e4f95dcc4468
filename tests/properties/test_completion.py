"""The last column by a line scan (gradinv.search.completion.scan_line): with every other column
found, it finds the missing one, at any scale of the sample's input; whatever it returns is a
true column, even when a found column is wrong."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradinv.search.completion import scan_line
from gradinv.search.starts import _remaining_inputs_coords
from gradinv.search.tolerances import tolerances

from .test_zeros_polish import planted


def _setup(b, seed, scale):
    """(A, bias, L, R, unit true directions Q (columns)) of a planted layer, the last sample's input × ``scale``."""
    rng = np.random.default_rng(seed)
    A, bias, coords, L, G = planted(rng, b, 20 * b)
    coords[-1] *= scale
    G = (coords @ A.T + bias > 0).T * torch.as_tensor(rng.standard_normal(G.shape))
    L = torch.linalg.svd(G, full_matrices=False)[0][:, :b]
    Q = L.T @ G
    R = Q @ coords  # dL/dW = G X with the inputs' coordinates X = coords (V = I)
    return A, bias, L, R, Q / Q.norm(dim=0)


@settings(max_examples=20, deadline=None)
@given(b=st.integers(3, 14), scale=st.sampled_from([1e-3, 1.0, 1e4]), seed=st.integers(0, 2**31 - 1))
def test_scan_finds_the_last_column_at_any_scale(b, scale, seed):
    A, bias, L, R, Q = _setup(b, seed, scale)
    if int(((torch.as_tensor(L) @ Q[:, -1]).abs() <= 1e-9).sum()) < b + 9:
        return  # too few zeros to be told from an accident: no search accepts it
    found = list(Q[:, :-1].T)
    p = _remaining_inputs_coords(found, R)[:, 0]
    q = scan_line(p, L, A, bias, tolerances(1e-9), b + 9, torch.stack(found))
    assert q is not None
    assert float((q @ Q[:, -1]).abs()) > 1 - 1e-9


@settings(max_examples=20, deadline=None)
@given(b=st.integers(3, 14), seed=st.integers(0, 2**31 - 1))
def test_scan_returns_only_true_columns_when_a_found_one_is_wrong(b, seed):
    A, bias, L, R, Q = _setup(b, seed, 1.0)
    rng = np.random.default_rng(seed + 1)
    found = Q[:, :-1].T.clone()
    found[0] = found[0] + 0.05 * torch.as_tensor(rng.standard_normal(b))
    found[0] /= found[0].norm()
    p = _remaining_inputs_coords(list(found), R)[:, 0]
    q = scan_line(p, L, A, bias, tolerances(1e-9), b + 9, found)
    if q is not None:
        assert float((q @ Q).abs().max()) > 1 - 1e-9
