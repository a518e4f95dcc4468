"""A Flower strategy wrapper that inverts every client update it receives.

The server knows the global parameters θ₀ it sent to each node (it builds the messages) and
receives the client's new parameters θ_E.  With the client's learning rate η (reported in its
metrics) the update gives the pseudo-gradient g = (θ₀ − θ_E) / η for every parameter; for
FedSGD (one local step, E = 1) g is the client's gradient on its batch, or that gradient
clipped as a whole, or with noise (Flower's ``fixedclipping_mod``, ``LocalDpMod``): the attack
(:func:`gradinv.models.attack_model`) reads which from the update and recovers the batch exactly,
with certificates, or approximately; for E > 1 local steps it runs in approximate mode with the
reported batch size b.  With the clients' :class:`~gradinv.flower.defences.ClientDefence`, each
record also gives the ε the client has spent (``epsilon_server``: against this server;
``epsilon_released``: against those who see only the global models; null where unbounded).

Each update gives one JSON object in ``leakage.jsonl`` (:data:`RECORD_FIELDS`); an update that
cannot be inverted (error reply, no batch size or learning rate, no Linear → ReLU layer, any
exception of the attack) gives a record with ``"inverted": false`` and the reason.  Aggregation
is delegated to the wrapped strategy, with the replies unchanged.
"""

import json
import math
import time
import traceback
from logging import INFO
from pathlib import Path

import numpy as np
import torch

from ._flwr import require_flwr

require_flwr()

from flwr.serverapp.strategy import Strategy  # noqa: E402
from flwr.supercore import log  # noqa: E402

from ..metrics import distinct_inputs, evaluate, exact_mask  # noqa: E402
from ..models import attack_model, pseudo_gradients  # noqa: E402

RECORD_FIELDS = ("round", "node_id", "batch_size", "local_steps", "lr", "defence", "epsilon_server",
                 "epsilon_released", "delta", "inverted", "reason", "layer", "approximate", "mode_reason", "recovered", "distinct", "exact_fraction", "exact_source", "certified_fraction", "psnr_db",
                 "truth_compared", "labels_correct", "false_certificates", "outcome", "time_s")


def _single(records, key, what):
    """The record stored under ``key`` in a RecordDict's ``records``, or the only one."""
    if key is not None:
        if key not in records:
            raise KeyError(f"the message has no {what} '{key}'")
        return records[key]
    if len(records) != 1:
        raise KeyError(f"the message has {len(records)} {what}s; name the one to audit")
    return next(iter(records.values()))


def invert_client_update(model, sent_state, received_state, *, batch_size, lr, local_steps=1, truth=None,
                         owners=None, layer=None, random_state=None, max_time=60.0):
    """Invert one client update θ₀ → θ_E; returns the record's measured fields.

    ``model`` is the architecture (its parameters are overwritten with θ₀ = ``sent_state``),
    ``received_state`` is θ_E, ``truth`` (tests only) is the client's batch ``(x, y)``.  For an
    aggregate of several clients' batches, ``owners`` gives the client of each row of the truth,
    and the fields include ``per_client``: per client, its distinct inputs, how many came back
    exactly and their mean PSNR.
    Raises on anything that prevents the inversion (the caller records the reason).
    """
    model.load_state_dict({k: torch.as_tensor(v) for k, v in sent_state.items()})
    params = dict(model.named_parameters())
    missing = sorted(set(params) - set(received_state))
    if missing:
        raise KeyError(f"the update lacks parameters {missing}")
    gradients, rounding = pseudo_gradients({name: p.detach() for name, p in params.items()}, received_state, lr)
    t0 = time.perf_counter()
    res, target = attack_model(model, gradients, layer=layer, batch_size=batch_size, rounding=rounding,
                               approximate=True if local_steps > 1 else None,  # one step: read from the update
                               random_state=random_state, max_time=max_time)
    out = dict(inverted=True, reason=None, layer=target.name, approximate=bool(res.approximate),
               mode_reason=res.mode_reason, recovered=len(res.inputs),
               certified_fraction=float(np.mean(res.exact)), outcome=res.describe(),
               time_s=round(time.perf_counter() - t0, 3))
    if truth is None:  # the server's own estimate: columns that pass the gradient-only test
        out.update(exact_fraction=float(np.mean(res.sparse)), exact_source="sparse columns", psnr_db=None,
                   truth_compared=False, labels_correct=None)
        return out
    x, first = distinct_inputs(truth[0], return_index=True)  # a repeated input is one column of the gradient
    y = np.asarray(truth[1])[first]
    ev = evaluate(x, res.inputs, res.exact)
    rows, cols = ev["pairs"]
    labels_correct = None if res.labels is None else int(np.sum(np.asarray(res.labels)[cols] == y[rows]))
    out.update(exact_fraction=ev["exact"] / len(x), distinct=len(x), exact_source="truth", psnr_db=round(ev["psnr"], 2),
               truth_compared=True, labels_correct=labels_correct, false_certificates=ev["false_certificates"])
    if owners is not None:
        out["per_client"] = _per_client(np.asarray(owners)[first], ev)
    return out


def _per_client(owner, ev):
    """{client: {"distinct", "exact", "psnr_db"}}: ``owner`` of each distinct input, the rest from
    :func:`gradinv.metrics.evaluate` (an input left unmatched counts as not exact; its PSNR is left out)."""
    rows = ev["pairs"][0]
    exact, psnr_db = exact_mask(ev["relative_error"]), np.asarray(ev["psnr_per_sample"])
    out = {}
    for c in sorted(set(owner.tolist())):
        mine = owner[rows] == c
        out[str(c)] = {"distinct": int(np.sum(owner == c)), "exact": int(np.sum(exact[mine])),
                       "psnr_db": round(float(np.mean(psnr_db[mine])), 2) if mine.any() else None}
    return out


def write_record(out, record, source):
    """Append ``record`` to the JSON-lines file ``out`` and log it (``source``: whose update)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        f.write(json.dumps(record) + "\n")
    what = (f"{record['exact_fraction']:.0%} exact ({record['exact_source']}); {record['outcome']}"
            if record["inverted"] else f"not inverted: {record['reason']}")
    log(INFO, "leakage audit: round %s, %s: %s", record["round"], source, what)


class LeakageAudit(Strategy):
    """Wrap a Flower ``Strategy``: aggregation unchanged, every training reply inverted.

    Parameters
    ----------
    strategy : flwr.serverapp.strategy.Strategy
        The strategy that trains (FedAvg, FedProx, ...); every call is delegated to it.
    model_fn : callable
        Returns the global model's architecture (``nn.Module``, in the clients' dtype).
    out : path
        The JSON-lines file written, one object per client update (appended).
    truth_dir : path, optional
        Tests and demos only: a folder where clients leave ``round{r}-node{id}.npz`` (x, y).
    batch_size_key, lr_key, local_steps_key : str
        Keys of the client's MetricRecord with b, η and E (E defaults to 1).
    arrayrecord_key, metricrecord_key : str, optional
        Which record of a message to read (default: the only one).
    layer, random_state, max_time
        Passed to :func:`gradinv.models.attack_model`.
    defence : :class:`~gradinv.flower.defences.ClientDefence`, optional
        What the clients apply to their updates (Flower's mods), for the ε of each record: composed
        over the updates that node has sent so far.
    """

    def __init__(self, strategy, model_fn, out, *, truth_dir=None, batch_size_key="batch-size", lr_key="lr",
                 local_steps_key="local-steps", arrayrecord_key=None, metricrecord_key=None, layer=None,
                 random_state=0, max_time=60.0, defence=None):
        self.strategy = strategy
        self.model_fn = model_fn
        self.out = Path(out)
        self.truth_dir = None if truth_dir is None else Path(truth_dir)
        self.batch_size_key, self.lr_key, self.local_steps_key = batch_size_key, lr_key, local_steps_key
        self.arrayrecord_key, self.metricrecord_key = arrayrecord_key, metricrecord_key
        self.layer, self.random_state, self.max_time = layer, random_state, max_time
        self.defence = defence
        self._updates_of = {}  # node id -> how many updates it has sent (the releases its ε composes)
        self._sent = {}  # node id -> the global state_dict θ₀ sent to it this round
        self.records = []

    # -- training: remember what was sent, audit what comes back, aggregate unchanged --------------
    def configure_train(self, server_round, arrays, config, grid):
        messages = list(self.strategy.configure_train(server_round, arrays, config, grid))
        self._sent = {}
        for msg in messages:
            try:
                sent = _single(msg.content.array_records, self.arrayrecord_key, "ArrayRecord")
                self._sent[msg.metadata.dst_node_id] = sent.to_torch_state_dict()
            except Exception as e:  # noqa: BLE001 - recorded when the reply comes back
                self._sent[msg.metadata.dst_node_id] = e
        return messages

    def aggregate_train(self, server_round, replies):
        replies = list(replies)
        for msg in replies:
            self._write(self.audit_reply(server_round, msg))
        return self.strategy.aggregate_train(server_round, replies)

    def audit_reply(self, server_round, msg):
        """The leakage record of one training reply (never raises)."""
        node_id = int(msg.metadata.src_node_id)
        record = dict.fromkeys(RECORD_FIELDS)
        record.update({"round": int(server_round), "node_id": node_id, "inverted": False, "truth_compared": False})
        self._updates_of[node_id] = self._updates_of.get(node_id, 0) + 1
        if self.defence is not None:
            spent = self.defence.spent(self._updates_of[node_id])
            record.update({k: None if isinstance(v, float) and math.isinf(v) else v for k, v in spent.items()})
        try:
            if msg.has_error():
                raise _NotInverted(f"the client replied with an error: {msg.error.reason}")
            metrics = _single(msg.content.metric_records, self.metricrecord_key, "MetricRecord")
            local_steps = int(metrics.get(self.local_steps_key, 1))
            record["local_steps"] = local_steps
            if self.batch_size_key not in metrics:
                raise _NotInverted(f"the client sent no batch size ('{self.batch_size_key}' in its metrics)")
            record["batch_size"] = batch_size = int(metrics[self.batch_size_key])
            if self.lr_key not in metrics:
                raise _NotInverted(f"the client sent no learning rate ('{self.lr_key}' in its metrics): "
                                   "θ₀ − θ₁ = η g does not give g")
            record["lr"] = lr = float(metrics[self.lr_key])
            sent = self._sent.get(node_id)
            if sent is None:
                raise _NotInverted("no model was sent to this node this round")
            if isinstance(sent, Exception):
                raise sent
            received = _single(msg.content.array_records, self.arrayrecord_key, "ArrayRecord").to_torch_state_dict()
            truth = self._truth(server_round, node_id)
            record.update(invert_client_update(self.model_fn(), sent, received, batch_size=batch_size, lr=lr,
                                               local_steps=local_steps, truth=truth, layer=self.layer,
                                               random_state=self.random_state, max_time=self.max_time))
        except _NotInverted as e:
            record["reason"] = str(e)
        except Exception as e:  # noqa: BLE001 - an audit never stops the federation
            record["reason"] = f"{type(e).__name__}: {e}"
            log(INFO, "leakage audit of node %s failed:\n%s", node_id, traceback.format_exc())
        return record

    def _truth(self, server_round, node_id):
        if self.truth_dir is None:
            return None
        path = self.truth_dir / f"round{server_round}-node{node_id}.npz"
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as f:
            return f["x"], f["y"]

    def _write(self, record):
        self.records.append(record)
        write_record(self.out, record, f"node {record['node_id']}")

    # -- everything else is the wrapped strategy's --------------------------------------------------
    def configure_evaluate(self, server_round, arrays, config, grid):
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round, replies):
        return self.strategy.aggregate_evaluate(server_round, replies)

    def summary(self):
        log(INFO, "\t├──> Leakage audit of every training reply, written to %s", self.out)
        self.strategy.summary()

    def __getattr__(self, name):  # attributes of the wrapped strategy (fraction_train, ...)
        if name == "strategy":
            raise AttributeError(name)
        return getattr(self.strategy, name)


class _NotInverted(Exception):
    """An update the audit cannot invert, with the reason."""
