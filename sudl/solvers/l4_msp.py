"""ℓ4-norm maximisation over O(n) by matching, stretching and projection (MSP; Zhai et al., JMLR 2020).

    W ← polar( ((Ȳ Wᵀ)^∘3)ᵀ Ȳ )

One SVD per iteration, locally cubic convergence; needs more samples than log-cosh at
density 0.5 (``docs/sudl_benchmark.md``) but is the textbook whole-dictionary baseline.
"""

from .._array_api import array_namespace, polar, random_normal
from ._result import SolverResult


def solve_l4(Y_white, *, rng, max_iter=1000, tol=1e-10):
    """Maximise ‖Ȳ Wᵀ‖₄⁴ over W ∈ O(n)."""
    xp = array_namespace(Y_white)
    n = Y_white.shape[1]
    W = polar(random_normal(rng, (n, n), Y_white))
    for it in range(1, max_iter + 1):
        S = Y_white @ W.T
        W_new = polar((S * S * S).T @ Y_white)
        change = float(xp.max(xp.abs(xp.abs(xp.sum(W_new * W, axis=1)) - 1.0)))
        W = W_new
        if change < tol:
            return SolverResult(W, it, True, "l4", f"converged: max |<w+, w>| deviation {change:.1e}")
    return SolverResult(W, max_iter, False, "l4", f"max_iter={max_iter} reached (deviation {change:.1e})")
