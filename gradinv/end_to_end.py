"""End-to-end certificate: the recovered batch and labels reproduce every gradient the client sent.

The layer-level certificate (:mod:`gradinv.certificate`) reads each sample's scale off dL/db
and trusts it: a dL/db scaled by c with everything else the client's is met exactly by the
batch X/c wherever the ReLU patterns do not change.  The server that knows the model and has
every gradient the client sent checks more: run the network from the attacked layer on, on the
recovered inputs X̂ with the recovered labels ŷ, recompute the gradient of the mean
cross-entropy for every parameter from the attacked layer on,

    ∇θ L(X̂, ŷ)  vs  the ∇θ sent,   ‖∇θ L(X̂, ŷ) − ∇θ‖_F ≤ rtol · ‖∇θ‖_F  for every θ,

and compare to rounding (:data:`RTOL`).  Equal: every sample is certified ("certified: end to
end").  Unequal: the per-sample columns tell which samples are wrong: sample j keeps its
layer certificate only when the model's dL/dZ column for (x̂_j, ŷ_j) is the recovered column
ĝ_j, to the same tolerance (a sample whose scale was read off a wrong dL/db fails this).

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


def recompute_gradients(model, layer, inputs, labels):
    """Gradients of mean cross-entropy at ``inputs`` (b × n, the attacked layer's inputs) and
    ``labels``, in float64 on a copy of what runs from the attacked ``layer`` on (:func:`_runner`).

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
        out = runner(x)
        nn.functional.cross_entropy(out, torch.as_tensor(np.asarray(labels), dtype=torch.int64)).backward()
    finally:
        handle.remove()
    grads = {k: t.grad.detach() for k, t in params.items() if t.grad is not None}
    return grads, seen["Z"].grad.detach()


def _relative(a, b):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float(torch.linalg.norm(a - b) / max(float(torch.linalg.norm(b)), torch.finfo(torch.float64).tiny))


def end_to_end_check(result, model, layer, gradients):
    """Recompute the sent gradients from ``result``'s batch and labels (see the module doc).

    Returns (passed, max relative mismatch over the parameters, per sample (b,) whether the model's
    column matches the recovered one, or None, reason); ``passed`` is None when the check cannot be made (the reason says why).
    """
    if result.approximate:
        return None, None, None, "approximate mode"
    if result.labels is None:
        return None, None, None, "no labels recovered"
    if result.n_dependent_inputs:
        return None, None, None, f"{result.n_dependent_inputs} dependent input(s): their weights are unknown"
    try:
        found = recompute_gradients(model, layer, result.inputs, result.labels)
    except (RuntimeError, ValueError, IndexError, TypeError) as e:  # not the model's input shape
        return None, None, None, f"the model cannot be run on the recovered batch ({str(e).splitlines()[0]})"
    if found is None:
        return None, None, None, "a deeper layer of a model with its own forward(): the network after it is unknown"
    grads, columns = found
    missing = [k for k in grads if k not in gradients]
    if missing:
        return None, None, None, f"gradients lack {missing[:3]}"
    sent_dtype = torch.as_tensor(gradients[layer.name + ".weight"]).dtype
    rtol = RTOL.get(sent_dtype, RTOL[torch.float32])
    mismatch = max(_relative(g, gradients[k]) for k, g in grads.items())
    recovered = torch.as_tensor(np.asarray(to_numpy(result.grad_Z), dtype=np.float64)).T
    per_sample = np.array([_relative(c, r) for c, r in zip(columns, recovered)])
    reason = f"relative gradient mismatch {mismatch:.1e} (tolerance {rtol:.0e})"
    return mismatch <= rtol, mismatch, per_sample <= rtol, reason


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
    ``gradients`` sent; records the check's outcome in ``result.end_to_end``.  Returns ``result``."""
    passed, mismatch, column_ok, reason = end_to_end_check(result, model, layer, gradients)
    result.end_to_end = ("passed: " if passed else "failed: " if passed is False else "not made: ") + reason
    if passed:  # the batch's match pins only the samples with a large enough share of the gradient
        column_ok = column_ok & _resolved(result, gradients, layer, mismatch)
        result.exact = column_ok.copy()
        result.certificate_reason = np.where(column_ok, "certified: end to end", "not certified: its share of the "
                                             "gradient is too small for the end-to-end check to pin it").astype(object)
    elif passed is False:
        revoke = result.exact & ~column_ok
        result.exact = result.exact & column_ok
        reasons = np.asarray(result.certificate_reason, dtype=object).copy()
        reasons[revoke] = "not certified: the model's gradient at this sample is not its recovered column"
        result.certificate_reason = reasons
    return result
