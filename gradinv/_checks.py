"""Checks of the attack's arguments: every bad input is refused with an error that names it.

* Not an array at all (None, a string, a dict, an ``nn.Module``...): ``TypeError``.
* Array-like but not numbers (ragged lists, objects that are not numbers): ``TypeError`` or
  ``ValueError`` naming the argument.  Numeric ``object`` arrays and lists are converted to
  float64, as scikit-learn's ``check_array`` does.
* Wrong rank (a scalar where a vector is needed), wrong shape, empty, complex, NaN or inf:
  :class:`~gradinv.factorize.GradientError` (a ``ValueError``) with the reason.

Arrays of the array API (NumPy, torch, CuPy) keep their namespace and device; torch tensors
that require grad are detached.
"""

import numbers

import numpy as np
from array_api_compat import is_array_api_obj

from sudl._array_api import array_namespace

from .factorize import GradientError

_RANKS = {0: "a scalar", 1: "1-D", 2: "2-D"}


def check_array(value, name, *, ndim, shape=None):
    """``value`` as a finite real array of rank ``ndim`` (and ``shape``, where an entry is not None).

    Booleans and integers become float64; float32 and float64 are kept.
    """
    if value is None:
        raise TypeError(f"{name} must be an array, got None")
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a numeric array, got a string ({value[:40]!r})")
    if hasattr(value, "detach") and callable(value.detach):
        value = value.detach()
    if not is_array_api_obj(value):
        if isinstance(value, (dict, set)) or not (np.isscalar(value) or hasattr(value, "__len__")
                                                  or hasattr(value, "__array__")):
            raise TypeError(f"{name} must be a numeric array, got {type(value).__name__}")
        try:
            value = np.asarray(value)
        except ValueError as e:  # ragged nested lists
            raise GradientError(f"{name} is not a rectangular array ({e})") from None
    if isinstance(value, np.ndarray) and value.dtype == object:
        try:
            value = value.astype(np.float64)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{name} must hold real numbers; could not convert it to float ({e})") from None
    xp = array_namespace(value)
    if value.ndim != ndim:
        got = _RANKS.get(value.ndim, f"{value.ndim}-D")
        raise GradientError(f"{name} must be {_RANKS[ndim]}, got {got} (shape {tuple(value.shape)})")
    if any(d == 0 for d in value.shape):
        raise GradientError(f"{name} is empty (shape {tuple(value.shape)})")
    if shape is not None and any(w is not None and g != w for g, w in zip(value.shape, shape)):
        want = "(" + ", ".join("any" if w is None else str(w) for w in shape) + ("," if len(shape) == 1 else "") + ")"
        raise GradientError(f"{name} must have shape {want} to match grad_W, got {tuple(value.shape)}")
    if xp.isdtype(value.dtype, "complex floating"):
        raise GradientError(f"{name}: Complex data not supported (dtype {value.dtype})")
    if not xp.isdtype(value.dtype, "real floating"):
        if not xp.isdtype(value.dtype, ("integral", "bool")):
            raise TypeError(f"{name} has dtype {value.dtype}; expected real numbers")
        value = xp.astype(value, xp.float64)
    if not bool(xp.all(xp.isfinite(value))):
        raise GradientError(f"{name} contains NaN or infinite values")
    return value


def check_optional_array(value, name, **kwargs):
    """:func:`check_array`, or None when ``value`` is None."""
    return None if value is None else check_array(value, name, **kwargs)


def check_count(value, name, *, optional=True):
    """A positive integer (or None when ``optional``): batch sizes."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer{' or None' if optional else ''}, "
                        f"got {type(value).__name__} {value!r}")
    if value < 1:
        raise GradientError(f"{name} must be >= 1, got {value}")
    return int(value)


def check_positive(value, name, *, below=None, optional=True):
    """A finite real number > 0 (and < ``below`` when given), or None when ``optional``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number{' or None' if optional else ''}, got {type(value).__name__} {value!r}")
    if not np.isfinite(value) or value <= 0 or (below is not None and value >= below):
        bound = f" and < {below}" if below is not None else ""
        raise GradientError(f"{name} must be finite, > 0{bound}; got {value}")
    return float(value)


def check_layer_arguments(grad_W, grad_b, *, weight=None, bias=None, next_weight=None, next_bias_grad=None,
                          next_weight_grad=None, batch_size=None, max_time=None, zero_tol=None, approximate=None,
                          rounding=None):
    """The arguments of :func:`gradinv.invert_layer`, checked and converted (see the module doc);
    returns them as a dict of the same names."""
    grad_W = check_array(grad_W, "grad_W", ndim=2)
    m, n = grad_W.shape
    grad_b = check_array(grad_b, "grad_b", ndim=1)
    weight_shape = getattr(weight, "shape", None)
    if m != n and grad_b.shape[0] == n and (weight_shape is None or tuple(weight_shape) == (n, m)):
        raise GradientError(f"grad_W looks transposed: shape {(m, n)}, but grad_b has {n} entries, one per column "
                            f"of grad_W; pass dL/dW as (neurons × inputs), shape {(n, m)}")
    out = dict(grad_W=grad_W, grad_b=check_array(grad_b, "grad_b", ndim=1, shape=(m,)))
    out["weight"] = check_optional_array(weight, "weight", ndim=2, shape=(m, n))
    out["bias"] = check_optional_array(bias, "bias", ndim=1, shape=(m,))
    out["next_weight"] = check_optional_array(next_weight, "next_weight", ndim=2, shape=(None, m))
    n_classes = None if out["next_weight"] is None else out["next_weight"].shape[0]
    out["next_bias_grad"] = check_optional_array(next_bias_grad, "next_bias_grad", ndim=1, shape=(n_classes,))
    out["next_weight_grad"] = check_optional_array(next_weight_grad, "next_weight_grad", ndim=2, shape=(None, m))
    out["batch_size"] = check_count(batch_size, "batch_size")
    out["max_time"] = check_positive(max_time, "max_time")  # None: until the search stagnates
    out["zero_tol"] = check_positive(zero_tol, "zero_tol", below=1.0)
    out["rounding"] = check_positive(rounding, "rounding", below=1.0)
    if approximate is not None and not isinstance(approximate, (bool, np.bool_)):
        raise TypeError(f"approximate must be True, False or None (detect), got {approximate!r}")
    out["approximate"] = None if approximate is None else bool(approximate)
    return out


def check_model_arguments(model, gradients, layer):
    """The arguments of :func:`gradinv.models.attack_model`: an ``nn.Module``, a mapping of
    parameter names to gradients, and a layer name or None."""
    from collections.abc import Mapping

    from torch import nn

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(gradients, Mapping):
        raise TypeError("gradients must map parameter names to gradients ({name: p.grad for name, p in "
                        f"model.named_parameters()}}), got {type(gradients).__name__}")
    if layer is not None and not isinstance(layer, str):
        raise TypeError(f"layer must be a module name (str) or None, got {type(layer).__name__}")
    for name, value in gradients.items():
        if value is None:
            raise TypeError(f"gradients[{name!r}] is None (no gradient was computed for it)")
