"""One registry of searches, one result type (gradinv.search)."""

import numpy as np
import pytest

from gradinv import GradientFactorization, Knowledge, stack_gradient
from gradinv.cases import make_victim
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
