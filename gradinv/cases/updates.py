"""What a simulated client sends: one SGD step's gradients, a DP-SGD step, or local steps.

* :func:`sgd_gradients` — every parameter's gradient of one mean cross-entropy step (FedSGD);
  :func:`layer_gradient` the same step seen at one layer: its input X, dL/dW, dL/db and dL/dZ
  (the truth an attack is judged against).
* :func:`dp_sgd_gradients` — one DP-SGD step through **Opacus** (``PrivacyEngine``, not a copy):
  per-sample clipping of the whole model's gradient to ``max_grad_norm`` C, Gaussian noise of
  std ``noise_multiplier``·C added to the sum, division by the batch size B (Opacus'
  convention: std σC/B on the mean).  Clipping rescales
  each column of dL/dZ but keeps its zeros; the noise destroys exact zeros and the rank gap.
* :func:`fedavg_pseudo_gradients` — E local epochs of plain SGD (:func:`local_sgd`, learning rate
  η, mini-batches of ``minibatch_size``) on the client's batch; the client sends θ₀ − θ_E and the
  server inverts the pseudo-gradient (θ₀ − θ_E)/η (as eth-sri/fedavg_leakage does).  Every step's
  weight gradient has the same right factor X, so the pseudo-gradient keeps rank b; only the ReLU
  masks and the classifier drift with the weights, which breaks exactness gradually with E and η.
  :func:`dp_fedavg_update` runs the E steps as DP-SGD steps.

Each takes an ``nn.Module`` (not modified: a copy is trained, except by :func:`local_sgd`), the
batch and labels, and returns every parameter's gradient by name, what ``attack_model`` takes;
:func:`dp_sgd_gradient` and :func:`fedavg_update` return the (grad_W, grad_b) of one named layer.
"""

import copy
import warnings

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def layer_gradient(model, layer_name, x, labels=None, upstream=None):
    """One client step: the attacked layer's input X, dL/dW, dL/db and dL/dZ (every parameter's
    ``.grad`` of ``model`` is left set by the same backward pass).

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


def parameter_gradients(model):
    """{name: gradient} of every parameter the last backward pass reached."""
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


def sgd_gradients(model, x, labels):
    """Every parameter's gradient of one mean cross-entropy step on (x, labels), computed on a copy
    of ``model``: what a FedSGD client sends."""
    client = copy.deepcopy(model)
    client.zero_grad()
    nn.functional.cross_entropy(client(x), labels).backward()
    return parameter_gradients(client)


def _private(client, x, labels, *, lr, noise_multiplier, max_grad_norm, random_state):
    """Opacus' ``make_private`` on ``client`` with plain SGD at rate ``lr`` and the whole batch as
    one Poisson-free batch: (the wrapped module, the DP optimizer, (x, labels) as Opacus feeds them)."""
    from opacus import PrivacyEngine  # optional extra "dp"

    if noise_multiplier < 0 or max_grad_norm <= 0:
        raise ValueError(f"need noise_multiplier >= 0 and max_grad_norm > 0, got {noise_multiplier}, {max_grad_norm}")
    seed = int(np.random.RandomState(random_state).randint(2**31))
    loader = DataLoader(TensorDataset(x, labels), batch_size=len(x), shuffle=False)
    with warnings.catch_warnings():  # a simulation: Opacus' advice on secure RNG and input hooks does not apply
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        client, optimizer, loader = PrivacyEngine().make_private(
            module=client, optimizer=torch.optim.SGD(client.parameters(), lr=lr), data_loader=loader,
            noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm, poisson_sampling=False,
            noise_generator=torch.Generator().manual_seed(seed))
        return client, optimizer, next(iter(loader))


def _private_step(client, optimizer, batch):
    """One backward pass of mean cross-entropy through the Opacus-wrapped ``client``."""
    xb, yb = batch
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        optimizer.zero_grad()
        nn.functional.cross_entropy(client(xb), yb).backward()


def dp_sgd_gradients(model, x, labels, *, noise_multiplier, max_grad_norm, random_state=None):
    """Every parameter's gradient after one Opacus DP-SGD step on the batch (x, labels): name →
    the noisy, clipped, averaged gradient Opacus' ``DPOptimizer`` hands to its optimizer step
    (computed, not applied), what a DP-SGD client shares."""
    client, optimizer, batch = _private(copy.deepcopy(model), x, labels, lr=0.0, noise_multiplier=noise_multiplier,
                                        max_grad_norm=max_grad_norm, random_state=random_state)
    _private_step(client, optimizer, batch)
    optimizer.pre_step()  # clip per sample, add noise to the sum, divide by the batch size
    return {name: p.grad.detach().clone() for name, p in client._module.named_parameters() if p.grad is not None}


def dp_sgd_gradient(model, layer_name, x, labels, *, noise_multiplier, max_grad_norm, random_state=None):
    """The attacked layer's (grad_W, grad_b) of :func:`dp_sgd_gradients`."""
    grads = dp_sgd_gradients(model, x, labels, noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
                             random_state=random_state)
    return grads[f"{layer_name}.weight"], grads[f"{layer_name}.bias"]


def local_sgd(model, x, labels, *, epochs=1, minibatch_size=None, lr=0.01, shuffle=False, random_state=None):
    """Train ``model`` in place: ``epochs`` local epochs of plain SGD at rate η = ``lr``, each walking
    the batch in mini-batches of ``minibatch_size`` (default: the whole batch), in order or
    reshuffled when ``shuffle``; loss: mean cross-entropy per mini-batch.  Returns the last loss."""
    if epochs < 1 or lr <= 0:
        raise ValueError(f"need epochs >= 1 and lr > 0, got {epochs}, {lr}")
    x, labels = torch.as_tensor(x), torch.as_tensor(labels)
    step = len(x) if minibatch_size is None else int(minibatch_size)
    rng = np.random.RandomState(random_state)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(epochs):
        order = rng.permutation(len(x)) if shuffle else np.arange(len(x))
        for first in range(0, len(x), step):
            idx = torch.as_tensor(order[first:first + step])
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), labels[idx])
            loss.backward()
            optimizer.step()
    return loss.item()


def fedavg_pseudo_gradients(model, x, labels, *, epochs=1, minibatch_size=None, lr=0.01, shuffle=False,
                            random_state=None):
    """Every parameter's pseudo-gradient (θ₀ − θ_E)/η after :func:`local_sgd` on a copy of ``model``:
    name → tensor."""
    client = copy.deepcopy(model)
    start = {name: p.detach().clone() for name, p in client.named_parameters()}
    local_sgd(client, x, labels, epochs=epochs, minibatch_size=minibatch_size, lr=lr, shuffle=shuffle,
              random_state=random_state)
    return {name: (start[name] - p.detach()) / lr for name, p in client.named_parameters()}


def fedavg_update(model, layer_name, x, labels, *, epochs=1, minibatch_size=None, lr=0.01, shuffle=False,
                  random_state=None):
    """The attacked layer's (grad_W, grad_b) of :func:`fedavg_pseudo_gradients`."""
    grads = fedavg_pseudo_gradients(model, x, labels, epochs=epochs, minibatch_size=minibatch_size, lr=lr,
                                    shuffle=shuffle, random_state=random_state)
    return grads[f"{layer_name}.weight"], grads[f"{layer_name}.bias"]


def dp_fedavg_update(model, layer_name, x, labels, *, steps, noise_multiplier, max_grad_norm, lr, random_state=None):
    """The attacked layer's pseudo-gradient (θ₀ − θ_E)/η after E = ``steps`` full-batch DP-SGD steps (Opacus)."""
    client = copy.deepcopy(model)
    layer = client.get_submodule(layer_name)
    w0, b0 = layer.weight.detach().clone(), layer.bias.detach().clone()
    client, optimizer, batch = _private(client, x, labels, lr=lr, noise_multiplier=noise_multiplier,
                                        max_grad_norm=max_grad_norm, random_state=random_state)
    for _ in range(steps):
        _private_step(client, optimizer, batch)
        optimizer.step()
    return (w0 - layer.weight.detach()) / lr, (b0 - layer.bias.detach()) / lr
