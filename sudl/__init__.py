"""sudl: exact complete sparsely-used dictionary learning, scikit-learn style, on any array-API backend.

Data flow:  Y ──whiten──▶ Ȳ ──solver──▶ approximate directions ──rounding──▶ exact atoms.

>>> from sudl import SparselyUsedDictionaryLearning, make_sparsely_used_signal
>>> Y, code, D = make_sparsely_used_signal(400, 10, density=0.5, random_state=0)
>>> est = SparselyUsedDictionaryLearning(random_state=0).fit(Y)
>>> bool(est.exact_.all())
True
"""

from . import datasets, metrics, rounding, solvers
from ._estimator import SparselyUsedDictionaryLearning, complete_basis, select_independent
from ._whitening import RankDeficientError, whiten
from .datasets import make_sparsely_used_signal
from .metrics import dictionary_recovery_error, exact_recovery_rate
from .solvers import SolverResult, solve

__all__ = [
    "SparselyUsedDictionaryLearning",
    "RankDeficientError",
    "SolverResult",
    "solve",
    "whiten",
    "select_independent",
    "complete_basis",
    "make_sparsely_used_signal",
    "dictionary_recovery_error",
    "exact_recovery_rate",
    "datasets",
    "metrics",
    "rounding",
    "solvers",
]
__version__ = "0.1.0"
