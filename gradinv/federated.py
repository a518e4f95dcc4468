"""What a federated client shares instead of one clean gradient: DP-SGD and FedAvg updates.

* :func:`dp_sgd_gradients` — one DP-SGD step through **Opacus** (``PrivacyEngine``, not a copy):
  per-sample clipping of the whole model's gradient to ``max_grad_norm`` C, Gaussian noise of
  std ``noise_multiplier``·C added to the sum, division by the batch size B (Opacus'
  convention: std σC/B on the mean).  Clipping rescales
  each column of dL/dZ but keeps its zeros; the noise destroys exact zeros and the rank gap.
* :func:`fedavg_pseudo_gradients` — E local epochs of plain SGD (learning rate η, mini-batches of
  ``minibatch_size``) on the client's batch; the client sends θ₀ − θ_E and the server inverts
  the pseudo-gradient (θ₀ − θ_E)/η (as eth-sri/fedavg_leakage does).  Every step's weight
  gradient has the same right factor X, so the pseudo-gradient keeps rank b; only the ReLU masks
  and the classifier drift with the weights, which breaks exactness gradually with E and η.

Both take an ``nn.Module`` (not modified: a copy is trained), the batch and labels, and return
every parameter's gradient by name, what ``attack_model`` takes; :func:`dp_sgd_gradient` and
:func:`fedavg_update` return the (grad_W, grad_b) of one named layer.
"""

import copy
import warnings

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def dp_sgd_gradients(model, x, labels, *, noise_multiplier, max_grad_norm, random_state=None):
    """Every parameter's gradient after one Opacus DP-SGD step on the batch (x, labels): name →
    the noisy, clipped, averaged gradient Opacus' ``DPOptimizer`` hands to its optimizer step
    (computed, not applied), what a DP-SGD client shares."""
    from opacus import PrivacyEngine  # optional extra "dp"

    if noise_multiplier < 0 or max_grad_norm <= 0:
        raise ValueError(f"need noise_multiplier >= 0 and max_grad_norm > 0, got {noise_multiplier}, {max_grad_norm}")
    client = copy.deepcopy(model)
    seed = int(np.random.RandomState(random_state).randint(2**31))
    loader = DataLoader(TensorDataset(x, labels), batch_size=len(x), shuffle=False)
    optimizer = torch.optim.SGD(client.parameters(), lr=0.0)
    with warnings.catch_warnings():  # a simulation: Opacus' advice on secure RNG and input hooks does not apply
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        client, optimizer, loader = PrivacyEngine().make_private(
            module=client, optimizer=optimizer, data_loader=loader, noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm, poisson_sampling=False,
            noise_generator=torch.Generator().manual_seed(seed))
        xb, yb = next(iter(loader))
        optimizer.zero_grad()
        nn.functional.cross_entropy(client(xb), yb).backward()
    optimizer.pre_step()  # clip per sample, add noise to the sum, divide by the batch size
    return {name: p.grad.detach().clone() for name, p in client._module.named_parameters() if p.grad is not None}


def dp_sgd_gradient(model, layer_name, x, labels, *, noise_multiplier, max_grad_norm, random_state=None):
    """The attacked layer's (grad_W, grad_b) of :func:`dp_sgd_gradients`."""
    grads = dp_sgd_gradients(model, x, labels, noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
                             random_state=random_state)
    return grads[f"{layer_name}.weight"], grads[f"{layer_name}.bias"]


def fedavg_pseudo_gradients(model, x, labels, *, epochs=1, minibatch_size=None, lr=0.01, shuffle=False,
                            random_state=None):
    """Every parameter's pseudo-gradient (θ₀ − θ_E)/η after ``epochs`` local epochs of SGD: name → tensor.

    Each epoch walks the batch in mini-batches of ``minibatch_size`` (default: the whole batch),
    in order or reshuffled when ``shuffle``; loss: mean cross-entropy per mini-batch.
    """
    if epochs < 1 or lr <= 0:
        raise ValueError(f"need epochs >= 1 and lr > 0, got {epochs}, {lr}")
    client = copy.deepcopy(model)
    start = {name: p.detach().clone() for name, p in client.named_parameters()}
    step = len(x) if minibatch_size is None else int(minibatch_size)
    rng = np.random.RandomState(random_state)
    optimizer = torch.optim.SGD(client.parameters(), lr=lr)
    for _ in range(epochs):
        order = rng.permutation(len(x)) if shuffle else np.arange(len(x))
        for first in range(0, len(x), step):
            idx = torch.as_tensor(order[first:first + step])
            optimizer.zero_grad()
            nn.functional.cross_entropy(client(x[idx]), labels[idx]).backward()
            optimizer.step()
    return {name: (start[name] - p.detach()) / lr for name, p in client.named_parameters()}


def fedavg_update(model, layer_name, x, labels, *, epochs=1, minibatch_size=None, lr=0.01, shuffle=False,
                  random_state=None):
    """The attacked layer's (grad_W, grad_b) of :func:`fedavg_pseudo_gradients`."""
    grads = fedavg_pseudo_gradients(model, x, labels, epochs=epochs, minibatch_size=minibatch_size, lr=lr,
                                    shuffle=shuffle, random_state=random_state)
    return grads[f"{layer_name}.weight"], grads[f"{layer_name}.bias"]
