"""gradinv: exact inversion of a linear+ReLU layer's gradient (SPEAR / SPEAR++), as a scikit-learn Pipeline.

Data flow:  grad = [dL/dW | dL/db] ─factorize─▶ (L, R) ─sudl─▶ Q̃ ─rounding─▶ Q ─reconstruct─▶ X.

>>> from gradinv import invert_layer, make_victim
>>> v = make_victim("random_upstream", batch_size=10, width=300, random_state=0)
>>> res = invert_layer(v.grad_W, v.grad_b, weight=v.layer.weight.detach(), bias=v.layer.bias.detach(),
...                    random_state=0)
>>> int(res.exact.sum())
10
"""

from .factorize import (DependentInputsWarning, FactorizedGradient, GradientError, GradientFactorization,
                        estimate_batch_size, stack_gradient)
from .federated import dp_sgd_gradient, dp_sgd_gradients, fedavg_pseudo_gradients, fedavg_update
from .labels import infer_labels
from .knowledge import Knowledge
from .pipeline import ExactRounding, InversionResult, invert_layer, make_pipeline
from .reconstruct import InputReconstruction
from .search import SEARCHES, SearchResult, SearchStep, run_search
from .search.spear import spear_search
from .victims import KINDS, Victim, make_victim

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
    "dp_sgd_gradient",
    "dp_sgd_gradients",
    "fedavg_pseudo_gradients",
    "fedavg_update",
    "infer_labels",
    "stack_gradient",
    "estimate_batch_size",
    "spear_search",
    "make_victim",
    "Victim",
    "KINDS",
]
