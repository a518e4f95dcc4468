"""What a server learns from a secure aggregate: Flower's SecAgg+ audited as deployed.

Under secure aggregation (Flower's ``secaggplus_mod`` on every client, ``SecAggPlusWorkflow`` in the
server's ``DefaultWorkflow``) the server never sees one client's update: the workflow unmasks
only the weighted mean θ̄ = Σ_k n_k θ_k / Σ_k n_k of the K clients' new parameters (n_k: each
client's ``num_examples``) and hands it to the strategy's ``aggregate_fit``.  When every client
took one SGD step (E = 1) at the same η from the same θ₀,

    (θ₀ − θ̄) / η = Σ_k n_k g_k / Σ_k n_k,

and with n_k = b_k this is the mean-loss gradient of one batch of B = Σ_k b_k samples: the
attack (:func:`gradinv.flower.strategy.invert_client_update`) inverts the aggregate as one
batch of B, and the record says how many samples of each client came back (``per_client``).

What SecAgg+ adds to the sum is its quantisation: each client scales θ_k by n_k / ``max_weight``
and rounds it stochastically to a grid of step 2·``clipping_range`` / ``quantization_range``
(Flower's defaults: 16 / 2²² over [−8, 8], ``max_weight`` 1000).  That rounding reaches the
pseudo-gradient as noise of order step · ``max_weight`` / (n_k η); the attack reads it from the
update like any other noise (approximate mode when it is there, exact when it is not).

:class:`SecureAggregationAudit` wraps a strategy of Flower's legacy API (the one
``DefaultWorkflow`` drives, e.g. ``flwr.server.strategy.FedAvg``): every call is delegated, and
``aggregate_fit`` gets the results unchanged.
"""

import math
import traceback
from logging import INFO
from pathlib import Path

import numpy as np

from ._flwr import require_flwr

require_flwr()

from flwr.common import parameters_to_ndarrays  # noqa: E402
from flwr.server.strategy import Strategy  # noqa: E402
from flwr.supercore import log  # noqa: E402

from .defences import ClientDefence  # noqa: E402
from .strategy import RECORD_FIELDS, _NotInverted, invert_client_update, write_record  # noqa: E402

AGGREGATE_FIELDS = (*RECORD_FIELDS, "nodes", "clients", "per_client")
"""The fields of one aggregate's record: a client update's (``node_id`` null), with the nodes
aggregated, their count K and, with the truth, the per-client figures."""


class SecureAggregationAudit(Strategy):
    """Wrap a legacy Flower ``Strategy`` run under ``SecAggPlusWorkflow``: aggregation unchanged,
    every round's aggregate inverted as one batch of the clients' B = Σ_k b_k samples.

    Parameters
    ----------
    strategy : flwr.server.strategy.Strategy
        The strategy that trains (``flwr.server.strategy.FedAvg``, ...); every call is delegated.
    model_fn : callable
        Returns the global model's architecture (``nn.Module``, in the clients' dtype); its
        ``state_dict`` order is the order of the parameters the clients send.
    out : path
        The JSON-lines file written, one object per round's aggregate (:data:`AGGREGATE_FIELDS`).
    truth_dir : path, optional
        Tests and demos only: a folder where clients leave ``round{r}-node{id}.npz`` (x, y).
    batch_size_key, lr_key, local_steps_key : str
        Keys of each client's fit metrics with b_k, η and E (E defaults to 1); SecAgg+ leaves
        the metrics in the clear, only the parameters are masked.
    layer, random_state, max_time
        Passed to :func:`gradinv.models.attack_model`.
    defence : :class:`~gradinv.flower.defences.ClientDefence`, optional
        What the clients apply (default: SecAgg+ alone), for the ε of each record.
    """

    def __init__(self, strategy, model_fn, out, *, truth_dir=None, batch_size_key="batch-size", lr_key="lr",
                 local_steps_key="local-steps", layer=None, random_state=0, max_time=60.0, defence=None):
        self.strategy = strategy
        self.model_fn = model_fn
        self.out = Path(out)
        self.truth_dir = None if truth_dir is None else Path(truth_dir)
        self.batch_size_key, self.lr_key, self.local_steps_key = batch_size_key, lr_key, local_steps_key
        self.layer, self.random_state, self.max_time = layer, random_state, max_time
        self.defence = ClientDefence("secagg") if defence is None else defence
        self._sent = []  # the parameters θ₀ of each fit instruction of this round
        self.records = []

    def configure_fit(self, server_round, parameters, client_manager):
        instructions = self.strategy.configure_fit(server_round, parameters, client_manager)
        self._sent = [parameters_to_ndarrays(ins.parameters) for _, ins in instructions]
        return instructions

    def aggregate_fit(self, server_round, results, failures):
        self._write(self.audit_aggregate(server_round, results, failures))
        return self.strategy.aggregate_fit(server_round, results, failures)

    def audit_aggregate(self, server_round, results, failures=()):
        """The leakage record of one round's aggregate (never raises)."""
        record = dict.fromkeys(AGGREGATE_FIELDS)
        nodes = [int(proxy.node_id) for proxy, _ in results]
        record.update({"round": int(server_round), "nodes": nodes, "clients": len(nodes), "inverted": False,
                       "truth_compared": False})
        spent = self.defence.spent(len(self.records) + 1)  # every client takes part in every round audited
        record.update({k: None if isinstance(v, float) and math.isinf(v) else v for k, v in spent.items()})
        try:
            record.update(self._invert(server_round, results, nodes, record))
        except _NotInverted as e:
            record["reason"] = str(e)
        except Exception as e:  # noqa: BLE001 - an audit never stops the federation
            record["reason"] = f"{type(e).__name__}: {e}"
            log(INFO, "leakage audit of the aggregate failed:\n%s", traceback.format_exc())
        if failures:
            record["reason"] = ((record["reason"] + "; ") if record["reason"] else "") + \
                f"{len(failures)} clients failed this round: the aggregate holds the others only"
        return record

    def _invert(self, server_round, results, nodes, record):
        if not results:
            raise _NotInverted("no client result this round")
        metrics = [fitres.metrics for _, fitres in results]
        for key in (self.batch_size_key, self.lr_key):
            if any(key not in m for m in metrics):
                raise _NotInverted(f"a client sent no '{key}' in its metrics")
        sizes = [int(m[self.batch_size_key]) for m in metrics]
        rates = {float(m[self.lr_key]) for m in metrics}
        record["local_steps"] = local_steps = max(int(m.get(self.local_steps_key, 1)) for m in metrics)
        record["batch_size"] = batch_size = sum(sizes)
        if len(rates) != 1:
            raise _NotInverted(f"the clients trained at different learning rates {sorted(rates)}: "
                               "θ₀ − θ̄ is no multiple of one gradient")
        record["lr"] = lr = rates.pop()
        if not self._sent or any(not _same(self._sent[0], s) for s in self._sent[1:]):
            raise _NotInverted("the clients were not all sent one model this round")
        model = self.model_fn()
        names = list(model.state_dict())
        sent = dict(zip(names, self._sent[0], strict=True))
        received = dict(zip(names, parameters_to_ndarrays(results[0][1].parameters), strict=True))
        truth, owners = self._truth(server_round, nodes)
        return invert_client_update(model, sent, received, batch_size=batch_size, lr=lr,
                                    local_steps=local_steps, truth=truth, owners=owners, layer=self.layer,
                                    random_state=self.random_state, max_time=self.max_time)

    def _truth(self, server_round, nodes):
        """The round's batches of ``nodes`` stacked, with the node of each row; (None, None) unless
        every node left its batch."""
        if self.truth_dir is None:
            return None, None
        paths = [self.truth_dir / f"round{server_round}-node{n}.npz" for n in nodes]
        if not all(p.exists() for p in paths):
            return None, None
        xs, ys, owners = [], [], []
        for node, path in zip(nodes, paths, strict=True):
            with np.load(path, allow_pickle=False) as f:
                xs.append(f["x"])
                ys.append(f["y"])
            owners += [str(node)] * len(ys[-1])  # node ids are uint64: kept exact as text
        return (np.concatenate(xs), np.concatenate(ys)), np.array(owners)

    def _write(self, record):
        self.records.append(record)
        write_record(self.out, record, f"the aggregate of {record['clients']} clients")

    # -- everything else is the wrapped strategy's --------------------------------------------------
    def initialize_parameters(self, client_manager):
        return self.strategy.initialize_parameters(client_manager)

    def configure_evaluate(self, server_round, parameters, client_manager):
        return self.strategy.configure_evaluate(server_round, parameters, client_manager)

    def aggregate_evaluate(self, server_round, results, failures):
        return self.strategy.aggregate_evaluate(server_round, results, failures)

    def evaluate(self, server_round, parameters):
        return self.strategy.evaluate(server_round, parameters)

    def __getattr__(self, name):  # attributes of the wrapped strategy
        if name == "strategy":
            raise AttributeError(name)
        return getattr(self.strategy, name)


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))

