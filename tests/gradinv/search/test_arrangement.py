"""The arrangement search (solver="cells": W and b; gradinv.search.arrangement)."""

import numpy as np
import pytest
import torch

from gradinv import (
    GradientError,
    GradientFactorization,
    invert_layer,
    stack_gradient,
)
from gradinv.cases import make_client, make_victim
from gradinv.metrics import evaluate
from gradinv.search import arrangement as cells
from gradinv.search.arrangement import drifted_rows, is_cell


def _deep_client(batch_size, width, depth, seed):
    """(inputs, dL/dW, dL/db, W, b) of the first Linear of the zoo's cross-entropy MLP of ``depth`` layers."""
    v = make_client(f"mlp{depth}_photos", batch_size=batch_size, width=width, random_state=seed)
    return v.inputs, v.grad_W, v.grad_b, v.layer.weight.detach(), v.layer.bias.detach()


def test_cells_on_a_three_layer_cross_entropy_client_without_downstream_knowledge():
    X, gW, gb, W, b = _deep_client(16, 300, 3, 0)
    res = invert_layer(gW, gb, solver="cells", weight=W, bias=b, batch_size=16, random_state=0, max_time=120)
    ev = evaluate(X, res.inputs, res.exact)
    assert ev["exact"] >= 15 and ev["false_certificates"] == 0


def test_the_alternation_pulls_perturbed_cells_onto_the_columns():
    """cells._alternate: a true (c_j, q_j) is a fixed point, and starts 30 % off c_j (37 rows of
    their cells wrong, median) come back to it, which their own cells' kernels do not."""
    b = 40
    v = make_victim("random_upstream", batch_size=b, width=400, random_state=1)
    fg = GradientFactorization().fit_transform(stack_gradient(v.grad_W, v.grad_b).numpy())
    L, R = (torch.as_tensor(np.asarray(a)) for a in (fg.L, fg.R))
    V = torch.linalg.svd(R, full_matrices=False)[2].T
    A, bias = (v.layer.weight.detach().double() @ V)[fg.rows], v.layer.bias.detach().double()[fg.rows]
    C = v.inputs.double() @ V
    true = v.grad_Z.double()[fg.rows]
    true = true / true.norm(dim=0)
    noise = torch.randn(C.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    margin = 0.05 * float((C @ A.T + bias).abs().median())

    def own_columns(c0, passes):
        c, q = cells._alternate(c0, torch.eye(b, dtype=torch.float64), A, bias, L, margin=margin,
                                deadline=float("inf"), passes=passes)
        G = q @ L.T
        return int((((G / G.norm(dim=1, keepdim=True)) @ true).abs().diagonal() > 1 - 1e-9).sum())

    assert own_columns(C, 5) == b
    perturbed = C + 0.3 * C.norm(dim=1, keepdim=True) * noise / b**0.5
    assert own_columns(perturbed, 0) == 0
    assert own_columns(perturbed, cells.ALTERNATIONS) >= 30


def test_cells_is_reproducible(ru12):
    kw = dict(solver="cells", weight=ru12.layer.weight.detach(), bias=ru12.layer.bias.detach(), random_state=5,
              max_time=120)
    a = invert_layer(ru12.grad_W, ru12.grad_b, **kw).inputs
    b = invert_layer(ru12.grad_W, ru12.grad_b, **kw).inputs
    assert torch.equal(a, b)


def test_cells_needs_the_layer():
    v = make_victim("random_upstream", batch_size=4, width=100, random_state=0)
    with pytest.raises(GradientError, match="weight and bias"):
        invert_layer(v.grad_W, v.grad_b, solver="cells")
    with pytest.raises(GradientError, match="shape|do not match"):
        invert_layer(v.grad_W, v.grad_b, solver="cells", weight=v.layer.weight.detach()[:50],
                     bias=v.layer.bias.detach()[:50])


def test_is_cell_accepts_a_true_pattern_and_rejects_an_impossible_one():
    rng = np.random.default_rng(0)
    A, bias = rng.standard_normal((40, 3)), rng.standard_normal(40)
    c = rng.standard_normal(3)
    zero = A @ c + bias <= 0
    assert is_cell(A, bias, zero)
    both = np.vstack([A, A[:1]]), np.r_[bias, bias[:1]], np.r_[zero, ~zero[:1]]  # one row with both signs
    assert not is_cell(*both)


def test_a_cell_short_of_a_few_rows_passes_with_that_drift_only():
    """A local step's column vanishes on its cell less the rows a later step turned on: the zero set
    passes with ``max_drift`` ≥ the rows taken out (:func:`drifted_rows` finds no more), not without."""
    rng = np.random.default_rng(1)
    A, bias = rng.standard_normal((200, 5)), rng.standard_normal(200)
    zero = A @ rng.standard_normal(5) + bias <= 0
    short = zero.copy()
    short[np.flatnonzero(zero)[:3]] = False
    assert drifted_rows(A, bias, zero) == 0 and 1 <= drifted_rows(A, bias, short) <= 3
    assert not is_cell(A, bias, short) and is_cell(A, bias, short, max_drift=3)
    assert not is_cell(A, bias, ~zero, max_drift=3)  # the opposite signs are no cell, short or not
