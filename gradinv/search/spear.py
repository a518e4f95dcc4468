"""SPEAR's sampling search (Dimitrov et al., NeurIPS 2024): the baseline SPEAR++ replaced.

A column g_j = L q_j of dL/dZ vanishes on the neurons inactive for sample j.  Any b−1 of those
rows of L determine q_j as their kernel direction, so SPEAR samples random (b−1)-row subsets,
takes each kernel direction and keeps those whose column has many exact zeros (the sparsity
filter, ≥ ``min_zero_fraction``·m).  A random subset lies inside one zero set with probability
≈ 2^−(b−1): the cost grows exponentially with the batch size.  Proposals are batched as one
QR per ``batch`` subsets; the search stops at ``max_time`` seconds or ``max_proposals``.
"""

import time

import numpy as np
from sklearn.utils import check_random_state
from tqdm.auto import tqdm

from sudl import select_independent
from sudl._array_api import array_namespace, device, to_numpy
from sudl.rounding import count_zeros, default_zero_tol, kernel_direction

from ._result import SearchResult


def spear_search(L, *, random_state=None, max_time=60.0, max_proposals=10**8, batch=4096,
                 min_zero_fraction=0.3, min_hits=2, zero_tol=None, progress=False):
    """Directions q (rows) whose column L q has ≥ ``min_zero_fraction``·m exact zeros.

    Proposals that pass the filter are merged when parallel (|cos| > 1 − 1e-9) and counted.  The
    search stops when b linearly independent directions have each been proposed ``min_hits``
    times (a true column is re-proposed far more often than a sparse combination of columns,
    whose zero set is smaller), or at the bounds.  Returns (directions, n_zeros, n_proposals).
    """
    xp = array_namespace(L)
    rng = check_random_state(random_state)
    m, b = L.shape
    zero_tol = zero_tol or default_zero_tol(float(xp.finfo(L.dtype).eps))
    min_zeros = max(b, int(min_zero_fraction * m))
    found = np.zeros((0, b))
    zeros = np.zeros(0, dtype=int)
    hits = np.zeros(0, dtype=int)
    start, n_prop = time.perf_counter(), 0
    bar = tqdm(total=None, disable=not progress, desc="SPEAR proposals", unit="prop")
    while time.perf_counter() - start < max_time and n_prop < max_proposals:
        k = min(batch, max_proposals - n_prop)
        rows = np.argpartition(rng.random((k, m)), b - 2, axis=1)[:, : b - 1] if b > 1 else np.zeros((k, 0), int)
        A = xp.reshape(xp.take(L, xp.asarray(rows.reshape(-1), device=device(L)), axis=0), (k, b - 1, b))
        Q = kernel_direction(A) if b > 1 else xp.ones((k, 1), dtype=L.dtype, device=device(L))
        z = to_numpy(count_zeros(L @ Q.T, zero_tol))
        n_prop += k
        bar.update(k)
        for i in np.flatnonzero(z >= min_zeros):
            q = to_numpy(Q[i, :])
            same = np.flatnonzero(np.abs(found @ q) > 1 - 1e-9) if len(found) else []
            if len(same):
                hits[same[0]] += 1
            else:
                found, zeros, hits = np.vstack([found, q]), np.append(zeros, z[i]), np.append(hits, 1)
        confirmed = hits >= min_hits
        if confirmed.sum() >= b and len(select_independent(found[confirmed], zeros[confirmed])) == b:
            break
    bar.close()
    return found, zeros, n_prop


def search(factors, knowledge, *, random_state=None, max_time=60.0, verbose=0, max_proposals=10**8, batch=4096,
           min_zero_fraction=0.3):
    """The registry's entry (``"spear"``): :func:`spear_search` on L (the gradient alone; ``knowledge``
    unused).  ``extra``: ``n_proposals`` (subsets sampled)."""
    start = time.perf_counter()
    found, zeros, n_prop = spear_search(factors.L, random_state=random_state, max_time=max_time,
                                        max_proposals=max_proposals, batch=batch,
                                        min_zero_fraction=min_zero_fraction, zero_tol=factors.zero_tol,
                                        progress=bool(verbose))
    spent = time.perf_counter() - start
    b = factors.L.shape[1]
    reason = ("b independent directions proposed twice each" if len(zeros) >= b and spent < max_time
              else f"max_proposals={max_proposals} sampled" if n_prop >= max_proposals
              else f"max_time={max_time:g} s reached")
    return SearchResult(found, zeros, np.ones(len(zeros), bool), "spear", reason, spent,
                        extra={"n_proposals": n_prop})
