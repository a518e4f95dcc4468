"""The scikit-learn estimator for exact complete sparsely-used dictionary learning."""

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._array_api import array_namespace, device, to_numpy
from ._validation import check_matrix
from ._whitening import whiten
from .rounding import (
    count_zeros,
    default_zero_tol,
    min_exact_zeros,
    round_directions,
    zeros_at_precision,
    zeros_determine,
)
from .solvers import SOLVERS, solve


def select_independent(directions, priority, *, rtol=1e-6):
    """Greedy selection: visit rows of ``directions`` (k × n, host array) by decreasing ``priority``
    and keep a row when it is linearly independent of those kept (relative residual > ``rtol``).

    Returns the kept indices, at most n of them.
    """
    D = np.asarray(directions, dtype=np.float64)
    n = D.shape[1]
    basis = np.zeros((0, n))
    kept = []
    for i in np.argsort(-np.asarray(priority, dtype=np.float64), kind="stable"):
        v = D[i] / np.linalg.norm(D[i])
        r = v - basis.T @ (basis @ v)
        r = r - basis.T @ (basis @ r)  # re-orthogonalise once (Gram-Schmidt twice is enough)
        if np.linalg.norm(r) > rtol:
            kept.append(int(i))
            basis = np.vstack([basis, r / np.linalg.norm(r)])
            if len(kept) == n:
                break
    return kept


def complete_basis(directions):
    """Orthonormal rows spanning the orthogonal complement of the rows of ``directions`` (k × n, host)."""
    D = np.asarray(directions, dtype=np.float64).reshape(-1, np.shape(directions)[-1])
    if D.shape[0] == 0:
        return np.eye(D.shape[1])
    return np.linalg.svd(D, full_matrices=True)[2][D.shape[0]:]


def scale_samples(Y, zero_tol):
    """diag(s) Y with s_i = 1/‖y_i‖: every sample (row) at unit norm; a row of norm ≤ ``zero_tol``·max is zero
    to working precision and is left as it is.

    A scaled sample has the same exact zeros (code row s_i c_i), so the exact atoms do not move; what changes
    is the samples' weight.  A sample that uses many atoms has a large norm, and such samples carry no
    sparsity: where supports are correlated (images alike enough to share most of their ReLU pattern) they
    dominate the whitening and the objective, and the atoms are no longer its stationary points (n = 65,
    p = 3.5·n·ln n, density ½, support correlation ρ = 0.7, seed 0: 200 log-cosh steps from the true atoms end
    at median |cos| 0.91 unscaled; *probe*).  Unscaled, log-cosh recovered no atom there; on unit samples it
    recovers every atom on every seed, at n = 65 and 210 (``docs/sudl_benchmark_spearpp.md``,
    ``docs/sudl_benchmark_spearpp_n210.md``).
    """
    xp = array_namespace(Y)
    norms = xp.linalg.vector_norm(Y, axis=1)
    live = norms > zero_tol * xp.max(norms)
    scale = xp.where(live, 1.0 / xp.where(live, norms, xp.ones_like(norms)), xp.ones_like(norms))
    return Y * scale[:, None]


class SparselyUsedDictionaryLearning(TransformerMixin, BaseEstimator):
    """Exact complete sparsely-used dictionary learning: Y = code @ components_.

    Y (n_samples × n_features) is modelled as a sparse code times a square, invertible
    dictionary whose rows are atoms.  The estimator scales every sample to unit norm (which moves no
    exact zero), whitens, runs an approximate SUDL
    solver (chosen by name), rounds each direction to an exact one by sampling
    (:mod:`sudl.rounding`), and keeps n_features linearly independent directions, most exact
    zeros first.  Atoms are found up to permutation, sign and scale; they are returned with
    unit norm and their largest entry positive.

    Parameters
    ----------
    solver : {"logcosh", "l1", "l4", "er_spud"}, default="logcosh"
        Approximate solver, see :mod:`sudl.solvers`.
    rounding : {"sampling", None}, default="sampling"
        "sampling" makes the directions exact; None keeps the raw solver output.
    max_iter : int, default=1000
        Iteration bound of the solver (a ``ConvergenceWarning`` is raised when reached).
    tol : float, default=1e-10
        Solver stopping tolerance.
    n_restarts : int, default=3
        At most this many solver runs (different random starts); their rounded directions are
        pooled, and no further run starts once n_features independent atoms are certified.
    solver_options : dict or None
        Extra keyword arguments of the solver (e.g. ``{"alpha": 1.0}`` for "logcosh").
    rounding_options : dict or None
        Extra keyword arguments of :func:`sudl.rounding.round_directions`.
    zero_tol : float or None
        Relative level under which a code entry is an exact zero (default 1e-9 in float64,
        1e-4 in float32).
    sample_scaling : {"unit", None}, default="unit"
        "unit" scales every sample (row of Y) to unit norm before whitening
        (:func:`scale_samples`); None fits Y as given.
    random_state : int, RandomState instance or None
        Seeds every random choice; the same seed gives bit-identical output.
    verbose : int, default=0

    Attributes
    ----------
    components_ : array (n_features, n_features)
        Atoms (rows), unit norm.
    unmixing_ : array (n_features, n_features)
        code = Y @ unmixing_.T; the inverse of ``components_``, transposed.
    n_zeros_ : ndarray of int (n_features,)
        Exact zeros of each atom's code on the training data.
    exact_ : ndarray of bool (n_features,)
        Certificate: the atom's code vanishes exactly on more than n_features samples, and those
        samples determine it (:func:`sudl.rounding.zeros_determine`: no combination of atoms), each a zero
        to working precision (:func:`sudl.rounding.zeros_at_precision`).
    n_iter_ : int
        Solver iterations (largest over the runs).
    n_features_in_ : int
    """

    def __init__(
        self,
        solver="logcosh",
        rounding="sampling",
        *,
        max_iter=1000,
        tol=1e-10,
        n_restarts=3,
        solver_options=None,
        rounding_options=None,
        zero_tol=None,
        sample_scaling="unit",
        random_state=None,
        verbose=0,
    ):
        self.solver = solver
        self.rounding = rounding
        self.max_iter = max_iter
        self.tol = tol
        self.n_restarts = n_restarts
        self.solver_options = solver_options
        self.rounding_options = rounding_options
        self.zero_tol = zero_tol
        self.sample_scaling = sample_scaling
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _check_params(self):
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {sorted(SOLVERS)}, got {self.solver!r}")
        if self.rounding not in ("sampling", None):
            raise ValueError(f"rounding must be 'sampling' or None, got {self.rounding!r}")
        if self.sample_scaling not in ("unit", None):
            raise ValueError(f"sample_scaling must be 'unit' or None, got {self.sample_scaling!r}")
        if int(self.n_restarts) < 1 or int(self.max_iter) < 1:
            raise ValueError("n_restarts and max_iter must be positive integers")

    def fit(self, Y, y=None):
        """Learn the dictionary from Y (n_samples × n_features); ``y`` is ignored."""
        self._check_params()
        Y = check_matrix(Y, estimator=self, reset=True, min_samples=2)
        xp = array_namespace(Y)
        n_samples, n_features = Y.shape
        if n_samples < n_features:
            raise ValueError(
                f"Y has fewer samples ({n_samples}) than features ({n_features}); "
                "a complete dictionary needs n_samples >= n_features."
            )
        zero_tol = self.zero_tol or default_zero_tol(float(xp.finfo(Y.dtype).eps))
        white = whiten(scale_samples(Y, zero_tol) if self.sample_scaling == "unit" else Y)
        rng = check_random_state(self.random_state)
        condition = float(white.singular_values[0] / white.singular_values[-1])
        # Restarts pool their (rounded) directions; stop as soon as n_features independent ones are exact.
        W, n_zeros, exact, runs = None, np.zeros(0, dtype=int), np.zeros(0, dtype=bool), []
        for _ in range(self.n_restarts):
            run = solve(white.Y_white, self.solver, random_state=rng, max_iter=self.max_iter, tol=self.tol,
                        **(self.solver_options or {}))
            runs.append(run)
            if self.verbose:
                print(f"[sudl] {run.method}: {run.n_iter} iterations, {run.message}")
            if self.rounding == "sampling":
                rounded = round_directions(white.Y_white, run.directions, random_state=rng, zero_tol=zero_tol,
                                           **(self.rounding_options or {}))
                D, z, e = rounded.directions, rounded.n_zeros, rounded.exact
            else:
                D = run.directions
                z = to_numpy(count_zeros(white.Y_white @ D.T, zero_tol)).astype(int)
                e = (z >= min_exact_zeros(n_features)) & zeros_determine(white.Y_white, D, zero_tol)
            e = e & zeros_at_precision(white.Y_white, D, zero_tol, condition=condition)
            W = D if W is None else xp.concat([W, D], axis=0)
            n_zeros, exact = np.concatenate([n_zeros, z]), np.concatenate([exact, e])
            if len(select_independent(to_numpy(W)[exact], n_zeros[exact])) == n_features:
                break

        kept = select_independent(to_numpy(W), n_zeros + exact * n_samples)
        if len(kept) < n_features:  # complete the basis; those atoms are not certified
            extra = complete_basis(to_numpy(W)[kept])
            W = xp.concat([W, xp.asarray(extra, dtype=W.dtype, device=device(W))], axis=0)
            n_zeros = np.concatenate([n_zeros, np.zeros(len(extra), dtype=int)])
            exact = np.concatenate([exact, np.zeros(len(extra), dtype=bool)])
            kept = kept + list(range(W.shape[0] - len(extra), W.shape[0]))
        W = xp.take(W, xp.asarray(kept, dtype=xp.int64, device=device(W)), axis=0)
        unmixing = W @ white.P.T
        components = xp.linalg.inv(unmixing).T
        # unit-norm atoms, largest entry positive: rescale atom i by 1/s_i, its code by s_i
        scale = xp.linalg.vector_norm(components, axis=1)
        largest = xp.take_along_axis(components, xp.argmax(xp.abs(components), axis=1)[:, None], axis=1)[:, 0]
        scale = scale * xp.sign(largest)
        self.components_ = components / scale[:, None]
        self.unmixing_ = unmixing * scale[:, None]
        self.n_zeros_ = n_zeros[kept]
        self.exact_ = exact[kept]
        self.n_iter_ = max(r.n_iter for r in runs)
        self.zero_tol_ = zero_tol
        self.code_scale_ = xp.max(xp.abs(Y @ self.unmixing_.T), axis=0)
        return self

    def transform(self, Y):
        """Sparse code of Y: Y @ unmixing_.T, entries of certified atoms below zero level set to 0.0."""
        check_is_fitted(self)
        Y = check_matrix(Y, estimator=self, reset=False)
        xp = array_namespace(Y)
        code = Y @ self.unmixing_.T
        exact = xp.asarray(self.exact_, device=device(code))
        snap = (xp.abs(code) <= self.zero_tol_ * self.code_scale_[None, :]) & exact[None, :]
        return xp.where(snap, xp.zeros_like(code), code)

    def inverse_transform(self, code):
        """Y = code @ components_."""
        check_is_fitted(self)
        code = check_matrix(code, name="code")
        return code @ self.components_
