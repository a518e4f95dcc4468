"""SUDL solvers, chosen by name; every solver returns a :class:`SolverResult`.

===========  ==========================================================  =====================
name         method                                                      module
===========  ==========================================================  =====================
"logcosh"    log-cosh (FastICA-type) fixed point on O(n)  (default)      :mod:`.logcosh`
"l1"         ℓ1 on the sphere, Riemannian Adam, multi-start + deflation   :mod:`.l1_sphere`
"l4"         ℓ4 maximisation on O(n), MSP                                 :mod:`.l4_msp`
"er_spud"    Spielman–Wang–Wright LPs (sparse codes only)                 :mod:`.er_spud`
===========  ==========================================================  =====================
"""

import warnings

from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from ._result import SolverResult
from .er_spud import solve_er_spud
from .l1_sphere import solve_l1
from .l4_msp import solve_l4
from .logcosh import solve_logcosh

SOLVERS = {"logcosh": solve_logcosh, "l1": solve_l1, "l4": solve_l4, "er_spud": solve_er_spud}

__all__ = ["SOLVERS", "SolverResult", "solve"]


def solve(Y_white, method="logcosh", *, random_state=None, max_iter=1000, tol=1e-10, **options):
    """Run the solver ``method`` on whitened data Ȳ (n_samples × n_features).

    ``options`` are passed to the solver (e.g. ``alpha`` for "logcosh").  A
    :class:`~sklearn.exceptions.ConvergenceWarning` is raised when it stops at ``max_iter``.
    """
    if method not in SOLVERS:
        raise ValueError(f"Unknown solver {method!r}; choose one of {sorted(SOLVERS)}.")
    rng = check_random_state(random_state)
    result = SOLVERS[method](Y_white, rng=rng, max_iter=max_iter, tol=tol, **options)
    if not result.converged:
        warnings.warn(f"SUDL solver {method!r}: {result.message}", ConvergenceWarning, stacklevel=2)
    return result
