import numpy as np
import pytest
import torch
from sklearn.pipeline import Pipeline

from gradinv import (
    DependentInputsWarning,
    GradientError,
    invert_layer,
    make_pipeline,
    stack_gradient,
)
from gradinv.cases import make_victim
from gradinv.metrics import evaluate


def test_pipeline_has_named_steps_and_fit_transform_returns_batch(ru10):
    pipe = make_pipeline(random_state=0)
    assert isinstance(pipe, Pipeline)
    assert list(pipe.named_steps) == ["factorize", "search", "rounding", "last_column", "reconstruct"]
    X = pipe.fit_transform(stack_gradient(ru10.grad_W.numpy(), ru10.grad_b.numpy()))
    assert X.shape == tuple(ru10.inputs.shape)
    assert evaluate(ru10.inputs.numpy(), X, np.ones(10, bool))["exact"] == 10
    assert pipe.named_steps["factorize"].batch_size_ == 10  # estimated from the rank gap


def test_random_upstream_exact_and_certified_torch_in_torch_out(ru10):
    res = invert_layer(ru10.grad_W, ru10.grad_b, solver="logcosh", random_state=0,
                       weight=ru10.layer.weight.detach(), bias=ru10.layer.bias.detach())
    assert isinstance(res.inputs, torch.Tensor)
    ev = evaluate(ru10.inputs, res.inputs, res.exact)
    assert ev["exact"] == 10 and ev["certified"] == 10 and ev["false_certificates"] == 0


def test_without_weights_nothing_is_certified(ru10):
    res = invert_layer(ru10.grad_W.numpy(), ru10.grad_b.numpy(), solver="logcosh", random_state=0)
    assert not res.exact.any() and res.sparse.all()


# The time bounds below are generous on purpose: the searches stop as soon as every column is found
# (seconds here); the bound only keeps a loaded machine from turning a slow run into a failure.


@pytest.mark.parametrize("perturb", ["noise", "drop_rows", "scale_columns"])
def test_perturbed_gradients_get_no_false_certificate(ce20, perturb):
    rng = np.random.default_rng(0)
    gW, gb = ce20.grad_W.numpy().copy(), ce20.grad_b.numpy().copy()
    if perturb == "noise":
        gW += 1e-6 * np.abs(gW).max() * rng.standard_normal(gW.shape)
    elif perturb == "drop_rows":
        gW[rng.choice(len(gW), 50, replace=False)] = 0.0
    else:  # a different client's gradient scaled per input column: no longer rank b with exact zeros
        gW *= rng.uniform(0.5, 2.0, size=gW.shape[1])
    try:
        res = invert_layer(gW, gb, batch_size=20, random_state=0, max_time=10, **ce20.knowledge())
    except GradientError as e:  # nothing exact left to find: a clear refusal is a right answer
        assert "exact zeros" in str(e)
        return
    ev = evaluate(ce20.inputs.numpy(), res.inputs, res.exact)
    assert ev["false_certificates"] == 0


@pytest.mark.parametrize(
    "grad_W, grad_b, kwargs, message",
    [
        (np.ones(5), np.ones(5), {}, "2-D"),
        (np.ones((5, 4)), np.ones(3), {}, "grad_b must have shape"),
        (np.ones((5, 4)), np.ones(4), {}, "grad_W looks transposed"),
        (np.zeros((6, 4)), np.zeros(6), {}, "zero"),
        (np.full((6, 4), np.nan), np.ones(6), {}, "NaN"),
        (np.random.default_rng(0).normal(size=(6, 4)), np.ones(6), {"batch_size": 5}, "b <= min"),
        (np.random.default_rng(0).normal(size=(6, 4)), np.ones(6), {}, "rank gap"),
        (np.ones((6, 4), complex), np.ones(6), {}, "Complex"),
    ],
)
def test_bad_gradients_raise(grad_W, grad_b, kwargs, message):
    with pytest.raises(ValueError, match=message):
        invert_layer(grad_W, grad_b, **kwargs)


def test_duplicate_inputs_are_reported(ru10):
    """Two identical samples (one ReLU mask, so one merged column g₀ + g₁) make dL/dW rank b-1: the
    attack warns, reports one dependent input and recovers the b-1 distinct inputs exactly and
    certified; without b the gap gives b-1 directly."""
    X = ru10.inputs.numpy().copy()
    X[1] = X[0]
    W, bias = ru10.layer.weight.detach().numpy(), ru10.layer.bias.detach().numpy()
    upstream = np.random.default_rng(0).normal(size=(W.shape[0], 10))
    G = upstream * (W @ X.T + bias[:, None] > 0)  # dL/dZ of the duplicated batch under ⟨R, ReLU(Z)⟩
    with pytest.warns(DependentInputsWarning, match="1 input"):
        res = invert_layer(G @ X, G.sum(1), batch_size=10, weight=W, bias=bias, random_state=0)
    assert res.batch_size == 9 and res.n_dependent_inputs == 1 and res.solver == "cells"
    ev = evaluate(np.delete(X, 1, axis=0), res.inputs, res.layer_exact)
    assert ev["exact"] == 9 and ev["false_certificates"] == 0
    assert invert_layer(G @ X, G.sum(1)).batch_size == 9


def test_layer_without_relu_is_refused(ru10):
    """dL/dZ of a linear layer without ReLU has no exact zeros: the attack says so instead of guessing."""
    G = np.random.default_rng(0).normal(size=(300, 10))
    X = ru10.inputs.numpy()
    with pytest.raises(GradientError, match="not followed by a ReLU"):
        invert_layer(G @ X, G.sum(1), random_state=0)


def test_same_seed_same_output(ru10):
    a = invert_layer(ru10.grad_W.numpy(), ru10.grad_b.numpy(), random_state=5).inputs
    b = invert_layer(ru10.grad_W.numpy(), ru10.grad_b.numpy(), random_state=5).inputs
    assert np.array_equal(a, b)


def test_near_duplicate_pair_is_recovered_as_a_block():
    """Two near-identical crops with one label share their ReLU mask: no single column of the pair is
    identified, but its span is; the other 18 samples are exact and certified, the pair is not."""
    from gradinv.cases import layer_gradient

    v = make_victim("cross_entropy", batch_size=20, width=300, random_state=0)
    x, labels = v.inputs.clone(), v.labels.clone()
    noise = torch.randn(x.shape[1], generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    x[1], labels[1] = x[0] + 1e-3 * x[0].norm() * noise / x.shape[1] ** 0.5, labels[0]
    _, grad_W, grad_b, grad_Z = layer_gradient(v.model, v.layer_name, x, labels)
    assert torch.equal(grad_Z[:, 0] == 0, grad_Z[:, 1] == 0)
    res = invert_layer(grad_W, grad_b, random_state=0, max_time=60, **v.knowledge())
    assert res.batch_size == 20
    ev = evaluate(x, res.inputs, res.exact)
    assert ev["exact"] >= 18 and ev["certified"] == 18 and ev["false_certificates"] == 0


