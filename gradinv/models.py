"""Attacking the user's own PyTorch model: find the Linear layers followed by ReLU and invert one.

Layers are found by walking the model's modules in registration order (``nn.Sequential`` and
modules that register their layers in call order): a ``Linear`` whose next module is a ``ReLU``
is attackable.  What the search may use after it depends on what the walk can prove:

* the module after the ReLU is a ``Linear`` that ends the model: it is the classifier W₂, and
  the search uses it directly (J = W₂, no autograd);
* the model is built of ``nn.Sequential`` containers only, so that its forward pass *is* the
  chain of its leaves: the leaves after the ReLU are the downstream network
  (:mod:`gradinv.downstream`); the cell search finds the columns from W and b
  (:meth:`gradinv.knowledge.Knowledge.default_search` says why), the network's Jacobian at the recovered
  inputs gives the labels, and the whole model certifies the batch end to end; a layer it
  cannot differentiate through per sample is named in the reason;
* otherwise (a custom ``forward``) the downstream network is unknown to the walk and the cell
  search runs with the layer's W and b alone; the reason says so.

A ReLU applied functionally (``F.relu``) is invisible to this walk: name the layer explicitly
then.  The first Linear of a model sees the client's raw inputs; a deeper one sees features,
and the attack returns those features.
"""

import time
from dataclasses import dataclass

import torch
from torch import nn

from ._checks import check_model_arguments
from .downstream import Downstream, DownstreamError
from .end_to_end import certify_end_to_end, is_leaf_chain, update_mismatch
from .factorize import GradientError, NoExactColumnError
from .knowledge import Knowledge
from .pipeline import invert_layer


def _what_it_recovers(first):
    return "the model's first layer: recovers the client's inputs" if first else \
        "a deeper layer: recovers that layer's input features, not raw inputs"


@dataclass
class AttackableLayer:
    """A Linear layer followed by ReLU: its name, the next Linear (if it ends the model), the
    downstream network after its ReLU (when the walk can prove it), and why."""

    name: str
    linear: nn.Linear
    next_name: str = None
    next_linear: nn.Linear = None
    first: bool = False
    downstream: nn.Module = None
    downstream_names: tuple = ()
    no_downstream_reason: str = ""

    @property
    def search(self):
        """The search its knowledge allows (:meth:`gradinv.knowledge.Knowledge.default_search`)."""
        return self.knowledge.default_search()

    @property
    def knowledge(self):
        """What the server knows of this layer (:class:`~gradinv.knowledge.Knowledge`): its W and b, and
        the classifier or the network after its ReLU."""
        return Knowledge(self.linear.weight.detach(), self.linear.bias.detach(),
                         None if self.next_linear is None else self.next_linear.weight.detach(), self.downstream)

    @property
    def reason(self):
        what = _what_it_recovers(self.first)
        if self.next_linear is not None:
            nxt = f"; its ReLU feeds the classifier '{self.next_name}': informed search with W₂"
        elif self.downstream is not None:
            nxt = (f"; its ReLU feeds {len(self.downstream_names)} further layers "
                   f"({', '.join(self.downstream_names)}): cell search with W and b, labels from their Jacobian, "
                   "the batch checked end to end")
        else:
            nxt = f"; cell search with W and b alone ({self.no_downstream_reason})"
        return f"'{self.name}' is Linear → ReLU, {what}{nxt}"


def _classifier_bias_grad(gradients, classifier, kwargs):
    """The classifier's bias gradient from ``gradients``, or None: when it is absent, and in
    approximate mode, whose DP-SGD or FedAvg updates do not carry one mean cross-entropy step's
    ∂L/∂b₂ (:func:`gradinv.labels.label_counts`).  An explicit ``next_bias_grad`` overrides it."""
    return None if kwargs.get("approximate") or classifier is None else gradients.get(f"{classifier}.bias")


def find_attackable_layers(model):
    """Every Linear → ReLU pair of ``model``, in order (see the module doc for what is detected)."""
    leaves = [(n, m) for n, m in model.named_modules() if len(list(m.children())) == 0]
    first_param = next((n for n, m in leaves if any(True for _ in m.parameters(recurse=False))), None)
    chain = is_leaf_chain(model)
    found = []
    for i, (name, mod) in enumerate(leaves[:-1]):
        if isinstance(mod, nn.Linear) and isinstance(leaves[i + 1][1], nn.ReLU):
            layer = AttackableLayer(name, mod, first=name == first_param)
            if i + 2 == len(leaves) - 1 and isinstance(leaves[i + 2][1], nn.Linear):
                layer.next_name, layer.next_linear = leaves[i + 2]
            elif not chain:
                layer.no_downstream_reason = (f"{type(model).__name__} has its own forward(), so the network after "
                                              f"'{name}' cannot be read off its modules")
            elif i + 2 == len(leaves):
                layer.no_downstream_reason = f"nothing follows the ReLU after '{name}'"
            else:
                layer.downstream = nn.Sequential(*(m for _, m in leaves[i + 2:]))
                layer.downstream_names = tuple(n for n, _ in leaves[i + 2:])
            found.append(layer)
    return found


def pseudo_gradients(sent, received, lr):
    """(g, rounding): the update θ₀ → θ₁ of a client read as g = (θ₀ − θ₁)/η per parameter name, and
    each g's relative rounding error, ε‖θ₀‖/‖θ₀ − θ₁‖ (ε of θ's dtype; at least ε): its entries carry
    θ's rounding, not g's.  Pass both to :func:`attack_model`.  A client that clips its update scales
    θ₀ − θ₁ down and this error up (measured, the Flower demo's MLP, b = 12, its update clipped by
    ``fixedclipping_mod`` to a quarter of its norm: a residual beyond rank b of 1.0e-13·s₁, above the
    7.7e-14·s₁ = 100ε√b the exact-rank test allows a gradient's own rounding; 2.4e-14·s₁ unclipped)."""
    grads, rounding = {}, {}
    for name, before in sent.items():
        before = torch.as_tensor(before)
        step = before - torch.as_tensor(received[name], dtype=before.dtype)
        grads[name] = step / lr
        eps = torch.finfo(before.dtype).eps if before.is_floating_point() else 0.0
        norm = float(torch.linalg.norm(step))
        rounding[name] = max(eps, eps * float(torch.linalg.norm(before)) / norm) if norm > 0 else eps
    return grads, rounding


def attack_model(model, gradients, *, layer=None, rounding=None, **kwargs):
    """Invert the gradient of ``model``'s first Linear → ReLU layer (or the one named ``layer``).

    ``gradients`` maps parameter names to gradients (``{n: p.grad for n, p in model.named_parameters()}``).
    ``rounding``: their relative rounding error, one float or one per parameter name (default: ε of
    their dtype; an update read off parameters, :func:`pseudo_gradients`).  Other keyword arguments
    go to :func:`gradinv.invert_layer`; ``max_time`` bounds the whole attack (every search it runs).
    Returns (:class:`~gradinv.pipeline.InversionResult`, :class:`AttackableLayer`).  The
    certificates are then checked end to end against every gradient sent (:mod:`gradinv.end_to_end`).
    """
    started = time.monotonic()
    check_model_arguments(model, gradients, layer)
    layers = find_attackable_layers(model)
    if layer is not None:
        layers = [lay for lay in layers if lay.name == layer]
        if not layers:
            raise GradientError(f"layer {layer!r} is not a Linear followed by ReLU in this model")
    if not layers:
        raise GradientError("the model has no Linear layer followed by an nn.ReLU module: nothing to attack "
                            "(a functional F.relu is not visible; name the layer)")
    target = layers[0]
    keys = (f"{target.name}.weight", f"{target.name}.bias")
    missing = [k for k in keys if k not in gradients]
    if missing:
        raise GradientError(f"gradients lack {missing} for layer {target.name!r}")
    known = dict(weight=target.linear.weight.detach(), bias=target.linear.bias.detach())
    if target.next_linear is not None:
        known["next_weight"] = target.next_linear.weight.detach()
        known["next_bias_grad"] = _classifier_bias_grad(gradients, target.next_name, kwargs)
    elif target.downstream is not None:
        try:
            known["downstream"] = Downstream.from_module(target.downstream, target.linear.out_features)
        except DownstreamError as e:  # no labels from it then, and the reason says why
            target.downstream, target.no_downstream_reason = None, str(e)
        else:
            known["next_bias_grad"] = _classifier_bias_grad(gradients, _last_bias(target), kwargs)
            if isinstance(target.downstream[0], nn.Linear):  # its weight gradient's rows: every sample's h_j
                known["next_weight_grad"] = gradients.get(f"{target.downstream_names[0]}.weight")
    if isinstance(rounding, dict):
        rounding = max(rounding.get(k, 0.0) for k in keys) or None
    try:
        result = invert_layer(gradients[keys[0]], gradients[keys[1]], rounding=rounding, **{**known, **kwargs})
    except NoExactColumnError as e:  # the other searches of an approximate update may still find columns
        if kwargs.get("solver") is not None or kwargs.get("approximate") is False:
            raise
        result = _best_explaining(e, model, target, gradients, started, rounding=rounding, **{**known, **kwargs})
    else:
        if result.approximate and kwargs.get("solver") is None:
            result = _best_explaining(result, model, target, gradients, started, rounding=rounding,
                                      **{**known, **kwargs})
    result = certify_end_to_end(result, model, target, gradients)
    return result, target


def _best_explaining(result, model, target, gradients, started, **kwargs):
    """An approximate update: run every search of :meth:`~gradinv.knowledge.Knowledge.approximate_searches`
    and keep the batch that explains the gradients sent best (:func:`~gradinv.end_to_end.update_mismatch`);
    the search reason says what each left.  ``result`` is the first search's, or the
    :class:`~gradinv.factorize.NoExactColumnError` it raised: raised again when every search fails.
    The other searches share what is left of ``max_time`` since ``started`` (time.monotonic)."""
    knowledge = Knowledge(kwargs.get("weight"), kwargs.get("bias"), kwargs.get("next_weight"), kwargs.get("downstream"))
    failed = isinstance(result, NoExactColumnError)
    others = [s for s in knowledge.approximate_searches() if s != getattr(result, "solver", None)]
    if not others:  # nothing to compare with: no model run needed
        if failed:
            raise result
        return result
    grad_W, grad_b = gradients[f"{target.name}.weight"], gradients[f"{target.name}.bias"]
    tried = {getattr(result, "solver", "default"): (None, f"failed ({str(result).split(':')[0]})")} if failed else \
        {result.solver: (update_mismatch(result, model, target, gradients), result)}
    for solver in others:
        left = None if kwargs.get("max_time") is None else kwargs["max_time"] - (time.monotonic() - started)
        if left is not None and left <= 0:
            tried[solver] = (None, "not run: the time bound was spent")
            continue
        try:
            other = invert_layer(grad_W, grad_b, **{**kwargs, "solver": solver, "approximate": True, "max_time": left})
        except GradientError as e:
            tried[solver] = (None, f"failed ({str(e).split(':')[0]})")
            continue
        tried[solver] = (update_mismatch(other, model, target, gradients), other)
    scored = {s: (r, res) for s, (r, res) in tried.items() if r is not None}
    if not scored:  # no fit to compare (no labels, no network after a deeper layer)
        found = [res for _, res in tried.values() if not isinstance(res, str)]
        if failed and not found:
            raise result
        return found[0] if failed else result
    best = min(scored, key=lambda s: scored[s][0])
    kept = scored[best][1]
    if failed:
        kept.mode_reason += f"; the {getattr(result, 'solver', 'default')} search found no column"
    elif kept is not result:  # the mode was read by the first run; the kept run's own notes follow it
        kept.mode_reason = "; ".join([result.mode_reason.split("; ")[0], *kept.mode_reason.split("; ")[1:]])
    said = ", ".join(f"{s} {r:.1e}" if r is not None else f"{s} {res}" if isinstance(res, str)
                     else f"{s} not scored" for s, (r, res) in tried.items())
    kept.search_reason += f"; approximate update: kept the {best} search's batch, the best fit to every gradient sent " \
                          f"(relative residual: {said})"
    return kept


def _last_bias(layer):
    """The name of the downstream network's last layer when it is a Linear (the classifier, whose bias
    gradient counts the samples per class, :func:`gradinv.labels.label_counts`), else None."""
    return layer.downstream_names[-1] if isinstance(layer.downstream[-1], nn.Linear) else None


def linear_layers_of_state(state):
    """Names of the Linear-shaped layers of a state_dict, in key order: prefixes p with a 2-D
    ``p.weight`` (out × in) and a matching 1-D ``p.bias``."""
    names = []
    for key, value in state.items():
        if key.endswith(".weight") and getattr(value, "ndim", 0) == 2:
            prefix = key[: -len(".weight")]
            bias = state.get(prefix + ".bias")
            if bias is not None and tuple(bias.shape) == (value.shape[0],):
                names.append(prefix)
    return names


def attack_state_dict(state, gradients, *, layer=None, **kwargs):
    """Invert a Linear layer's gradient knowing only the model's state_dict (no architecture).

    The attacked layer is ``layer`` or the first Linear-shaped entry with gradients; the
    classifier is the next Linear-shaped entry if it is the last one and its input width matches.
    The ReLU after the attacked layer is *assumed*: without it dL/dZ has no exact zeros and the
    attack refuses with a :class:`GradientError`.  Returns (InversionResult, description).
    """
    names = linear_layers_of_state(state)
    if layer is not None:
        if layer not in names:
            raise GradientError(f"layer {layer!r} is not a Linear-shaped entry of the state_dict (found {names})")
        target = layer
    else:
        # the first layer with a gradient; one that lacks half of it is an error, not a reason to move on
        target = next((n for n in names if f"{n}.weight" in gradients or f"{n}.bias" in gradients), None)
        if target is None:
            raise GradientError(f"no Linear-shaped layer of the state_dict has gradients (layers {names})")
    for key in (f"{target}.weight", f"{target}.bias"):
        if key not in gradients:
            raise GradientError(f"gradients lack {key!r}")
    known = dict(weight=state[f"{target}.weight"], bias=state[f"{target}.bias"])
    for key, value in zip((f"{target}.weight", f"{target}.bias"), known.values()):
        if tuple(value.shape) != tuple(gradients[key].shape):
            raise GradientError(f"the state_dict's {key!r} has shape {tuple(value.shape)} and its gradient "
                                f"{tuple(gradients[key].shape)}: they do not match (another model's state_dict?)")
    i = names.index(target)
    what = _what_it_recovers(i == 0)
    desc = f"'{target}' (Linear-shaped; ReLU after it assumed), {what}"
    if i + 1 == len(names) - 1 and state[f"{names[-1]}.weight"].shape[1] == known["weight"].shape[0]:
        known["next_weight"] = state[f"{names[-1]}.weight"]
        known["next_bias_grad"] = _classifier_bias_grad(gradients, names[-1], kwargs)
        desc += f"; classifier '{names[-1]}'"
    result = invert_layer(gradients[f"{target}.weight"], gradients[f"{target}.bias"], **{**known, **kwargs})
    return result, desc
