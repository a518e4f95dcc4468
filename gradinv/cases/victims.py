"""Victim clients: a PyTorch model, a private batch, and the gradient the client shares.

:func:`make_victim` builds the original clients of :data:`KINDS`:

===================  ==================================================================
"cross_entropy"      cross-entropy, 10 classes, standardised images, network at
                     initialisation: the usual client, the default, the one that counts
"cross_entropy_raw"  the same with raw [0, 1] pixels
"trained"            cross-entropy, standardised images, network trained first for
                     ``train_steps`` Adam steps on other crops
"random_upstream"    synthetic: loss ⟨R, ReLU(Z)⟩ with R Gaussian, the SUDL theory's model
===================  ==================================================================

Their labels are the index of the photograph each crop came from.  Architectures: "mlp" =
Linear(n, m) → ReLU → Linear(m, classes), the first Linear is attacked and X are the images;
"conv" = Conv–ReLU–Conv–ReLU–Flatten → Linear(f, m) → ReLU → Linear(m, classes), the first
Linear after the flatten is attacked and X are **features**, not pixels.

The client zoo, the clients an attack is judged on, is :mod:`gradinv.cases.zoo`.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .data import load_images
from .networks import ARCHITECTURES, adam_steps, make_conv_net, make_mlp, model_inputs
from .updates import layer_gradient, parameter_gradients

KINDS = ("cross_entropy", "cross_entropy_raw", "trained", "random_upstream")


@dataclass
class Victim:
    """A client and the gradient it shares for the attacked layer Z = W X + b.

    ``inputs`` (b × n) are the attacked layer's inputs (one per row), ``grad_Z`` (m × b) is
    dL/dZ, so grad_W = grad_Z @ inputs and grad_b = grad_Z.sum(1).  ``grad_next_bias`` (C,) is
    the gradient of the bias of the classifier fed by the attacked layer's ReLU (None when that
    ReLU feeds a hidden layer, and for "random_upstream").  ``gradients`` maps every parameter
    name of ``model`` to its gradient, as the client sends them (a parameter the loss does not
    reach is left out); ``spec`` is the zoo kind's :class:`ClientSpec` (None for :data:`KINDS`).
    ``images`` (b, H, W, C) are the client's images as fed to the model, ``model_inputs`` the same
    as the tensor ``model`` takes (what :func:`gradinv.dp_sgd_gradient` and
    :func:`gradinv.fedavg_update` need; for conv it is not ``inputs``).
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
    gradients: dict = None
    spec: object = None
    model_inputs: torch.Tensor = None

    @property
    def layer(self):
        return self.model.get_submodule(self.layer_name)

    @property
    def batch_size(self):
        return self.inputs.shape[0]

    @property
    def classifier(self):
        """The model's last Linear if the attacked layer's ReLU feeds it directly, else None."""
        if self.kind == "random_upstream":  # its loss does not pass through the classifier
            return None
        names = [name for name, _ in self.model.named_children()]
        return self.model[-1] if names.index(self.layer_name) + 2 == len(names) - 1 else None

    def knowledge(self):
        """What the honest-but-curious server knows besides the gradient, as keyword arguments of
        :func:`gradinv.invert_layer`: the layer's weight and bias, and the classifier fed by its ReLU
        (omitted when the ReLU feeds a hidden layer, and for "random_upstream")."""
        known = dict(weight=self.layer.weight.detach(), bias=self.layer.bias.detach())
        if self.classifier is not None:
            known["next_weight"] = self.classifier.weight.detach()
        return known

    def attack_kwargs(self):
        """Keyword arguments of :func:`gradinv.invert_layer` for this client's honest gradient:
        :meth:`knowledge` and the classifier's bias gradient (``next_bias_grad``), which the client
        sends with dL/dW and dL/db (not for a DP-SGD or FedAvg update: that has its own)."""
        known = self.knowledge()
        if self.grad_next_bias is not None and "next_weight" in known:
            known["next_bias_grad"] = self.grad_next_bias
        return known


def make_victim(kind="cross_entropy", *, batch_size, width=1000, n_classes=10, architecture="mlp",
                source="photos", image_size=32, dtype=torch.float64, train_steps=100, random_state=0):
    """Build a victim client of ``kind`` (one of :data:`KINDS`, see module doc) and compute the
    gradient it shares."""
    if kind not in KINDS:
        raise ValueError(f"unknown victim kind {kind!r}; choose one of {KINDS} (the zoo: make_client)")
    if architecture not in ARCHITECTURES:
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
        rng = np.random.RandomState(seed + 1)  # fresh standardised crops, labelled by their photograph
        crops = (load_images(64, source=source, size=image_size, random_state=rng) for _ in range(train_steps))
        adam_steps(model, ((x, y % n_classes) for x, y in crops), architecture, dtype)
    x = model_inputs(images, architecture, dtype)
    labels = torch.as_tensor(labels % n_classes)
    upstream = None
    if kind == "random_upstream":
        gen = torch.Generator().manual_seed(seed)
        upstream = torch.randn(batch_size, width, generator=gen, dtype=dtype)
    X, gW, gb, gZ = layer_gradient(model, layer_name, x, labels, upstream)
    g_next = None if upstream is not None else model[-1].bias.grad.detach().clone()
    return Victim(kind, model, layer_name, images, labels, X, gW, gb, gZ, g_next, parameter_gradients(model),
                  model_inputs=x)
