"""The searches for the exact columns of dL/dZ inside col(L): one registry, one result type.

:func:`run_search` dispatches by name (:data:`SEARCHES`) to one module per search, each with the
signature ``search(factors, knowledge, *, random_state, max_time, verbose, **options) →
SearchResult``; the pipeline's step ``"search"`` is :class:`SearchStep`.  The default search for
what the server knows is chosen by :meth:`gradinv.knowledge.Knowledge.default_search`.

================  ========================================================================
``informed``      W, b and the network after the ReLU (:mod:`.informed`)
``cells``         W and b: the zero sets are cells of a known arrangement (:mod:`.arrangement`)
``spear``         the gradient alone: SPEAR's sampling (:mod:`.spear`)
``spear++``       the gradient alone: ℓ1 on the sphere by RAdam, sampling rounding (:mod:`.spearpp`)
``logcosh`` …     the gradient alone: a ``sudl`` estimator on L (:mod:`.sudl_solvers`)
================  ========================================================================

The informed and cell searches share their stages, one module each:

==============  =====================================================================
``starts``      deflated input coordinates spread by the singular values; cell points
``objective``   the smooth objective over c and its descent (uses J)
``templates``   class templates for u at initialisation, drawn by the classes missing
``polish``      labels that fit the column structure (with J, or the zeros alone),
                alternated with the nearest cell (projection passes)
``rounding``    exact columns from the polished labels (null vectors)
``tolerances``  the exact tests' thresholds, per direction (the SVD's rounding floor)
``completion``  the last column from all the others: a scan of one line of the arrangement
``acceptance``  the next layer's check of a rounded column
``knowledge``   what the server knows, in the search's coordinates c (x = V c)
==============  =====================================================================
"""

from ._registry import EXACT_SEARCHES, SEARCHES, SearchStep, run_search
from ._result import SearchResult
from .informed import informed_search
from .knowledge import SearchKnowledge

__all__ = ["EXACT_SEARCHES", "SEARCHES", "SearchKnowledge", "SearchResult", "SearchStep", "informed_search",
           "run_search"]
