"""``gradinv audit``: the command line of :func:`gradinv.audit.run_audit`."""

import sys
from pathlib import Path


def add_parser(sub):
    """Register ``audit`` on the ``gradinv`` subparsers."""
    a = sub.add_parser("audit", help="defence audit of your model and data: attack a grid of batch sizes, DP "
                       "noise and local steps on Dask; write results.csv and report.html")
    a.add_argument("--model-factory", required=True, help="'module:function' building your nn.Module (e.g. "
                   "examples.audit_model:make_model); importable on every worker")
    a.add_argument("--state", type=Path, help="the model's state_dict (.pt weights_only, .npz, .safetensors); "
                   "default: the factory's initial parameters")
    a.add_argument("--data", type=Path, required=True, help=".npz with 'x' (inputs as the model takes them) and "
                   "'y' (integer labels)")
    a.add_argument("--batch-sizes", type=int, nargs="+", required=True, metavar="B")
    a.add_argument("--noise-multipliers", type=float, nargs="+", default=[0.0], metavar="SIGMA",
                   help="DP-SGD noise multipliers σ (0: no DP; default: 0)")
    a.add_argument("--local-steps", type=int, nargs="+", default=[1], metavar="E",
                   help="local SGD steps per round (1: one gradient; default: 1)")
    a.add_argument("--seeds", type=int, default=1, metavar="N", help="batches drawn per cell, seeds 0..N-1")
    a.add_argument("--layer", nargs="+", metavar="NAME",
                   help="the Linear → ReLU layers to attack (default: every one; the report names the most exposed)")
    a.add_argument("--max-grad-norm", type=float, default=1.0, help="DP-SGD clipping norm C (default: 1.0)")
    a.add_argument("--lr", type=float, default=0.01, help="local learning rate η for E > 1 (default: 0.01)")
    a.add_argument("--max-time", type=float, default=60.0, help="time bound of each cell's attack, s (default: 60)")
    a.add_argument("--delta", type=float, default=1e-5, help="δ of the (ε, δ) the report gives per σ (default: 1e-5)")
    a.add_argument("--rounds", type=int, default=1, help="rounds a client takes part in, for its ε (default: 1)")
    a.add_argument("--scheduler", help="address of a running Dask scheduler, tcp://HOST:PORT "
                   "(default: a LocalCluster on this machine)")
    a.add_argument("--workers", type=int, default=None, help="LocalCluster worker processes (default: cores)")
    a.add_argument("--out", type=Path, required=True, help="folder for results.csv, report.html (resumed if present)")
    a.add_argument("-v", "--verbose", action="count", default=0, help="show this command's warnings (a cell's are not: its row says "
                   "what happened)")
    a.set_defaults(func=cmd_audit)


def cmd_audit(args):
    from .run import run_audit

    s = run_audit(args.model_factory, args.data, args.out, batch_sizes=args.batch_sizes,
                  noise_multipliers=args.noise_multipliers, local_steps=args.local_steps, n_seeds=args.seeds,
                  state=args.state, layers=args.layer, max_grad_norm=args.max_grad_norm, lr=args.lr,
                  max_time=args.max_time, scheduler=args.scheduler, n_workers=args.workers, delta=args.delta,
                  rounds=args.rounds)
    print(f"{s.n_cells} cells: {s.n_computed} computed, {s.n_skipped} already in {s.out_dir / 'results.csv'}; "
          f"{s.wall_time_s:.1f} s; wrote {s.report}")
    for e in s.errors:
        print(f"cell failed (not written; a rerun retries it): {e}", file=sys.stderr)
    return 1 if s.errors else 0
