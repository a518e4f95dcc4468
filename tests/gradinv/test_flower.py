"""The Flower audit: the strategy wrapper on Flower's own messages, and a real federation on loopback."""

import json
import socket
import sys
from types import SimpleNamespace

import numpy as np
import pytest

flwr = pytest.importorskip("flwr", reason="the Flower audit needs the 'flower' extra (in the 'test' extra)")

from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.serverapp.strategy import FedAvg  # noqa: E402
from flwr.supercore.task_identity import TaskIdentity  # noqa: E402

from gradinv.cases import local_sgd  # noqa: E402
from gradinv.cli import main  # noqa: E402
from gradinv.flower import require_flwr  # noqa: E402
from gradinv.flower.apps import load_dataset, make_mlp, shard_batch  # noqa: E402
from gradinv.flower.defences import ClientDefence  # noqa: E402
from gradinv.flower.processes import LocalFederation, processes_with_home  # noqa: E402
from gradinv.flower.strategy import LeakageAudit  # noqa: E402
from gradinv.metrics import evaluate  # noqa: E402
from gradinv.models import attack_model  # noqa: E402

B, WIDTH = 12, 128


@pytest.fixture
def server_identity(monkeypatch):
    """Flower messages are built inside a task: give this process the server's identity."""
    for attr in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, attr, 1)


@pytest.fixture
def numpy_seeded():
    """NumPy's global generator (where Flower's DP mods draw their noise) seeded, and restored after."""
    state = np.random.get_state()
    np.random.seed(0)
    yield
    np.random.set_state(state)


class _Nodes:
    """The one thing FedAvg.configure_train asks of the grid: the connected node ids."""

    def __init__(self, ids):
        self.ids = ids

    def get_node_ids(self):
        return self.ids


def _federation_round(audit, model_fn, *, steps=1, lr=0.01, metrics_of=None, n_nodes=2, seed=0, mod=None):
    """One training round on Flower messages: the audit configures it, each node trains on its
    batch and replies as a ClientApp does, through the client ``mod`` if one is given (a Flower
    mod); returns (replies, batches by node id)."""
    x, y = load_dataset(random_state=seed)
    global_state = model_fn().state_dict()
    nodes = _Nodes(list(range(11, 11 + n_nodes)))
    messages = audit.configure_train(1, ArrayRecord(global_state), ConfigRecord(), nodes)
    replies, batches = [], {}
    for i, msg in enumerate(messages):
        xb, yb = shard_batch(x, y, i, n_nodes, 1, B)

        def train(msg, context, xb=xb, yb=yb):
            model = model_fn()
            model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
            local_sgd(model, xb, yb, epochs=steps, lr=lr)
            metrics = {"num-examples": B, "batch-size": B, "lr": lr, "local-steps": steps}
            if metrics_of is not None:
                metrics = metrics_of(metrics)
            content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": MetricRecord(metrics)})
            return Message(content=content, reply_to=msg)

        context = Context(run_id=1, node_id=msg.metadata.dst_node_id, node_config={}, state=RecordDict(),
                          run_config={})
        replies.append(train(msg, context) if mod is None else mod(msg, context, train))
        batches[msg.metadata.dst_node_id] = (xb, yb)
    return replies, batches


def _audit(tmp_path, model_fn, truth=None, **kwargs):
    audit = LeakageAudit(FedAvg(min_train_nodes=2, min_available_nodes=2), model_fn, tmp_path / "leakage.jsonl",
                         **kwargs)
    if truth is not None:
        audit._truth = lambda server_round, node_id: truth.get(node_id)
    return audit


def _mlp(activation="relu"):
    return lambda: make_mlp(64, WIDTH, 10, activation=activation, random_state=0)


def test_fedsgd_updates_inverted_exactly_and_aggregation_unchanged(tmp_path, server_identity):
    batches = {}
    audit = _audit(tmp_path, _mlp(), truth=batches)
    replies, truth = _federation_round(audit, _mlp())
    batches.update(truth)
    arrays, _ = audit.aggregate_train(1, replies)
    expected, _ = FedAvg(min_train_nodes=2, min_available_nodes=2).aggregate_train(1, replies)
    for key, value in expected.items():
        np.testing.assert_array_equal(arrays[key].numpy(), value.numpy())
    records = [json.loads(line) for line in (tmp_path / "leakage.jsonl").read_text().splitlines()]
    assert sorted(r["node_id"] for r in records) == [11, 12]
    for r in records:
        assert r["inverted"] and not r["approximate"] and r["truth_compared"]
        assert r["exact_fraction"] == 1.0 and r["certified_fraction"] == 1.0 and r["false_certificates"] == 0
        assert r["labels_correct"] == B and r["batch_size"] == B and r["local_steps"] == 1


def test_without_truth_the_server_reports_its_own_estimate(tmp_path, server_identity):
    audit = _audit(tmp_path, _mlp())
    replies, _ = _federation_round(audit, _mlp())
    record = audit.audit_reply(1, replies[0])
    assert record["inverted"] and not record["truth_compared"] and record["psnr_db"] is None
    assert record["exact_source"] == "sparse columns" and record["certified_fraction"] == 1.0


def test_two_local_steps_use_the_approximate_mode_and_report_psnr(tmp_path, server_identity):
    batches = {}
    audit = _audit(tmp_path, _mlp(), truth=batches)
    replies, truth = _federation_round(audit, _mlp(), steps=2, lr=0.001)
    batches.update(truth)
    audit.aggregate_train(1, replies)
    sent = _mlp()().state_dict()
    for r, msg in zip(audit.records, replies):
        assert r["inverted"] and r["approximate"] and r["local_steps"] == 2
        assert r["certified_fraction"] == 0.0  # approximate mode certifies nothing
        # the reported PSNR is the attack's on the pseudo-gradient (θ₀ − θ₂)/η, against the batch
        received = msg.content["arrays"].to_torch_state_dict()
        pseudo = {k: (sent[k] - received[k]) / 0.001 for k in sent}
        res, _ = attack_model(_mlp()(), pseudo, batch_size=B, approximate=True, random_state=0)
        x, _ = batches[r["node_id"]]
        assert r["psnr_db"] == round(evaluate(x, res.inputs, res.exact)["psnr"], 2)


@pytest.mark.parametrize("drop, reason", [("batch-size", "no batch size"), ("lr", "no learning rate")])
def test_missing_metrics_give_a_reason_not_a_crash(tmp_path, server_identity, drop, reason):
    audit = _audit(tmp_path, _mlp())
    replies, _ = _federation_round(audit, _mlp(), metrics_of=lambda m: {k: v for k, v in m.items() if k != drop})
    arrays, _ = audit.aggregate_train(1, replies)
    assert arrays is not None  # FedAvg aggregated as usual
    assert all(not r["inverted"] and reason in r["reason"] for r in audit.records)


def test_unsupported_layer_and_error_replies_give_a_reason(tmp_path, server_identity):
    audit = _audit(tmp_path, _mlp("tanh"))
    replies, _ = _federation_round(audit, _mlp("tanh"))
    failed = Message(Error(code=1, reason="out of memory"), reply_to=replies[1])
    arrays, _ = audit.aggregate_train(1, [replies[0], failed])
    assert arrays is not None
    tanh, error = audit.records
    assert not tanh["inverted"] and "ReLU" in tanh["reason"]
    assert not error["inverted"] and "out of memory" in error["reason"]


def _update_norm(reply, sent):
    received = reply.content["arrays"].to_torch_state_dict()
    return float(sum(((received[k] - sent[k]) ** 2).sum() for k in sent)) ** 0.5


def test_flowers_client_side_clipping_and_central_dp_leave_each_update_to_the_server(tmp_path, server_identity):
    """Flower's fixedclipping_mod scales each update to the norm C that its central DP wrapper sends
    (C below every update's norm, so each is clipped), and the wrapper adds its noise to the
    aggregate only: the server still inverts and certifies every update, which ε = ∞ records,
    while the released model carries the (ε, δ) of noise multiplier z."""
    defence = ClientDefence("clipping", clipping_norm=0.005, noise_multiplier=1.0, clients=2)
    batches = {}
    audit = LeakageAudit(defence.wrap_strategy(FedAvg(min_train_nodes=2, min_available_nodes=2)), _mlp(),
                         tmp_path / "leakage.jsonl", defence=defence)
    audit._truth = lambda server_round, node_id: batches.get(node_id)
    replies, truth = _federation_round(audit, _mlp(), mod=defence.client_mod())
    batches.update(truth)
    sent = _mlp()().state_dict()
    assert all(abs(_update_norm(r, sent) - 0.005) <= 1e-12 for r in replies)  # clipped by Flower's mod
    arrays, _ = audit.aggregate_train(1, replies)
    assert arrays is not None
    for r in audit.records:
        assert r["inverted"] and not r["approximate"] and r["mode_reason"].startswith("detected: exact")
        assert r["exact_fraction"] == 1.0 and r["certified_fraction"] == 1.0 and r["false_certificates"] == 0
        assert r["defence"] == "clipping" and r["epsilon_server"] is None and r["delta"] == 1e-5
        assert 0 < r["epsilon_released"] < float("inf")


@pytest.mark.parametrize("dp_epsilon", [1.0, 1e7])
def test_flowers_local_dp_mod_is_read_as_noise_and_its_epsilon_recorded(tmp_path, server_identity, numpy_seeded,
                                                                        dp_epsilon):
    """Flower's LocalDpMod clips each update and adds Gaussian noise to the parameters sent; the
    server's audit reads the noise from the update (no flag) and records the ε the client spent at
    δ.  At ε = 1 per round the update is noise at the attacked layer, and the record says so; at
    ε = 1e7 the noise (std 2.4e-9) is far below the update and the batch comes back approximately
    (on some draws of the noise one update of this small MLP comes back at ~10 dB only:
    ``docs/flower_defences.md``).  Flower draws the noise from NumPy's global generator, seeded here."""
    defence = ClientDefence("local-dp", clipping_norm=0.005, epsilon=dp_epsilon, clients=2)
    batches = {}
    audit = LeakageAudit(FedAvg(min_train_nodes=2, min_available_nodes=2), _mlp(), tmp_path / "leakage.jsonl",
                         defence=defence)
    audit._truth = lambda server_round, node_id: batches.get(node_id)
    replies, truth = _federation_round(audit, _mlp(), mod=defence.client_mod())
    batches.update(truth)
    audit.aggregate_train(1, replies)
    for r in audit.records:
        assert r["defence"] == "local-dp" and r["epsilon_server"] == r["epsilon_released"] > 0
        if dp_epsilon == 1.0:
            assert not r["inverted"] and "noise at this layer" in r["reason"]
        else:
            assert r["inverted"] and r["approximate"] and r["mode_reason"].startswith("detected: noisy update")
            assert r["certified_fraction"] == 0.0
    if dp_epsilon > 1:
        assert max(r["psnr_db"] for r in audit.records) >= 30


def test_clear_error_without_flwr(monkeypatch):
    monkeypatch.setitem(sys.modules, "flwr", None)
    with pytest.raises(ImportError, match=r"pip install 'spearkit\[flower\]'"):
        require_flwr()


def test_bad_data_file_is_refused_before_any_process_starts(tmp_path, capsys):
    np.savez(tmp_path / "bad.npz", x=np.zeros((40, 4)))
    assert main(["flower-demo", "--data", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "out")]) == 2
    assert "lacks ['y']" in capsys.readouterr().err
    assert not (tmp_path / "out" / "logs").exists()


def test_local_federation_stops_its_processes_on_failure(tmp_path):
    with pytest.raises(RuntimeError, match="inside"):
        with LocalFederation(tmp_path, 1) as federation:
            procs, port = list(federation.procs), federation.port
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", port)) == 0  # the SuperLink listens
            raise RuntimeError("inside the federation")
    assert all(p.poll() is not None for p in procs) and not processes_with_home(tmp_path / "flwr-home")
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.slow
def test_a_live_federation_with_flowers_clipping_and_central_dp_still_leaks_to_its_server(tmp_path, capsys):
    """Real Flower processes with ``--defence clipping``: the ClientApp runs Flower's fixedclipping_mod
    and the ServerApp wraps FedAvg in DifferentialPrivacyClientSideFixedClipping (both logged by
    Flower).  The server's audit still certifies every batch, and records ε = ∞ against itself."""
    out = tmp_path / "out"
    assert main(["flower-demo", "--clients", "2", "--rounds", "1", "--batch-size", "12", "--defence", "clipping",
                 "--out", str(out), "--no-progress"]) == 0
    records = [json.loads(line) for line in (out / "leakage.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for r in records:
        assert r["defence"] == "clipping" and r["epsilon_server"] is None and r["epsilon_released"] > 0
        assert r["exact_fraction"] == 1.0 and r["certified_fraction"] == 1.0 and r["false_certificates"] == 0
    logs = "".join(p.read_text(errors="replace") for p in (out / "logs").glob("*.log"))
    assert "fixedclipping_mod: parameters are clipped" in logs and "central DP noise" in logs
    assert "defence: clipping" in capsys.readouterr().out


def _proxy(node):
    """A connected node as Flower's legacy client manager and strategies use it: its cid and node id."""
    return SimpleNamespace(cid=str(node), node_id=node)


def test_a_secure_aggregate_is_inverted_as_one_batch_of_every_clients_samples(tmp_path):
    """Under SecAgg+ the server's strategy gets only the weighted mean θ̄ of the K clients' parameters
    (here unquantised: the sum as SecAgg+ would give it with infinite precision).  FedSGD from one θ₀
    at one η makes (θ₀ − θ̄)/η the gradient of one batch of the K·b samples: the audit inverts it
    whole, certified, and credits each client with its own samples; aggregation is FedAvg's."""
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server.client_manager import SimpleClientManager
    from flwr.server.strategy import FedAvg as LegacyFedAvg

    from gradinv.flower.secure_aggregation import SecureAggregationAudit

    n_clients, b, lr = 3, 4, 0.01
    model_fn = _mlp()
    x, y = load_dataset(random_state=0)
    theta0 = [v.numpy() for v in model_fn().state_dict().values()]
    manager = SimpleClientManager()
    for node in (21, 22, 23):
        manager.register(_proxy(node))
    fedavg = LegacyFedAvg(fraction_evaluate=0.0, min_fit_clients=n_clients, min_available_clients=n_clients)
    batches = {}
    audit = SecureAggregationAudit(fedavg, model_fn, tmp_path / "leakage.jsonl")
    audit._truth = lambda server_round, nodes: (
        (np.concatenate([batches[n][0] for n in nodes]), np.concatenate([batches[n][1] for n in nodes])),
        np.repeat([str(n) for n in nodes], b))
    instructions = audit.configure_fit(1, ndarrays_to_parameters(theta0), manager)
    thetas = []
    for i, (proxy, _) in enumerate(instructions):
        batches[proxy.node_id] = shard_batch(x, y, i, n_clients, 1, b)
        model = model_fn()
        local_sgd(model, *batches[proxy.node_id], epochs=1, lr=lr)
        thetas.append([v.numpy() for v in model.state_dict().values()])
    aggregate = ndarrays_to_parameters([np.mean(arrays, axis=0) for arrays in zip(*thetas)])
    results = [(proxy, FitRes(Status(Code.OK, ""), aggregate, b, {"batch-size": b, "lr": lr}))
               for proxy, _ in instructions]
    params, _ = audit.aggregate_fit(1, results, [])
    record = json.loads((tmp_path / "leakage.jsonl").read_text())
    assert record["inverted"] and record["batch_size"] == n_clients * b and record["clients"] == n_clients
    assert record["exact_fraction"] == 1.0 and record["certified_fraction"] == 1.0
    assert record["false_certificates"] == 0 and record["defence"] == "secagg" and record["epsilon_server"] is None
    assert record["per_client"] == {str(n): {"distinct": b, "exact": b, "psnr_db": record["per_client"][str(n)]["psnr_db"]}
                                    for n in (21, 22, 23)}
    expected = fedavg.aggregate_fit(1, results, [])[0]
    assert all(np.array_equal(a, b) for a, b in zip(parameters_to_ndarrays(params), parameters_to_ndarrays(expected)))


def test_a_secure_aggregate_of_clients_at_different_learning_rates_is_not_inverted(tmp_path):
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
    from flwr.server.strategy import FedAvg as LegacyFedAvg

    from gradinv.flower.secure_aggregation import SecureAggregationAudit

    audit = SecureAggregationAudit(LegacyFedAvg(), _mlp(), tmp_path / "leakage.jsonl")
    params = ndarrays_to_parameters([v.numpy() for v in _mlp()().state_dict().values()])
    audit._sent = [[v.numpy() for v in _mlp()().state_dict().values()]] * 2
    results = []
    for node, lr in ((1, 0.01), (2, 0.1)):
        results.append((_proxy(node), FitRes(Status(Code.OK, ""), params, B, {"batch-size": B, "lr": lr})))
    record = audit.audit_aggregate(1, results)
    assert not record["inverted"] and "different learning rates" in record["reason"]
    assert record["batch_size"] == 2 * B and record["nodes"] == [1, 2]


@pytest.mark.slow
def test_a_live_federation_under_flowers_secagg_plus_leaks_its_aggregate_to_the_server(tmp_path, capsys):
    """Real Flower processes with ``--defence secagg``: the ClientApp runs Flower's secaggplus_mod, the
    ServerApp FedAvg in DefaultWorkflow with SecAggPlusWorkflow (logged by Flower).  The server sees
    the round's aggregate only, quantised by SecAgg+ (max weight = b, η = 0.1: quantisation noise
    well below the update); the audit reads the quantisation as noise and recovers the 3 × 4 samples
    approximately (72 dB when measured), crediting each client with its own."""
    out = tmp_path / "out"
    assert main(["flower-demo", "--clients", "3", "--rounds", "1", "--batch-size", "4", "--defence", "secagg",
                 "--secagg-max-weight", "4", "--lr", "0.1", "--max-time", "30", "--out", str(out),
                 "--no-progress"]) == 0
    (record,) = [json.loads(line) for line in (out / "leakage.jsonl").read_text().splitlines()]
    assert record["inverted"] and record["approximate"] and record["batch_size"] == 12 and record["clients"] == 3
    assert record["mode_reason"].startswith("detected: noisy update") and record["psnr_db"] >= 30
    assert sorted(record["per_client"]) == sorted(str(n) for n in record["nodes"])
    assert all(c["distinct"] == 4 for c in record["per_client"].values())
    logs = "".join(p.read_text(errors="replace") for p in (out / "logs").glob("*.log"))
    assert "Secure aggregation completed" in logs
    assert "defence: secagg" in capsys.readouterr().out


def test_a_client_round_seeds_the_generator_flowers_defences_draw_from(tmp_path, numpy_seeded):
    """LocalDpMod's noise and SecAgg+'s stochastic rounding are drawn from NumPy's global generator
    after the demo's training returns: seeded per (seed, node, round), a demo run is reproducible."""
    from gradinv.flower.apps import train_round

    cfg = {"data": "", "seed": 0, "batch-size": 4, "lr": 0.01, "local-steps": 1, "out": str(tmp_path),
           "report-batch-size": True, "width": 16, "activation": "relu", "n-classes": 10}
    state = make_mlp(64, 16, 10, random_state=0).state_dict()

    def draws(partition, server_round):
        train_round(cfg, 7, {"partition-id": partition, "num-partitions": 2}, server_round, state)
        return np.random.rand(4)

    assert np.array_equal(draws(0, 1), draws(0, 1))
    assert not np.array_equal(draws(0, 1), draws(1, 1)) and not np.array_equal(draws(0, 1), draws(0, 2))
