"""End-to-end certificate: the recovered batch and labels reproduce every gradient the client sent.

The layer-level certificate (:mod:`gradinv.certificate`) reads each sample's scale off dL/db
and trusts it: a dL/db scaled by c with everything else the client's is met exactly by the
batch X/c wherever the ReLU patterns do not change.  The server that knows the model and has
every gradient the client sent checks more: run the network from the attacked layer on, on the
recovered inputs X̂ with the recovered labels ŷ, recompute the gradient of the mean
cross-entropy for every parameter from the attacked layer on,

    ∇θ L(X̂, ŷ)  vs  the ∇θ sent,   ‖∇θ L(X̂, ŷ) − ∇θ‖_F ≤ rtol · ‖∇θ‖_F  for every θ,

and compare to rounding (:data:`RTOL`).  Equal: every sample is certified ("certified: end to
end").  Unequal (a near-duplicate block, a missing column): the per-sample columns tell which
samples are right.  The model *confirms* column i when its dL/dZ column for (x̂_i, ŷ_i) is the
recovered ĝ_i to the same tolerance; sample j is then certified when its own column is confirmed
and every other column is proved by the layer or confirmed (the rule of
:func:`~gradinv.reconstruct.certified_samples`, a column whose zero set is fragile counting once
confirmed).  A wrong column k spoils this: every x̂_j, j ≠ k, is then wrong, and x̂_k is right
but its column is not ĝ_k; a sample whose scale was read off a wrong dL/db fails its own column.

Where the split of two inputs that are multiples of one another is free along a line (another
sample has a member's ReLU pattern, :mod:`gradinv.collinear`), every gradient sent is the same
along it; the model's softmax is not, and :func:`fit_free_split` places the split before the check.

An input the client sent twice, with one label or two, is one recovered sample standing for two
(one column of dL/dW, whatever the labels); the model then runs it once per label sent, each
weighed by its count (:func:`label_counts`), unless the layer certifies nothing (a dropped
singular value: near-duplicates merged into one input).

For the model's first layer the recovered inputs are the client's inputs and every parameter
is checked; for a deeper layer they are that layer's input features, and the parameters before
it (which need the raw inputs) are not.  The check needs all b samples and their labels, and is
never made in the approximate mode.
"""

import copy

import numpy as np
import torch
from torch import nn

from sudl._array_api import to_numpy

from .reconstruct import certified_samples, column_reasons

RTOL = {torch.float64: 1e-8, torch.float32: 1e-5}
"""Relative gradient mismatch accepted as rounding, by the dtype of the gradients sent: 100× and
10× below the exact-sample thresholds of :data:`gradinv.metrics.EXACT_RTOL` (1e-6, 1e-4), and far
above what exact batches show (measured 3e-15 in float64, 2e-7 in float32, ``docs/certificates.md``)."""


def is_leaf_chain(model):
    """Whether ``model``'s forward pass is the chain of its leaves: a leaf, or an ``nn.Sequential``
    of such modules (a custom ``forward`` may do anything)."""
    return not list(model.children()) or (isinstance(model, nn.Sequential)
                                           and all(map(is_leaf_chain, model.children())))


def _runner(model, layer):
    """A float64 copy of what runs from the attacked layer on: the whole model when ``layer`` is
    its first (the recovered inputs are the model's inputs); the chain of leaves from ``layer`` on
    when the model's forward pass is the chain of its leaves (:func:`is_leaf_chain`); else None.
    Returns (module to call, its copy of the attacked Linear, {"name.param": parameter}).
    """
    if layer.first:
        runner = copy.deepcopy(model).double()
        return runner, runner.get_submodule(layer.name), dict(runner.named_parameters())
    if not is_leaf_chain(model):
        return None
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    start = [n for n, _ in leaves].index(layer.name)
    copies = [(n, copy.deepcopy(m).double()) for n, m in leaves[start:]]
    params = {f"{n}.{p}": t for n, m in copies for p, t in m.named_parameters(recurse=False)}
    return nn.Sequential(*(m for _, m in copies)), copies[0][1], params


def recompute_gradients(model, layer, inputs, labels, weights=None):
    """Gradients of mean cross-entropy at ``inputs`` (b × n, the attacked layer's inputs) and
    ``labels``, in float64 on a copy of what runs from the attacked ``layer`` on (:func:`_runner`);
    ``weights`` (b,) weighs each row's loss instead of 1/b (:func:`label_counts`).

    Returns ({"name.param": gradient}, dL/dZ (b × m) of the attacked layer's output), or None
    when the network after a deeper layer is not known from the model's modules.
    """
    found = _runner(model, layer)
    if found is None:
        return None
    runner, linear, params = found
    for t in params.values():
        t.grad = None
    seen = {}

    def keep(module, args, output):
        output.retain_grad()
        seen["Z"] = output

    handle = linear.register_forward_hook(keep)
    try:
        x = torch.as_tensor(np.asarray(to_numpy(inputs), dtype=np.float64))
        losses = nn.functional.cross_entropy(runner(x), torch.as_tensor(np.asarray(labels), dtype=torch.int64),
                                             reduction="none")
        (losses.mean() if weights is None else losses @ torch.as_tensor(weights, dtype=torch.float64)).backward()
    finally:
        handle.remove()
    grads = {k: t.grad.detach() for k, t in params.items() if t.grad is not None}
    return grads, seen["Z"].grad.detach()


def _relative(a, b):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float(torch.linalg.norm(a - b) / max(float(torch.linalg.norm(b)), torch.finfo(torch.float64).tiny))


def per_label_columns(model, layer, inputs):
    """c_jy (b × C × m): the column dL/dZ of one sample's cross-entropy (unweighted) at input x_j
    (row j of ``inputs``) with label y, for every class y of the model's logits."""
    x = torch.as_tensor(np.asarray(to_numpy(inputs), dtype=np.float64))
    with torch.no_grad():
        n_classes = _runner(model, layer)[0](x[:1]).shape[1]
    b = x.shape[0]
    labels = torch.arange(n_classes).repeat(b)
    _, columns = recompute_gradients(model, layer, x.repeat_interleave(n_classes, dim=0), labels,
                                     weights=np.ones(b * n_classes))
    return columns.reshape(b, n_classes, -1).numpy()


def label_counts(per_label, recovered, rtol=1e-6):
    """(n, D): n (b̂ × C) ints, how many times the client sent each recovered input with each label,
    and D > 0, the denominator of the client's loss; None when every sample was sent once and D = b̂.

    The client's loss Σ_i ℓ_i / D gives the recovered column of input j as
    ĝ_j = Σ_y (n_jy / D) c_jy (:func:`per_label_columns`).  The c_jy = M_j J_jᵀ(p_j − e_y) satisfy
    one relation, Σ_y p_jy c_jy = 0 (p_j: the softmax), so the least-squares a_j (ĝ_j = Σ_y a_jy c_jy)
    is fixed up to a multiple of p_j; the label counts are the a_j ≥ 0 with a zero (a label the
    sample was not sent with).  An input sent twice is one column whether its labels agree or not.
    D is read off the median Σ_y a_jy (most samples are single), and n_jy = a_jy D must be an integer
    to ``rtol``; a sample whose fit fails is counted once with its largest a_jy (its column then
    fails the check), as is one whose column is below rounding (measured on the zoo's mlp3_trained
    client, b = 100, seed 1, a column 3e-13 of the largest).  D is a real number: the batch size B
    of a mean (B = Σ n, or more when some samples have no gradient at this layer), and B/c for an
    update scaled by c as a whole (a clipped update: Flower's ``fixedclipping_mod``, ``LocalDpMod``
    before its noise), 1 for a summed loss.  One scalar fitted to b̂·m numbers costs the check
    nothing of its power over the samples.
    """
    b, C, _ = per_label.shape
    a = np.full((b, C), np.nan)
    for j in range(b):
        A = per_label[j].T  # m × C
        p = np.linalg.svd(A, full_matrices=False)[2][-1]
        p = p / p.sum()
        coef = np.linalg.lstsq(A, recovered[j], rcond=None)[0]
        coef = coef + np.max(-coef / np.where(p > 0, p, np.inf)) * p if np.all(p >= 0) else coef
        if np.linalg.norm(A @ coef - recovered[j]) <= rtol * max(np.linalg.norm(recovered[j]), 1e-300):
            a[j] = coef
    total = np.nansum(a, axis=1)
    typical = float(np.median(total))
    if not np.isfinite(typical) or typical <= 0:
        return None
    D = 1 / typical
    n = np.round(np.nan_to_num(a) * D)
    whole = np.all(np.abs(np.nan_to_num(a) * D - n) <= rtol * np.maximum(n, 1), axis=1) & (n.sum(1) >= 1) \
        & ~np.isnan(a).any(axis=1) & (n >= 0).all(axis=1)
    single = np.zeros_like(n)
    single[np.arange(b), np.argmax(np.nan_to_num(a, nan=-np.inf), axis=1)] = 1
    n = np.where(whole[:, None], n, single).astype(int)
    if abs(D - b) <= rtol * b and np.all(n.sum(1) == 1):
        return None
    return n, D


FREE_SCAN = np.concatenate([-np.logspace(-6, 2, 33), np.logspace(-6, 2, 33)])
"""The λ scanned along each free direction of a split before the least-squares fit (arbitrary: eight
decades around the min-norm split, four points a decade).  A free direction is a unit vector of the
classifier's u-space, where a sample's u = (p − e_y)/B is at most √2, or in front of a deeper
network a line through an input, scaled to its norm (:mod:`gradinv.collinear`)."""


def _direction_mismatch(model, layer, X, G):
    """Per sample, G's column against the model's dL/dZ column at x_j for the label that fits its
    direction best: ((b × m) differences of the unit columns, (b,) those labels), :func:`per_label_columns`."""
    C = per_label_columns(model, layer, X)
    C = C / np.maximum(np.linalg.norm(C, axis=2, keepdims=True), 1e-300)
    g = (G / np.maximum(np.linalg.norm(G, axis=0), 1e-300)).T[:, None, :]
    best = np.argmin(np.linalg.norm(C - g, axis=2), axis=1)
    return g[:, 0] - C[np.arange(len(C)), best], best


def fit_free_split(result, model, layer):
    """Where the pair split leaves λ free (:attr:`gradinv.collinear.SplitPair.refit`: a member's mask
    shared by another sample, along which every gradient sent is the same): the λ at which the
    samples it moves have the direction of the model's column at their input for some label
    (the softmax, which the layer's gradients cannot see): scipy's least squares from the best of
    :data:`FREE_SCAN`.  Sets ``result.inputs``, ``result.grad_Z`` and those samples' ``result.labels``
    to the fitted split; the end-to-end check that follows decides whether it holds."""
    rec = result.pipeline.named_steps["reconstruct"]
    pair = getattr(rec, "pair_", None)
    if pair is None or not pair.n_free:
        return
    from scipy.optimize import least_squares

    X0, G0 = pair.refit(np.zeros(pair.n_free))
    X1, G1 = pair.refit(np.full(pair.n_free, 1e-3))  # which samples λ moves: their inputs or their columns
    moved = ~np.isclose(X0, X1, rtol=1e-9, atol=0).all(axis=1) | ~np.isclose(G0, G1, rtol=1e-9, atol=0).all(axis=0)
    rows = np.flatnonzero(moved)
    if not len(rows):
        return

    def residual(lam):
        X, G = pair.refit(lam)
        return _direction_mismatch(model, layer, X[rows], G[:, rows])[0].ravel()

    # the best label switches along λ, so the residual jumps: start from the best of a scan along each axis
    starts = [np.zeros(pair.n_free)] + [t * e for e in np.eye(pair.n_free) for t in FREE_SCAN]
    start = min(starts, key=lambda lam: np.linalg.norm(residual(lam)))
    fit = least_squares(residual, start, x_scale="jac", xtol=1e-15, ftol=1e-15, gtol=1e-15,
                        max_nfev=50 * (pair.n_free + 1))
    X, G = pair.refit(fit.x)
    result.labels = np.array(result.labels)
    result.labels[rows] = _direction_mismatch(model, layer, X[rows], G[:, rows])[1]
    result.inputs, result.grad_Z = (torch.as_tensor(new, dtype=old.dtype) if isinstance(old, torch.Tensor)
                                    else np.asarray(new, dtype=old.dtype)
                                    for new, old in ((X, result.inputs), (G, result.grad_Z)))


def end_to_end_check(result, model, layer, gradients):
    """Recompute the sent gradients from ``result``'s batch and labels (see the module doc).

    Returns (passed, max relative mismatch over the parameters, per sample (b,) whether the model's
    column matches the recovered one, or None, reason, the label counts n (b̂ × C) of
    :func:`label_counts` or None when each sample was sent once); ``passed`` is None when the check
    cannot be made (the reason says why).
    """
    if result.approximate:
        return None, None, None, "approximate mode", None
    if result.labels is None:
        return None, None, None, "no labels recovered", None
    try:
        found = recompute_gradients(model, layer, result.inputs, result.labels)
    except (RuntimeError, ValueError, IndexError, TypeError) as e:  # not the model's input shape
        return None, None, None, f"the model cannot be run on the recovered batch ({str(e).splitlines()[0]})", None
    if found is None:
        return None, None, None, "a deeper layer of a model with its own forward(): the network after it is unknown", None
    grads, columns = found
    recovered = torch.as_tensor(np.asarray(to_numpy(result.grad_Z), dtype=np.float64)).T
    # an input sent more than once: the client's mean weighed it so.  Not when the layer certifies
    # nothing (e.g. dL/dW dropped a singular value above rounding: a near-duplicate pair merged into its
    # midpoint, counted twice, matches every gradient to second order in their distance; the
    # false-certificate fuzz, near_duplicate 1e-4)
    rec = result.pipeline.named_steps["reconstruct"]
    certifiable = rec.uncertifiable_ is None or rec.model_may_certify_
    counts = label_counts(per_label_columns(model, layer, result.inputs), recovered.numpy()) if certifiable else None
    if counts is not None:
        n, B = counts
        j, y = np.nonzero(n)
        grads, rows = recompute_gradients(model, layer, np.asarray(to_numpy(result.inputs), np.float64)[j], y,
                                          weights=n[j, y] / B)
        columns = torch.zeros_like(recovered).index_add_(0, torch.as_tensor(j), rows)
    missing = [k for k in grads if k not in gradients]
    if missing:
        return None, None, None, f"gradients lack {missing[:3]}", None
    sent_dtype = torch.as_tensor(gradients[layer.name + ".weight"]).dtype
    rtol = RTOL.get(sent_dtype, RTOL[torch.float32])
    mismatch = max(_relative(g, gradients[k]) for k, g in grads.items())
    per_sample = np.array([_relative(c, r) for c, r in zip(columns, recovered)])
    reason = f"relative gradient mismatch {mismatch:.1e} (tolerance {rtol:.0e})"
    if counts is not None:
        reason += "; " + _denominator_reason(*counts)
    return mismatch <= rtol, mismatch, per_sample <= rtol, reason, None if counts is None else counts[0]


def update_mismatch(result, model, layer, gradients):
    """How well ``result``'s batch explains an approximate update: ‖α ∇θ L(X̂, ŷ) − g‖ / ‖g‖ over every
    parameter θ from the attacked layer on (mean cross-entropy at the recovered inputs and labels,
    g the gradients sent), at the one scale α that fits best (the batch size, a clipped update);
    None when it cannot be computed (no labels, the network after a deeper layer unknown).  A true
    batch leaves the noise; a wrong one leaves its own error as well."""
    if result.labels is None:
        return None
    try:
        found = recompute_gradients(model, layer, result.inputs, result.labels)
    except (RuntimeError, ValueError, IndexError, TypeError):
        return None
    if found is None or any(k not in gradients for k in found[0]):
        return None
    a = torch.cat([t.reshape(-1) for t in found[0].values()])
    g = torch.cat([torch.as_tensor(gradients[k], dtype=torch.float64).reshape(-1) for k in found[0]])
    alpha = float(a @ g) / max(float(a @ a), torch.finfo(torch.float64).tiny)
    return float(torch.linalg.norm(alpha * a - g) / max(float(torch.linalg.norm(g)), torch.finfo(torch.float64).tiny))


def _denominator_reason(n, D):
    """What the label counts n and the loss's denominator D (:func:`label_counts`) say of the update."""
    sent = int(n.sum())
    said = f"the {len(n)} recovered inputs stand for {sent} samples"
    if sent > len(n):
        said += " (an input sent more than once, with one label or several)"
    B = round(D)
    if abs(D - B) <= 1e-6 * D and B >= sent:
        if B == sent:
            return said + f": the client's batch of {B}"
        return said + (f", the loss a mean over a batch of {B} (the {B - sent} others without a gradient at this "
                       f"layer), or the update scaled by {sent / D:.6g} as a whole")
    return said + f", the update their mean scaled by {sent / D:.6g} as a whole (clipped, or not a mean)"


def _resolved(result, gradients, layer, mismatch):
    """Per sample j: does a gradient match to ``mismatch`` pin x_j to the exact-sample threshold?

    An error δ in x_j alone changes dL/dW by g_j δᵀ, of norm ‖g_j‖‖δ‖; a match to ``mismatch``·‖dL/dW‖
    bounds ‖δ‖/‖x_j‖ by mismatch·‖dL/dW‖ / (‖g_j‖‖x_j‖), which must be ≤ the exact-sample threshold
    (:data:`gradinv.metrics.EXACT_RTOL`).  A well-classified sample of a trained network contributes
    a column 1e-7 of the largest: the whole batch's gradients then match while that sample is off by
    more than the threshold (measured on the zoo's mlp3_trained client, b = 100: one such sample
    was certified with a relative error above 1e-6 before this test)."""
    from .metrics import EXACT_RTOL

    sent = torch.as_tensor(gradients[layer.name + ".weight"])
    threshold = EXACT_RTOL["float64" if sent.dtype == torch.float64 else "float32"]
    sent = sent.to(torch.float64)
    G = torch.as_tensor(np.asarray(to_numpy(result.grad_Z), dtype=np.float64))
    X = torch.as_tensor(np.asarray(to_numpy(result.inputs), dtype=np.float64)).reshape(G.shape[1], -1)
    share = G.norm(dim=0) * X.norm(dim=1) / float(torch.linalg.norm(sent))
    return (max(mismatch, torch.finfo(torch.float64).eps) / np.maximum(share.numpy(), 1e-300)) <= threshold


def certify_end_to_end(result, model, layer, gradients):
    """Update ``result``'s certificates (``exact``, ``certificate_reason``) with the end-to-end check
    of ``model``'s attacked ``layer`` (:class:`~gradinv.models.AttackableLayer`) against the
    ``gradients`` sent; records the check's outcome in ``result.end_to_end`` and, when it passed, how
    many times the client sent each recovered input (``result.multiplicity``; its sum is the client's
    batch size) and with which labels (``result.label_counts``).  Returns ``result``."""
    if not result.approximate and result.labels is not None:
        fit_free_split(result, model, layer)
    passed, mismatch, column_ok, reason, counts = end_to_end_check(result, model, layer, gradients)
    rec = result.pipeline.named_steps["reconstruct"]
    result.end_to_end = ("passed: " if passed else "failed: " if passed is False else "not made: ") + reason
    if passed:  # the batch's match pins only the samples with a large enough share of the gradient
        column_ok = column_ok & _resolved(result, gradients, layer, mismatch)
        result.multiplicity = np.ones(len(column_ok), int) if counts is None else counts.sum(1)
        result.label_counts = counts
        single = result.multiplicity == 1
        result.exact = column_ok & single
        result.certificate_reason = np.where(column_ok, "certified: end to end", "not certified: its share of the "
                                             "gradient is too small for the end-to-end check to pin it").astype(object)
        result.certificate_reason[column_ok & ~single] = (
            "not certified: one input for several samples (sent more than once, or inputs closer than the gradient "
            "resolves: a pair 1e-5 apart matched every gradient to 1e-14)")
    elif passed is False and rec.uncertifiable_ is None:  # else nothing is certified already
        confirmed = rec.proved_ | column_ok
        exact = column_ok & certified_samples(confirmed, rec.block_, rec.sparse_)
        reasons = column_reasons(exact, rec.in_block_, np.where(confirmed | rec.in_block_, "", rec.failures_))
        reasons[exact & ~result.layer_exact] = "certified: its column and every other match the model"
        reasons[~column_ok & ~rec.in_block_] = ("not certified: the model's gradient at this sample is not its "
                                                "recovered column")
        result.exact, result.certificate_reason = exact, reasons
    return result
