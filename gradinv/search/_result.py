"""The one result type of every search (:func:`gradinv.search.run_search`)."""

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class SearchResult:
    """Directions q (rows, k ≤ b) whose columns L q the search proposes as columns of dL/dZ.

    directions : (k × b) array (the factors' namespace, or NumPy)
    n_zeros : (k,) exact zeros of each column L q
    exact : (k,) bool, the column passed the search's own exact test (the pipeline's rounding
        step rounds the others)
    method : the search's name in :data:`gradinv.search.SEARCHES`
    stop_reason : why it stopped (every column found, stagnation, ``max_time``, …)
    time : seconds
    found_times : seconds from the start at which each column came (searches that keep a
        :class:`~gradinv.bound.SearchBound`; empty for the others)
    found_rounds : the round (0-based) in which each column came, and ``n_rounds`` the rounds run
        (the same searches): the search's work, independent of the machine's speed
    extra : what one method reports beyond this (SPEAR's proposal count, the fitted ``sudl`` estimator)
    """

    directions: object
    n_zeros: np.ndarray
    exact: np.ndarray
    method: str
    stop_reason: str
    time: float
    found_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    found_rounds: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    n_rounds: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def n_found(self):
        return len(self.n_zeros)


def bounded_stop_reason(n_found, b, bound, max_time):
    """Why a search under a :class:`~gradinv.bound.SearchBound` stopped."""
    if n_found >= b:
        return "every column found"
    if bound.reason is not None:
        return bound.reason
    if bound.capped():
        return f"max_time={max_time:g} s reached"
    return f"stagnated: no new column in {bound.patience} rounds (gradinv.bound)"


def found_directions(found_q, found_zeros, b):
    """The directions a search accepted as rows (k × b; torch tensors in, NumPy out) and their zero counts."""
    Q = torch.stack(found_q).numpy() if found_q else np.zeros((0, b))
    return Q, np.asarray(found_zeros, dtype=int)
