"""What the server knows after the attacked layer: the downstream network f, logits = f(h), h = ReLU(Z).

Column j of dL/dZ is g_j = mask_j ⊙ J(h_j)ᵀ u_j, with J(h) = ∂f/∂h (C × m) the Jacobian of the
logits with respect to the attacked layer's output and u_j ∈ ℝ^C the loss gradient at the
logits.  For networks of Linear, ReLU, pooling, flatten and the like, J is piecewise constant: it
is fixed by h's activation pattern downstream, so the server computes it for any candidate input.

* **Linear** downstream (the attacked layer's ReLU feeds the classifier W₂): J = W₂ for every h,
  no autograd (:meth:`Downstream.linear`).
* **Any other** known network: J(h) by ``torch.func.jacrev`` with ``vmap`` over a batch of
  candidates (:meth:`Downstream.jacobians`).  Layers that couple the samples of a batch
  (batch normalisation in training mode) or that are random (dropout in training mode) have no
  per-sample J: :func:`check_differentiable` refuses them with an error that names the layer.
"""

import copy

import numpy as np
import torch
from torch import nn


class DownstreamError(ValueError):
    """The downstream network cannot be differentiated per sample; the message names the layer."""


def check_differentiable(module):
    """Raise :class:`DownstreamError` naming the first layer of ``module`` without a per-sample J."""
    for name, layer in module.named_modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.training:
            raise DownstreamError(f"layer {name!r} ({type(layer).__name__}) is in training mode: it couples the "
                                  "samples of a batch, so no per-sample Jacobian exists (put the model in eval mode)")
        if isinstance(layer, nn.modules.dropout._DropoutNd) and layer.training and layer.p > 0:
            raise DownstreamError(f"layer {name!r} ({type(layer).__name__}, p={layer.p}) is in training mode: its "
                                  "random mask is unknown to the server (put the model in eval mode)")


class Downstream:
    """The network f after the attacked layer's ReLU, and its Jacobian J(h) = ∂f/∂h (C × m).

    Build it with :meth:`linear` (J = W₂) or :meth:`from_module` (any network taking h, (B × m),
    to logits (B × C)).
    """

    def __init__(self, module=None, weight=None, n_classes=None):
        self.module = module
        self.weight = None if weight is None else torch.as_tensor(np.asarray(weight), dtype=torch.float64)
        self.n_classes = self.weight.shape[0] if weight is not None else n_classes
        self._copies = {}

    @classmethod
    def linear(cls, weight):
        """The classifier W₂ (C × m) fed directly by the attacked layer's ReLU."""
        weight = np.asarray(weight, dtype=np.float64)
        if weight.ndim != 2:
            raise DownstreamError(f"the classifier's weight must be 2-D (C × m), got shape {weight.shape}")
        return cls(weight=weight)

    @classmethod
    def from_module(cls, module, n_neurons):
        """Any network taking h (B × ``n_neurons``) to logits; a single ``nn.Linear`` becomes :meth:`linear`.

        Checked once on random activations: it must run, give (B × C) logits and be differentiable
        per sample (:func:`check_differentiable`); a failure names the layer or the reason.
        """
        linear = single_linear(module)
        if linear is not None:
            return cls.linear(linear.weight.detach().cpu().numpy())
        check_differentiable(module)
        down = cls(module=module)
        probe = torch.rand(2, n_neurons, dtype=torch.float64)
        try:
            J = down.jacobians(probe)
        except Exception as e:  # an operation torch.func cannot differentiate through
            raise DownstreamError(f"the network after the attacked layer cannot be differentiated per sample "
                                  f"({type(e).__name__}: {e})") from e
        if J.ndim != 3 or J.shape[1] != n_neurons:
            raise DownstreamError(f"the network after the attacked layer must map (B × {n_neurons}) activations "
                                  f"to (B × C) logits; its Jacobian has shape {tuple(J.shape)}")
        down.n_classes = J.shape[2]
        return down

    @property
    def is_linear(self):
        return self.module is None

    def _copy(self, dtype):
        """The module in ``dtype`` (on the CPU, gradients off), made once."""
        if dtype not in self._copies:
            module = copy.deepcopy(self.module).to(device="cpu", dtype=dtype)
            for p in module.parameters():
                p.requires_grad_(False)
            self._copies[dtype] = module
        return self._copies[dtype]

    def _jacobian_fn(self, dtype):
        module = self._copy(dtype)

        def single(h):
            return module(h[None])[0]

        def jac(H):  # (B × m) → (B × m × C)
            return torch.func.vmap(torch.func.jacrev(single))(H).mT
        return jac

    def jacobians(self, H, rows=None):
        """J(h)ᵀ for each row h of ``H`` (B × m), as (B × m' × C) on the neurons ``rows`` (default
        all), in H's dtype; for a linear downstream, W₂ᵀ broadcast (no copy)."""
        if self.is_linear:
            Wt = self.weight.T.to(H.dtype)
            Wt = Wt if rows is None else Wt[rows]
            return Wt.expand(H.shape[0], *Wt.shape)
        J = self._jacobian_fn(H.dtype)(H)
        return J if rows is None else J[:, rows]

    def weight_rows(self, rows=None, dtype=torch.float64):
        """W₂ᵀ (m' × C) of a linear downstream on ``rows``."""
        Wt = self.weight.T.to(dtype)
        return Wt if rows is None else Wt[rows]


def single_linear(module):
    """The ``nn.Linear`` that ``module`` amounts to (its one leaf besides ``nn.Identity``), or None."""
    leaves = [m for m in module.modules() if len(list(m.children())) == 0 and not isinstance(m, nn.Identity)]
    return leaves[0] if len(leaves) == 1 and isinstance(leaves[0], nn.Linear) else None


def as_downstream(known, n_neurons):
    """A :class:`Downstream` from what the caller has: one already, a network (``nn.Module``) taking
    the attacked layer's activations (B × ``n_neurons``) to logits, or the classifier's weight W₂
    (C × ``n_neurons``, any array)."""
    if isinstance(known, Downstream):
        return known
    if isinstance(known, nn.Module):
        return Downstream.from_module(known, n_neurons)
    weight = np.asarray(known.detach().cpu().numpy() if isinstance(known, torch.Tensor) else known, np.float64)
    if weight.ndim != 2 or weight.shape[1] != n_neurons:
        raise DownstreamError(f"next_weight must be (C × {n_neurons}) for a layer of {n_neurons} neurons, "
                              f"got shape {weight.shape}")
    return Downstream.linear(weight)
