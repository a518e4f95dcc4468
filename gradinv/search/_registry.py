"""The registry of searches: one name → one module's ``search(factors, knowledge, ...)``, one dispatch point.

Every search takes the factorised gradient (``factors``, :class:`~gradinv.factorize.FactorizedGradient`)
and what the server knows (:class:`~gradinv.knowledge.Knowledge`), and returns a
:class:`~gradinv.search._result.SearchResult`.  Which one runs when the caller names none is
decided by :meth:`gradinv.knowledge.Knowledge.default_search`.
"""

from functools import partial

from .._step import GradientStep
from ..knowledge import Knowledge
from . import arrangement, informed, spear, spearpp, sudl_solvers

SEARCHES = {
    "informed": informed.search,  # W, b and the network after the ReLU
    "cells": arrangement.search,  # W and b
    "spear": spear.search,  # the gradient alone (SPEAR's sampling)
    "spear++": spearpp.search,  # the gradient alone (ℓ1 on the sphere, RAdam)
    **{name: partial(sudl_solvers.search, solver=name) for name in sudl_solvers.SOLVERS},  # the gradient alone
}

EXACT_SEARCHES = ("informed", "cells")
"""Searches whose columns pass exact tests of their own (a unique null vector on ≥ b − 1 + 10 zero rows,
robust, checked): no sparsity filter, and by default they run until they stagnate (:mod:`gradinv.bound`)."""


def run_search(method, factors, knowledge=None, *, random_state=None, max_time=None, verbose=0, options=None):
    """Run the search ``method`` (a name of :data:`SEARCHES`) on ``factors`` with ``knowledge``;
    ``options`` are the method's own keyword arguments.  Returns a :class:`SearchResult`."""
    if method not in SEARCHES:
        raise ValueError(f"solver must be one of {tuple(SEARCHES)}, got {method!r}")
    return SEARCHES[method](factors, knowledge if knowledge is not None else Knowledge(), random_state=random_state,
                            max_time=max_time, verbose=verbose, **(options or {}))


class SearchStep(GradientStep):
    """The pipeline's step ``"search"``: :func:`run_search` on the factorised gradient.

    Fitted: ``result_`` (the :class:`SearchResult`), ``n_found_`` and ``found_times_`` (from it).
    """

    def __init__(self, method="logcosh", knowledge=None, options=None, random_state=None, max_time=None, verbose=0):
        self.method = method
        self.knowledge = knowledge
        self.options = options
        self.random_state = random_state
        self.max_time = max_time
        self.verbose = verbose

    def fit_transform(self, fg, y=None):
        self.result_ = run_search(self.method, fg, self.knowledge, random_state=self.random_state,
                                  max_time=self.max_time, verbose=self.verbose, options=self.options)
        self.n_found_, self.found_times_ = self.result_.n_found, self.result_.found_times
        return fg.with_directions(self.result_.directions, self.result_.n_zeros, self.result_.exact)
