"""The informed search (solver="informed": W, b and the network after the ReLU; gradinv.search.informed)."""

import numpy as np
import pytest
import torch

from gradinv import (
    GradientError,
    invert_layer,
)
from gradinv.cases import make_victim
from gradinv.labels import label_counts
from gradinv.metrics import evaluate
from gradinv.search import informed as informed_search_module
from gradinv.search import templates


def test_cross_entropy_b20_informed_float64(ce20):
    """Issue 4: cross-entropy client, standardised 32x32x3 crops, m=1000, b=20: >= 90% exact and certified."""
    res = invert_layer(ce20.grad_W.numpy(), ce20.grad_b.numpy(), random_state=0, max_time=600, **ce20.knowledge())
    ev = evaluate(ce20.inputs.numpy(), res.inputs, res.exact)
    assert ev["exact"] >= 18 and ev["certified"] >= 18 and ev["false_certificates"] == 0


def test_cross_entropy_b20_informed_float32():
    """Issue 4: the same straight from a float32 PyTorch client, relative error <= 1e-4."""
    v = make_victim("cross_entropy", batch_size=20, width=1000, random_state=1, dtype=torch.float32)
    res = invert_layer(v.grad_W, v.grad_b, random_state=0, max_time=600, **v.knowledge())
    assert res.inputs.dtype == torch.float32
    ev = evaluate(v.inputs, res.inputs, res.exact, dtype="float32")
    assert ev["exact"] >= 18 and ev["certified"] >= 18 and ev["false_certificates"] == 0


def test_cross_entropy_b50_float32():
    """Issue 6: exact rate in float32 at b=50 (cross-entropy client, m=1000)."""
    v = make_victim("cross_entropy", batch_size=50, width=1000, random_state=0, dtype=torch.float32)
    res = invert_layer(v.grad_W, v.grad_b, random_state=0, max_time=600, **v.knowledge())
    ev = evaluate(v.inputs, res.inputs, res.exact, dtype="float32")
    assert ev["exact"] >= 45 and ev["false_certificates"] == 0


def test_informed_needs_the_weights(ru10):
    with pytest.raises(ValueError, match="needs the layer's weight"):
        invert_layer(ru10.grad_W.numpy(), ru10.grad_b.numpy(), solver="informed")


def test_informed_rounding_skips_a_cell_without_active_neurons():
    """A start whose cell has no active neuron leaves W₂ᵀu undetermined: skipped, not an error."""
    from gradinv.search.rounding import _polish_and_round
    from gradinv.search.tolerances import tolerances

    rng = np.random.default_rng(0)
    L = torch.linalg.qr(torch.as_tensor(rng.normal(size=(60, 5))))[0]
    A = torch.as_tensor(rng.normal(size=(60, 5)))
    W2 = torch.as_tensor(rng.normal(size=(60, 3)))
    bias = -10.0 * torch.ones(60, dtype=torch.float64)  # every neuron inactive at c
    c = torch.as_tensor(rng.normal(size=5)) * 0.1
    assert _polish_and_round(c, A, bias, L, W2, tolerances(1e-9)) is None


def test_classifier_bias_gradient_is_checked_and_used(ce20, monkeypatch):
    """``next_bias_grad`` (the classifier's bias gradient): a wrong shape is refused; the right one
    reaches the search and the batch is still recovered exactly."""
    known = ce20.knowledge()
    with pytest.raises(GradientError, match="next_bias_grad"):
        invert_layer(ce20.grad_W, ce20.grad_b, next_bias_grad=torch.zeros(3), max_time=10, **known)
    with pytest.raises(GradientError, match="NaN or infinite"):
        invert_layer(ce20.grad_W, ce20.grad_b, next_bias_grad=torch.full((10,), float("nan")), max_time=10, **known)
    drawn = []  # the class probabilities each round's templates are drawn with
    real = templates._round_templates

    def record(deviations, n_starts, n_classes, round_index, rng, class_p=None):
        drawn.append(class_p)
        return real(deviations, n_starts, n_classes, round_index, rng, class_p)

    monkeypatch.setattr(informed_search_module, "_round_templates", record)  # where the search looks it up
    res = invert_layer(ce20.grad_W, ce20.grad_b, random_state=0, max_time=600, **ce20.attack_kwargs())
    counts = label_counts(ce20.grad_next_bias, 20)  # the first round: nothing found yet
    assert np.allclose(drawn[0], templates.class_probabilities(counts, [], 10))
    ev = evaluate(ce20.inputs, res.inputs, res.exact)
    assert ev["exact"] >= 18 and ev["certified"] >= 18 and ev["false_certificates"] == 0


def test_a_noisy_update_gets_no_unchecked_block_directions():
    """A DP-SGD update (Opacus, σ = 1e-6, C = 1) of a zoo client whose rounding returns blocks: in a
    noisy update a zero set's kernel is known only to the noise, so the informed search adds the one
    direction it checked and not the block's others, which were mixtures of two columns (|cos|
    0.71–0.76 to the nearest true one: 19.5 dB for the batch before, 88 dB after)."""
    from gradinv.cases import dp_sgd_gradients, make_client

    torch.set_default_dtype(torch.float64)
    v = make_client("mlp2_raw", batch_size=20, width=1000, random_state=1)
    grads = dp_sgd_gradients(v.model, v.model_inputs, v.labels, noise_multiplier=1e-6, max_grad_norm=1.0,
                             random_state=1)
    gW, gb = grads[f"{v.layer_name}.weight"], grads[f"{v.layer_name}.bias"]
    res = invert_layer(gW, gb, solver="informed", approximate=True, random_state=1, max_time=60, **v.knowledge())
    G, Gh = v.grad_Z.numpy(), np.asarray(res.grad_Z)
    cos = np.abs((G / np.linalg.norm(G, axis=0)).T @ (Gh / np.linalg.norm(Gh, axis=0)))
    assert np.all(cos.max(axis=0) > 0.999)
    assert evaluate(v.inputs, res.inputs, res.exact)["psnr"] >= 30
