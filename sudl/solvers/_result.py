"""The one result object every SUDL solver returns (in the style of ``scipy.optimize.OptimizeResult``)."""

from dataclasses import dataclass


@dataclass
class SolverResult:
    """Approximate sparsifying directions found by a solver on whitened data Ȳ.

    Attributes
    ----------
    directions : array, shape (n_directions, n_features)
        Rows w are unit vectors such that the code column Ȳ w is (approximately) sparse.
    n_iter : int
        Iterations used (the largest over restarts/rounds).
    converged : bool
        Whether the stopping test was met before ``max_iter``.
    method : str
        Name of the solver.
    message : str
        Human-readable stopping reason.
    """

    directions: object
    n_iter: int
    converged: bool
    method: str
    message: str = ""
