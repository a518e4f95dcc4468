"""Pipeline step "last_column": the one column of dL/dZ a search left out, from its own sample's input.

Sample k's input depends on the *other* columns only: x_k = dL/dWᵀ y / (yᵀ dL/db) for any
y ⊥ q_i, i ≠ k (:func:`~gradinv.reconstruct.certified_samples`).  So when every column but q_k
is exact, x̂_k = row k of Q̂⁻¹ R is the client's input whatever stands in q_k's place, and what
the server knows gives q_k back:

1. **The layer's W and b** give its zero set, Z_k = {r : w_rᵀ x̂_k + b_r < 0}; q_k spans the
   kernel of L on Z_k when that kernel is one-dimensional and robust
   (:func:`~gradinv.certificate.row_set_kernel`).  A search's bound that ran out one column short
   ends here.
2. **The network after the layer** decides when the kernel is larger.  A sample whose inactive
   neurons are a subset of another's (a black frame's, inside a dark image's) has a
   two-dimensional kernel {q_k, q_l}: no zero set pins q_k.  Its column is
   g_k = M_k J(h_k)ᵀ u for some u ∈ ℝ^C (M_k the neurons active at x̂_k, J the downstream
   Jacobian, :mod:`gradinv.downstream`), and g_k ∈ col(L): u spans the kernel of
   (I − L Lᵀ) M_k J(h_k)ᵀ, which is empty for an input that is not the client's (b + C ≪ m').
3. **Without that network**, a kernel of dimension d whose other d − 1 columns were found is the
   span of true columns (a proven block, :func:`~gradinv.certificate.proven_blocks`): any q in it
   independent of them makes every sample but those d − 1 exact, so q_k is the kernel's part
   orthogonal to them, and the block's own samples are reported as a block.

In a noisy update (DP noise, :attr:`~gradinv.factorize.FactorizedGradient.noisy`) x̂_k and L carry
the noise: the zero set leaves out the neurons within a margin of 0 (:data:`NOISY_MARGIN`) and its
kernel is exact to the noise (:func:`~gradinv.certificate.row_set_kernel`'s ``noise_tol``).  A
search that left one column out of a DP-SGD update otherwise spoils every sample: measured on
mlp2_raw, b = 20, seed 2 (Opacus, σ = 1e-5, C = 1), mean PSNR 14.9 dB with the column left out,
39.8 dB with it found here.

With two or more columns missing x̂_k is not the client's, its predicted zero set has no kernel,
and nothing changes.  Nor when dL/db leaves col(L): two inputs that are multiples of one another
(blank frames) then share one column of dL/dW, c = τ₁ g₁ + τ₂ g₂, which vanishes only where both
are inactive; no search finds it, so it is the column missing, and x̂_k is the pair's direction at
a scale dL/db does not give: its predicted zero set may still have a one-dimensional kernel, and
the direction put there spoils the split (measured: mlp2_grey_blanks, b = 20, seed 2, inputs 0.12
off; mlp3_grey_blanks, b = 100, seed 0, mean PSNR 33 dB without the step and 11 dB with it).  The
reconstruction splits that column (:mod:`gradinv.collinear`), or, where it cannot, the attack factors
col([dL/dW | dL/db]), which holds both members' columns (:func:`gradinv.pipeline._with_bias_span`).
A column found here passes the same certificates as every other
(:class:`~gradinv.reconstruct.InputReconstruction`).
"""

import numpy as np

from sudl._array_api import svd, to_numpy

from ._step import GradientStep
from .certificate import PATTERN_RTOL, directions_in, predicted_pattern, row_set_kernel, zero_set_kernels
from .downstream import as_downstream
from .reconstruct import reconstruct_inputs

NOISY_MARGIN = 0.1
"""In a noisy update (DP), x̂_k carries the noise of the other columns, and neurons whose
pre-activation is within a margin of 0 are left out of its zero set: first NOISY_MARGIN times the
zero tolerance t (relative to ‖w_r‖‖x̂_k‖ + |b_r|), then t.  Measured on Opacus DP-SGD updates
(σ = 1e-5, C = 1) of mlp2_raw, b = 20: with the true other columns (m = 400, seed 0, x̂_k within |cos|
1 − 1e-6) 0.1·t keeps about 200 of 400 neurons and a clear kernel (next singular value 0.2–0.4 of
the largest) where t keeps 120 and the next value falls to 8e-4–0.2; with the cell search's columns
(m = 1000, seed 2) 0.1·t gives no kernel and t the column."""


def column_from_network(L, x, weight, bias, down, rows, active, zero_tol):
    """q (b,) with L q ∝ M J(h)ᵀ u for the input ``x``, or None when no u fits (see the module doc, 2).

    ``weight``, ``bias``: the layer's, on all m neurons (h = ReLU(W x + b) feeds the network);
    ``rows``: the neurons L covers; ``active``: the neurons active at ``x`` among them (the others,
    inactive or too near 0, carry g = 0 or are left out of the test).  A u fits when the smallest
    singular value of (I − L Lᵀ) M J(h)ᵀ, columns scaled to unit norm, is at most √``zero_tol``
    of the largest and the next one is not."""
    import torch

    h = torch.relu(torch.as_tensor(weight @ x + bias))[None]
    Jt = down.jacobians(h.to(torch.float64), rows=torch.as_tensor(rows))[0].numpy()  # m' × C
    A = np.where(active[:, None], Jt, 0.0)
    A = A[:, np.linalg.norm(A, axis=0) > 0]
    if A.shape[1] == 0:
        return None
    A = A / np.linalg.norm(A, axis=0)
    _, s, Vh = svd(A - L @ (L.T @ A))
    threshold = np.sqrt(zero_tol) * s[0]
    if s[-1] > threshold or (len(s) > 1 and s[-2] <= threshold):
        return None
    q = L.T @ (A @ Vh[-1])
    return q / np.linalg.norm(q)


class LastColumn(GradientStep):
    """Pipeline step: replace each direction its sample's input can give (the module doc): the one
    direction not exact, and the unsettled member of each block whose other members are settled
    (determined by their own zero sets: then the sample's input depends only on columns that are
    right, and the block's span).  With two or more directions not exact nothing changes.

    Attributes
    ----------
    outcome_ : str, what was done, per direction tried: "found from its zero set", "found from the
        network after the layer", "a block of d: the kernel's part orthogonal to the d − 1 found",
        or why no column was found; "nothing missing"; "k columns missing: left as they are".
    n_zeros_ : ndarray of int, the exact zeros of each direction passed on

    Parameters
    ----------
    weight, bias : arrays (m × n), (m,) or None
        The attacked layer's W and b; without them the step passes everything through.
    downstream : ``nn.Module``, :class:`~gradinv.downstream.Downstream`, the classifier's W₂ (C × m), or None
        The network after the layer's ReLU (step 2 of the module doc).
    """

    def __init__(self, weight=None, bias=None, downstream=None):
        self.weight = weight
        self.bias = bias
        self.downstream = downstream

    def fit_transform(self, fg, y=None):
        self.n_zeros_ = np.array(fg.n_zeros, dtype=int)
        exact = np.asarray(fg.exact, dtype=bool).copy()
        missing = np.flatnonzero(~exact)
        if len(missing) > 1 or self.weight is None or self.bias is None:
            self.outcome_ = ("no layer weight and bias" if self.weight is None or self.bias is None
                             else f"{len(missing)} columns missing: left as they are")
            return fg
        if fg.bias_residual() > fg.zero_tol:
            self.outcome_ = ("dL/db leaves col(L): two inputs that are multiples of one another share a column, "
                             "which is not sparse and so the one missing (the reconstruction splits it, "
                             "gradinv.collinear); left as it is")
            return fg
        L = np.asarray(to_numpy(fg.L), np.float64)
        D = np.asarray(to_numpy(fg.directions), np.float64).copy()
        todo = [*missing.tolist(), *unsettled_block_members(fg, D, exact)]
        if not todo:
            self.outcome_ = "nothing missing"
            return fg
        W = np.asarray(to_numpy(self.weight), np.float64)
        bias = np.asarray(to_numpy(self.bias), np.float64)
        down = None if self.downstream is None else as_downstream(self.downstream, int(fg.n_neurons))
        outcomes = []
        for k in todo:  # the missing one first: the blocks' inputs depend on it
            x = np.asarray(to_numpy(reconstruct_inputs(fg.with_directions(D, self.n_zeros_, exact))[0]), np.float64)[k]
            q, outcome = _column(k, x, L, W, bias, down, D, exact, fg)
            outcomes.append(outcome)
            if q is not None:
                D[k] = q
                codes = np.abs(L @ q)
                self.n_zeros_[k] = int(np.sum(codes <= fg.zero_tol * codes.max()))
                exact[k] = True
        self.outcome_ = "; ".join(outcomes)
        return fg.with_directions(D, self.n_zeros_, exact)



def _column(k, x, L, W, bias, down, D, exact, fg):
    """(q or None, what was done) for direction ``k`` from its sample's input ``x`` (the module doc's
    steps 1–3; ``down``: the :class:`~gradinv.downstream.Downstream` or None)."""
    if fg.noisy:  # x̂ is off by the noise, by an unknown amount: the tighter margin first
        margins = [NOISY_MARGIN * fg.zero_tol, fg.zero_tol]
    else:
        margins = [PATTERN_RTOL["float64" if fg.zero_tol < 1e-7 else "float32"]]
    for rtol in margins:
        inactive, active = predicted_pattern(x, W[fg.rows], bias[fg.rows], rtol)
        kernel = row_set_kernel(L, inactive, noise_tol=fg.zero_tol if fg.noisy else None)
        if kernel is not None:
            break
    if kernel is None:
        return None, "no column: the predicted zero set of its input has no robust kernel"
    if kernel.shape[1] == 1:
        return kernel[:, 0], "found from its zero set"
    if down is not None:
        q = column_from_network(L, x, W, bias, down, fg.rows, active, fg.zero_tol)
        if q is not None:
            return q, "found from the network after the layer"
    others = exact.copy()
    others[k] = False
    return block_part(kernel, D, others)


def unsettled_block_members(fg, D, exact):
    """Directions (indices) that fill a block's span beside members settled by their own zero sets:
    a direction whose zero set's kernel has d ≥ 2 dimensions and holds d found directions, the d − 1
    others each with a one-dimensional kernel of its own (:func:`~gradinv.certificate.zero_set_kernels`)."""
    kernels = zero_set_kernels(fg.L, D, fg.zero_tols(D))
    out = []
    for k, K in enumerate(kernels):
        if not exact[k] or K is None or K.shape[1] < 2:
            continue
        members = np.flatnonzero(exact & directions_in(K, D))
        mates = [i for i in members if i != k]
        if len(members) == K.shape[1] and all(kernels[i] is not None and kernels[i].shape[1] == 1 for i in mates):
            out.append(k)
    return out


def block_part(kernel, D, found):
    """(the part of ``kernel`` (b × d) orthogonal to the ``found`` directions inside it when d − 1 are
    (step 3 of the module doc), what was done), or (None, why not)."""
    inside = D[found & directions_in(kernel, D)]
    d = kernel.shape[1]
    if len(inside) != d - 1:
        return None, f"no column: its kernel has {d} dimensions and {len(inside)} found columns"
    rest = kernel @ svd(inside @ kernel, full_matrices=True)[2][-1]  # the null vector of (d − 1) × d
    return rest / np.linalg.norm(rest), f"a block of {d}: the kernel's part orthogonal to the {d - 1} found"
