"""Input validation that keeps the caller's array namespace (NumPy, CuPy, torch, ...).

NumPy input (and anything that is not an array-API array: lists, pandas frames)
goes through scikit-learn's ``validate_data``, so the messages are the ones
scikit-learn users know.  Other array-API arrays are checked here with the same
messages, without leaving their device.
"""

import numpy as np
from array_api_compat import is_array_api_obj
from sklearn.utils import check_array
from sklearn.utils.validation import validate_data

from ._array_api import array_namespace, is_numpy_array


class NonNumericDataError(ValueError, TypeError):
    """Data that cannot be converted to real numbers (a ValueError, and a TypeError as scikit-learn expects)."""


def check_matrix(Y, *, estimator=None, reset=True, name="Y", min_samples=1, min_features=1):
    """Return ``Y`` as a finite, real, floating 2-D array of its own namespace.

    Integer and boolean input is converted to float64 (float32 input is kept).
    Raises ``ValueError`` naming the problem: dimension, emptiness, complex or
    object dtype, NaN or inf.
    """
    if not is_array_api_obj(Y) or is_numpy_array(Y):
        kwargs = dict(
            dtype=(np.float64, np.float32),
            ensure_min_samples=min_samples,
            ensure_min_features=min_features,
        )
        try:
            if estimator is not None:
                return validate_data(estimator, Y, reset=reset, **kwargs)
            return check_array(Y, input_name=name, **kwargs)
        except TypeError as e:  # object arrays of non-numbers
            raise NonNumericDataError(f"{name} must hold real numbers; could not convert it to float ({e}).") from e

    xp = array_namespace(Y)
    if Y.ndim != 2:
        raise ValueError(
            f"Expected 2D array, got {Y.ndim}D array instead: {name} must have shape (n_samples, n_features)."
        )
    if xp.isdtype(Y.dtype, "complex floating"):
        raise ValueError(f"Complex data not supported: {name} has dtype {Y.dtype}.")
    if not xp.isdtype(Y.dtype, "real floating"):
        if not xp.isdtype(Y.dtype, ("integral", "bool")):
            raise ValueError(f"{name} has unsupported dtype {Y.dtype}; expected a real numeric dtype.")
        Y = xp.astype(Y, xp.float64)
    n_samples, n_features = Y.shape
    if n_samples < min_samples:
        raise ValueError(f"Found array with {n_samples} sample(s) (shape={tuple(Y.shape)}) while a minimum of {min_samples} is required.")
    if n_features < min_features:
        raise ValueError(f"Found array with {n_features} feature(s) (shape={tuple(Y.shape)}) while a minimum of {min_features} is required.")
    if not bool(xp.all(xp.isfinite(Y))):
        what = "NaN" if bool(xp.any(xp.isnan(Y))) else "infinity"
        raise ValueError(f"Input {name} contains {what}.")
    if estimator is not None:
        if reset:
            estimator.n_features_in_ = n_features
        elif n_features != estimator.n_features_in_:
            raise ValueError(
                f"{name} has {n_features} features, but {type(estimator).__name__} "
                f"is expecting {estimator.n_features_in_} features as input."
            )
    return Y
