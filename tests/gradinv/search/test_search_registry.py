"""One registry of searches, one result type, one place that picks the search (gradinv.search, Knowledge)."""

import numpy as np
import pytest
import torch

from gradinv import GradientFactorization, Knowledge, invert_layer, stack_gradient
from gradinv.cases import make_victim
from gradinv.metrics import evaluate
from gradinv.search import SEARCHES, SearchResult, run_search


@pytest.fixture(scope="module")
def factors_and_knowledge():
    v = make_victim("cross_entropy", batch_size=6, width=200, random_state=0)
    fg = GradientFactorization().fit_transform(stack_gradient(v.grad_W, v.grad_b))
    return fg, Knowledge(**v.attack_kwargs())


@pytest.mark.parametrize("method", list(SEARCHES))
def test_every_search_returns_one_result_type(factors_and_knowledge, method):
    fg, knowledge = factors_and_knowledge
    res = run_search(method, fg, knowledge, random_state=0, max_time=20)
    b = fg.L.shape[1]
    assert isinstance(res, SearchResult) and res.method == method and res.stop_reason and res.time > 0
    assert tuple(np.shape(res.directions)) == (res.n_found, b) and len(res.exact) == res.n_found
    if method in ("informed", "cells"):  # the exact searches find every column of this small batch
        assert res.n_found == b and res.exact.all() and len(res.found_times) == b
        assert len(res.found_rounds) == b and 0 <= res.found_rounds.max() <= res.n_rounds
        assert res.stop_reason == "every column found"


def test_an_unknown_search_is_refused(factors_and_knowledge):
    fg, knowledge = factors_and_knowledge
    with pytest.raises(ValueError, match="solver must be one of"):
        run_search("nope", fg, knowledge)


def test_a_search_that_needs_more_knowledge_says_so(factors_and_knowledge):
    from gradinv import GradientError

    fg, _ = factors_and_knowledge
    with pytest.raises(GradientError, match="needs the layer's weight and bias"):
        run_search("cells", fg, Knowledge())


@pytest.mark.parametrize("known, level, search", [
    ({}, "gradient", "logcosh"),
    ({"weight": np.ones((4, 3)), "bias": np.zeros(4)}, "layer", "cells"),
    ({"weight": np.ones((4, 3)), "bias": np.zeros(4), "next_weight": np.ones((2, 4))}, "classifier", "informed"),
    ({"weight": np.ones((4, 3)), "bias": np.zeros(4), "downstream": torch.nn.Linear(4, 2)}, "classifier", "informed"),
    ({"weight": np.ones((4, 3)), "bias": np.zeros(4),
      "downstream": torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))}, "network", "cells"),
    ({"next_weight": np.ones((2, 4))}, "gradient", "logcosh"),  # no W, b: no cell, no certificate
])
def test_each_knowledge_level_picks_its_strongest_search(known, level, search):
    k = Knowledge(**known)
    assert k.level == level and k.default_search() == search


def test_layer_knowledge_picks_the_cell_search(ru10):
    """W and b known, nothing downstream: the cell search (every column here), not a gradient-only solver."""
    res = invert_layer(ru10.grad_W, ru10.grad_b, weight=ru10.layer.weight.detach(), bias=ru10.layer.bias.detach(),
                       random_state=0)
    assert res.solver == "cells"
    ev = evaluate(ru10.inputs, res.inputs, res.exact)
    assert ev["exact"] == 10 and ev["certified"] == 10 and ev["false_certificates"] == 0


@pytest.mark.parametrize("solver", ["spear++", "cells"])
def test_gradient_and_layer_only_recover_every_sample(ru12, solver):
    res = invert_layer(ru12.grad_W, ru12.grad_b, solver=solver, weight=ru12.layer.weight.detach(),
                       bias=ru12.layer.bias.detach(), random_state=0, max_time=120)
    ev = evaluate(ru12.inputs, res.inputs, res.exact)
    assert res.solver == solver
    assert ev["exact"] == 12 and ev["certified"] == 12 and ev["false_certificates"] == 0
