"""The few array-API helpers every solver shares (NumPy, CuPy, torch, array-api-strict).

All algorithms are written once against the array API standard through
``array_api_compat``.  Two things the standard has no function for are handled
here:

* random numbers: drawn on the host with ``numpy.random.Generator`` (so that a
  ``random_state`` gives the same numbers on every backend) and moved to the
  data's device with ``xp.asarray(..., device=...)``;
* host transfer for the CPU-only steps (SciPy's LP solver, Hungarian matching):
  :func:`to_numpy`;
* an SVD that does not converge: :func:`svd` retries with LAPACK's slower, more robust
  ``gesvd`` driver (the default ``gesdd`` fails on some ill-conditioned matrices).
"""

import numpy as np
from array_api_compat import (
    array_namespace,
    device,
    is_array_api_strict_namespace,
    is_cupy_array,
    is_numpy_array,
    is_torch_array,
)

__all__ = [
    "array_namespace",
    "device",
    "to_numpy",
    "random_normal",
    "polar",
    "svd",
    "eps",
    "is_numpy_array",
]


def to_numpy(x):
    """Copy an array of any supported backend to a NumPy array on the host."""
    if is_numpy_array(x):
        return x
    if is_cupy_array(x):
        return x.get()
    if is_torch_array(x):
        return x.detach().cpu().numpy()
    xp = array_namespace(x)
    if is_array_api_strict_namespace(xp):
        return np.asarray(x.to_device(xp.Device("CPU_DEVICE")))
    return np.asarray(x)


def random_normal(rng, shape, like):
    """Standard normal draws from NumPy's ``rng``, as an array of ``like``'s namespace, dtype and device."""
    xp = array_namespace(like)
    return xp.asarray(rng.standard_normal(shape), dtype=like.dtype, device=device(like))


def svd(M, full_matrices=False):
    """(U, S, Vh) of ``M`` (a matrix or a stack of them) in its namespace; where the backend's SVD
    does not converge, SciPy's ``gesvd`` on the host instead.  A matrix with NaN or infinite entries is refused (ValueError)."""
    xp = array_namespace(M)
    try:
        return xp.linalg.svd(M, full_matrices=full_matrices)
    except (np.linalg.LinAlgError, RuntimeError) as e:  # torch's LinAlgError is a RuntimeError
        host = np.asarray(to_numpy(M))
        if not np.all(np.isfinite(host)):
            raise ValueError("SVD of a matrix with NaN or infinite entries") from e
        import scipy.linalg

        flat = host.reshape(-1, *host.shape[-2:])  # a stack of matrices: one gesvd each
        parts = zip(*(scipy.linalg.svd(A, full_matrices=full_matrices, lapack_driver="gesvd") for A in flat))
        return tuple(xp.asarray(np.stack(a).reshape(*host.shape[:-2], *a[0].shape), dtype=M.dtype, device=device(M))
                     for a in parts)


def polar(M):
    """Orthogonal polar factor U Vᵀ of M = U S Vᵀ (the projection of M onto O(n))."""
    xp = array_namespace(M)
    U, _, Vh = xp.linalg.svd(M, full_matrices=False)
    return U @ Vh


def eps(x):
    """Machine epsilon of ``x``'s floating dtype."""
    xp = array_namespace(x)
    return float(xp.finfo(x.dtype).eps)
