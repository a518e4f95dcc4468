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
  a. alternation between the cell and the kernel (:data:`ALTERNATIONS` passes, all starts at once):
     the q-step moves q towards min_q Σ_{k ∈ I(c)} |L_k q| (iteratively reweighted least squares):
     an ℓ1 fit, which the rows of I(c) that are no zeros of the nearest column do not pull away
     from it, as they pull the least-squares kernel; the c-step moves c so that its cell's
     inactive rows are the |I(c)| rows where |L q| is smallest (a hinge loss, Adam).  A true
     (c_j, q_j) is a fixed point, and each step corrects the other's wrong rows: a start whose
     cell is 100–250 rows off the nearest zero set ends within 20 rows of it one time in six
     (random_upstream, b = 150, m = 1000);
  b. exact rounding: the kernel of L on the rows most confidently inactive under the final c
     (the fractions :data:`CELL_ROW_FRACTIONS` of them, most negative margin first), or on the rows where |L q|
     is smallest, or on the inactive rows first in both orders, accepted when exactly one-dimensional
     (:func:`~gradinv.search._null_space`), or a *block* of up to :data:`~gradinv.certificate.MAX_BLOCK`
     samples sharing one zero set (identical ReLU patterns: near-identical images, blank frames),
     whose span alone is identified and added as that many directions (as in the informed search);
  c. checks: ≥ ``min_zero_fraction``·m exact zeros (``zero_tol``, the factorisation's), not a column
     already found, a robust zero set (:func:`~gradinv.certificate.zero_set_kernels`: no zero row
     carries a direction alone, which rejects the combinations of two near-duplicate samples' columns
     that vanish on their common zeros and one row more), and **ReLU consistency**: the exact zero set Z of L q is a cell, i.e. some c has
     A_k c + b_k < 0 on Z and > 0 off it (:func:`is_cell`, a linear program).  A sparse combination
     of columns (same-label samples of a cross-entropy client) has a zero set that is no cell.
Rounds run until b columns are found or the search stagnates (:class:`~gradinv.bound.SearchBound`:
a patience counted in rounds; only ``max_time`` cuts a round); candidates
that round to a found column are not counted again.  Once b − 1 are found, the last column is looked for on the line its input
must lie on (:mod:`gradinv.search.completion`); the exact tests allow for each direction's
rounding floor (:mod:`gradinv.search.tolerances`).

A noisy update (DP-SGD, :attr:`~gradinv.factorize.FactorizedGradient.noisy`; the approximate mode's
zero tolerance t) has no exact zeros, only zeros at the noise level: there a kernel is exact to t,
the cell test leaves free the rows between :data:`NOISY_SURE_ZERO`·t and t (a noisy zero and an active neuron's small gradient
look alike there), a direction within t of a found one is that column again, and the columns
found are fitted to their zeros at the noise's own level (:func:`gradinv.noise_fit.fit_to_zeros`,
where the approximate mode reads the noise floor from the update).  An update of
several local steps (FedAvg) keeps exact zeros, but a column vanishes only where its sample is
inactive at every step: its zero set may fall short of θ₀'s cell (:func:`drifted_rows`).  Measured
(``benchmarks/threat_models.py --sections zoo``, ``docs/threat_models_zoo.md``): DP-SGD updates of
the zoo's deep clients, whose columns the exact tests rejected every one, come back at 25–69 dB
(mean PSNR, three seeds; 36–69 on seeds 0 and 1), their FedAvg updates exact.
"""

import time

import numpy as np
import torch
from scipy.optimize import linprog
from sklearn.utils import check_random_state
from tqdm.auto import tqdm

from sudl._array_api import svd, to_numpy
from sudl.rounding import split_block

from ..bound import SearchBound
from ..certificate import MAX_BLOCK, zero_set_kernels
from ..noise_fit import fit_to_zeros
from ._layer import layer_parameters
from ._result import SearchResult, bounded_stop_reason, found_directions
from .completion import LAST_UNDETERMINED, scan_line
from .rounding import _null_space
from .starts import IDLE_BALANCED, _cell_margin, _remaining_inputs_coords, _round_starts
from .tolerances import tolerances

ALTERNATIONS = 20
"""Passes of the alternation per round.  Measured by ``benchmarks/cell_yield.py --batch-size 150
--passes 0 4 8 12 20 40 80`` (one round of 100 starts, each rounded and compared with the true
columns; random_upstream, m = 1000, seed 0): 2 / 8 / 10 / 11 / 15 / 16 / 20 distinct true columns
in 1.4 / 5.9 / 8.9 / 11.5 / 15.5 / 33 / 56 s (the soft-mask descent this replaced: 1); over a whole
search (random-upstream client, b = 150, ``docs/gradient_only.md``) 4 passes stagnated at 80 columns, 20 found all 150."""
IRLS_STEPS = 3
"""Reweighted inverse iterations per q-step (arbitrary, not measured; the passes, :data:`ALTERNATIONS`, are)."""
IRLS_FLOOR = 1e-3
"""Weights 1/max(|L_k q|, IRLS_FLOOR · mean_I |L_k q|): the rows already zero weigh at most 1000× the mean."""
CELL_FIT_STEPS = 50
"""Adam steps per c-step (150 measured no better at b = 150)."""
CELL_FIT_LR = 0.05
"""Adam's step per c-step, relative to ‖c‖/√b (arbitrary, not measured)."""
CELL_FIT_MARGIN = 0.05
"""δ of the c-step's hinge, relative to the typical margin |A c + b| of a start (arbitrary, not measured)."""
CELL_ROW_FRACTIONS = (1.0, 0.85, 0.7, 0.5, 0.35, 0.25, 0.18)
"""Fractions of the most confident inactive rows the exact rounding keeps, in turn (while ≥ b + ROW_SLACK rows)."""
ROW_SLACK = 10
"""Rows beyond b − 1 a rounding needs: any b − 1 rows have a kernel, b − 1 + ROW_SLACK exact ones are no accident."""
CELL_SLACK = 1e-9
"""Relative margin (of max |A c + b|) the LP of :func:`is_cell` must clear for a zero set to be a cell
(arbitrary: far above the LP solver's tolerance, far below any margin of a true cell)."""
APPROXIMATE_DRIFT = 0.1
"""Fraction of a zero set that may be short of its cell in the approximate mode (:func:`drifted_rows`).
Measured on the true columns of two-step FedAvg updates (η = 0.01, b = 20, seed 1): mlp3_photos
0–10 rows off θ₀'s cell (the ℓ1 fit finds 0–2), against 19–100 % of the zero set, or no cell, for
the differences of two same-label columns; mlp2_photos ≤ 4 %.  On a one-label 2-layer batch the
margin is thin (true columns up to 10.8 %, differences from 12.1 %): the 2-layer clients' FedAvg
updates go to the informed search, whose next-layer fit rejects those differences as well."""
NOISY_SURE_ZERO = 1e-3
"""In a noisy update (DP noise) a zero of the column (|g_k| ≤ t·max|g|, t the
approximate mode's zero tolerance) is taken for sure only below NOISY_SURE_ZERO·t·max|g|; the rows
between are left free in :func:`is_cell`.  Measured on the true columns of DP-SGD updates
(σ = 1e-5, C = 1; mlp3_photos, b = 20, seeds 0 and 1): the true zeros reach 3e-4–1.7e-3 of max|g|
and 3–18 active rows fall below t = 1e-2, so no true zero set at t is a cell; with the rows between
NOISY_SURE_ZERO·t and t free 40 of 40 are (1e-2·t: 34 of 40, an active row below it), and no
difference of two same-label columns is (0 of 34)."""


def _exact_q(w, L):
    """Smallest eigenvector of Lᵀ diag(w) L for each row of w (B × m) → (B × b)."""
    G = torch.einsum("Bm,mi,mj->Bij", w, L, L)
    return torch.linalg.eigh(G)[1][:, :, 0]


def _kernel_step(inactive, q, L):
    """q-step (module docstring, a.): :data:`IRLS_STEPS` reweighted inverse iterations towards
    min_q Σ_{k ∈ I} |L_k q| on the sphere, I = ``inactive`` (B × m, boolean), from q (B × b)."""
    w0 = inactive.to(L.dtype)
    eye = torch.eye(L.shape[1], dtype=L.dtype)
    for _ in range(IRLS_STEPS):
        r = (q @ L.T).abs()
        mean = (r * w0).sum(1, keepdim=True) / w0.sum(1, keepdim=True).clamp(min=1)
        w = w0 / torch.clamp(r, min=IRLS_FLOOR * mean + 1e-300)
        G = (L.T[None] * w[:, None, :]) @ L
        shift = 1e-12 * G.diagonal(dim1=1, dim2=2).sum(1)[:, None, None]
        q = torch.linalg.solve(G + shift * eye, q[:, :, None])[:, :, 0]
        q = q / q.norm(dim=1, keepdim=True)
    return q


def _cell_step(t, basis, AB, bias, zero, margin):
    """c-step (module docstring, a.): Adam on Σ_k relu(δ ∓ (A_k c + b_k)), c = t basisᵀ (AB = A
    basis), − on the rows ``zero`` (B × m, boolean) q makes zero and + off them, δ = ``margin``;
    returns t."""
    sign = torch.where(zero, 1.0, -1.0).to(AB.dtype)
    scale = float((t @ basis.T).norm(dim=1).mean()) / basis.shape[1] ** 0.5
    t = t.clone().requires_grad_(True)
    opt = torch.optim.Adam([t], lr=CELL_FIT_LR * scale)
    for _ in range(CELL_FIT_STEPS):
        loss = torch.relu(margin + sign * (t @ AB.T + bias)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return t.detach()


def _alternate(c0, basis, A, bias, L, *, margin, deadline, passes=ALTERNATIONS):
    """The alternation (module docstring, a.) from each row of c0, inside span(basis): (c, q) after
    ``passes`` or at ``deadline``."""
    t, c, AB = c0 @ basis, c0, A @ basis
    q = _exact_q((c @ A.T + bias <= 0).to(L.dtype), L)
    for _ in range(passes):
        inactive = c @ A.T + bias <= 0
        q = _kernel_step(inactive, q, L)
        ranks = torch.argsort(torch.argsort((q @ L.T).abs(), 1), 1)
        t = _cell_step(t, basis, AB, bias, ranks < inactive.sum(1, keepdim=True), margin)
        c = t @ basis.T
        if time.perf_counter() > deadline:
            break
    return c, q


def is_cell(A, bias, zero, free=None, max_drift=0):
    """Whether the rows ``zero`` (boolean) are exactly the inactive rows of some cell of the
    arrangement: some c has A_k c + bias_k < 0 on ``zero`` and > 0 off it, the rows ``free``
    (boolean, default none) left unconstrained; with ``max_drift`` > 0, up to that many rows off
    ``zero`` may be inactive too (:func:`drifted_rows`).

    Linear program (HiGHS): maximise t ≤ 1 subject to σ_k (A_k c + bias_k) ≥ t·s, σ = ±1 (− on
    ``zero``), s = ‖A‖_max scale; a cell when t > :data:`CELL_SLACK`.
    """
    A, bias, zero = (np.asarray(a) for a in (A, bias, zero))
    if free is not None:
        keep = ~np.asarray(free)
        A, bias, zero = A[keep], bias[keep], zero[keep]
    if max_drift:
        drifted = drifted_rows(A, bias, zero)
        return drifted is not None and drifted <= max_drift
    m, b = A.shape
    sigma = np.where(zero, -1.0, 1.0)
    scale = float(np.abs(A).max()) or 1.0
    # variables [c (free, scaled by 1/scale), t]: −σ_k (A_k c + bias_k) + t ≤ 0
    A_ub = np.hstack([-sigma[:, None] * A / scale, np.ones((m, 1))])
    res = linprog(np.r_[np.zeros(b), -1.0], A_ub=A_ub, b_ub=sigma * bias / scale,
                  bounds=[(None, None)] * b + [(None, 1.0)], method="highs")
    return res.status == 0 and -res.fun > CELL_SLACK


def drifted_rows(A, bias, zero):
    """How many rows off ``zero`` some c makes inactive along with ``zero`` (a cell's inactive rows
    ⊇ ``zero``, the rest active), as few as an ℓ1 fit finds; None when no c makes ``zero`` inactive.

    A local step's update (FedAvg) has the column Σ_t g_j^(t): zero where sample j is inactive at
    every step, so its zero set is the cell of θ₀ less the rows that a later step turned on.
    Linear program: min Σ_k ξ_k, A_k c + bias_k ≤ −δ on ``zero``, ≥ δ − ξ_k off it, ξ ≥ 0 (δ =
    :data:`CELL_SLACK` of the scale); the count is of the ξ_k > δ.
    """
    m, b = A.shape
    scale = float(np.abs(A).max()) or 1.0
    A, bias, on = A / scale, bias / scale, ~zero
    k = int(on.sum())
    A_ub = np.vstack([np.hstack([A[zero], np.zeros((m - k, k))]), np.hstack([-A[on], -np.eye(k)])])
    b_ub = np.r_[-bias[zero] - CELL_SLACK, bias[on] - CELL_SLACK]
    res = linprog(np.r_[np.zeros(b), np.ones(k)], A_ub=A_ub, b_ub=b_ub,
                  bounds=[(None, None)] * b + [(0, None)] * k, method="highs")
    return int((res.x[b:] > CELL_SLACK).sum()) if res.status == 0 else None


def _round_candidate(c, q, A, bias, L, tols, found, same=1e-8):
    """Exact directions (d × b) for the column whose cell is near c, or None (module docstring, b.):
    one, or a block's d ≤ MAX_BLOCK; a direction with 1 − |cos| < ``same`` to a column of ``found``
    is that column again (None)."""
    margin = A @ c + bias
    inactive = torch.nonzero(margin <= 0)[:, 0]
    by_margin = inactive[torch.argsort(margin[inactive])]
    by_residual = torch.argsort((L @ q).abs())
    rank = torch.empty_like(by_residual)
    rank[by_residual] = torch.arange(len(by_residual))
    both = by_margin[torch.argsort(torch.maximum(torch.arange(len(by_margin)), rank[by_margin]))]
    orders = [by_margin, by_residual[: len(inactive)], both]
    for order in orders:
        for frac in CELL_ROW_FRACTIONS:
            rows = order[: int(frac * len(order))]
            if len(rows) < L.shape[1] - 1 + ROW_SLACK:
                break
            v = _null_space(L[rows], tols.kernel, tols.unique, max_dim=MAX_BLOCK, tols=tols)
            if v is None:
                continue
            if found is not None and len(v) == 1 and float((found @ v[0]).abs().max()) > 1 - same:
                return None  # a found column again
            return v
    return None


def cell_search(L, R, weight, bias, *, rows=None, random_state=None, max_time=None, batch=None,
                input_norm=None, min_zero_fraction=0.0, zero_tol=1e-9, floor=None, noisy=False, drift=0.0,
                progress=False, bound=None):
    """Exact directions q (rows, k ≤ b) with L q a column of dL/dZ, and their exact-zero counts.

    L (m' × b, orthonormal columns), R (b × n) from the factorisation; ``weight`` (m × n) and
    ``bias`` (m,) of the attacked layer; ``rows`` (m',) the neurons L keeps (default all).  ``max_time``
    caps the search (default None: until it stagnates, :class:`~gradinv.bound.SearchBound`; or pass
    ``bound``, one to read its ``found_at`` after); a column
    needs ≥ b − 1 + :data:`ROW_SLACK` exact zeros and ≥ ``min_zero_fraction``·m.  ``floor``: the
    factorisation's rounding floor (b × b, :mod:`~gradinv.search.tolerances`).  The last column
    is looked for by :func:`~gradinv.search.completion.scan_line` first.  ``noisy`` (a noisy
    update, :attr:`~gradinv.factorize.FactorizedGradient.noisy`; approximate mode): the zeros between :data:`NOISY_SURE_ZERO` and 1 times the zero
    tolerance are left free in the cell test, a kernel is exact to that tolerance
    (:func:`~gradinv.search.tolerances.tolerances`), and a direction within it of a found one is
    that column again.  ``drift`` (approximate mode): a zero set passes the cell test when a cell
    has it inactive with at most ``drift``·|zero set| rows more (:func:`drifted_rows`).
    """
    rng = check_random_state(random_state)
    bound = SearchBound(max_time) if bound is None else bound
    Lt = torch.as_tensor(to_numpy(L), dtype=torch.float64)
    m, b = Lt.shape
    Rt = torch.as_tensor(to_numpy(R), dtype=torch.float64)
    tols = tolerances(zero_tol, floor, noisy)
    V = svd(Rt)[2].T  # n × b
    RV = Rt @ V
    rows = torch.arange(len(bias)) if rows is None else torch.as_tensor(rows)
    A = (torch.as_tensor(np.asarray(weight, np.float64)) @ V)[rows]
    bias = torch.as_tensor(np.asarray(bias, np.float64))[rows]
    norm = float(Rt.shape[1]) ** 0.5 if input_norm is None else float(input_norm)
    B = batch or max(32, min(b, 100))
    typical = _cell_margin(A, bias, RV, norm, rng)
    A_np, bias_np = A.numpy(), bias.numpy()
    min_zeros = max(min_zero_fraction * m, b - 1 + ROW_SLACK)
    # a direction this close to a found one (1 − |cos|), or to their span (least singular value), is no
    # new column; a noisy update's directions are exact only to about its zero tolerance t
    same, dependent = (tols.zero**2 / 2, tols.zero) if noisy else (1e-8, 1e-6)
    found_q, found_z = [], []
    found = None
    bar = tqdm(total=b, disable=not progress, desc="cell search", unit="column")

    def checked_kernel(direction, max_dim=1):
        """(exact zeros of L q, q = ``direction``, the kernel of L on them as rows) when they pass the
        checks (module docstring, c.), else (0, None)."""
        g = Lt @ direction
        level = tols.zero_at(direction) * g.abs().max()
        zero = g.abs() <= level
        free = (zero & (g.abs() > NOISY_SURE_ZERO * level)).numpy() if noisy else None
        if int(zero.sum()) < min_zeros:
            return 0, None
        kernel = zero_set_kernels(Lt, direction[None], tols.zero_at(direction), max_dim=max_dim)[0]
        if kernel is None or not is_cell(A_np, bias_np, zero.numpy(), free, max_drift=int(drift * int(zero.sum()))):
            return 0, None
        return int(zero.sum()), torch.as_tensor(kernel.T, dtype=Lt.dtype)

    def checked_zeros(direction):
        """The exact zeros of L q when q = ``direction`` passes the checks and is no combination of
        the columns found, else 0."""
        zeros, _ = checked_kernel(direction)
        if zeros and found is not None and torch.linalg.svdvals(torch.cat([found, direction[None]]))[-1] < dependent:
            return 0
        return zeros

    def add(direction, zeros):
        nonlocal found
        found_q.append(direction)
        found_z.append(zeros)
        found = torch.stack(found_q)
        bound.found()
        bar.update(1)

    def accept(direction):
        """Add ``direction`` when it passes the checks."""
        zeros = checked_zeros(direction)
        if zeros:
            add(direction, zeros)

    def accept_block(block):
        """Add the directions of ``block`` (d × b, the null space of a candidate's rows): one column, or
        a block of d ≤ MAX_BLOCK samples sharing their zeros, whose span alone is identified (the
        kernel of L on the zero set of its first row, each direction of it not in the span found)."""
        if len(block) == 1:
            return accept(block[0])
        zeros, kernel = checked_kernel(block[0], max_dim=MAX_BLOCK)
        if not zeros or (found is not None and all(
                torch.linalg.svdvals(torch.cat([found, k[None]]))[-1] < dependent for k in kernel)):
            return  # no block, or one whose span is found already
        # atoms of the block with zeros of their own (a black frame's column inside a dark image's zero
        # set: the dark image's is determined) first, then the rest of the block's span
        atoms, atom_zeros = split_block(Lt.numpy(), kernel.T.numpy(), tols.zero_at(block[0]), rng=rng)
        atoms, rest = torch.as_tensor(atoms, dtype=Lt.dtype), kernel
        if len(atoms):  # the block's span beyond its atoms
            rest = torch.linalg.svd(kernel - (kernel @ atoms.T) @ atoms)[2][: len(kernel) - len(atoms)]
        for direction, n_zeros in [*zip(atoms, atom_zeros.tolist()), *((r, zeros) for r in rest)]:
            if len(found_q) >= b:
                break
            if found is None or torch.linalg.svdvals(torch.cat([found, direction[None]]))[-1] >= dependent:
                add(direction, n_zeros)

    scanned, idle = False, False
    while len(found_q) < b and not bound.expired():
        coords = _remaining_inputs_coords(found_q, RV)
        if len(found_q) == b - 1 and not scanned:  # the last sample's input is known up to its scale
            scanned = True
            direction = scan_line(coords[:, 0], Lt, A, bias, tols, min_zeros, found, accepts=checked_zeros)
            if direction is not None:
                accept(direction)
            elif not noisy and not drift:  # exact zeros: the scan covered every cell the rounds could reach
                bound.stop(LAST_UNDETERMINED)
            continue
        c0 = _round_starts(coords, norm, B, rng, balanced=IDLE_BALANCED if idle else 0.0)
        basis = torch.linalg.qr(coords)[0]
        cf, qf = _alternate(c0, basis, A, bias, Lt, margin=CELL_FIT_MARGIN * typical, deadline=bound.cap)
        n_found = len(found_q)
        for c, q in zip(cf, qf):  # a round is cut by max_time only
            if len(found_q) >= b or bound.capped():
                break
            block = _round_candidate(c, q, A, bias, Lt, tols, found, same)
            if block is not None:
                accept_block(block)
        bound.round_done()
        idle = len(found_q) == n_found
    bar.close()
    return found_directions(found_q, found_z, b)


def search(factors, knowledge, *, random_state=None, max_time=None, verbose=0, input_norm=None,
           min_zero_fraction=0.0, drift=0.0):
    """The registry's entry (``"cells"``): :func:`cell_search` with the gradient and the layer's W, b only.

    ``input_norm``: typical ‖x‖ of an input (default √n, standardised inputs); ``drift``: fraction of
    a zero set that may be short of its cell (:func:`drifted_rows`; the approximate mode's
    :data:`APPROXIMATE_DRIFT`) in an update of local steps; a noisy one (DP-SGD, one step) has none.
    """
    W, bias = layer_parameters(knowledge, factors, "cells")
    start, bound = time.perf_counter(), SearchBound(max_time)
    Q, zeros = cell_search(factors.L, factors.R, W, bias, rows=factors.rows, random_state=random_state,
                           max_time=max_time, input_norm=input_norm, min_zero_fraction=min_zero_fraction,
                           zero_tol=factors.zero_tol, floor=factors.floor, noisy=factors.noisy,
                           drift=0.0 if factors.noisy else drift, progress=bool(verbose), bound=bound)
    if factors.noise_floor is not None and len(Q):  # zeros alone: fit each column to its zeros at the noise
        Q = fit_to_zeros(factors, Q)
    return SearchResult(Q, zeros, np.ones(len(zeros), bool), "cells",
                        bounded_stop_reason(len(zeros), factors.L.shape[1], bound, max_time),
                        time.perf_counter() - start, np.asarray(bound.found_at), np.asarray(bound.found_in_round, int),
                        bound.rounds)
