"""Step 4: fix each column's scale and sign with dL/db, then solve for the batch, Xᵀ = Q⁻¹ R.

With exact directions q̂_j (columns of Q̂, dL/dZ = L Q̂ diag(s)) the bias gradient
dL/db = dL/dZ · 1 = L Q̂ s gives the scales:  s = Q̂⁻¹ Lᵀ dL/db  (L has orthonormal columns).
Then Q = Q̂ diag(s) and X = Q⁻¹ R holds the inputs, one per row (Xᵀ in the paper's notation).
When dL/db leaves col(L), two inputs that are multiples of one another share a column; with the
classifier W₂ known the pair is split and every input recovered (:mod:`gradinv.collinear`).
"""

import numpy as np

from sudl._array_api import array_namespace, device, to_numpy

from ._step import GradientStep
from .certificate import proven_blocks, relu_consistent, zero_set_kernels
from .collinear import find_pair, find_pair_by_activations
from .downstream import as_downstream
from .factorize import GradientError, scatter_rows


def reconstruct_inputs(fg):
    """Inputs X (b × n, one per row), scales s (b,) and dL/dZ on the kept rows (m' × b) from a
    :class:`~gradinv.factorize.FactorizedGradient` whose ``directions`` hold b rows q̂_j."""
    xp = array_namespace(fg.L)
    Q_hat = fg.directions.T
    if Q_hat.shape != (fg.batch_size, fg.batch_size):
        raise GradientError(f"need {fg.batch_size} directions to reconstruct the batch, got {Q_hat.shape[1]}")
    s = xp.linalg.solve(Q_hat, fg.L.T @ fg.grad_b[:, None])[:, 0]
    Q = Q_hat * s[None, :]
    X = xp.linalg.solve(Q, fg.R)
    return X, s, fg.L @ Q


def certified_samples(proved, block, settled=None):
    """Sample j is exact iff the span of the columns i ≠ j is known: x_j = dL/dWᵀ y / (yᵀ dL/db)
    for any y orthogonal to them (one unproved column spoils every sample but its own).  Known:
    every column outside a proven block is ``proved``; a block j is not part of counts by its
    span (``block``: labels, −1 for none, :func:`~gradinv.certificate.proven_blocks`); in j's
    own block every other member must be ``settled`` (default ``proved``): proved, or
    determined by its own zero set, which inside a block's proven span only a true column is."""
    proved = np.asarray(proved, bool)
    block = np.asarray(block)
    settled = proved if settled is None else np.asarray(settled, bool) | proved
    bad = ~proved & (block < 0)
    out = bad.sum() - bad == 0
    for j in np.flatnonzero(out & (block >= 0)):
        mates = (block == block[j]) & (np.arange(len(block)) != j)
        out[j] = bool(np.all(settled[mates]))
    return out


def column_reasons(certified, in_block, failure):
    """Why each sample is certified or not, from its column's ``failure`` ("" when proved): a
    sample needs every *other* column proved, so it names the others' failures and their count."""
    reasons = np.empty(len(certified), dtype=object)
    for j in range(len(certified)):
        if certified[j]:
            reasons[j] = "certified: layer"
        elif in_block[j]:
            reasons[j] = ("not certified: block (its column shares the kernel of its zero set with another's, as those "
                          "of near-duplicate inputs do: only the span of their inputs is identified)")
        else:
            others = [f for i, f in enumerate(failure) if i != j and f]
            kinds = sorted(set(others))
            reasons[j] = "not certified: " + ", ".join(f"{others.count(k)} other {k}{'s' * (others.count(k) > 1)}"
                                                       for k in kinds)
    return reasons


class InputReconstruction(GradientStep):
    """Last step of the pipeline: fit_transform(factorized gradient) → X (b × n).

    Attributes
    ----------
    inputs_ : array (b, n)
    scales_ : array (b,), the scale and sign of each column from dL/db
    grad_Z_ : array (m, b), the recovered dL/dZ on all neurons (zero rows for dead neurons)
    sparse_ : ndarray of bool (b,), the gradient-only test: an exact column of dL/dZ with a robust
        zero set and a non-degenerate scale.  Necessary, not sufficient: on cross-entropy clients
        exactly sparse combinations of columns pass it.
    exact_ : ndarray of bool (b,), the certificate.  A column is *proved* when it passes ``sparse_``
        and its input's ReLU pattern reproduces the column's zeros under the layer's ``weight`` and
        ``bias`` (:mod:`gradinv.certificate`).  Since x_j = dL/dWᵀ y / (yᵀ dL/db) for any y
        orthogonal to the other columns, sample j is exact iff every column i ≠ j is proved
        (so one missing column spoils every sample but its own), or lies in a proved block of
        near-duplicate samples (:func:`~gradinv.certificate.proven_blocks`) that j is not part of;
        in j's own block the other members must be determined by their own zero sets (:func:`certified_samples`).
        All False without the weights.
    bias_residual_ : float, ‖dL/db − L Lᵀ dL/db‖ / ‖dL/db‖; above the zero tolerance nothing is certified
        (rounding gives 1e-15 in float64), nor when dL/dW is not rank b to rounding
        (``FactorizedGradient.exact_rank``: near-duplicate inputs whose small singular value was
        dropped are merged into one input that is neither)
    proved_, in_block_ : ndarray of bool (b,), the columns proved, and those in a proved block
    block_ : ndarray of int (b,), the proved block of each column (−1 for none)
    failures_ : ndarray of str (b,), how each column fails ("" when proved or in a block)
    uncertifiable_ : str or None, why no sample can be certified (None: the columns decide)
    model_may_certify_ : bool, the reason is one the end-to-end check can settle: inputs of the batch
        size given that duplicate others (it reads each input's count), or a pair split with the
        classifier (it recomputes every gradient from the whole batch)
    pair_ : :class:`~gradinv.collinear.SplitPair` or None, the column split into two inputs that are
        multiples of one another (they are the last two rows of ``inputs_``: b + 1 of them)
    n_zeros_ : ndarray of int, exact zeros of each column on the neurons kept
    reasons_ : ndarray of str (b,), why each sample is certified or not: "certified: layer", or the
        other columns that fail and how ("missing column": not found exact; "fragile row": its
        zero set fails the leave-one-out test; "ReLU pattern": its input does not reproduce its
        zeros), "block", "approximate mode", "no layer weight and bias".

    Parameters
    ----------
    weight, bias : arrays (m × n) and (m,) or None
        The attacked layer's parameters (known to the server); enable the ReLU certificate.
    downstream : the classifier's weight W₂ (C × m), a :class:`~gradinv.downstream.Downstream`, or None
        With W and b, splits a column shared by two inputs that are multiples of one another.
    next_weight_grad : array (m₂ × m) or None
        dL/dW₂ of the Linear a deeper network starts with: the same split in front of it.
    certify : bool, default=True
        False in the approximate mode: ``exact_`` is then all False.
    """

    def __init__(self, weight=None, bias=None, downstream=None, next_weight_grad=None, certify=True):
        self.weight = weight
        self.bias = bias
        self.downstream = downstream
        self.next_weight_grad = next_weight_grad
        self.certify = certify

    def _why_nothing_is_certified(self, fg):
        """The reason no sample can be certified, or None; sets ``bias_residual_``, ``model_may_certify_``
        and ``pair_``."""
        self.model_may_certify_, self.pair_ = False, None
        self.bias_residual_ = fg.bias_residual()  # off col(L), the scales read from dL/db are not the client's
        if not self.certify:
            return "approximate mode"
        if self.weight is None or self.bias is None:
            return "no layer weight and bias"
        if self.bias_residual_ > fg.zero_tol:  # x_k = α x_i puts g_i + α g_k in dL/dW and g_i + g_k in dL/db
            self.pair_ = self._split_pair(fg)
            if self.pair_ is not None:
                self.model_may_certify_ = True
                return ("two inputs that are multiples of one another (blank frames are) share one column of dL/dW; "
                        "split with the network after the layer (gradinv.collinear), which the layer alone does not "
                        "prove")
            return (f"dL/db is off the span of dL/dW by {self.bias_residual_:.1e} (relative): inputs that are "
                    "multiples of one another by factors other than 1 (blank frames are), or a dL/db that is not "
                    "the client's; the samples' scales are not known")
        if not fg.exact_rank:
            return "dL/dW is not rank b to rounding (noise, or near-duplicate inputs merged into one)"
        if fg.n_dependent_inputs:  # an input sent twice is one sample; so are two closer than the gradient resolves
            self.model_may_certify_ = True
            return (f"{fg.n_dependent_inputs} input(s) of the batch size given duplicate or combine others: which "
                    "recovered input stands for several is not known from the layer (attack_model's end-to-end check "
                    "reads it)")
        return None

    def _split_pair(self, fg):
        """:func:`~gradinv.collinear.find_pair` where the classifier fed by the layer's ReLU is known,
        :func:`~gradinv.collinear.find_pair_by_activations` where a deeper network's first weight
        gradient is."""
        if self.downstream is None or self.weight is None or self.bias is None:
            return None
        down = as_downstream(self.downstream, int(fg.n_neurons))
        try:
            if down.is_linear:
                return find_pair(fg, self.weight, self.bias, down.weight.numpy())
            if self.next_weight_grad is not None:
                return find_pair_by_activations(fg, self.weight, self.bias, self.next_weight_grad, fg.zero_tol)
        except np.linalg.LinAlgError:  # directions too near dependent to solve for: no split is claimed
            return None
        return None

    def _fit_pair(self, fg, why):
        """The outputs when a column was split into a pair (:attr:`pair_`): b + 1 inputs, none certified
        by the layer (``why``)."""
        xp = array_namespace(fg.L)
        pair = self.pair_
        X = xp.asarray(pair.inputs, dtype=fg.L.dtype, device=device(fg.L))
        X = xp.astype(X, fg.source_dtype) if fg.source_dtype is not None else X
        self.inputs_, self.scales_ = X, pair.scales
        self.grad_Z_ = xp.asarray(pair.grad_Z, dtype=fg.L.dtype, device=device(fg.L))
        zero = np.abs(pair.grad_Z[fg.rows, -2:]) <= fg.zero_tol * np.abs(pair.grad_Z[fg.rows, -2:]).max(axis=0)
        self.n_zeros_ = np.r_[np.delete(np.asarray(fg.n_zeros, int), pair.column), zero.sum(axis=0)]
        n = len(self.n_zeros_)
        self.sparse_, self.exact_, self.proved_, self.in_block_ = (np.zeros(n, bool) for _ in range(4))
        self.block_ = np.full(n, -1)
        self.failures_ = np.array([why] * n, dtype=object)
        self.reasons_ = np.array([f"not certified: {why}"] * n, dtype=object)
        return X

    def fit_transform(self, fg, y=None):
        why = self._why_nothing_is_certified(fg)
        self.uncertifiable_ = why
        if self.pair_ is not None:
            return self._fit_pair(fg, why)
        X, s, G = reconstruct_inputs(fg)
        xp = array_namespace(X)
        X = xp.astype(X, fg.source_dtype) if fg.source_dtype is not None else X
        scale = to_numpy(xp.abs(s))
        self.inputs_ = X
        self.scales_ = s
        self.grad_Z_ = scatter_rows(G, fg.rows, fg.n_neurons)
        self.n_zeros_ = np.asarray(fg.n_zeros, int)
        zero_tol = fg.zero_tols(fg.directions)
        sparse = np.asarray(fg.exact, dtype=bool) & (scale > 1e-12 * scale.max())
        kernels = zero_set_kernels(fg.L, fg.directions, zero_tol)
        robust = np.array([K is not None and K.shape[1] == 1 for K in kernels])
        self.sparse_ = sparse & robust
        if why is not None:
            self.exact_ = self.proved_ = self.in_block_ = np.zeros_like(self.sparse_)
            self.block_ = np.full(len(scale), -1)
            self.failures_ = np.array([why] * len(scale), dtype=object)
            self.reasons_ = np.array([f"not certified: {why}"] * len(scale), dtype=object)
            return X
        relu_ok = relu_consistent(self.grad_Z_, X, self.weight, self.bias, zero_tol,
                                  rtol=1e-7 if fg.zero_tol < 1e-7 else 1e-3)
        self.proved_ = self.sparse_ & relu_ok
        self.block_ = np.where(sparse, proven_blocks(kernels, fg.directions), -1)
        self.in_block_ = self.block_ >= 0
        self.exact_ = certified_samples(self.proved_, self.block_, self.sparse_)
        self.failures_ = np.where(self.proved_ | self.in_block_, "", np.where(
            ~sparse, "missing column", np.where(~robust, "fragile row", np.where(~relu_ok, "ReLU pattern", ""))))
        self.reasons_ = column_reasons(self.exact_, self.in_block_, self.failures_)
        return X
