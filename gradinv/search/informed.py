"""Informed search: exact columns of dL/dZ from what an honest-but-curious server knows.

Beyond the gradient, the server knows every weight.  Two facts follow:

1. **Input subspace.**  The inputs span the row space of dL/dW, so x_j = V c_j with V the right
   singular vectors (n × b) and c_j ∈ ℝ^b unknown.  Neuron k is inactive for sample j iff
   A_k c_j + b_k ≤ 0 with A = W V known: each column's zero set is one cell of a *known*
   hyperplane arrangement in ℝ^b, fixed by only b numbers.
2. **Next layer.**  When the attacked layer feeds a linear classifier W₂ (C × m), dL/dY_j lies
   in the row space of W₂, so every column is g_j = mask_j ⊙ W₂ᵀ u_j with u_j ∈ ℝ^C.  Behind a
   deeper network it is g_j = mask_j ⊙ J(h_j)ᵀ u_j, J the network's Jacobian
   (:mod:`gradinv.downstream`); the stages below then take J at each candidate in place of W₂,
   the polish and rounding use the zeros alone (:func:`~gradinv.search.polish._polish_zeros`:
   J at a candidate is not the sample's own) and the next-layer check is loose
   (:data:`~gradinv.search.acceptance.DEEP_NEXT_LAYER_RTOL`).  ``attack_model`` runs the cell
   search (:mod:`gradinv.search.arrangement`) on such networks by default: it measured better
   (``docs/results.md``).

Search (per batch of starting points c):
  a. smooth objective over c (Adam on torch autograd): with the soft active mask
     s = sigmoid((A c + b)/τ), τ annealed geometrically, the smallest generalised eigenvalue over
     u of  W₂ S (I − L Lᵀ) S W₂ᵀ + W₂ diag(s − s²) W₂ᵀ  against  W₂ diag(s) W₂ᵀ:  it measures how
     far s ⊙ W₂ᵀu is from col(L), and is 0 only at a true column's mask.  *Class templates*:
     at initialisation the softmax is near uniform, so u_j ≈ α t_(y_j) with t_c = 1/C − e_c;
     once the columns found confirm it (:func:`_round_templates`), most rounds fix u to a
     template drawn per start and minimise ‖(I − LLᵀ)(s ⊙ W₂ᵀt)‖²/‖s ⊙ W₂ᵀt‖², with no C × C
     eigenproblem (measured at b = 400, m = 4000, classes drawn uniformly: descents 4.5×
     cheaper; full rank in 742 s against 368 of 400 columns after 1000 s without templates,
     ``benchmarks/search_yield.py``).  Given the classifier's bias gradient, the classes are
     drawn by how many of their samples are still missing (:func:`class_probabilities`, counts
     from :func:`~gradinv.labels.label_counts`);
  b. polish (:func:`_polish`, all of a round's descents at once): alternate (q, u) = null vector of
     [L_I, 0; L_A, −W₂_Aᵀ] and the row assignment (inactive iff |L_k q| < |L_k q − w_kᵀu|);
     then :data:`PROJECTION_PASSES` times move to the point of the arrangement's cell nearest the
     polished labels (:func:`cell_point`) and polish again (:func:`_polish_projected`): a true
     mask is both a cell and a fit of the column structure, and alternating the two walks late
     descents into the rounding's basin (measured at b = 600, m = 4000: 376 columns in 1500 s
     against 142 without, ``benchmarks/search_yield.py``);
  c. exact rounding (in exact mode, skipped when the polish leaves more than
     :data:`MAX_POLISH_MISFIT` unexplained): the same null vector on the most confident rows (failing that, with the
     other label of each *fragile* row, :func:`fragile_rows`, which the polish cannot place),
     accepted only when it is exactly one-dimensional, or up to
     :data:`~gradinv.certificate.MAX_BLOCK`-dimensional for a
     *block* of near-duplicate samples sharing one mask (then only the block's span is identified,
     and added as that many directions); a polish that ends within :data:`NEAR_FOUND_ROWS` rows of
     a found column's zeros is rounded on all its rows alone (:func:`_round_polished`); in
     approximate mode, failing that, the null vector of the rows most confidently inactive under
     (W, b) alone (SPEAR's rounding inside the predicted cell); then the column is re-fitted to
     its exact zeros (:func:`_refine_on_zeros`);
  d. checks: ≥ b − 1 + :data:`ZERO_SLACK` exact zeros (and ≥ ``min_zero_fraction``·m), the active rows fit W₂ᵀu to rounding error,
     linear independence from the columns already found.
Rounds of starts run until b columns are found, or the search stagnates or reaches ``max_time``
(:class:`~gradinv.bound.SearchBound`); once b − 1 are found, the last sample's input is known up to
its scale and its column is looked for on that line first (:mod:`.completion`).  Every exact test
allows for the rounding floor of the direction it tests (:mod:`.tolerances`).  Deflation: a sample
not yet found has x_k = (Q⁻¹)_k R with (Q⁻¹)_k orthogonal to every column found, so each round
searches c only in that (b − found)-dimensional subspace.  **Starts** are c = Vᵀ Rᵀ n with n
isotropic in the complement of the found q's, i.e. spread along V by the singular values S of
dL/dW: (dL/dW)ᵀ dL/dW = X diag-ish(‖g_j‖²) Xᵀ, so S and V estimate the inputs' own spread and
axes.  Real inputs are far from isotropic in ℝ^b (natural images share a mean and low
frequencies), and isotropic starts do not reach a true cell beyond b ≈ 100: measured on the
cross-entropy client, b=150, m=1000, the median cosine from a start to the nearest true c is
0.85 for these starts against 0.18 for isotropic ones (``benchmarks/landing.py``), and all 150
columns were found in 61 s against 1/150 in 300 s (``docs/results.md``).  That spread weighs each
sample by about ‖g_j‖, so a round after one that found nothing also draws balanced starts,
isotropic in the missing inputs' span (:func:`~.starts._round_starts`).

Measured on the cross-entropy client (``docs/results.md``).  This step runs in torch whatever
the input array type, since it needs automatic differentiation: the descents in float32 (they
only have to land in a cell; measured: as many columns per round as in float64, at 0.55–0.7 of
the time), the polish and the exact rounding in float64; results go back to the caller's
namespace.
"""

import time

import numpy as np
import torch
from sklearn.utils import check_random_state
from tqdm.auto import tqdm

from sudl._array_api import svd, to_numpy

from ..bound import SearchBound
from ..certificate import zero_set_kernels
from ..downstream import as_downstream
from ..factorize import GradientError
from ._layer import layer_parameters
from ._result import SearchResult, bounded_stop_reason, found_directions
from .acceptance import DEEP_NEXT_LAYER_RTOL, _next_layer_fit
from .knowledge import SearchKnowledge
from .objective import _descend
from .polish import PROJECTION_PASSES, _polish_projected
from .completion import LAST_UNDETERMINED, scan_line
from .rounding import MAX_POLISH_MISFIT, _refine_on_zeros, _round_polished, fragile_rows
from .starts import IDLE_BALANCED, _cell_margin, _remaining_inputs_coords, _round_starts, cell_point
from .tolerances import tolerances
from .templates import _missing_class_probabilities, _round_templates, oriented_upstream, template_deviation


ZERO_SLACK = 10
"""Exact zeros beyond b − 1 a column needs: any b − 1 rows have a kernel, b − 1 + ZERO_SLACK exact ones are
no accident.  No fraction of the neurons is asked for: a trained network leaves many neurons dead
for the whole batch and few zeros on the others (measured on the zoo's mlp2_trained_raw client,
b = 20: 674 of 1000 neurons dead, 23–40 % zeros on the rest; with SPEAR's 30 % filter 4 columns
were accepted in 64 s, without it all 20 in 9 s)."""


def informed_search(L, R, weight, bias, downstream, *, random_state=None, max_time=None, steps=50,
                    lr=0.05, tau=(0.03, 0.001), batch=None, input_norm=None, min_zero_fraction=0.0,
                    zero_tol=1e-9, floor=None, noisy=False, next_layer_rtol=None, rows=None, class_templates=True,
                    next_bias_grad=None, projection_passes=PROJECTION_PASSES, progress=False, bound=None):
    """Exact directions q (rows, k ≤ b) with L q a column of dL/dZ, and their exact-zero counts.

    L (m' × b, orthonormal columns), R (b × n) from the factorisation; ``weight`` (m × n), ``bias`` (m,) of the attacked
    layer and ``downstream`` the network its ReLU feeds (a :class:`~gradinv.downstream.Downstream`,
    or the classifier's weight W₂, C × m); ``rows`` (m',) the neurons L keeps (default: all).  A
    column is accepted when its active rows are fitted by Jᵀu to ``next_layer_rtol`` (default
    10·zero_tol: rounding level; for a deep downstream network, whose J is the candidate's and not
    the sample's own, :data:`DEEP_NEXT_LAYER_RTOL`, and the rounding uses the zeros alone).  ``class_templates``: let rounds
    descend with u fixed to class templates when the columns found support it (:func:`_round_templates`);
    ``next_bias_grad`` (C,), the classifier's bias gradient of one mean cross-entropy step, lets
    them draw the classes still missing most often (:func:`class_probabilities`; uniform without
    it; the batch size in its counts is the rank b, the independent inputs).
    ``projection_passes``: alternations of the polish with the nearest cell before the rounding
    (:func:`_polish_projected`; 0: the polish of the descent alone).  ``floor``: the factorisation's
    rounding floor (b × b), which loosens the exact tests of the directions along the weakest
    singular values (:mod:`~gradinv.search.tolerances`; None: no floor).  When b − 1
    columns are found, the last is looked for by :func:`~gradinv.search.completion.scan_line` first.
    ``bound``: the :class:`~gradinv.bound.SearchBound` to use instead of one from ``max_time`` (its
    ``found_at`` then tells when each column came).  ``noisy`` (a noisy update,
    :attr:`~gradinv.factorize.FactorizedGradient.noisy`): a rounding that returns a block adds only the
    direction it checked, not the block's others, arbitrary directions of a kernel known only to the
    noise.  Measured (mlp2_raw, DP-SGD σ = 1e-6, C = 1, b = 20, seed 1): the three block directions so
    added were no true column (|cos| 0.71–0.76 to the nearest, each mixing two) and spoilt every other
    sample (the batch at 19.5 dB; 88 dB without them).
    """
    rng = check_random_state(random_state)
    bound = SearchBound(max_time) if bound is None else bound
    Rt = torch.as_tensor(to_numpy(R), dtype=torch.float64)
    tols = tolerances(zero_tol, floor)
    exact_update = next_layer_rtol is None  # not the approximate mode's loosened fit
    next_layer_rtol = tols.residual if next_layer_rtol is None else next_layer_rtol
    max_misfit = MAX_POLISH_MISFIT if next_layer_rtol <= tols.residual else None  # approximate mode: W₂ drifts
    Lt = torch.as_tensor(to_numpy(L), dtype=torch.float64)
    m, b = Lt.shape
    LtL = Lt.T @ Lt
    fragile = fragile_rows(Lt)
    V = svd(Rt)[2].T  # n × b, spans the inputs
    RV = Rt @ V
    rows = torch.arange(len(bias)) if rows is None else torch.as_tensor(rows)
    downstream = as_downstream(downstream, len(bias))
    known = SearchKnowledge(torch.as_tensor(np.asarray(weight, np.float64)) @ V,  # no copy of W
                            torch.as_tensor(np.asarray(bias, np.float64)), rows, downstream)
    A, bias = known.A, known.bias
    n_classes = downstream.n_classes
    zeros_only = not downstream.is_linear
    if zeros_only:
        next_layer_rtol, max_misfit = max(next_layer_rtol, DEEP_NEXT_LAYER_RTOL), None
    norm = float(Rt.shape[1]) ** 0.5 if input_norm is None else float(input_norm)
    B = batch or max(64, min(2 * b, 100))  # measured: small batches of short descents beat large ones
    A_pinv = torch.linalg.pinv(A)
    cell_margin = _cell_margin(A, bias, RV, norm, rng)
    min_zeros = max(min_zero_fraction * m, b - 1 + ZERO_SLACK)
    found_q, found_z, deviations, found_u, found_zeros = [], [], [], [], []
    found = zeros = None  # torch.stack(found_q), torch.stack(found_zeros), kept up to date
    bar = tqdm(total=b, disable=not progress, desc="informed search", unit="column")

    def accept(block):
        """Add the rounded directions ``block`` (d × b) when its first passes the checks (d.)."""
        nonlocal found, zeros
        q, g, zero = _refine_on_zeros(Lt, block[0], tols)
        if int(zero.sum()) < min_zeros:
            return
        if zeros_only and zero_set_kernels(Lt, q[None], tols.zero_at(q), max_dim=1)[0] is None:
            return  # a combination of near-duplicates' columns, exact on their common zeros and one row more
        J = known.jacobians(cell_point(A, A_pinv, bias, zero[None], cell_margin) if zeros_only else None)
        u, residual = _next_layer_fit(g, J[0] if zeros_only else J, zero)
        if residual > max(next_layer_rtol, tols.floor_at(q)):
            return
        deviations.append(template_deviation(u))
        # a block's other rows share the zeros of its first; in a noisy update a zero set's kernel is known
        # only to the noise, and they would be arbitrary directions in it
        for i, direction in enumerate([q] if noisy else [q, *block[1:]]):
            if len(found_q) >= b:
                break
            if found is not None and torch.linalg.svdvals(torch.cat([found, direction[None]]))[-1] < 1e-6:
                continue  # dependent on the columns found
            if i == 0:  # u is q's; the block's other rows have their own
                found_u.append(oriented_upstream(u))
                found_zeros.append(zero)
                zeros = torch.stack(found_zeros)
            found_q.append(direction)
            found = torch.stack(found_q)
            found_z.append(int(zero.sum()))
            bound.found()
            bar.update(1)

    rounds, scanned, idle = 0, False, False
    while len(found_q) < b and not bound.expired():
        coords = _remaining_inputs_coords(found_q, RV)
        if len(found_q) == b - 1 and not scanned:  # the last sample's input is known up to its scale
            scanned = True
            q = scan_line(coords[:, 0], Lt, A, bias, tols, min_zeros, found)
            if q is not None:
                accept(q[None])
            if len(found_q) < b and exact_update:  # exact: the scan covered every cell a round reaches
                bound.stop(LAST_UNDETERMINED)
            continue
        c0 = _round_starts(coords, norm, B, rng, balanced=IDLE_BALANCED if idle else 0.0)
        basis = torch.linalg.qr(coords)[0]
        class_p = _missing_class_probabilities(next_bias_grad, b, found_u, n_classes)
        templates = _round_templates(deviations, B, n_classes, rounds, rng, class_p) if class_templates else None
        cf = _descend(c0, basis, A, bias, Lt, known.jacobians, steps=steps, lr=lr, tau=tau, deadline=bound.deadline,
                      templates=templates)
        rounds += 1
        n_found = len(found_q)
        for polished in _polish_projected(cf, A, A_pinv, bias, Lt, known.jacobians, cell_margin, projection_passes,
                                          found, zeros, bound.deadline, zeros_only=zeros_only):
            if len(found_q) >= b or bound.expired():
                break
            if polished is None:
                continue
            block = _round_polished(polished, Lt, tols, found, gram=LtL, fragile=fragile,
                                    max_misfit=max_misfit, found_zeros=zeros, zeros_only=zeros_only)
            if block is not None:
                accept(block)
        bound.round_done()
        idle = len(found_q) == n_found
    bar.close()
    return found_directions(found_q, found_z, b)


def search(factors, knowledge, *, random_state=None, max_time=None, verbose=0, input_norm=None,
           min_zero_fraction=0.0, next_layer_rtol=None):
    """The registry's entry (``"informed"``): :func:`informed_search` with the server's knowledge —
    the layer's W and b and the network its ReLU feeds (``knowledge.next_weight``, the classifier
    W₂, or ``knowledge.downstream``, any depth), and optionally the classifier's bias gradient
    ``knowledge.next_bias_grad`` (class templates then favour the classes with more samples still
    missing).  ``input_norm``: typical ‖x‖ of an input (default √n, standardised inputs);
    ``next_layer_rtol``: how well Jᵀu must fit a column's active rows (default: rounding level;
    the approximate mode loosens it, since FedAvg's W₂ drifts: measured residuals 0.1–0.3).
    """
    if knowledge.next_weight is None and knowledge.downstream is None:
        raise GradientError("solver='informed' needs the layer's weight and bias and the network its ReLU feeds "
                            "(next_weight or downstream)")
    W, bias = layer_parameters(knowledge, factors, "informed")
    downstream = as_downstream(knowledge.downstream if knowledge.downstream is not None else knowledge.next_weight,
                               factors.n_neurons)
    n_classes = downstream.n_classes
    next_bias_grad = knowledge.next_bias_grad
    if next_bias_grad is not None:
        next_bias_grad = np.asarray(to_numpy(next_bias_grad), np.float64)
        if next_bias_grad.shape != (n_classes,):
            raise GradientError(f"next_bias_grad {next_bias_grad.shape} does not match the {n_classes} classes of "
                                "the network after the attacked layer")
        if not np.all(np.isfinite(next_bias_grad)):
            raise GradientError("next_bias_grad has NaN or infinite entries")
    start, bound = time.perf_counter(), SearchBound(max_time)
    Q, zeros = informed_search(factors.L, factors.R, W, bias, downstream, rows=factors.rows,
                               random_state=random_state, max_time=max_time, input_norm=input_norm,
                               min_zero_fraction=min_zero_fraction, zero_tol=factors.zero_tol, floor=factors.floor,
                               noisy=factors.noisy,
                               next_layer_rtol=next_layer_rtol, next_bias_grad=next_bias_grad,
                               progress=bool(verbose), bound=bound)
    return SearchResult(Q, zeros, np.ones(len(zeros), bool), "informed",
                        bounded_stop_reason(len(zeros), factors.L.shape[1], bound, max_time),
                        time.perf_counter() - start, np.asarray(bound.found_at), np.asarray(bound.found_in_round, int),
                        bound.rounds)
