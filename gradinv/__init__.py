"""gradinv: exact inversion of a linear+ReLU layer's gradient (SPEAR / SPEAR++), as a scikit-learn Pipeline.

Data flow:  grad = [dL/dW | dL/db] ─factorize─▶ (L, R) ─sudl─▶ Q̃ ─rounding─▶ Q ─reconstruct─▶ X.

>>> from gradinv import invert_layer
>>> from gradinv.cases import make_victim
>>> v = make_victim("random_upstream", batch_size=10, width=300, random_state=0)
>>> res = invert_layer(v.grad_W, v.grad_b, weight=v.layer.weight.detach(), bias=v.layer.bias.detach(),
...                    random_state=0)
>>> int(res.exact.sum())
10
"""

from .factorize import (DependentInputsWarning, FactorizedGradient, GradientError, GradientFactorization,
                        estimate_batch_size, stack_gradient)
from .labels import infer_labels
from .knowledge import Knowledge
from .pipeline import ExactRounding, InversionResult, invert_layer, make_pipeline
from .reconstruct import InputReconstruction
from .search import SEARCHES, SearchResult, SearchStep, run_search
from .search.spear import spear_search

__all__ = [
    "invert_layer",
    "make_pipeline",
    "Knowledge",
    "SEARCHES",
    "SearchResult",
    "SearchStep",
    "run_search",
    "InversionResult",
    "GradientFactorization",
    "ExactRounding",
    "InputReconstruction",
    "FactorizedGradient",
    "GradientError",
    "DependentInputsWarning",
    "infer_labels",
    "stack_gradient",
    "estimate_batch_size",
    "spear_search",
]
