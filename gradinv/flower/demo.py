"""``gradinv flower-demo``: a real Flower federation on this machine, audited by :class:`LeakageAudit`.

Writes a Flower App (``DIR/app/pyproject.toml``, components in :mod:`gradinv.flower.apps`, the
run configuration from the command line), starts a SuperLink and N SuperNodes on loopback
(:class:`~gradinv.flower.processes.LocalFederation`), submits the app with ``flwr run`` and, when
the ServerApp is done, prints the audit's per-round table from ``DIR/leakage.jsonl``.
"""

import json
import shutil
import time
from pathlib import Path

from .._table import print_table as print_rows
from ..audit.privacy import format_epsilon
from .defences import DEFENCES, ClientDefence

EXACT_BATCH = 0.9  # a batch counts as recovered exactly when at least 90 % of its samples are


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))


def write_app(app_dir, run_config):
    """The Flower App folder: a pyproject.toml naming the demo's ServerApp and ClientApp (the
    legacy-API ClientApp with ``secaggplus_mod`` under ``defence = "secagg"``)."""
    client_app = "secagg_client_app" if run_config.get("defence") == "secagg" else "client_app"
    app_dir.mkdir(parents=True, exist_ok=True)
    config = "\n".join(f"{k} = {_toml_value(v)}" for k, v in run_config.items())
    (app_dir / "pyproject.toml").write_text(f"""[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "spearkit-flower-demo"
version = "1.0.0"
description = "A federation audited by gradinv.flower.LeakageAudit"
license = "MIT"
dependencies = []

[tool.flwr.app]
publisher = "spearkit"

[tool.flwr.app.components]
serverapp = "gradinv.flower.apps:server_app"
clientapp = "gradinv.flower.apps:{client_app}"

[tool.flwr.app.config]
{config}
""")


def check_arguments(args, x, y):
    """Clear errors for arguments the federation could not run with."""
    for name in ("clients", "rounds", "batch_size", "local_steps", "width"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.lr <= 0 or args.timeout <= 0:
        raise ValueError("--lr and --timeout must be positive")
    ClientDefence(args.defence, clipping_norm=args.clipping_norm, noise_multiplier=args.noise_multiplier,
                  epsilon=args.dp_epsilon, delta=args.dp_delta, clients=args.clients,
                  max_weight=args.secagg_max_weight)  # raises on bad values
    if args.defence == "secagg" and args.clients < 2:
        raise ValueError("--defence secagg needs at least 2 clients: it sums their updates")
    if len(x) // args.clients < args.batch_size:
        raise ValueError(f"{len(x)} samples give each of {args.clients} clients {len(x) // args.clients}, "
                         f"fewer than the batch size {args.batch_size}")


def _who(r):
    """The record's source: a node, or the aggregate of K nodes (secure aggregation)."""
    return f"all {r['clients']}" if r.get("node_id") is None and r.get("clients") else r["node_id"]


def print_table(records):
    """One row per client update (per round's aggregate under secure aggregation), then which
    batches were recovered exactly."""
    rows = []
    for r in records:
        eps = "∞" if r.get("epsilon_server") is None else format_epsilon(r["epsilon_server"])
        if r["inverted"]:
            psnr = "-" if r["psnr_db"] is None else f"{r['psnr_db']:.1f}"
            labels = "-" if r["labels_correct"] is None else f"{r['labels_correct']}/{r['batch_size']}"
            rows.append([r["round"], _who(r), r["batch_size"], r["local_steps"], "approximate" if r["approximate"]
                         else "exact", f"{r['exact_fraction']:.0%}", f"{r['certified_fraction']:.0%}", psnr, labels,
                         eps, f"{r['time_s']:.2f}"])
        else:
            rows.append([r["round"], _who(r), r["batch_size"] or "-", r["local_steps"] or "-",
                         "not inverted: " + r["reason"], "-", "-", "-", "-", eps, "-"])
    print_rows(rows, ["round", "node id", "b", "E", "mode", "exact", "certified", "PSNR dB", "labels", "ε (server)",
                      "time s"])
    defences = {(r.get("defence") or "none", r.get("delta")) for r in records}
    for name, delta in sorted(defences, key=str):
        if name == "secagg":
            print("defence: secagg (SecAgg+); the server sees each round's aggregate only, inverted as one batch "
                  "of the clients' samples; ε = ∞ (no noise is added)")
        elif name != "none":
            print(f"defence: {name}; ε spent by each client against this server, at δ = {delta:g} (Opacus' RDP "
                  "accountant over the updates it sent; ∞: the server sees the update without noise)")
    aggregates = [r for r in records if r.get("per_client")]
    for r in aggregates:
        print(f"round {r['round']}, per client from the aggregate (exact of its distinct samples, mean PSNR): "
              + ", ".join(f"node {n}: {c['exact']}/{c['distinct']}, "
                          + ("-" if c["psnr_db"] is None else f"{c['psnr_db']:.1f} dB")
                          for n, c in r["per_client"].items()))
    exact = [r for r in records if r["inverted"] and r["exact_fraction"] >= EXACT_BATCH]
    if any(r.get("clients") for r in records):
        print(f"{len(exact)} of {len(records)} aggregates recovered exactly (≥ {EXACT_BATCH:.0%} of their samples)")
        return
    nodes = sorted({r["node_id"] for r in exact})
    print(f"{len(exact)} of {len(records)} client updates recovered exactly (≥ {EXACT_BATCH:.0%} of the batch), "
          f"from {len(nodes)} of {len({r['node_id'] for r in records})} clients: "
          + (", ".join(f"node {n}" for n in nodes) or "none"))


def run_demo(args):
    """Run the federation; returns (records, timings in seconds).  Raises on a failed or timed-out run."""
    from ._flwr import require_flwr

    require_flwr()
    from tqdm import tqdm

    from .apps import load_dataset
    from .processes import LocalFederation

    t0 = time.monotonic()
    out = Path(args.out).resolve()
    data = str(Path(args.data).resolve()) if args.data else ""
    if data and not Path(data).is_file():
        raise ValueError(f"no data file {args.data}")
    x, y = load_dataset(data or None, random_state=args.seed)
    check_arguments(args, x, y)
    out.mkdir(parents=True, exist_ok=True)
    for old in ("leakage.jsonl", "server-done.json"):  # this run's records only
        (out / old).unlink(missing_ok=True)
    shutil.rmtree(out / "truth", ignore_errors=True)
    run_config = {"out": str(out), "data": data, "clients": args.clients, "rounds": args.rounds,
                  "batch-size": args.batch_size, "lr": float(args.lr), "local-steps": args.local_steps,
                  "width": args.width, "activation": args.activation, "n-classes": int(y.max()) + 1,
                  "seed": args.seed, "max-time": float(args.max_time), "report-batch-size": not args.no_batch_size,
                  "defence": args.defence, "clipping-norm": float(args.clipping_norm),
                  "noise-multiplier": float(args.noise_multiplier), "dp-epsilon": float(args.dp_epsilon),
                  "dp-delta": float(args.dp_delta), "secagg-max-weight": float(args.secagg_max_weight)}
    write_app(out / "app", run_config)
    leakage = out / "leakage.jsonl"
    with LocalFederation(out, args.clients, startup_timeout=min(60.0, args.timeout)) as federation, \
            tqdm(total=args.rounds if args.defence == "secagg" else args.clients * args.rounds,
                 desc="aggregates audited" if args.defence == "secagg" else "client updates audited",
                 disable=not args.progress) as bar:
        def count_records():
            done = len(leakage.read_text().splitlines()) if leakage.exists() else 0
            if done != bar.n:
                bar.update(done - bar.n)

        t_run = time.monotonic()
        federation.run(out / "app", timeout=max(1.0, args.timeout - (t_run - t0)), on_poll=count_records)
        count_records()
        timings = {"superlink_ready_s": federation.superlink_ready_s, "flwr_run_s": time.monotonic() - t_run}
    if not (out / "server-done.json").exists():
        raise RuntimeError(f"the ServerApp did not finish; see {out / 'logs'} and {out / 'flwr-home'}")
    records = [json.loads(line) for line in leakage.read_text().splitlines() if line.strip()]
    timings["total_s"] = time.monotonic() - t0
    return records, timings


def cmd_flower_demo(args):
    import sys

    try:
        records, timings = run_demo(args)
    except (ImportError, FileNotFoundError, RuntimeError, TimeoutError) as e:  # no traceback for these
        print(f"error: {e}", file=sys.stderr)
        return 1
    import flwr

    print_table(records)
    print(f"wrote {Path(args.out) / 'leakage.jsonl'} ({len(records)} records); Flower {flwr.__version__}, "
          f"{args.clients} SuperNodes + 1 SuperLink on loopback: SuperLink up in {timings['superlink_ready_s']:.1f} s, "
          f"'flwr run' (SuperNodes' start, {args.rounds} rounds) {timings['flwr_run_s']:.1f} s, "
          f"{timings['total_s']:.1f} s in all")
    return 0


def add_parser(sub):
    """Register ``gradinv flower-demo`` on the CLI's subparsers."""
    f = sub.add_parser("flower-demo", help="a Flower federation on loopback whose FedAvg server audits every update")
    f.add_argument("--clients", type=int, default=3, help="SuperNodes (default: 3)")
    f.add_argument("--rounds", type=int, default=2, help="federated rounds (default: 2)")
    f.add_argument("--batch-size", type=int, default=12, help="samples per client per round (default: 12)")
    f.add_argument("--local-steps", type=int, default=1,
                   help="SGD steps per round on the batch: 1 = FedSGD (exact), more = approximate mode")
    f.add_argument("--lr", type=float, default=0.01, help="clients' learning rate (default: 0.01)")
    f.add_argument("--width", type=int, default=128, help="hidden units of the MLP (default: 128)")
    f.add_argument("--activation", choices=("relu", "tanh"), default="relu",
                   help="hidden activation; tanh has no exact zeros and is refused by the audit")
    f.add_argument("--no-batch-size", action="store_true", help="clients withhold their batch size")
    f.add_argument("--defence", choices=DEFENCES, default="none",
                   help="Flower's own defence: 'clipping' = fixedclipping_mod on the clients and "
                        "DifferentialPrivacyClientSideFixedClipping around FedAvg (central DP); "
                        "'local-dp' = LocalDpMod on the clients; 'secagg' = SecAgg+ (secaggplus_mod and "
                        "SecAggPlusWorkflow): the server audits each round's aggregate (default: none)")
    f.add_argument("--clipping-norm", type=float, default=0.01,
                   help="C of both defences (default 0.01: the demo's updates measure 0.016-0.022, so every one is "
                        "clipped)")
    f.add_argument("--noise-multiplier", type=float, default=1.0,
                   help="z of the central DP wrapper: noise of std z·C/K on the aggregate (default: 1)")
    f.add_argument("--dp-epsilon", type=float, default=1.0, help="ε per round of LocalDpMod (default: 1)")
    f.add_argument("--dp-delta", type=float, default=1e-5, help="δ of LocalDpMod and of every ε reported")
    f.add_argument("--secagg-max-weight", type=float, default=1000.0,
                   help="max_weight of SecAggPlusWorkflow: clients scale their parameters by num-examples/max_weight "
                        "before quantising them (default: Flower's, 1000)")
    f.add_argument("--data", type=Path, help=".npz with x (N, ...) and y (N,) (default: scikit-learn's digits)")
    f.add_argument("--out", type=Path, default=Path("flower-demo"), help="output folder (default: flower-demo)")
    f.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    f.add_argument("--max-time", type=float, default=60.0, help="time bound of one inversion, seconds")
    f.add_argument("--timeout", type=float, default=900.0, help="bound on the whole demo, seconds (default: 900)")
    f.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    f.add_argument("-v", "--verbose", action="count", default=0, help="show warnings")
    f.set_defaults(func=cmd_flower_demo)
