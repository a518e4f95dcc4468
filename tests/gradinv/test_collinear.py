"""Two inputs that are multiples of one another (a black and a white frame) share one column of dL/dW:
split with the network after the layer (gradinv.collinear), every input exact, certified end to end only."""

import numpy as np
import pytest
import torch

from gradinv import GradientFactorization, invert_layer, stack_gradient
from gradinv.cases import ClientSpec, layer_gradient, make_client
from gradinv.collinear import find_pair
from gradinv.metrics import evaluate
from gradinv.models import attack_model

GREY_BLANKS = ClientSpec(source="skimage_grey", size=28, quirk="blanks")  # one channel: black and white are collinear


@pytest.mark.parametrize("seed", [0, 1])
def test_a_black_and_a_white_frame_are_split_and_every_input_is_exact(seed):
    v = make_client(GREY_BLANKS, batch_size=12, width=300, random_state=seed)
    x = v.inputs.numpy()
    assert np.ptp(x[0]) == 0 and np.ptp(x[1]) == 0 and x[0, 0] * x[1, 0] < 0  # the quirk: collinear frames
    res = invert_layer(v.grad_W, v.grad_b, random_state=0, **v.attack_kwargs())
    rec = res.pipeline.named_steps["reconstruct"]
    assert rec.pair_ is not None and res.batch_size == 12 and len(res.inputs) == 12
    ev = evaluate(v.inputs, res.inputs, res.exact)
    assert ev["exact"] == 12 and ev["certified"] == 0  # the layer alone does not prove the split
    assert all("multiples of one another" in r for r in res.certificate_reason)
    res, _ = attack_model(v.model, v.gradients, random_state=0)
    ev = evaluate(v.inputs, res.inputs, res.exact)
    assert ev["exact"] == 12 and ev["certified"] == 12 and ev["false_certificates"] == 0
    assert res.end_to_end.startswith("passed") and res.describe() == "12 inputs recovered exactly"


@pytest.mark.parametrize("seed", [0, 2, 3])
def test_a_near_blank_input_with_a_frames_relu_pattern_is_placed_by_the_softmax(seed):
    """A near-blank crop beside the black and the white frame, with one frame's ReLU pattern: every
    gradient sent is the same along a line of splits (collinear module doc), the softmax is not; and
    the frame's mask is one of several adjacent intervals that fit dL/db (seed 0: the best fit is not it)."""
    v = make_client(GREY_BLANKS, batch_size=12, width=300, random_state=seed)
    x = v.model_inputs.clone()
    x[2] = x[1] + 1e-3 * torch.as_tensor(np.random.default_rng(seed).standard_normal(x.shape[1]))
    W, b = v.layer.weight.detach(), v.layer.bias.detach()
    assert torch.equal(W @ x[2] + b > 0, W @ x[1] + b > 0)  # the quirk: one ReLU pattern for two inputs
    layer_gradient(v.model, v.layer_name, x, v.labels)
    gradients = {k: p.grad.detach().clone() for k, p in v.model.named_parameters()}
    res, _ = attack_model(v.model, gradients, random_state=0)
    assert res.pipeline.named_steps["reconstruct"].pair_.n_free == 1
    ev = evaluate(x, res.inputs, res.exact)
    assert ev["exact"] == 12 and ev["certified"] == 12 and ev["false_certificates"] == 0
    assert np.array_equal(np.asarray(res.labels)[ev["pairs"][1]], v.labels.numpy()[ev["pairs"][0]])


@pytest.mark.parametrize(("seed", "n_exact", "group"), [
    (0, 10, "a group of 2 inputs known only by their span"),
    (1, 11, "1 input known only by the span it shares with an exact one")])
def test_without_the_classifier_the_frames_are_a_group_and_every_other_input_is_exact(seed, n_exact, group):
    """W and b alone do not split the pair; col([dL/dW | dL/db]) holds both frames' columns, whose shared
    zero-set kernel identifies their span only (gradinv.pipeline._with_bias_span); where one frame's
    column has zeros of its own, that frame is exact."""
    v = make_client(GREY_BLANKS, batch_size=12, width=300, random_state=seed)
    res = invert_layer(v.grad_W, v.grad_b, weight=v.layer.weight.detach(), bias=v.layer.bias.detach(), random_state=0)
    assert res.pipeline.named_steps["reconstruct"].pair_ is None
    assert res.pipeline.named_steps["factorize"].bias_axis_ and "dL/db's direction added" in res.mode_reason
    ev = evaluate(v.inputs, res.inputs, res.exact)
    assert ev["exact"] == n_exact and ev["certified"] == n_exact and ev["false_certificates"] == 0
    assert res.describe() == f"{n_exact} inputs recovered exactly; {group}"


def test_three_collinear_inputs_are_not_split():
    """A mid-grey frame beside the black and the white one: three members, no pair explains dL/db."""
    v = make_client(GREY_BLANKS, batch_size=12, width=300, random_state=0)
    x = v.model_inputs.clone()
    x[2] = 0.5 * (x[0] + x[1])
    _, gW, gb, _ = layer_gradient(v.model, v.layer_name, x, v.labels)
    res = invert_layer(gW, gb, random_state=0, **v.knowledge())
    assert res.pipeline.named_steps["reconstruct"].pair_ is None
    assert evaluate(x, res.inputs, res.exact)["false_certificates"] == 0 and not res.exact.any()


def test_a_bias_gradient_moved_off_the_span_is_no_pair():
    """dL/db of a clean batch plus a vector off col(L): nothing to split, nothing certified."""
    v = make_client("mlp2_photos", batch_size=10, width=300, random_state=0)
    off = torch.randn(v.grad_b.shape, generator=torch.Generator().manual_seed(0), dtype=v.grad_b.dtype)
    res = invert_layer(v.grad_W, v.grad_b + 1e-3 * v.grad_b.norm() * off / off.norm(), random_state=0,
                       **v.knowledge())
    rec = res.pipeline.named_steps["reconstruct"]
    assert rec.pair_ is None and rec.bias_residual_ > 1e-4 and not res.exact.any()


def test_find_pair_needs_a_bias_gradient_off_the_span():
    """dL/db inside col(L) (any clean batch): nothing to split, whatever the directions."""
    v = make_client("mlp2_photos", batch_size=10, width=300, random_state=1)
    factors = GradientFactorization().fit_transform(stack_gradient(v.grad_W, v.grad_b))
    factors = factors.with_directions(np.eye(10), np.arange(10), np.ones(10, bool))
    assert find_pair(factors, v.layer.weight.detach(), v.layer.bias.detach(), v.classifier.weight.detach()) is None


def test_in_front_of_a_deeper_network_the_next_layers_weight_gradient_splits_the_pair():
    """3 Linear layers: no classifier after the ReLU, but dL/dW₂'s rows hold every sample's activation."""
    v = make_client(ClientSpec(depth=3, source="skimage_grey", size=28, quirk="blanks"), batch_size=12, width=300,
                    random_state=0)
    known = dict(weight=v.layer.weight.detach(), bias=v.layer.bias.detach(), downstream=v.model[2:])
    res = invert_layer(v.grad_W, v.grad_b, random_state=0, **known)
    assert res.pipeline.named_steps["reconstruct"].pair_ is None  # the network alone: J(h) varies along the line
    ev = evaluate(v.inputs, res.inputs, res.exact)  # the pair's span from col([dL/dW | dL/db]), the rest exact
    assert ev["exact"] == 10 and ev["false_certificates"] == 0 and res.pipeline.named_steps["factorize"].bias_axis_
    res = invert_layer(v.grad_W, v.grad_b, next_weight_grad=v.gradients["2.weight"], random_state=0, **known)
    assert res.pipeline.named_steps["reconstruct"].pair_ is not None
    assert evaluate(v.inputs, res.inputs, res.exact)["exact"] == 12
    res, _ = attack_model(v.model, v.gradients, random_state=0)  # reads dL/dW₂ from what the client sent
    ev = evaluate(v.inputs, res.inputs, res.exact)
    assert ev["exact"] == 12 and ev["certified"] == 12 and ev["false_certificates"] == 0


@pytest.mark.parametrize("seed", [0, 1])
def test_in_front_of_a_deeper_network_a_near_white_frame_with_the_white_ones_pattern_is_placed_by_the_softmax(seed):
    """The "sky" quirk at depth 3: the near-white frame's input on its plane is a whole line through the
    white frame's (one ReLU pattern), which the end-to-end fit places."""
    v = make_client(ClientSpec(depth=3, source="skimage_grey", size=28, quirk="sky"), batch_size=20, width=1000,
                    random_state=seed)
    x, W, b = v.model_inputs, v.layer.weight.detach(), v.layer.bias.detach()
    assert torch.equal(W @ x[2] + b > 0, W @ x[0] + b > 0)  # the quirk: one ReLU pattern for two inputs
    res, _ = attack_model(v.model, v.gradients, random_state=0)
    assert res.pipeline.named_steps["reconstruct"].pair_.n_free == 1
    ev = evaluate(v.inputs, res.inputs, res.exact)
    assert ev["exact"] == 20 and ev["certified"] == 20 and ev["false_certificates"] == 0
