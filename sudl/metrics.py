"""Recovery metrics invariant to the permutation, sign and scale of atoms."""

import numpy as np
from scipy.optimize import linear_sum_assignment

from ._array_api import to_numpy


def _unit_rows(A):
    A = np.asarray(to_numpy(A), dtype=np.float64)
    return A / np.linalg.norm(A, axis=1, keepdims=True)


def dictionary_recovery_error(true_dictionary, estimated_dictionary):
    """Per-atom relative error after optimal matching, sign and scale: min_s ‖a/‖a‖ − s·â/‖â‖‖.

    Rows are atoms; atoms are paired by the Hungarian algorithm on |cos|
    (``scipy.optimize.linear_sum_assignment``).  1e-8 means the atom agrees to about 8 digits.
    Returned in the order of ``true_dictionary``'s rows; an atom with no partner (fewer
    estimated rows) gets error √2.
    """
    A, B = _unit_rows(true_dictionary), _unit_rows(estimated_dictionary)
    C = A @ B.T
    rows, cols = linear_sum_assignment(-np.abs(C))
    signs = np.sign(C[rows, cols])[:, None]
    err = np.full(A.shape[0], np.sqrt(2.0))
    err[rows] = np.linalg.norm(A[rows] - signs * B[cols], axis=1)
    return err


def exact_recovery_rate(true_dictionary, estimated_dictionary, *, tol=1e-8):
    """Fraction of true atoms recovered to ``tol``: the most true atoms that can be paired, one estimated
    atom each, at min_s ‖a/‖a‖ − s·â/‖â‖‖ ≤ ``tol`` (a maximum matching of those pairs).

    Not the pairs of :func:`dictionary_recovery_error`: its assignment maximises the total |cos|, which can
    give an exact estimate to another atom when an inexact one sits near its own (atoms of a complete
    dictionary are not orthogonal), and so count fewer exact atoms than there are.
    """
    A, B = _unit_rows(true_dictionary), _unit_rows(estimated_dictionary)
    C = A @ B.T
    close = np.zeros(C.shape, dtype=bool)
    for i, j in zip(*np.nonzero(np.abs(C) >= 1.0 - max(tol, 1e-6))):  # the error itself: 1 − |cos| loses it
        close[i, j] = np.linalg.norm(A[i] - np.sign(C[i, j]) * B[j]) <= tol
    rows, cols = linear_sum_assignment(close, maximize=True)
    return float(np.sum(close[rows, cols]) / A.shape[0])
