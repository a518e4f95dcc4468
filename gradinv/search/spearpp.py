"""SPEAR++ (Bakarsky et al., 2025): ℓ1 on the sphere with RAdam, sampling rounding, filter, greedy selection.

Gradient only (dL/dW = L R; the layer's W and b are needed only for the certificates).  A column
g_j = L q_j of dL/dZ is exactly sparse, so q_j is a local minimiser of

    min_{‖q‖ = 1}  (1/m) ‖L q‖₁,

the ℓ1 formulation of complete sparsely-used dictionary learning.  As SPEAR++'s abstract and its
Figure 1 ("ℓ1 loss and RAdam") describe it, each round

  a. runs ``n_starts`` batched restarts of RAdam (``torch.optim.RAdam``) on that loss, retracting
     q onto the sphere after every step;
  b. rounds every distinct result (:data:`DISTINCT_COS`, our addition) to an exact column by sampling (:func:`sudl.rounding.round_directions`:
     IRLS, kernel polish on the smallest entries, then SPEAR's sampling of (b−1)-subsets among them,
     and, our addition, the split of a block: twin columns of near-duplicate images share most
     zeros, and a result left on those is split into the block's columns, every one of which is kept);
  c. keeps the candidates whose column has ≥ ``min_zero_fraction``·m exact zeros (the sparsity
     filter) spanning q^⊥ robustly (the rounding's certificate, :func:`sudl.rounding.zeros_determine`, our addition: it
     rejects the combinations of two near-duplicate samples' columns, which vanish on their common
     zeros, ~m/2 rows, and one more) and that are not a column already found;
and the pipeline's rounding step then selects b independent ones greedily, most zeros first.

Our choices where the paper's text is silent:
starts uniform on the sphere of the complement of the columns found (deflation), rounds repeated
until b columns are found or ``max_time`` ends, :data:`STEPS` steps at learning rate :data:`LR`
decayed geometrically to :data:`LR_FINAL`, :data:`N_STARTS` starts per round, 64 rounding samples.
"""

import time

import numpy as np
import torch
from sklearn.utils import check_random_state
from tqdm.auto import tqdm

from sudl import complete_basis
from sudl._array_api import svd, to_numpy
from sudl.rounding import round_directions

from ._result import SearchResult

N_STARTS = 256
"""Restarts per round (batched; arbitrary: SPEAR++'s text gives no number)."""
STEPS = 600
"""RAdam steps per round (SPEAR++'s text gives no number; see LR)."""
LR, LR_FINAL = 0.1, 0.001
"""RAdam learning rate, decayed geometrically from LR to LR_FINAL over a round.  Measured on one round of 256
starts (mlp3_photos, b = 65, m = 1000, seed 1): 46 results within |cos| 0.9 of a true column (26 distinct);
0.02 → 0.002 in 300 steps: 7; 0.01 → 1e-4 in 600 steps: 0."""
DISTINCT_COS = 0.99
"""Restart results closer than this (|cos|) to one another or to a column found are rounded once, or not at all
(arbitrary: distinct columns of a batch are far less aligned)."""


def l1_sphere_radam(L, starts, *, steps=STEPS, lr=LR, lr_final=LR_FINAL, deadline=float("inf")):
    """RAdam on (1/m)‖L q/‖q‖‖₁ from each row of ``starts`` (k × b), with q/‖q‖ after each step → (k × b).

    The loss is taken at q/‖q‖, so its gradient is tangent to the sphere.  On ‖L q‖₁ itself the gradient's
    radial part (⟨∇, q⟩ = ‖L q‖₁) dominates; Adam's per-coordinate scaling turns it into a step that shrinks
    every coordinate, which the retraction undoes, and the tangent part is lost: from 256 starts on the
    gradient measured at :data:`LR` no result came within |cos| 0.9 of a column (results' ℓ1 0.024, a random
    direction's ≈ 0.025, a column's 0.018)."""
    q = (starts / starts.norm(dim=1, keepdim=True)).clone().requires_grad_(True)
    opt = torch.optim.RAdam([q], lr=lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=(lr_final / lr) ** (1 / max(steps - 1, 1)))
    for _ in range(steps):
        loss = ((q / q.norm(dim=1, keepdim=True)) @ L.T).abs().mean(1).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            q /= q.norm(dim=1, keepdim=True)
        if time.perf_counter() > deadline:
            break
    return q.detach()


def _distinct(Q, found, max_cos=DISTINCT_COS):
    """Rows of Q (unit) kept greedily so that none is within ``max_cos`` of another kept row or of ``found``:
    restarts that converged to the same minimiser are rounded once."""
    kept = []
    for q in Q:
        others = np.vstack([found, *kept]) if len(found) or kept else np.zeros((0, len(q)))
        if not len(others) or np.abs(others @ q).max() <= max_cos:
            kept.append(q)
    return np.asarray(kept).reshape(-1, Q.shape[1])


def spearpp_search(L, *, random_state=None, max_time=60.0, n_starts=N_STARTS, steps=STEPS, lr=LR,
                   min_zero_fraction=0.3, zero_tol=1e-9, n_samples=64, progress=False):
    """Exact directions q (rows, k ≤ b) with L q ≥ ``min_zero_fraction``·m exact zeros, their counts, the
    seconds and the round (0-based) at which each came, and the rounds run.

    L (m' × b, orthonormal columns).  Rounds of ``n_starts`` restarts, each started in the complement
    of the directions found, until b are found or ``max_time`` seconds.
    """
    rng = check_random_state(random_state)
    deadline = time.perf_counter() + max_time
    Lt = torch.as_tensor(to_numpy(L), dtype=torch.float64)
    m, b = Lt.shape
    Y = Lt * float(m) ** 0.5  # whitened: columns of norm √m, as sudl's rounding expects
    start = time.perf_counter()
    found, zeros, times, rounds, n_rounds = np.zeros((0, b)), [], [], [], 0
    bar = tqdm(total=b, disable=not progress, desc="SPEAR++", unit="column")
    while len(found) < b and time.perf_counter() < deadline:
        N = torch.as_tensor(complete_basis(found))  # (b − f) × b
        starts = torch.as_tensor(rng.standard_normal((n_starts, N.shape[0]))) @ N
        Q = _distinct(l1_sphere_radam(Lt, starts, steps=steps, lr=lr, deadline=deadline).numpy(), found)
        n_rounds += 1
        if not len(Q):
            continue
        rounded = round_directions(Y, torch.as_tensor(Q), random_state=rng, n_samples=n_samples, zero_tol=zero_tol)
        D = np.vstack([to_numpy(rounded.directions)[rounded.exact], rounded.block_atoms])
        n_zeros = np.concatenate([rounded.n_zeros[rounded.exact], rounded.block_n_zeros])
        for i in np.flatnonzero(n_zeros >= min_zero_fraction * m):
            q = D[i] / np.linalg.norm(D[i])
            if len(found) and (np.abs(found @ q).max() > 1 - 1e-8 or
                               svd(np.vstack([found, q]))[1][-1] < 1e-6):
                continue  # a column found again, or dependent on those found
            found = np.vstack([found, q])
            zeros.append(int(n_zeros[i]))
            times.append(time.perf_counter() - start)
            rounds.append(n_rounds - 1)
            bar.update(1)
            if len(found) == b:
                break
    bar.close()
    return found, np.asarray(zeros, dtype=int), np.asarray(times), np.asarray(rounds, dtype=int), n_rounds


def search(factors, knowledge, *, random_state=None, max_time=60.0, verbose=0, n_starts=N_STARTS, steps=STEPS,
           min_zero_fraction=0.3):
    """The registry's entry (``"spear++"``): :func:`spearpp_search` on L (the gradient alone;
    ``knowledge`` unused)."""
    start = time.perf_counter()
    Q, zeros, times, rounds, n_rounds = spearpp_search(
        factors.L, random_state=random_state, max_time=max_time, n_starts=n_starts, steps=steps,
        min_zero_fraction=min_zero_fraction, zero_tol=factors.zero_tol, progress=bool(verbose))
    reason = "every column found" if len(zeros) >= factors.L.shape[1] else f"max_time={max_time:g} s reached"
    return SearchResult(Q, zeros, np.ones(len(zeros), bool), "spear++", reason, time.perf_counter() - start,
                        found_times=times, found_rounds=rounds, n_rounds=n_rounds)
