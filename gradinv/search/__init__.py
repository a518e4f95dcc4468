"""The model-aware exact search (``solver="informed"``), one module per stage.

What the server knows decides what each stage may use (:mod:`.knowledge`): the attacked layer
(W, b: the hyperplane arrangement whose cells are the zero sets), the network after it
(:mod:`gradinv.downstream`: its Jacobian J), and the classifier's bias gradient (labels).

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
``informed``    the search loop (:func:`informed_search`) and its pipeline step
==============  =====================================================================
"""

from .informed import InformedSearch, informed_search
from .knowledge import SearchKnowledge

__all__ = ["InformedSearch", "SearchKnowledge", "informed_search"]
