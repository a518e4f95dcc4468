"""Every bad input gets a clear error naming the argument (issue 21 item 4), never a crash or a wrong answer."""

import numpy as np
import pytest
import torch
from torch import nn

from gradinv import invert_layer
from gradinv.cli import main
from gradinv.models import attack_model

RNG = np.random.default_rng(0)
GW, GB = RNG.normal(size=(30, 8)), RNG.normal(size=30)


@pytest.mark.parametrize("grad_W, grad_b, error, message", [
    (None, GB, TypeError, "grad_W must be an array, got None"),
    (GW, None, TypeError, "grad_b must be an array, got None"),
    ("grads.npz", GB, TypeError, "grad_W must be a numeric array, got a string"),
    ({"a": 1}, GB, TypeError, "grad_W must be a numeric array, got dict"),
    (GW, 3.0, ValueError, "grad_b must be 1-D, got a scalar"),
    (5, GB, ValueError, "grad_W must be 2-D, got a scalar"),
    ([[1.0, 2.0], [3.0]], GB, ValueError, "grad_W is not a rectangular array"),
    (np.array([["a", "b"], ["c", "d"]], dtype=object), GB, TypeError, "grad_W must hold real numbers"),
    (np.ones((30, 8), dtype="U3"), GB, TypeError, "grad_W has dtype"),
    (np.empty((0, 8)), GB, ValueError, "grad_W is empty"),
    (GW, np.ones(29), ValueError, r"grad_b must have shape \(30,\)"),
    (np.where(np.eye(30, 8) > 0, np.inf, GW), GB, ValueError, "grad_W contains NaN or infinite"),
    (GW, np.full(30, np.nan), ValueError, "grad_b contains NaN or infinite"),
    (GW.astype(complex), GB, ValueError, "grad_W: Complex data not supported"),
    (torch.ones(30, 8, 2), GB, ValueError, "grad_W must be 2-D, got 3-D"),
])
def test_bad_gradients_name_the_argument(grad_W, grad_b, error, message):
    with pytest.raises(error, match=message):
        invert_layer(grad_W, grad_b)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(weight=np.ones((30, 7)), bias=np.ones(30)), ValueError, r"weight must have shape \(30, 8\)"),
    (dict(weight=np.ones((30, 8)), bias="zeros"), TypeError, "bias must be a numeric array"),
    (dict(next_weight=np.ones((10, 29))), ValueError, r"next_weight must have shape \(any, 30\)"),
    (dict(batch_size=2.5), TypeError, "batch_size must be a positive integer"),
    (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
    (dict(batch_size=True), TypeError, "batch_size must be a positive integer"),
    (dict(max_time=-1), ValueError, "max_time must be finite, > 0"),
    (dict(max_time="60"), TypeError, "max_time must be a positive number"),
    (dict(zero_tol=2.0), ValueError, "zero_tol must be finite, > 0 and < 1"),
    (dict(approximate="yes"), TypeError, "approximate must be True, False or None"),
])
def test_bad_options_name_the_argument(kwargs, error, message):
    with pytest.raises(error, match=message):
        invert_layer(GW, GB, **kwargs)


def test_numeric_object_arrays_and_lists_are_converted_like_scikit_learn(ru10):
    """An object array of numbers, nested lists and integer arrays are numbers: converted, attacked."""
    gW, gb = ru10.grad_W.numpy(), ru10.grad_b.numpy()
    want = invert_layer(gW, gb, random_state=0).inputs
    got = invert_layer(gW.astype(object), gb.tolist(), random_state=0).inputs
    assert isinstance(got, np.ndarray) and np.array_equal(got, want)


def test_attack_model_bad_arguments():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    grads = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        attack_model("model.pt", grads)
    with pytest.raises(TypeError, match="gradients must map parameter names"):
        attack_model(model, [1, 2])
    with pytest.raises(TypeError, match="layer must be a module name"):
        attack_model(model, grads, layer=0)
    with pytest.raises(TypeError, match=r"gradients\['0.weight'\] is None"):
        attack_model(model, {**grads, "0.weight": None})


def test_cli_prints_one_line_never_a_traceback(tmp_path, capsys):
    """A file whose arrays are the wrong kind: one line on stderr, exit code 2."""
    np.savez(tmp_path / "g.npz", grad_W=np.ones(5), grad_b=np.ones(5))
    assert main(["attack", str(tmp_path / "g.npz"), "-o", str(tmp_path / "o.npz")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("note:")]
    assert len(err) == 1 and err[0].startswith("error:") and "grad_W must be 2-D" in err[0]
