"""The downstream network the search knows (gradinv.downstream), the attack on deep networks through
attack_model, and the searches' stopping rule (gradinv.bound)."""

import numpy as np
import pytest
import torch
from torch import nn

from gradinv.downstream import Downstream, DownstreamError, as_downstream
from gradinv.metrics import evaluate
from gradinv.models import attack_model, find_attackable_layers


def mlp(widths, seed=0):
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b, dtype=torch.float64))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def test_jacobian_of_a_deep_downstream_is_the_product_of_its_layers():
    net = mlp([30, 20, 10, 4])
    down = Downstream.from_module(net, 30)
    H = torch.relu(torch.randn(5, 30, dtype=torch.float64))
    J = down.jacobians(H)  # B × m × C (Jᵀ per sample)
    for h, Jh in zip(H, J):  # J = W₃ D₂ W₂ D₁ W₁ for logits = W₃ ReLU(W₂ ReLU(W₁ h + b₁) + b₂) + b₃
        z1 = net[0](h)
        z2 = net[2](torch.relu(z1))
        d1, d2 = (z1 > 0).to(torch.float64), (z2 > 0).to(torch.float64)
        expected = net[4].weight @ torch.diag(d2) @ net[2].weight @ torch.diag(d1) @ net[0].weight
        assert torch.allclose(Jh.T, expected, atol=1e-12)


def test_a_single_linear_downstream_is_the_classifier():
    lin = nn.Linear(8, 3, dtype=torch.float64)
    down = Downstream.from_module(nn.Sequential(lin), 8)
    assert down.is_linear and down.n_classes == 3
    assert torch.equal(down.jacobians(torch.zeros(2, 8, dtype=torch.float64))[0], lin.weight.detach().T)


@pytest.mark.parametrize("layer, name", [(nn.BatchNorm1d(6), "BatchNorm1d"), (nn.Dropout(0.5), "Dropout")])
def test_layers_without_a_per_sample_jacobian_are_named(layer, name):
    net = nn.Sequential(nn.Linear(6, 6), layer, nn.ReLU(), nn.Linear(6, 2)).train()
    with pytest.raises(DownstreamError, match=name):
        Downstream.from_module(net, 6)
    net.eval()
    assert Downstream.from_module(net, 6).n_classes == 2


def test_classifier_weight_of_the_wrong_width_is_refused():
    with pytest.raises(DownstreamError, match="next_weight must be"):
        as_downstream(np.zeros((3, 7)), 8)


def client(widths, b, seed):
    net = mlp(widths, seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, widths[0], generator=gen, dtype=torch.float64)
    y = torch.randint(widths[-1], (b,), generator=gen)
    net.zero_grad()
    nn.functional.cross_entropy(net(x), y).backward()
    return net, x, y, {n: p.grad.clone() for n, p in net.named_parameters()}


@pytest.mark.parametrize("seed", [0, 1])
def test_attack_model_on_a_three_layer_network_is_exact(seed):
    net, x, y, grads = client([60, 200, 200, 5], b=8, seed=seed)
    res, layer = attack_model(net, grads, random_state=seed)  # until the search stagnates
    assert "cell search" in layer.reason and res.solver == "cells"
    ev = evaluate(x, res.inputs, res.exact)
    assert ev["exact"] == 8 and ev["false_certificates"] == 0
    rows, cols = ev["pairs"]
    assert np.array_equal(res.labels[cols], y.numpy()[rows])  # labels from J at the recovered inputs


def test_a_custom_forward_gets_the_cell_search_with_w_and_b_alone_and_says_why():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.act, self.fc2, self.fc3 = nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 6), nn.Linear(6, 2)

        def forward(self, x):
            return self.fc3(torch.relu(self.fc2(self.act(self.fc1(x)))))

    layer = find_attackable_layers(Net())[0]
    assert layer.search == "cells" and layer.knowledge.level == "layer" and "own forward()" in layer.reason
