import numpy as np
import pytest
import torch
from torch import nn

from gradinv import GradientError
from gradinv.cli import main
from gradinv.models import attack_model, find_attackable_layers


def test_finds_linear_relu_layers_and_the_classifier():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3))
    layers = find_attackable_layers(model)
    assert [lay.name for lay in layers] == ["0", "2"]
    assert layers[0].first and "client's inputs" in layers[0].reason and layers[0].next_linear is None
    assert not layers[1].first and "features" in layers[1].reason and layers[1].next_name == "4"


def test_model_without_relu_is_refused():
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    with pytest.raises(GradientError, match="no Linear layer followed by an nn.ReLU"):
        attack_model(model, {})
    with pytest.raises(GradientError, match="not a Linear followed by ReLU"):
        attack_model(nn.Sequential(nn.Linear(8, 4), nn.ReLU()), {}, layer="1")


def test_cli_attacks_a_plain_training_script_output(tmp_path, monkeypatch, capsys):
    from examples.train_client import main as train

    monkeypatch.chdir(tmp_path)
    train(["--batch-size", "12", "--inputs-out", "inputs.pt"])
    assert main(["attack", "client_grads.pt", "--model-factory", "examples.train_client:make_model",
                 "--state", "client_model.pt", "--max-time", "600", "-o", "rec.npz"]) == 0
    out = capsys.readouterr().out
    assert "first layer" in out and "labels:" in out
    x = torch.load("inputs.pt", weights_only=True)["inputs"].numpy()
    with np.load("rec.npz") as f:
        rec, exact, labels = f["inputs"], f["exact"], f["labels"]
    dist = np.linalg.norm(rec[:, None] - x[None], axis=2)
    err = dist.min(axis=1) / np.linalg.norm(x, axis=1).mean()
    assert exact.sum() >= 11 and np.all(err[exact] < 1e-6)
    from sklearn.datasets import (
        load_digits,  # the script's batch: the first 12 digits, in order
    )

    assert np.array_equal(labels[exact], load_digits().target[:12][dist.argmin(axis=1)][exact])


def test_cli_model_and_grads_files_without_the_architecture(tmp_path, monkeypatch, capsys):
    """Issue 6's form: `gradinv attack --model MODEL.pt --grads GRADS.pt`, the state_dict alone."""
    from examples.train_client import main as train

    monkeypatch.chdir(tmp_path)
    train(["--batch-size", "8", "--inputs-out", "inputs.pt"])
    assert main(["attack", "--model", "client_model.pt", "--grads", "client_grads.pt", "-o", "rec.npz"]) == 0
    out = capsys.readouterr().out
    assert "'0' (Linear-shaped; ReLU after it assumed)" in out and "classifier '2'" in out
    x = torch.load("inputs.pt", weights_only=True)["inputs"].numpy()
    with np.load("rec.npz") as f:
        rec, exact = f["inputs"], f["exact"]
    err = np.linalg.norm(rec[:, None] - x[None], axis=2).min(axis=1) / np.linalg.norm(x, axis=1).mean()
    assert exact.sum() == 8 and np.all(err < 1e-6)


def test_state_dict_layer_must_exist():
    from gradinv.models import attack_state_dict

    state = {"fc.weight": torch.ones(4, 3), "fc.bias": torch.ones(4)}
    with pytest.raises(GradientError, match="not a Linear-shaped entry"):
        attack_state_dict(state, {}, layer="conv")
    with pytest.raises(GradientError, match="has gradients"):
        attack_state_dict(state, {})


def test_attack_model_passes_the_classifier_bias_gradient():
    from gradinv.cases import make_victim

    v = make_victim("cross_entropy", batch_size=8, width=200, random_state=0)
    grads = {n: p.grad for n, p in v.model.named_parameters()}
    res, layer = attack_model(v.model, grads, random_state=0, max_time=600)
    assert layer.next_name == "2" and res.exact.sum() == 8
    assert torch.equal(torch.as_tensor(res.pipeline.named_steps["search"].knowledge.next_bias_grad), grads["2.bias"])
    res, _ = attack_model(v.model, grads, random_state=0, max_time=600, next_bias_grad=None)  # the caller decides
    assert res.pipeline.named_steps["search"].knowledge.next_bias_grad is None and res.exact.sum() == 8


def test_an_approximate_update_whose_default_search_finds_nothing_goes_to_the_other_search(monkeypatch):
    """The default search of a noisy update raising NoExactColumnError is not the end: the other
    search of ``Knowledge.approximate_searches`` runs, and its batch is kept (and said)."""
    from gradinv import models
    from gradinv.cases import dp_sgd_gradients, make_client
    from gradinv.factorize import NoExactColumnError

    v = make_client("mlp2_digits", batch_size=10, width=300, random_state=0)
    grads = dp_sgd_gradients(v.model, v.model_inputs, v.labels, noise_multiplier=1e-5, max_grad_norm=1.0,
                             random_state=0)
    real = models.invert_layer
    calls = []

    def cells_find_nothing(*args, **kwargs):
        calls.append(kwargs.get("solver"))
        if kwargs.get("solver") is None:  # the default: the cell search on this noisy update
            error = NoExactColumnError("no sparse column found: the search's bound ran out")
            error.solver = "cells"
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(models, "invert_layer", cells_find_nothing)
    res, _ = attack_model(v.model, grads, random_state=0)
    assert calls == [None, "informed"]
    assert res.solver == "informed" and res.approximate
    assert "cells search found no column" in res.mode_reason and "cells failed" in res.search_reason
    assert res.inputs.shape[0] == 10


def test_an_approximate_update_whose_searches_all_find_nothing_raises(monkeypatch):
    from gradinv import models
    from gradinv.cases import dp_sgd_gradients, make_client
    from gradinv.factorize import NoExactColumnError

    v = make_client("mlp2_digits", batch_size=10, width=300, random_state=0)
    grads = dp_sgd_gradients(v.model, v.model_inputs, v.labels, noise_multiplier=1e-5, max_grad_norm=1.0,
                             random_state=0)

    def nothing(*args, **kwargs):
        raise NoExactColumnError("no sparse column found")

    monkeypatch.setattr(models, "invert_layer", nothing)
    with pytest.raises(NoExactColumnError, match="no sparse column found"):
        attack_model(v.model, grads, random_state=0)
