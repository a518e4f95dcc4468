"""Victim clients: a PyTorch model, a private batch, and the gradient the client shares.

Kinds (every figure names one):

===================  ==================================================================
"cross_entropy"      cross-entropy, 10 classes, standardised images, network at
                     initialisation: the usual client, the default, the one that counts
"cross_entropy_raw"  the same with raw [0, 1] pixels
"trained"            cross-entropy, standardised images, network trained first for
                     ``train_steps`` Adam steps on other crops
"random_upstream"    synthetic: loss ⟨R, ReLU(Z)⟩ with R Gaussian, the SUDL theory's model
===================  ==================================================================

Architectures: "mlp" = Linear(n, m) → ReLU → Linear(m, classes), the first Linear is attacked
and X are the images; "conv" = Conv–ReLU–Conv–ReLU–Flatten → Linear(f, m) → ReLU → Linear(m,
classes), the first Linear after the flatten is attacked and X are **features**, not pixels.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .data import load_images

KINDS = ("cross_entropy", "cross_entropy_raw", "trained", "random_upstream")


@dataclass
class Victim:
    """A client and the gradient it shares for the attacked layer Z = W X + b.

    ``inputs`` (b × n) are the attacked layer's inputs (one per row), ``grad_Z`` (m × b) is
    dL/dZ, so grad_W = grad_Z @ inputs and grad_b = grad_Z.sum(1).  ``grad_next_bias`` (C,) is
    the gradient of the classifier's bias, shared with the rest (None for "random_upstream").
    """

    kind: str
    model: nn.Module
    layer_name: str
    images: np.ndarray
    labels: torch.Tensor
    inputs: torch.Tensor
    grad_W: torch.Tensor
    grad_b: torch.Tensor
    grad_Z: torch.Tensor
    grad_next_bias: torch.Tensor = None

    @property
    def layer(self):
        return self.model.get_submodule(self.layer_name)

    @property
    def batch_size(self):
        return self.inputs.shape[0]

    def knowledge(self):
        """What the honest-but-curious server knows besides the gradient, as keyword arguments of
        :func:`gradinv.invert_layer`: the layer's weight and bias, and the classifier fed by its ReLU
        (omitted for "random_upstream", whose loss does not pass through that classifier)."""
        known = dict(weight=self.layer.weight.detach(), bias=self.layer.bias.detach())
        if self.kind != "random_upstream":
            known["next_weight"] = self.model[-1].weight.detach()
        return known

    def attack_kwargs(self):
        """Keyword arguments of :func:`gradinv.invert_layer` for this client's honest gradient:
        :meth:`knowledge` and the classifier's bias gradient (``next_bias_grad``), which the client
        sends with dL/dW and dL/db (not for a DP-SGD or FedAvg update: that has its own)."""
        known = self.knowledge()
        if self.grad_next_bias is not None:
            known["next_bias_grad"] = self.grad_next_bias
        return known


def make_mlp(n_in, width, n_classes=10, dtype=None):
    """Linear(n_in, width) → ReLU → Linear(width, n_classes); the attacked layer is "0".  Parameters
    are drawn in ``dtype`` (default: torch's), so a seed gives one network whatever the global default."""
    return nn.Sequential(nn.Linear(n_in, width, dtype=dtype), nn.ReLU(), nn.Linear(width, n_classes, dtype=dtype))


def make_conv_net(in_channels, image_size, width, n_classes=10, channels=8, dtype=None):
    """Conv → ReLU → Conv(stride 2) → ReLU → Flatten → Linear(f, width) → ReLU → Linear; attacked: "5"."""
    features = channels * (image_size // 2) ** 2
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, padding=1, dtype=dtype), nn.ReLU(),
        nn.Conv2d(channels, channels, 3, stride=2, padding=1, dtype=dtype), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(features, width, dtype=dtype), nn.ReLU(), nn.Linear(width, n_classes, dtype=dtype),
    )


def layer_gradient(model, layer_name, x, labels=None, upstream=None):
    """One client step: the attacked layer's input X, dL/dW, dL/db and dL/dZ.

    Loss: mean cross-entropy of ``model(x)`` against ``labels``; or, when ``upstream`` (b × m)
    is given, ⟨upstream, ReLU(Z)⟩ (the synthetic random-upstream client).
    """
    layer = model.get_submodule(layer_name)
    seen = {}

    def hook(module, args, output):
        seen["X"] = args[0].detach()
        output.retain_grad()
        seen["Z"] = output

    handle = layer.register_forward_hook(hook)
    try:
        model.zero_grad()
        out = model(x)
        loss = (upstream * torch.relu(seen["Z"])).sum() if upstream is not None else nn.functional.cross_entropy(out, labels)
        loss.backward()
    finally:
        handle.remove()
    return seen["X"], layer.weight.grad.detach().clone(), layer.bias.grad.detach().clone(), seen["Z"].grad.detach().T.clone()


def _to_torch_images(images, architecture, dtype):
    x = torch.as_tensor(images, dtype=dtype)
    return x.permute(0, 3, 1, 2).contiguous() if architecture == "conv" else x.reshape(x.shape[0], -1)


def make_victim(kind="cross_entropy", *, batch_size, width=1000, n_classes=10, architecture="mlp",
                source="photos", image_size=32, dtype=torch.float64, train_steps=100, random_state=0):
    """Build a victim client of ``kind`` (see module doc) and compute the gradient it shares."""
    if kind not in KINDS:
        raise ValueError(f"unknown victim kind {kind!r}; choose one of {KINDS}")
    if architecture not in ("mlp", "conv"):
        raise ValueError(f"architecture must be 'mlp' or 'conv', got {architecture!r}")
    seed = int(np.random.RandomState(random_state).randint(2**31))
    torch.manual_seed(seed)
    standardised = kind != "cross_entropy_raw"
    images, labels = load_images(batch_size, source=source, size=image_size, standardised=standardised,
                                 random_state=seed)
    channels = images.shape[-1]
    if architecture == "mlp":
        model, layer_name = make_mlp(images[0].size, width, n_classes, dtype=dtype), "0"
    else:
        model, layer_name = make_conv_net(channels, images.shape[1], width, n_classes, dtype=dtype), "5"
    if kind == "trained":
        _train(model, architecture, source, image_size, n_classes, dtype, train_steps, seed + 1)
    x = _to_torch_images(images, architecture, dtype)
    labels = torch.as_tensor(labels % n_classes)
    upstream = None
    if kind == "random_upstream":
        gen = torch.Generator().manual_seed(seed)
        upstream = torch.randn(batch_size, width, generator=gen, dtype=dtype)
    X, gW, gb, gZ = layer_gradient(model, layer_name, x, labels, upstream)
    g_next = None if upstream is not None else model[-1].bias.grad.detach().clone()
    return Victim(kind, model, layer_name, images, labels, X, gW, gb, gZ, g_next)


def _train(model, architecture, source, image_size, n_classes, dtype, steps, seed, batch=64, lr=1e-3):
    """Adam steps on fresh standardised crops labelled by their source photograph."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.RandomState(seed)
    for _ in range(steps):
        images, labels = load_images(batch, source=source, size=image_size, random_state=rng)
        loss = nn.functional.cross_entropy(model(_to_torch_images(images, architecture, dtype)),
                                           torch.as_tensor(labels % n_classes))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.zero_grad()
