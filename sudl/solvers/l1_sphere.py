"""ℓ1 minimisation on the sphere by Riemannian Adam, multi-start with deflation.

Each start w solves  min_{‖w‖=1} (1/p) ‖Ȳ w‖₁  (Bai, Jiang & Sun 2019; SPEAR++ reports ℓ1 with
RAdam).  The Riemannian subgradient is the Euclidean one projected on the tangent space,
g − ⟨g, w⟩ w; Adam moments are kept in the ambient space and re-projected (vector transport
by projection); the retraction is normalisation.  The step decays geometrically, which makes
subgradient methods converge linearly (Zhu et al.).

Deflation: starts that converge onto an already found direction (|cos| > ``duplicate_cos``) are
restarted in the orthogonal complement of the distinct directions found so far (whitened
atoms are nearly orthogonal), for at most ``n_rounds`` rounds.
"""

from .._array_api import array_namespace, device, polar, random_normal
from ._result import SolverResult


def _radam_sphere(Y_white, W, *, max_iter, tol, lr, decay, beta1=0.9, beta2=0.999, eps=1e-12):
    xp = array_namespace(Y_white)
    p = Y_white.shape[0]
    m = xp.zeros_like(W)
    v = xp.zeros_like(W)
    for it in range(1, max_iter + 1):
        G = (xp.sign(Y_white @ W.T).T @ Y_white) / p
        G = G - xp.sum(G * W, axis=1)[:, None] * W
        m = beta1 * m + (1 - beta1) * G
        v = beta2 * v + (1 - beta2) * G * G
        step = (lr * decay**it) * (m / (1 - beta1**it)) / (xp.sqrt(v / (1 - beta2**it)) + eps)
        W_new = W - step
        W_new = W_new / xp.linalg.vector_norm(W_new, axis=1, keepdims=True)
        m = m - xp.sum(m * W_new, axis=1)[:, None] * W_new
        change = float(xp.max(xp.linalg.vector_norm(W_new - W, axis=1)))
        W = W_new
        if change < tol:
            return W, it, True
    return W, max_iter, False


def _distinct(W, duplicate_cos):
    """Indices of rows of W kept greedily so that no two have |cos| > duplicate_cos."""
    xp = array_namespace(W)
    C = xp.abs(W @ W.T)
    keep = []
    for i in range(W.shape[0]):
        if all(float(C[i, j]) <= duplicate_cos for j in keep):
            keep.append(i)
    return keep


def solve_l1(Y_white, *, rng, max_iter=1000, tol=1e-9, lr=0.05, decay=0.995, n_rounds=3, duplicate_cos=0.95):
    """Directions minimising ‖Ȳ w‖₁ on the sphere: n starts (a Haar-random frame), deflated restarts."""
    xp = array_namespace(Y_white)
    n = Y_white.shape[1]
    found = None
    total_iter, converged = 0, True
    for _ in range(n_rounds):
        n_new = n if found is None else n - found.shape[0]
        if n_new == 0:
            break
        starts = polar(random_normal(rng, (n, n), Y_white))[:n_new, :]
        if found is not None:  # restart in the orthogonal complement of what is already found
            starts = starts - (starts @ found.T) @ found
            starts = starts / xp.linalg.vector_norm(starts, axis=1, keepdims=True)
        W, it, conv = _radam_sphere(Y_white, starts, max_iter=max_iter, tol=tol, lr=lr, decay=decay)
        total_iter, converged = max(total_iter, it), converged and conv
        found = W if found is None else xp.concat([found, W], axis=0)
        found = xp.take(found, xp.asarray(_distinct(found, duplicate_cos), device=device(found)), axis=0)
        found = polar(found.T).T  # nearest rows with exactly orthonormal span, for the next deflation
    message = "converged" if converged else f"max_iter={max_iter} reached in some round"
    return SolverResult(found, total_iter, converged, "l1", message)

