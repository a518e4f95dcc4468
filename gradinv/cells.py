"""Gradient-only arrangement search: exact columns of dL/dZ from dL/dW, dL/db and the layer's W, b alone.

SPEAR++'s knowledge (the gradient and the attacked layer's parameters, nothing downstream).  As
in the informed search (:mod:`gradinv.search`), an input is x_j = V c_j with V the right
singular vectors of dL/dW, and neuron k is inactive for sample j iff A_k c_j + b_k ≤ 0 with
A = W V: a column's zero set I_j is a cell of a *known* hyperplane arrangement in ℝ^b.  A true
c_j makes L restricted to I(c_j) = {k : A_k c_j + b_k ≤ 0} have an exactly one-dimensional kernel,
the column's q_j, whatever the network downstream computes.

Search (per round of starting points c, spread by the singular values as in the informed search,
and after a round without a new column also isotropic in the missing inputs' span, inside the
complement of the columns found: deflation):
  a. descent (Adam, float32) of the soft objective
     f(c, q) = Σ_k w_k (L_k q)² / (‖q‖² Σ_k w_k ‖L_k‖²),  w = 1 − sigmoid((A c + b)/τ),
     τ annealed geometrically (relative to the typical margin |A c + b|): min_q f is the smallest
     eigenvalue of Lᵀ diag(w) L against its trace, 0 only at a true column's cell.  q descends
     with c and is reset to the exact minimiser (a b × b eigenproblem) every :data:`RESOLVE_EVERY` steps;
  b. exact rounding: the kernel of L on the rows most confidently inactive under the final c
     (the fractions :data:`FRACS` of them, most negative margin first), or on the rows where |L q|
     is smallest, or on the inactive rows first in both orders, accepted only when exactly one-dimensional
     (:func:`~gradinv.search._null_space`);
  c. checks: ≥ ``min_zero_fraction``·m exact zeros (``zero_tol``, the factorisation's), not a column
     already found, a robust zero set (:func:`~gradinv.certificate.zero_set_kernels`: no zero row
     carries a direction alone, which rejects the combinations of two near-duplicate samples' columns
     that vanish on their common zeros and one row more), and **ReLU consistency**: the exact zero set Z of L q is a cell, i.e. some c has
     A_k c + b_k < 0 on Z and > 0 off it (:func:`is_cell`, a linear program).  A sparse combination
     of columns (same-label samples of a cross-entropy client) has a zero set that is no cell.
Rounds run until b columns are found or the search stagnates (:class:`~gradinv.bound.SearchBound`); candidates that round to a found column
are not counted again.  Once b − 1 are found, the last column is looked for on the line its input
must lie on (:mod:`gradinv.search.completion`); the exact tests allow for each direction's
rounding floor (:mod:`gradinv.search.tolerances`).
"""

import time

import numpy as np
import torch
from scipy.optimize import linprog
from sklearn.utils import check_random_state
from tqdm.auto import tqdm

from sudl._array_api import to_numpy

from ._step import GradientStep
from .bound import SearchBound
from .certificate import zero_set_kernels
from .factorize import GradientError
from .search.completion import scan_line
from .search.rounding import _null_space
from .search.starts import IDLE_BALANCED, _cell_margin, _remaining_inputs_coords, _round_starts
from .search.tolerances import tolerances

RESOLVE_EVERY = 10
"""Descent steps between two exact resets of q to the smallest eigenvector of Lᵀ diag(w) L."""
FRACS = (1.0, 0.85, 0.7, 0.5, 0.35, 0.25, 0.18)
"""Fractions of the most confident inactive rows the exact rounding keeps, in turn (while ≥ b + ROW_SLACK rows)."""
ROW_SLACK = 10
"""Rows beyond b − 1 a rounding needs: any b − 1 rows have a kernel, b − 1 + ROW_SLACK exact ones are no accident."""
CELL_SLACK = 1e-9
"""Relative margin (of max |A c + b|) the LP of :func:`is_cell` must clear for a zero set to be a cell."""


def _soft_inactive(c, A, bias, tau):
    """w = 1 − sigmoid((A c + bias)/τ): soft indicator of the inactive rows, per row of c."""
    return torch.sigmoid(-(c @ A.T + bias) / tau)


def _exact_q(w, L):
    """Smallest eigenvector of Lᵀ diag(w) L for each row of w (B × m) → (B × b)."""
    G = torch.einsum("Bm,mi,mj->Bij", w, L, L)
    return torch.linalg.eigh(G)[1][:, :, 0]


def _descend(c0, basis, A, bias, L, *, steps, lr, tau, deadline, dtype=torch.float32):
    """Adam on f(c, q) (module docstring, a.) from each row of c0, c = t basisᵀ inside span(basis).

    Returns the final c (float64)."""
    c0, basis, A, bias, L = (a.to(dtype) for a in (c0, basis, A, bias, L))
    lev = (L * L).sum(1)
    t = (c0 @ basis).clone().requires_grad_(True)
    with torch.no_grad():
        q0 = _exact_q(_soft_inactive(c0, A, bias, tau[0]), L)
    q = q0.clone().requires_grad_(True)
    scale = float(c0.norm(dim=1).mean()) / basis.shape[1] ** 0.5
    opt = torch.optim.Adam([{"params": [t], "lr": lr * scale}, {"params": [q], "lr": lr / basis.shape[1] ** 0.5}])
    tau0, tau1 = tau
    for it in range(steps):
        temp = tau0 * (tau1 / tau0) ** (it / max(steps - 1, 1))
        if it and it % RESOLVE_EVERY == 0:
            with torch.no_grad():
                q.copy_(_exact_q(_soft_inactive(t @ basis.T, A, bias, temp), L))
        w = _soft_inactive(t @ basis.T, A, bias, temp)
        Lq = q @ L.T
        loss = ((w * Lq * Lq).sum(1) / ((q * q).sum(1) * (w @ lev))).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if time.perf_counter() > deadline:
            break
    return (t @ basis.T).detach().to(torch.float64)


def is_cell(A, bias, zero):
    """Whether the rows ``zero`` (boolean) are exactly the inactive rows of some cell of the
    arrangement: some c has A_k c + bias_k < 0 on ``zero`` and > 0 off it.

    Linear program (HiGHS): maximise t ≤ 1 subject to σ_k (A_k c + bias_k) ≥ t·s, σ = ±1 (− on
    ``zero``), s = ‖A‖_max scale; a cell when t > :data:`CELL_SLACK`.
    """
    A, bias, zero = (np.asarray(a) for a in (A, bias, zero))
    m, b = A.shape
    sigma = np.where(zero, -1.0, 1.0)
    scale = float(np.abs(A).max()) or 1.0
    # variables [c (free, scaled by 1/scale), t]: −σ_k (A_k c + bias_k) + t ≤ 0
    A_ub = np.hstack([-sigma[:, None] * A / scale, np.ones((m, 1))])
    res = linprog(np.r_[np.zeros(b), -1.0], A_ub=A_ub, b_ub=sigma * bias / scale,
                  bounds=[(None, None)] * b + [(None, 1.0)], method="highs")
    return res.status == 0 and -res.fun > CELL_SLACK


def _round_candidate(c, q, A, bias, L, tols, found):
    """Exact direction (b,) for the column whose cell is near c, or None (module docstring, b.)."""
    margin = A @ c + bias
    inactive = torch.nonzero(margin <= 0)[:, 0]
    by_margin = inactive[torch.argsort(margin[inactive])]
    by_residual = torch.argsort((L @ q).abs())
    rank = torch.empty_like(by_residual)
    rank[by_residual] = torch.arange(len(by_residual))
    both = by_margin[torch.argsort(torch.maximum(torch.arange(len(by_margin)), rank[by_margin]))]
    orders = [by_margin, by_residual[: len(inactive)], both]
    for order in orders:
        for frac in FRACS:
            rows = order[: int(frac * len(order))]
            if len(rows) < L.shape[1] - 1 + ROW_SLACK:
                break
            v = _null_space(L[rows], tols.kernel, tols.unique, tols=tols)
            if v is None:
                continue
            direction = v[0]
            if found is not None and float((found @ direction).abs().max()) > 1 - 1e-8:
                return None  # a found column again
            return direction
    return None


def cell_search(L, R, weight, bias, *, rows=None, random_state=None, max_time=None, steps=60, lr=0.05,
                tau=(0.1, 0.02), batch=None, input_norm=None, min_zero_fraction=0.0, zero_tol=1e-9,
                floor=None, progress=False):
    """Exact directions q (rows, k ≤ b) with L q a column of dL/dZ, and their exact-zero counts.

    L (m' × b, orthonormal columns), R (b × n) from the factorisation; ``weight`` (m × n) and
    ``bias`` (m,) of the attacked layer; ``rows`` (m',) the neurons L keeps (default all).  ``tau``:
    the annealing of the soft mask, relative to the median |A c + b| of typical starts.  ``max_time``
    caps the search (default None: until it stagnates, :class:`~gradinv.bound.SearchBound`); a column
    needs ≥ b − 1 + :data:`ROW_SLACK` exact zeros and ≥ ``min_zero_fraction``·m.  ``floor``: the
    factorisation's rounding floor (b × b, :mod:`~gradinv.search.tolerances`).  The last column
    is looked for by :func:`~gradinv.search.completion.scan_line` first.
    """
    rng = check_random_state(random_state)
    bound = SearchBound(max_time)
    Lt = torch.as_tensor(to_numpy(L), dtype=torch.float64)
    m, b = Lt.shape
    Rt = torch.as_tensor(to_numpy(R), dtype=torch.float64)
    tols = tolerances(zero_tol, floor)
    V = torch.linalg.svd(Rt, full_matrices=False)[2].T  # n × b
    RV = Rt @ V
    rows = torch.arange(len(bias)) if rows is None else torch.as_tensor(rows)
    A = (torch.as_tensor(np.asarray(weight, np.float64)) @ V)[rows]
    bias = torch.as_tensor(np.asarray(bias, np.float64))[rows]
    norm = float(Rt.shape[1]) ** 0.5 if input_norm is None else float(input_norm)
    B = batch or max(32, min(b, 100))
    typical = _cell_margin(A, bias, RV, norm, rng)
    tau = (tau[0] * typical, tau[1] * typical)
    A_np, bias_np = A.numpy(), bias.numpy()
    min_zeros = max(min_zero_fraction * m, b - 1 + ROW_SLACK)
    found_q, found_z = [], []
    found = None
    bar = tqdm(total=b, disable=not progress, desc="cell search", unit="column")

    def accept(direction):
        """Add ``direction`` when it passes the checks (module docstring, c.)."""
        nonlocal found
        g = Lt @ direction
        zero = g.abs() <= tols.zero_at(direction) * g.abs().max()
        if int(zero.sum()) < min_zeros or zero_set_kernels(Lt, direction[None], tols.zero_at(direction),
                                                           max_dim=1)[0] is None or not is_cell(A_np, bias_np, zero.numpy()):
            return
        if found is not None and torch.linalg.svdvals(torch.cat([found, direction[None]]))[-1] < 1e-6:
            return
        found_q.append(direction)
        found_z.append(int(zero.sum()))
        found = torch.stack(found_q)
        bound.found()
        bar.update(1)

    scanned, idle = False, False
    while len(found_q) < b and not bound.expired():
        coords = _remaining_inputs_coords(found_q, RV)
        if len(found_q) == b - 1 and not scanned:  # the last sample's input is known up to its scale
            scanned = True
            direction = scan_line(coords[:, 0], Lt, A, bias, tols, min_zeros, found)
            if direction is not None:
                accept(direction)
            continue
        c0 = _round_starts(coords, norm, B, rng, balanced=IDLE_BALANCED if idle else 0.0)
        basis = torch.linalg.qr(coords)[0]
        cf = _descend(c0, basis, A, bias, Lt, steps=steps, lr=lr, tau=tau, deadline=bound.deadline)
        qf = _exact_q((cf @ A.T + bias <= 0).to(Lt.dtype), Lt)  # the kernel-most q of each final cell
        n_found = len(found_q)
        for c, q in zip(cf, qf):
            if len(found_q) >= b or bound.expired():
                break
            direction = _round_candidate(c, q, A, bias, Lt, tols, found)
            if direction is not None:
                accept(direction)
        idle = len(found_q) == n_found
    bar.close()
    Q = torch.stack(found_q).numpy() if found_q else np.zeros((0, b))
    return Q, np.asarray(found_z, dtype=int)


class CellSearch(GradientStep):
    """Pipeline step (``solver="cells"``): :func:`cell_search` with the gradient and the layer's W, b only.

    Parameters
    ----------
    weight, bias : the attacked layer's parameters, (m × n) and (m,)
    max_time : seconds cap of the search (default None: until it stagnates, :mod:`gradinv.bound`)
    input_norm : typical ‖x‖ of an input (default √n, standardised inputs)
    """

    def __init__(self, weight=None, bias=None, max_time=None, input_norm=None, min_zero_fraction=0.0,
                 random_state=None, verbose=0):
        self.weight = weight
        self.bias = bias
        self.max_time = max_time
        self.input_norm = input_norm
        self.min_zero_fraction = min_zero_fraction
        self.random_state = random_state
        self.verbose = verbose

    def fit_transform(self, fg, y=None):
        if self.weight is None or self.bias is None:
            raise GradientError("solver='cells' needs the layer's weight and bias")
        W, bias = (np.asarray(to_numpy(a), np.float64) for a in (self.weight, self.bias))
        if W.shape != (fg.n_neurons, fg.R.shape[1]) or bias.shape != (fg.n_neurons,):
            raise GradientError(f"weight {W.shape} and bias {bias.shape} do not match a layer with "
                                f"{fg.n_neurons} neurons and {fg.R.shape[1]} inputs")
        Q, zeros = cell_search(fg.L, fg.R, W, bias, rows=fg.rows, random_state=self.random_state,
                               max_time=self.max_time, input_norm=self.input_norm,
                               min_zero_fraction=self.min_zero_fraction, zero_tol=fg.zero_tol,
                               floor=fg.floor, progress=bool(self.verbose))
        self.n_found_ = Q.shape[0]
        return fg.with_directions(Q, zeros, np.ones(len(zeros), bool))
