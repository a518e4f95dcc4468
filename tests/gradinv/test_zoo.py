"""The client zoo (gradinv.cases.ZOO / make_client): every kind builds and shares a consistent gradient."""

import numpy as np
import pytest
import torch
from torch import nn

from gradinv.cases.data import (
    DATASET_CROPS,
    QUIRKS,
    SCALINGS,
    SOURCES,
    channel_statistics,
)
from gradinv.cases.networks import WIDTHS, hidden_widths
from gradinv.cases.zoo import (
    ARCHITECTURES,
    LABEL_DISTRIBUTIONS,
    TRAINING_STATES,
    ZOO,
    ClientSpec,
    draw_labels,
    make_client,
)

WIDTH, B = 64, 4


@pytest.fixture(scope="module")
def clients():
    return {kind: make_client(kind, batch_size=B, width=WIDTH, random_state=0) for kind in ZOO}


def test_zoo_covers_every_axis():
    specs = ZOO.values()
    assert len(ZOO) >= 12
    assert {s.depth for s in specs} >= {2, 3, 4, 6}
    assert {s.widths for s in specs} == set(WIDTHS)
    assert {s.architecture for s in specs} == set(ARCHITECTURES)
    assert {s.source for s in specs} == set(SOURCES)
    assert {s.crop for s in specs} == {"random", "window", "full"}
    assert {s.training for s in specs} == set(TRAINING_STATES)
    assert {s.labels for s in specs} == set(LABEL_DISTRIBUTIONS)
    assert {s.scaling for s in specs} == set(SCALINGS)
    assert {s.quirk for s in specs} == set(QUIRKS)


def test_quirks_put_what_they_say_in_the_batch(clients):
    dup = clients["mlp2_duplicates"]
    assert torch.equal(dup.inputs[0], dup.inputs[1]) and dup.labels[0] == dup.labels[1]
    assert torch.equal(dup.inputs[2], dup.inputs[3]) and dup.labels[2] != dup.labels[3]
    raw = make_client(ClientSpec(scaling="raw", quirk="blanks"), batch_size=B, width=WIDTH, random_state=0).images
    assert np.all(raw[0] == 1.0) and np.all(raw[1] == 0.0) and np.ptp(raw[2]) > 0
    sky = make_client(ClientSpec(source="skimage_grey", size=28, scaling="raw", quirk="sky"), batch_size=B,
                      width=WIDTH, random_state=0).images  # white, black, then a faint ramp below white
    assert np.all(sky[0] == 1.0) and np.all(sky[1] == 0.0) and np.isclose(np.ptp(sky[2]), 1e-3) and sky[2].max() == 1.0
    near = clients["mlp2_near"].images
    assert np.array_equal(near[1], np.roll(near[0], 1, axis=1)) and not np.array_equal(near[0], near[1])


@pytest.mark.parametrize("kind", list(ZOO))
def test_client_gradient_is_consistent(clients, kind):
    v, spec = clients[kind], ZOO[kind]
    assert v.kind == kind and v.spec == spec
    assert v.inputs.shape == (B, spec.n_inputs) and v.grad_Z.shape == (WIDTH, B) and v.inputs.dtype == torch.float64
    assert torch.allclose(v.grad_W, v.grad_Z @ v.inputs, rtol=0, atol=1e-10)
    assert torch.allclose(v.grad_b, v.grad_Z.sum(1), rtol=0, atol=1e-10)
    names = [n for n, _ in v.model.named_parameters()]
    assert sorted(v.gradients) == sorted(names)
    assert torch.equal(v.gradients[f"{v.layer_name}.weight"], v.grad_W)
    children = dict(v.model.named_children())
    order = list(children)
    i = order.index(v.layer_name)
    assert isinstance(children[v.layer_name], nn.Linear) and isinstance(children[order[i + 1]], nn.ReLU)
    assert not any(isinstance(children[n], nn.Linear) for n in order[:i])  # the first Linear → ReLU
    assert sum(isinstance(m, nn.Linear) for m in v.model.modules()) == spec.depth
    hidden = [m.out_features for m in v.model.modules() if isinstance(m, nn.Linear)][:-1]
    assert hidden == hidden_widths(WIDTH, spec.depth, spec.widths) and (spec.widths == "constant") == (len(set(hidden)) == 1)
    assert v.labels.shape == (B,) and 0 <= int(v.labels.min()) and int(v.labels.max()) < spec.n_classes
    assert (v.grad_Z == 0).any()  # ReLU's exact zeros
    v.model.zero_grad()
    torch.nn.functional.cross_entropy(v.model(v.model_inputs), v.labels).backward()  # the client's step again
    assert all(torch.equal(p.grad, v.gradients[n]) for n, p in v.model.named_parameters())


@pytest.mark.parametrize("kind", list(ZOO))
def test_knowledge_names_the_classifier_only_when_fed_directly(clients, kind):
    v = clients[kind]
    kw = v.attack_kwargs()
    if ZOO[kind].depth == 2:
        last = list(dict(v.model.named_children()))[-1]
        assert torch.equal(kw["next_weight"], v.model[-1].weight)
        assert torch.equal(kw["next_bias_grad"], v.gradients[f"{last}.bias"])
    else:
        assert "next_weight" not in kw and "next_bias_grad" not in kw and v.grad_next_bias is None
    assert torch.equal(kw["weight"], v.layer.weight) and torch.equal(kw["bias"], v.layer.bias)


def test_labels_and_scalings(clients):
    assert len(set(clients["mlp2_one_label"].labels.tolist())) == 1
    batch = make_client("mlp2_batchstd", batch_size=16, width=WIDTH, random_state=3).images
    np.testing.assert_allclose(batch.mean(axis=(0, 1, 2)), 0, atol=1e-12)
    np.testing.assert_allclose(batch.std(axis=(0, 1, 2)), 1, atol=1e-12)
    raw = clients["mlp2_raw"].images
    assert raw.min() >= 0 and raw.max() <= 1
    mean, std = channel_statistics("photos", 32, "random", DATASET_CROPS)
    np.testing.assert_allclose(clients["mlp2_photos"].images, (raw - mean) / std, atol=1e-12)
    assert np.abs(mean - raw.mean(axis=(0, 1, 2))).max() < 0.3 and np.all(std > 0.1)


@pytest.mark.parametrize("kind", ["mlp2_photos", "mlp2_grey28", "mlp2_skimage_colour"])
def test_dataset_scaling_centres_the_crops(kind):
    x = make_client(kind, batch_size=200, width=8, random_state=7).images
    assert np.abs(x.mean(axis=(0, 1, 2))).max() < 0.15 and np.abs(x.std(axis=(0, 1, 2)) - 1).max() < 0.1


def test_skewed_labels_follow_zipf():
    counts = np.sort(np.bincount(draw_labels("skewed", 20000, 10, random_state=0), minlength=10))[::-1]
    p = 1 / np.arange(1, 11)
    np.testing.assert_allclose(counts / 20000, p / p.sum(), atol=0.015)
    uniform = np.bincount(draw_labels("uniform", 20000, 10, random_state=0), minlength=10) / 20000
    assert np.abs(uniform - 0.1).max() < 0.015


def test_same_seed_same_client_other_seed_other_client():
    torch_state = torch.get_rng_state()
    a = make_client("mlp2_skewed", batch_size=B, width=WIDTH, random_state=5)
    b = make_client("mlp2_skewed", batch_size=B, width=WIDTH, random_state=5)
    c = make_client("mlp2_skewed", batch_size=B, width=WIDTH, random_state=6)
    assert torch.equal(torch.get_rng_state(), torch_state)  # the caller's torch random state is untouched
    assert torch.equal(a.grad_W, b.grad_W) and torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.inputs, c.inputs) and not torch.equal(a.layer.weight, c.layer.weight)


def test_trained_client_shares_the_batch_but_not_the_weights(clients):
    init, trained = clients["mlp3_photos"], clients["mlp3_trained"]
    assert torch.equal(init.inputs, trained.inputs) and torch.equal(init.labels, trained.labels)
    assert not torch.allclose(init.layer.weight, trained.layer.weight)
    assert trained.layer.weight.dtype == torch.float64


def test_bad_kinds_and_batches_are_refused():
    with pytest.raises(ValueError, match="unknown client kind"):
        make_client("mlp9", batch_size=B, width=WIDTH)
    with pytest.raises(ValueError, match="exceeds 64"):
        make_client("mlp2_digits", batch_size=65, width=WIDTH)
    with pytest.raises(ValueError, match="depth"):
        ClientSpec(depth=1)
    with pytest.raises(ValueError, match="labels"):
        ClientSpec(labels="balanced")
    with pytest.raises(ValueError, match="digits"):
        ClientSpec(source="digits")


def test_a_custom_spec_builds():
    v = make_client(ClientSpec(depth=3, architecture="conv", source="skimage_grey", size=28, labels="one",
                               scaling="batch", n_classes=3), batch_size=B, width=WIDTH, random_state=1)
    assert v.inputs.shape == (B, 8 * 14 * 14) and v.kind == "custom" and len(set(v.labels.tolist())) == 1
