"""Attacking the user's own PyTorch model: find the Linear layers followed by ReLU and invert one.

Layers are found by walking the model's modules in registration order (``nn.Sequential`` and
modules that register their layers in call order): a ``Linear`` whose next module is a ``ReLU``
is attackable; if the module after the ReLU is a ``Linear`` that ends the model, it is the
classifier the informed search uses.  A ReLU applied functionally (``F.relu``) is invisible to
this walk: name the layer explicitly then.  The first Linear of a model sees the client's raw
inputs; a deeper one sees features, and the attack returns those features.
"""

from dataclasses import dataclass

from torch import nn

from .factorize import GradientError
from .pipeline import invert_layer


@dataclass
class AttackableLayer:
    """A Linear layer followed by ReLU: its name, the next Linear (if it ends the model), and why."""

    name: str
    linear: nn.Linear
    next_name: str = None
    next_linear: nn.Linear = None
    first: bool = False

    @property
    def reason(self):
        what = "the model's first layer: recovers the client's inputs" if self.first else \
            "a deeper layer: recovers that layer's input features, not raw inputs"
        nxt = f"; its ReLU feeds the classifier '{self.next_name}'" if self.next_linear is not None else ""
        return f"'{self.name}' is Linear → ReLU, {what}{nxt}"


def find_attackable_layers(model):
    """Every Linear → ReLU pair of ``model``, in order (see the module doc for what is detected)."""
    leaves = [(n, m) for n, m in model.named_modules() if len(list(m.children())) == 0]
    first_param = next((n for n, m in leaves if any(True for _ in m.parameters(recurse=False))), None)
    found = []
    for i, (name, mod) in enumerate(leaves[:-1]):
        if isinstance(mod, nn.Linear) and isinstance(leaves[i + 1][1], nn.ReLU):
            layer = AttackableLayer(name, mod, first=name == first_param)
            if i + 2 == len(leaves) - 1 and isinstance(leaves[i + 2][1], nn.Linear):
                layer.next_name, layer.next_linear = leaves[i + 2]
            found.append(layer)
    return found


def attack_model(model, gradients, *, layer=None, **kwargs):
    """Invert the gradient of ``model``'s first Linear → ReLU layer (or the one named ``layer``).

    ``gradients`` maps parameter names to gradients (``{n: p.grad for n, p in model.named_parameters()}``).
    Returns (:class:`~gradinv.pipeline.InversionResult`, :class:`AttackableLayer`).
    """
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
    result = invert_layer(gradients[keys[0]], gradients[keys[1]], **known, **kwargs)
    return result, target
