"""The demo federation's Flower apps: a FedAvg ``ServerApp`` wrapped by the audit, and a ``ClientApp``.

Both read the run configuration written by :mod:`gradinv.flower.demo` (``[tool.flwr.app.config]``
of the generated Flower App): rounds, batch size b, learning rate η, local steps E, the data
file, the MLP's width and activation.  Each SuperNode has a ``partition-id`` (node config); its
shard is every ``num-partitions``-th sample, and round r trains on the shard's r-th block of b
samples: E full-batch SGD steps with mean cross-entropy, in float64, then the run's defence
(:class:`~gradinv.flower.defences.ClientDefence`: Flower's ``fixedclipping_mod`` with the central
DP wrapper around FedAvg, or ``LocalDpMod``) acts on the update.  Under ``defence = "secagg"`` the
same round runs in Flower's legacy client API behind ``secaggplus_mod`` (``secagg_client_app``)
and the server runs ``SecAggPlusWorkflow`` audited by
:class:`~gradinv.flower.secure_aggregation.SecureAggregationAudit`.  The client reports
``num-examples`` (FedAvg's weight), ``batch-size``, ``lr`` and ``local-steps`` (unless the
run withholds the batch size) and leaves its batch in ``truth/`` for the audit's comparison.
"""

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..cases import networks
from ..cases.updates import local_sgd
from ._flwr import require_flwr
from .defences import ClientDefence

require_flwr()

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.client import NumPyClient  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.client.mod import secaggplus_mod  # noqa: E402
from flwr.common import ndarrays_to_parameters  # noqa: E402
from flwr.serverapp import Grid, ServerApp  # noqa: E402
from flwr.serverapp.strategy import FedAvg  # noqa: E402

from .strategy import LeakageAudit  # noqa: E402

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def make_mlp(n_inputs, width, n_classes, *, activation="relu", random_state=0):
    """Linear(n, m) → activation → Linear(m, C) (:func:`gradinv.cases.make_mlp`), float64,
    initialised from ``random_state`` (the global torch generator is left as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(random_state)
        return networks.make_mlp(n_inputs, width, n_classes, activation=ACTIVATIONS[activation]).double()


def load_dataset(path=None, *, random_state=0):
    """(x, y): x (N, n) float64, y (N,) int.  From ``path`` (.npz with ``x`` and ``y``, no
    unpickling) or, by default, scikit-learn's 1797 digits (standardised, shuffled)."""
    if path:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("x", "y") if k not in f.files]
            if missing:
                raise ValueError(f"{path} lacks {missing} (it needs arrays 'x' and 'y'; it has {f.files})")
            x, y = f["x"], f["y"]
        if len(x) != len(y):
            raise ValueError(f"{path}: x has {len(x)} samples but y has {len(y)}")
        if not np.issubdtype(np.asarray(y).dtype, np.integer):
            raise ValueError(f"{path}: y must hold integer class labels, got dtype {y.dtype}")
        x = np.asarray(x, np.float64).reshape(len(x), -1)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{path}: x has non-finite values")
        return x, np.asarray(y, np.int64)
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.data / 16.0
    order = np.random.RandomState(random_state).permutation(len(x))
    return (x[order] - x.mean()) / x.std(), np.asarray(digits.target[order], np.int64)


def shard_batch(x, y, partition, n_partitions, server_round, batch_size):
    """The batch of ``partition`` in round ``server_round`` (1-based): block r of its shard."""
    xs, ys = x[partition::n_partitions], y[partition::n_partitions]
    n_blocks = len(xs) // batch_size
    if n_blocks == 0:
        raise ValueError(f"partition {partition} holds {len(xs)} samples, fewer than the batch size {batch_size}")
    rows = slice(((server_round - 1) % n_blocks) * batch_size, ((server_round - 1) % n_blocks + 1) * batch_size)
    return xs[rows], ys[rows]


def model_for(cfg, x, y):
    """The run's MLP: inputs and classes sized for the data."""
    n_classes = int(cfg.get("n-classes", 0)) or int(y.max()) + 1
    return make_mlp(x.shape[1], int(cfg["width"]), n_classes, activation=str(cfg["activation"]),
                    random_state=int(cfg["seed"]))


def defence_mod(msg: Message, context: Context, call_next):
    """The run's defence (``defence`` in its configuration): Flower's own client mod, or none."""
    mod = ClientDefence.from_run_config(context.run_config).client_mod()
    return call_next(msg, context) if mod is None else mod(msg, context, call_next)


client_app = ClientApp(mods=[defence_mod])


def train_round(cfg, node_id, node_config, server_round, global_state):
    """This node's round: E full-batch SGD steps from ``global_state`` (a state_dict, or its arrays
    in order as Flower's legacy API sends them) on its batch of the round; returns (the trained
    model, the metrics its reply carries).  Leaves the batch in ``truth/`` and NumPy's global
    generator seeded (the comment below)."""
    x, y = load_dataset(cfg["data"] or None, random_state=int(cfg["seed"]))
    partition, n_partitions = int(node_config["partition-id"]), int(node_config["num-partitions"])
    b, lr, steps = int(cfg["batch-size"]), float(cfg["lr"]), int(cfg["local-steps"])
    xb, yb = shard_batch(x, y, partition, n_partitions, server_round, b)
    # Flower's defences draw from NumPy's global generator after this returns (LocalDpMod's noise,
    # SecAgg+'s stochastic rounding), in this ClientApp process: seeded per (seed, node, round), so
    # that a demo run is reproducible
    np.random.seed(np.random.SeedSequence([int(cfg["seed"]), partition, server_round]).generate_state(1)[0])
    model = model_for(cfg, x, y)
    if not isinstance(global_state, dict):
        global_state = {k: torch.as_tensor(v) for k, v in zip(model.state_dict(), global_state, strict=True)}
    model.load_state_dict(global_state)
    loss = local_sgd(model, xb, yb, epochs=steps, lr=lr)
    truth = Path(cfg["out"]) / "truth"  # the demo's out-of-band copy, for the audit's comparison only
    truth.mkdir(parents=True, exist_ok=True)
    np.savez(truth / f"round{server_round}-node{node_id}.npz", x=xb, y=yb)
    metrics = {"num-examples": b, "lr": lr, "local-steps": steps, "train-loss": loss}
    if cfg["report-batch-size"]:
        metrics["batch-size"] = b
    return model, metrics


@client_app.train()
def client_train(msg: Message, context: Context) -> Message:
    """One round of local training on this node's batch of the round."""
    model, metrics = train_round(context.run_config, context.node_id, context.node_config,
                                 int(msg.content["config"]["server-round"]), msg.content["arrays"].to_torch_state_dict())
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": MetricRecord(metrics)})
    return Message(content=content, reply_to=msg)


class _SecAggClient(NumPyClient):
    """The same round in Flower's legacy client API, which ``secaggplus_mod`` masks."""

    def __init__(self, context):
        self.context = context

    def fit(self, parameters, config):
        model, metrics = train_round(self.context.run_config, self.context.node_id, self.context.node_config,
                                     int(config["server-round"]), parameters)
        return [v.detach().numpy() for v in model.state_dict().values()], metrics["num-examples"], metrics


secagg_client_app = ClientApp(client_fn=lambda context: _SecAggClient(context).to_client(), mods=[secaggplus_mod])
"""The demo's ClientApp under ``--defence secagg``: Flower's ``secaggplus_mod`` masks every update."""


server_app = ServerApp()


@server_app.main()
def server_main(grid: Grid, context: Context) -> None:
    """FedAvg over every node for ``rounds`` rounds, audited: each reply by :class:`LeakageAudit`,
    or, under ``--defence secagg``, each round's aggregate by :class:`SecureAggregationAudit`."""
    cfg = context.run_config
    out = Path(cfg["out"])
    x, y = load_dataset(cfg["data"] or None, random_state=int(cfg["seed"]))
    defence = ClientDefence.from_run_config(cfg)
    if defence.name == "secagg":
        losses = _secure_aggregation_main(grid, context, lambda: model_for(cfg, x, y))
    else:
        n = int(cfg["clients"])
        fedavg = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=n, min_available_nodes=n)
        strategy = LeakageAudit(defence.wrap_strategy(fedavg), lambda: model_for(cfg, x, y), out / "leakage.jsonl",
                                truth_dir=out / "truth", random_state=int(cfg["seed"]),
                                max_time=float(cfg["max-time"]), defence=defence)
        result = strategy.start(grid=grid, initial_arrays=ArrayRecord(model_for(cfg, x, y).state_dict()),
                                num_rounds=int(cfg["rounds"]), train_config=ConfigRecord())
        losses = {r: dict(m).get("train-loss") for r, m in result.train_metrics_clientapp.items()}
    (out / "server-done.json").write_text(json.dumps({"rounds": int(cfg["rounds"]), "train_loss": losses}))


def _secure_aggregation_main(grid, context, model_fn):
    """Flower's legacy FedAvg in ``DefaultWorkflow`` with ``SecAggPlusWorkflow`` (every client's
    key shared with all the others, half of them needed to unmask), audited by
    :class:`SecureAggregationAudit`; returns the mean train loss per round."""
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.strategy import FedAvg as LegacyFedAvg
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

    from .secure_aggregation import SecureAggregationAudit

    cfg = context.run_config
    out, n = Path(cfg["out"]), int(cfg["clients"])
    losses = {}

    def mean_loss(metrics):  # fit_metrics_aggregation_fn: [(n_k, metrics_k)] -> aggregated metrics
        loss = float(np.mean([m["train-loss"] for _, m in metrics]))
        losses[len(losses) + 1] = loss
        return {"train-loss": loss}

    initial = ndarrays_to_parameters([v.detach().numpy() for v in model_fn().state_dict().values()])
    fedavg = LegacyFedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n, min_available_clients=n,
                          initial_parameters=initial, on_fit_config_fn=lambda r: {"server-round": r},
                          fit_metrics_aggregation_fn=mean_loss)
    audit = SecureAggregationAudit(fedavg, model_fn, out / "leakage.jsonl", truth_dir=out / "truth",
                                   random_state=int(cfg["seed"]), max_time=float(cfg["max-time"]))
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=int(cfg["rounds"])), strategy=audit)
    workflow = SecAggPlusWorkflow(num_shares=1.0, reconstruction_threshold=0.5,
                                  max_weight=float(cfg["secagg-max-weight"]))
    DefaultWorkflow(fit_workflow=workflow)(grid, legacy)
    return losses
