import numpy as np
import pytest
import torch

from gradinv import GradientFactorization, stack_gradient
from gradinv.cases import ClientSpec, make_client, make_victim


def test_batch_size_estimate_on_real_clients():
    """Issue 6: the batch size read from the singular values is right on >= 95% of noiseless clients,
    in float64 and float32."""
    rng = np.random.default_rng(0)
    cases = [(kind, int(b), dtype) for kind in ("cross_entropy", "cross_entropy_raw", "random_upstream")
             for b, dtype in zip(rng.integers(2, 60, size=7), [torch.float64, torch.float32] * 4)]
    right = 0
    for kind, b, dtype in cases:
        v = make_victim(kind, batch_size=b, width=300, random_state=b, dtype=dtype)
        est = GradientFactorization().fit(stack_gradient(v.grad_W, v.grad_b)).batch_size_
        right += est == b
    assert right >= 0.95 * len(cases)


def test_dead_neurons_are_dropped():
    v = make_victim("cross_entropy_raw", batch_size=10, width=300, random_state=0)
    fg = GradientFactorization().fit_transform(stack_gradient(v.grad_W.numpy(), v.grad_b.numpy()))
    dead = np.flatnonzero(np.all(v.grad_Z.numpy() == 0, axis=1))
    assert len(dead) > 0 and not np.isin(dead, fg.rows).any() and len(fg.rows) + len(dead) == 300


def test_a_merged_near_duplicate_is_not_exact_rank():
    """An exact duplicate leaves a singular value at rounding, below the rank gap: b = 7, and the
    factors are exact_rank (the merged input is both samples).  A pair 1e-4 apart leaves one above the
    gap (17 ε·s₁ here), dropped as a dependent input: its merged input is neither sample, so
    exact_rank is False and nothing will be certified."""
    import warnings

    from gradinv.cases import layer_gradient, make_client

    v = make_client("mlp2_raw", batch_size=8, width=200, random_state=0)
    ranks = {}
    for gap in (0.0, 1e-4):
        x, y = v.inputs.clone(), v.labels.clone()
        step = torch.randn(x.shape[1], generator=torch.Generator().manual_seed(0), dtype=x.dtype)
        x[1], y[1] = x[0] + gap * x[0].norm() * step / step.norm(), y[0]
        _, gW, gb, _ = layer_gradient(v.model, v.layer_name, x, y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            factorization = GradientFactorization()
            fg = factorization.fit_transform(stack_gradient(gW, gb))
        assert fg.batch_size == 7  # the duplicate's value is below the gap (an estimated b = 7) or dropped
        ranks[gap] = fg.exact_rank
    assert ranks == {0.0: True, 1e-4: False}


def test_without_a_rank_gap_the_noise_edge_gives_the_batch_size():
    """Signal singular values 1 … 0.05 (no ratio ≥ 10) over white noise whose edge is ~4× below the
    smallest: the approximate mode reads b from the noise edge; the exact one refuses."""
    from gradinv.factorize import (
        GradientFactorization,
        NoRankGapError,
        noise_edge_rank,
        stack_gradient,
    )

    rng = np.random.default_rng(0)
    m, n, b = 400, 300, 10
    U = np.linalg.qr(rng.normal(size=(m, b)))[0]
    V = np.linalg.qr(rng.normal(size=(n, b)))[0]
    signal = (U * np.geomspace(1.0, 0.05, b)) @ V.T
    tau = 0.05 / 4 / (np.sqrt(m) + np.sqrt(n))  # noise edge τ(√m + √n) a quarter of the weakest signal
    grad_W = signal + tau * rng.normal(size=(m, n))
    assert noise_edge_rank(np.linalg.svd(grad_W, compute_uv=False), grad_W.shape) == b
    grad = stack_gradient(grad_W, rng.normal(size=m))
    with pytest.raises(NoRankGapError):
        GradientFactorization(min_gap=10.0).fit_transform(grad)
    f = GradientFactorization(min_gap=10.0, noise_rank=True)
    f.fit_transform(grad)
    assert f.batch_size_ == b and f.batch_size_source_ == "noise edge"


@pytest.mark.parametrize("batch_size", [None, 10])
def test_an_update_that_is_all_noise_is_said_to_be_noise(batch_size):
    """A rank-10 signal a hundred times below white noise's edge (LocalDpMod at a small ε): the
    approximate mode says the update is noise at this layer, whether b is given or not, instead of
    searching it for columns that are not there."""
    from gradinv.factorize import GradientFactorization, NoSignalError, stack_gradient

    rng = np.random.default_rng(0)
    m, n, b = 400, 300, 10
    U = np.linalg.qr(rng.normal(size=(m, b)))[0]
    V = np.linalg.qr(rng.normal(size=(n, b)))[0]
    tau = 1.0 / (np.sqrt(m) + np.sqrt(n))  # noise edge ≈ 1
    grad = stack_gradient((U * 0.01) @ V.T + tau * rng.normal(size=(m, n)), rng.normal(size=m))
    with pytest.raises(NoSignalError, match="noise at this layer"):
        GradientFactorization(batch_size=batch_size, min_gap=10.0, noise_rank=True).fit_transform(grad)


def test_with_bias_span_a_collinear_pair_puts_every_column_in_col_L():
    """A black and a white frame (x₂ = α x₁): col(dL/dW) lacks a dimension of col(dL/dZ), the stacked
    gradient has it back."""
    v = make_client(ClientSpec(source="skimage_grey", size=28, quirk="blanks"), batch_size=12, width=300,
                    random_state=0)
    grad, G = stack_gradient(v.grad_W, v.grad_b), v.grad_Z.numpy()

    def off_span(fg):
        L = np.asarray(fg.L)
        return np.linalg.norm(G - L @ (L.T @ G), axis=0) / np.linalg.norm(G, axis=0)

    plain = GradientFactorization()
    assert plain.fit_transform(grad).batch_size == 11 and off_span(plain.fit_transform(grad)).max() > 1e-3
    spanned = GradientFactorization(with_bias_span=True)
    fg = spanned.fit_transform(grad)
    assert spanned.bias_axis_ and fg.batch_size == 12 and off_span(fg).max() < 1e-10
    assert fg.bias_residual() < 1e-12
