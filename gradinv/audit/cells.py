"""One cell of a defence audit: draw a client batch, compute what the client sends, attack it.

A cell is (layer, b, σ, E, seed): the Linear → ReLU layer attacked, batch size b, DP noise
multiplier σ, local steps E and the seed of the batch draw, the DP noise and the attack.  What
the client sends:

* σ = 0, E = 1 — one SGD step: the mean cross-entropy gradient of every parameter (the attack
  also uses the classifier's bias gradient);
* σ > 0, E = 1 — one DP-SGD step through Opacus (:func:`gradinv.cases.dp_sgd_gradient`:
  per-sample clipping to C, noise σC);
* σ = 0, E > 1 — FedAvg, E full-batch SGD steps at learning rate η, the pseudo-gradient
  (θ₀ − θ_E)/η (:func:`gradinv.cases.fedavg_update`);
* σ > 0, E > 1 — E full-batch DP-SGD steps through Opacus (:func:`dp_fedavg_update`), the
  pseudo-gradient (θ₀ − θ_E)/η.

Noisy or multi-step updates are attacked in approximate mode (no certificates) with the batch
size b known to the server.  Everything a worker needs arrives as plain values (the factory's
``module:function`` string, the state_dict and the data as NumPy arrays), never a pickled model.
"""

import time
import warnings
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from ..factorize import GradientError
from ..factory import build_model as factory_model
from ..cases.updates import dp_fedavg_update, dp_sgd_gradient, fedavg_update, sgd_gradients
from ..metrics import distinct_inputs, evaluate, exact_mask
from .files import cell_name
from ..models import attack_model, find_attackable_layers

N_KEPT = 8  # arbitrary: samples per cell kept for the report's image grid


class AuditError(ValueError):
    """A bad audit argument (model factory, data, grid), found before any cluster starts."""


@dataclass(frozen=True)
class Cell:
    """One point of the grid: the attacked layer's name, batch size b, noise multiplier σ, local steps E, seed."""

    layer: str
    batch_size: int
    noise_multiplier: float
    local_steps: int
    seed: int

    @property
    def key(self):
        return (self.layer, self.batch_size, self.noise_multiplier, self.local_steps, self.seed)

    @property
    def name(self):
        return cell_name(*self.key)


def make_grid(layers, batch_sizes, noise_multipliers, local_steps, n_seeds):
    """Every (layer, b, σ, E, seed) of the Cartesian product, smallest b first."""
    return [Cell(str(layer), int(b), float(s), int(e), int(seed)) for b in sorted(set(batch_sizes))
            for layer in layers for s in sorted(set(noise_multipliers)) for e in sorted(set(local_steps))
            for seed in range(n_seeds)]


@dataclass(frozen=True)
class ClientSettings:
    """How the client trains and how long the attack may search: C, η, the layers audited, time bound."""

    model_factory: str
    layers: tuple
    max_grad_norm: float = 1.0
    lr: float = 0.01
    max_time: float = 60.0

    def to_dict(self):
        return asdict(self)


def build_model(factory, state=None):
    """``factory()`` with the parameters ``state`` (name → array) loaded (:func:`gradinv.factory.build_model`)."""
    try:
        return factory_model(factory, state)
    except ValueError as e:
        raise AuditError(str(e)) from e


def attacked_layers(model, names=None):
    """The Linear → ReLU layers the audit attacks (:class:`~gradinv.models.AttackableLayer`): those
    named, or every one of the model (the server may attack any; the report names the most exposed)."""
    layers = find_attackable_layers(model)
    if not layers:
        raise AuditError("the model has no Linear layer followed by an nn.ReLU module: nothing to attack "
                         "(a functional F.relu is not visible)")
    if not names:
        return layers
    unknown = [n for n in names if n not in {lay.name for lay in layers}]
    if unknown:
        raise AuditError(f"--layer {unknown} {'is' if len(unknown) == 1 else 'are'} not a Linear followed by ReLU; "
                         f"those are {[x.name for x in layers]}")
    return [lay for lay in layers if lay.name in names]


def draw_batch(n_samples, batch_size, seed):
    """Indices of the client batch: the first b of a seeded permutation (a larger b extends a smaller one)."""
    return np.random.RandomState(seed).permutation(n_samples)[:batch_size]


def layer_inputs(model, linear, x):
    """What ``linear`` receives on ``x`` (the batch itself for a first layer), via a forward hook."""
    seen = []
    handle = linear.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return seen[0].reshape(len(x), -1)


def client_update(model, layer_name, x, labels, cell, settings):
    """What the client sends for ``cell``: (gradients dict, approximate?) — see the module doc."""
    sigma, steps = cell.noise_multiplier, cell.local_steps
    if sigma == 0 and steps == 1:
        return sgd_gradients(model, x, labels), False
    if steps == 1:
        gW, gb = dp_sgd_gradient(model, layer_name, x, labels, noise_multiplier=sigma,
                                 max_grad_norm=settings.max_grad_norm, random_state=cell.seed)
    elif sigma == 0:
        gW, gb = fedavg_update(model, layer_name, x, labels, epochs=steps, lr=settings.lr)
    else:
        gW, gb = dp_fedavg_update(model, layer_name, x, labels, steps=steps, noise_multiplier=sigma,
                                  max_grad_norm=settings.max_grad_norm, lr=settings.lr, random_state=cell.seed)
    return {f"{layer_name}.weight": gW, f"{layer_name}.bias": gb}, True


def run_cell(cell, settings, state, x_all, y_all):
    """Attack one cell; returns (row dict, kept arrays for the report).  Never raises on a failed
    attack: a :class:`GradientError` is recorded as "not recovered" with its reason."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    model = build_model(settings.model_factory, state)
    (target,) = attacked_layers(model, [cell.layer])
    idx = draw_batch(len(x_all), cell.batch_size, cell.seed)
    dtype = next(model.parameters()).dtype
    dtype_name = str(dtype).replace("torch.", "")
    x = torch.as_tensor(x_all[idx]).to(dtype)
    labels = torch.as_tensor(y_all[idx]).long()
    truth = layer_inputs(model, target.linear, x)
    row = dict(batch_size=cell.batch_size, noise_multiplier=cell.noise_multiplier, local_steps=cell.local_steps,
               seed=cell.seed, layer=target.name, first_layer=target.first)
    kept = {}
    try:
        with warnings.catch_warnings():  # nobody reads a worker's console: the row says what happened
            warnings.simplefilter("ignore", UserWarning)
            gradients, approximate = client_update(model, target.name, x, labels, cell, settings)
            res, _ = attack_model(model, gradients, layer=target.name, batch_size=cell.batch_size,
                                  approximate=approximate, max_time=settings.max_time, random_state=cell.seed)
        distinct = distinct_inputs(truth.numpy())  # an input drawn twice is one column of the gradient
        ev = evaluate(distinct, res.inputs, res.exact, dtype=dtype_name)
        rows, cols = ev["pairs"]
        row.update(status="attacked", distinct=len(distinct), exact_fraction=ev["exact"] / len(distinct),
                   certified_fraction=ev["certified"] / len(distinct), psnr_db=ev["psnr"],
                   false_certificates=ev["false_certificates"], approximate=approximate, solver=res.solver,
                   attack_time_s=res.time, outcome=res.describe(), reason="")
        recon = np.asarray(res.inputs, dtype=np.float64)
        kept = dict(original=distinct[rows][:N_KEPT], recovered=recon[cols][:N_KEPT],
                    relative_error=np.asarray(ev["relative_error"])[:N_KEPT],
                    exact=exact_mask(ev["relative_error"], dtype_name)[:N_KEPT])
    except GradientError as e:
        row.update(status="attack failed", exact_fraction=0.0, certified_fraction=0.0, psnr_db=float("nan"),
                   false_certificates=0, approximate=cell.noise_multiplier > 0 or cell.local_steps > 1,
                   solver="", attack_time_s=float("nan"), reason=str(e).replace("\n", " "))
    row["time_s"] = time.perf_counter() - start
    return row, kept


def warm_up(settings, state, x_all, y_all, batch_size):
    """One unrecorded plain-SGD cell on this worker, so that one-time start-up costs (lazy imports,
    first calls into torch and LAPACK: seconds on a busy machine) are not charged to a cell's time bound."""
    run_cell(Cell(settings.layers[0], batch_size, 0.0, 1, 0), replace(settings, max_time=min(settings.max_time, 5.0)),
             state, x_all, y_all)
