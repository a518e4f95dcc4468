"""ER-SpUD: Spielman, Wang & Wright (COLT 2012), single-column variant ER-SpUD(SC).

For a reference vector r (a sample of the whitened data), solve the linear program

    min_q ‖Ȳ q‖₁   subject to   rᵀ q = 1,

whose solution is, for sparse enough codes, a row of the inverse dictionary.  Valid only for
**small density**: the guarantee needs about θ ≲ 1/√n non-zeros per code entry; at the density
of ReLU gradients (θ ≈ 0.5) it fails, and the solver warns when the codes it finds are denser
than 1/√n.  The array API has no LP solver: the LPs run on the host with SciPy's HiGHS
(``scipy.optimize.linprog``); data move to the host once and the result moves back.
"""

import warnings

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import csr_array, hstack, identity, vstack

from .._array_api import array_namespace, device, to_numpy
from ._result import SolverResult


def _l1_lp(Yw, r):
    """min ‖Yw q‖₁ s.t. rᵀq = 1 with variables [q (free), t ≥ 0], −t ≤ Yw q ≤ t."""
    p, n = Yw.shape
    A = csr_array(Yw)
    I = identity(p, format="csr")
    A_ub = vstack([hstack([A, -I]), hstack([-A, -I])])
    c = np.concatenate([np.zeros(n), np.ones(p)])
    A_eq = np.concatenate([r, np.zeros(p)])[None, :]
    bounds = [(None, None)] * n + [(0, None)] * p
    res = linprog(c, A_ub=A_ub, b_ub=np.zeros(2 * p), A_eq=A_eq, b_eq=[1.0], bounds=bounds, method="highs")
    return res.x[:n] if res.status == 0 else None


def solve_er_spud(Y_white, *, rng, max_iter=None, tol=None, n_lp=None, zero_tol=1e-7):
    """Solve ``n_lp`` LPs (default 2·n) with reference vectors drawn from the samples.

    ``max_iter`` bounds the number of LPs when given; ``tol`` is unused (LPs are solved exactly).
    """
    xp = array_namespace(Y_white)
    Yw = to_numpy(Y_white).astype(np.float64)
    p, n = Yw.shape
    n_lp = 2 * n if n_lp is None else n_lp
    if max_iter is not None:
        n_lp = min(n_lp, max_iter)
    nonzero = np.flatnonzero(np.linalg.norm(Yw, axis=1) > 0)  # zero samples make the LP infeasible
    refs = rng.choice(nonzero, size=min(n_lp, nonzero.size), replace=False)
    directions, densities = [], []
    for j in refs:
        q = _l1_lp(Yw, Yw[j])
        if q is None:
            continue
        q /= np.linalg.norm(q)
        code = Yw @ q
        densities.append(np.mean(np.abs(code) > zero_tol * np.abs(code).max()))
        directions.append(q)
    if not directions:
        raise RuntimeError("ER-SpUD: every linear program failed")
    if np.median(densities) > 1.0 / np.sqrt(n):
        warnings.warn(
            f"ER-SpUD is valid only for sparse codes (density ≲ 1/sqrt(n_features) = {1 / np.sqrt(n):.2f}); "
            f"the codes found have density {np.median(densities):.2f}. Use solver='logcosh'.",
            UserWarning,
            stacklevel=3,
        )
    W = xp.asarray(np.stack(directions), dtype=Y_white.dtype, device=device(Y_white))
    return SolverResult(W, len(directions), True, "er_spud", f"{len(directions)} linear programs solved")
