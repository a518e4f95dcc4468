"""The gradient-only searches by a sudl estimator (solver="logcosh", "l1", "l4"; gradinv.search.sudl_solvers)."""

import pytest

from gradinv import invert_layer
from gradinv.metrics import evaluate


@pytest.mark.parametrize("solver", ["logcosh", "l1", "l4"])
def test_each_sudl_solver_recovers_a_random_upstream_batch(ru10, solver):
    """The theory's client (loss ⟨R, ReLU(Z)⟩), b = 10, m = 300: every column, every sample certified."""
    res = invert_layer(ru10.grad_W, ru10.grad_b, solver=solver, random_state=0, weight=ru10.layer.weight.detach(),
                       bias=ru10.layer.bias.detach())
    ev = evaluate(ru10.inputs, res.inputs, res.exact)
    assert res.solver == solver and ev["exact"] == 10 and ev["certified"] == 10 and ev["false_certificates"] == 0


def test_gradient_only_solver_fails_honestly_on_cross_entropy(ce20):
    """The continuous SUDL solvers find spurious sparse combinations here; they must not be certified."""
    res = invert_layer(ce20.grad_W.numpy(), ce20.grad_b.numpy(), solver="logcosh", random_state=0,
                       weight=ce20.layer.weight.detach(), bias=ce20.layer.bias.detach())
    assert evaluate(ce20.inputs.numpy(), res.inputs, res.exact)["false_certificates"] == 0
