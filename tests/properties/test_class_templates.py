"""Class-template descents (gradinv.search: template_deviation, _template_objective, _round_templates).

A cross-entropy client's column is g_j = mask_j ⊙ W₂ᵀu_j with u_j = softmax_j − e_(y_j); when the
softmax is uniform, u_j = α t_(y_j) with t_c = 1/C − e_c.  Properties: the deviation of u from its
template is 0 exactly for such u (any α > 0, any class) and grows with a perturbation; with u fixed
to the right template the soft objective vanishes at a true input's cell (hard mask) and does not
for another class's template; the rounds use templates only once enough columns support them,
and still run the general descent every GENERIC_EVERY-th round.
"""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradinv.search import objective, templates


def template(C, c):
    t = torch.full((C,), 1.0 / C, dtype=torch.float64)
    t[c] -= 1
    return t


@settings(max_examples=50, deadline=None)
@given(C=st.integers(3, 20), data=st.data(), log_alpha=st.floats(-6, 2), seed=st.integers(0, 2**31 - 1))
def test_template_deviation_is_zero_exactly_for_uniform_softmax(C, data, log_alpha, seed):
    c = data.draw(st.integers(0, C - 1))
    u = 10.0**log_alpha * template(C, c)
    assert templates.template_deviation(u) < 1e-12
    assert templates.template_deviation(-u) < 1e-12  # a direction's sign is arbitrary
    noise = torch.as_tensor(np.random.default_rng(seed).standard_normal(C))
    noise -= noise.mean()  # softmax − e_y sums to 0 (so for C = 2 every u is a template)
    assert templates.template_deviation(u + 0.3 * u.norm() * noise / noise.norm()) > 1e-3


@settings(max_examples=20, deadline=None)
@given(b=st.integers(4, 20), C=st.integers(3, 10), seed=st.integers(0, 2**31 - 1))
def test_template_objective_vanishes_at_a_true_cell(b, C, seed):
    rng = np.random.default_rng(seed)
    m = 10 * b
    A, bias = torch.as_tensor(rng.standard_normal((m, b))), torch.as_tensor(0.1 * rng.standard_normal(m))
    W2 = torch.as_tensor(rng.standard_normal((m, C)))
    c_true = torch.as_tensor(rng.standard_normal((b, b)))
    y = rng.integers(0, C, b)
    T = torch.stack([template(C, int(k)) for k in y])
    G = ((c_true @ A.T + bias) > 0).to(A.dtype) * (T @ W2.T)  # b × m: the columns, one per row
    L = torch.linalg.qr(G.T)[0]
    margin = (c_true @ A.T + bias).abs().min()
    tau = float(margin) / 50  # sigmoid saturated to e^-50 on every row: the hard mask
    right = objective._template_objective(c_true, A, bias, L, T @ W2.T, tau)
    assert float(right.max()) < 1e-10
    wrong = torch.stack([template(C, (int(k) + 1) % C) for k in y])
    assert float(objective._template_objective(c_true, A, bias, L, wrong @ W2.T, tau).min()) > 1e-4


@given(n=st.integers(0, 30), dev=st.floats(0, 1), r=st.integers(0, 40), C=st.integers(2, 12))
def test_rounds_use_templates_only_with_evidence(n, dev, r, C):
    rng = np.random.RandomState(0)
    T = templates._round_templates([dev] * n, 16, C, r, rng)
    use = n >= templates.TEMPLATE_EVIDENCE and dev <= templates.TEMPLATE_DEVIATION and r % templates.GENERIC_EVERY != 0
    assert (T is not None) == use
    if use:
        assert T.shape == (16, C)
        assert torch.allclose(T.sum(1), torch.zeros(16, dtype=T.dtype), atol=1e-12)
        for row in T:
            assert torch.equal(row, template(C, int(row.argmin())))
