"""The attacked layer's W and b as the searches that use them take them."""

import numpy as np

from sudl._array_api import to_numpy

from ..factorize import GradientError


def layer_parameters(knowledge, factors, method):
    """(W, b) of ``knowledge`` as float64 NumPy arrays, checked against the factorised gradient
    (``factors``): a :class:`~gradinv.factorize.GradientError` names what is missing or off."""
    if knowledge.weight is None or knowledge.bias is None:
        raise GradientError(f"solver={method!r} needs the layer's weight and bias")
    W, bias = (np.asarray(to_numpy(a), np.float64) for a in (knowledge.weight, knowledge.bias))
    if W.shape != (factors.n_neurons, factors.R.shape[1]) or bias.shape != (factors.n_neurons,):
        raise GradientError(f"weight {W.shape} and bias {bias.shape} do not match a layer with "
                            f"{factors.n_neurons} neurons and {factors.R.shape[1]} inputs")
    return W, bias
