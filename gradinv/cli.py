"""Command line: ``gradinv demo`` and ``gradinv attack``."""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from ._table import print_table
from .pipeline import SOLVERS, invert_layer
from .cases.victims import KINDS


def save_grid(path, originals, reconstructions, *, n_show=10, title=""):
    """PNG grid: originals (top row) above their reconstructions (bottom row); images (N, H, W, C) in [0, 1]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(n_show, len(originals))
    fig, axes = plt.subplots(2, n, figsize=(1.2 * n, 2.8), squeeze=False)
    for i in range(n):
        for row, img in enumerate((originals[i], reconstructions[i])):
            ax = axes[row, i]
            ax.imshow(np.clip(img.squeeze(), 0, 1), cmap="gray" if img.shape[-1] == 1 else None)
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("original")
    axes[1, 0].set_ylabel("recovered")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cmd_demo(args):
    from .cases.data import channel_statistics
    from .metrics import evaluate
    from .cases.victims import make_victim

    t0 = time.perf_counter()
    v = make_victim(args.victim, batch_size=args.batch_size, width=args.width, random_state=args.seed)
    res = invert_layer(v.grad_W.numpy(), v.grad_b.numpy(), solver=args.solver, random_state=args.seed,
                       max_time=args.max_time, verbose=args.verbose, **v.attack_kwargs())
    shape = v.images.shape[1:]
    ev = evaluate(v.inputs.numpy(), res.inputs, res.exact, image_shape=shape)
    rows, cols = ev["pairs"]
    recon = np.asarray(res.inputs)[cols].reshape(-1, *shape)
    originals = v.images[rows]
    if args.victim != "cross_entropy_raw":  # undo the standardisation for display
        mean, std = channel_statistics("photos", shape[0])
        recon, originals = recon * std + mean, originals * std + mean
    save_grid(args.output, originals, recon,
              title=f"{args.victim}, b={args.batch_size}, m={args.width}: {ev['exact']}/{ev['n']} exact")
    print_table(
        [[args.victim, args.batch_size, args.width, res.solver, f"{ev['exact']}/{ev['n']}",
          f"{ev['certified']}/{ev['n']}", f"{ev['psnr']:.1f}", f"{ev['ssim']:.3f}", f"{res.time:.1f}"]],
        ["victim", "b", "m", "solver", "exact", "certified", "PSNR dB", "SSIM", "time s"],
    )
    print(f"wrote {args.output} (top: originals, bottom: reconstructions); total {time.perf_counter() - t0:.1f} s")
    return 0


def _invert_files(args):
    """The InversionResult for the files named on the command line (exit code 2 on a bad combination)."""
    from .io import load_gradient, load_tensors

    args.grads = args.grads or args.grads_option
    if args.grads is None:
        raise ValueError("name the gradient file (positional GRADS or --grads)")
    if args.model or args.model_factory:
        import torch

        from .factory import build_model
        from .models import attack_model, attack_state_dict

        grads = {k: torch.as_tensor(v) for k, v in load_tensors(args.grads).items()}
        options = dict(layer=args.layer, batch_size=args.batch_size, solver=args.solver, random_state=args.seed,
                       max_time=args.max_time, approximate=args.approximate, verbose=args.verbose)
        if args.model_factory:
            state_path = args.state or args.model
            if not state_path:
                raise ValueError("--model-factory needs --state (the model's parameters)")
            model = build_model(args.model_factory, load_tensors(state_path))
            res, layer = attack_model(model, grads, **options)
            description = layer.reason
        else:
            state = {k: torch.as_tensor(v) for k, v in load_tensors(args.model).items()}
            res, description = attack_state_dict(state, grads, **options)
        print(f"attacked layer: {description}")
        return res
    grad_W, grad_b = load_gradient(args.grads, layer=args.layer)
    weight = bias = None
    if args.weights:
        params = load_tensors(args.weights)
        prefix = f"{args.layer}." if args.layer else ""
        if prefix + "weight" not in params or prefix + "bias" not in params:
            raise ValueError(f"{args.weights} has no '{prefix}weight'/'{prefix}bias' entries")
        weight, bias = params[prefix + "weight"], params[prefix + "bias"]
    else:
        print("note: without --weights no sample can be certified exact", file=sys.stderr)
    return invert_layer(grad_W, grad_b, batch_size=args.batch_size, solver=args.solver, weight=weight, bias=bias,
                        random_state=args.seed, max_time=args.max_time, approximate=args.approximate,
                        verbose=args.verbose)


def cmd_attack(args):
    from .io import save_batch

    res = _invert_files(args)
    print(f"search: {res.search_reason}")
    extra = {} if res.labels is None else dict(labels=res.labels, label_margin=res.label_margin)
    save_batch(args.output, res.inputs, res.exact, sparse=res.sparse, grad_Z=res.grad_Z, **extra)
    mode = f" (approximate mode, nothing is certified: {res.mode_reason})" if res.approximate else ""
    print(f"batch size {res.batch_size}; {int(res.exact.sum())} certified exact, {int(res.sparse.sum())} exact sparse "
          f"columns{mode}; {res.time:.1f} s; wrote {args.output}")
    print(res.describe())
    if res.n_dependent_inputs:
        print(f"{res.n_dependent_inputs} input(s) duplicate or combine others (dL/dW has rank {res.batch_size}): "
              "only the distinct inputs are recovered")
    if res.labels is not None:
        print("labels: " + " ".join(map(str, res.labels)))
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="gradinv", description="Exact gradient inversion of linear+ReLU layers.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("--solver", choices=SOLVERS, default=None,
                        help="direction search (default: the strongest for what is known: informed with the classifier, "
                             "cells with the layer's weights, logcosh from the gradient alone)")
        sp.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
        sp.add_argument("--max-time", type=float, default=None,
                        help="cap on the search, seconds (default: the informed and cell searches run until no new "
                             "column has come for max(60, twice the longest wait so far) rounds; the others 60 s)")
        sp.add_argument("-v", "--verbose", action="count", default=0, help="progress bars and solver messages")

    d = sub.add_parser("demo", help="attack a simulated client on embedded images, write a PNG grid")
    d.add_argument("--victim", choices=KINDS, default="cross_entropy")
    d.add_argument("--batch-size", type=int, default=20)
    d.add_argument("--width", type=int, default=1000, help="neurons m of the attacked layer")
    d.add_argument("-o", "--output", type=Path, default=Path("gradinv-demo.png"))
    common(d)
    d.set_defaults(func=cmd_demo)

    a = sub.add_parser("attack", help="invert a gradient file (.npz, .pt, .safetensors)")
    a.add_argument("grads", type=Path, nargs="?", help="file with grad_W and grad_b (or <layer>.weight/.bias with "
                   "--layer, or every parameter's gradient with --model)")
    a.add_argument("--grads", dest="grads_option", type=Path, help="the same as the positional GRADS")
    a.add_argument("--model", type=Path, help="the model's state_dict (.pt, weights_only); without --model-factory "
                   "the Linear layers are read from its keys and the ReLU after the attacked one is assumed")
    a.add_argument("-o", "--output", type=Path, required=True, help="output .npz (inputs, exact, sparse, grad_Z)")
    a.add_argument("--weights", type=Path, help="the layer's parameters (weight, bias), enables certificates")
    a.add_argument("--layer", help="layer name prefix in the files, e.g. 'fc1'")
    a.add_argument("--model-factory", help="'module:function' building your architecture (e.g. "
                   "examples.train_client:make_model); the first Linear → ReLU layer is attacked unless --layer")
    a.add_argument("--state", type=Path, help="the model's state_dict (.pt, weights_only), with --model-factory")
    a.add_argument("--batch-size", type=int, default=None, help="b (default: from the singular values)")
    a.add_argument("--approximate", action="store_const", const=True, default=None,
                   help="force the mode for DP-SGD or FedAvg updates (default: detected from the update): looser "
                        "tolerances, no certificates")
    common(a)
    a.set_defaults(func=cmd_attack)

    from .flower.demo import add_parser as add_flower_demo  # the implementation lives in gradinv/flower

    add_flower_demo(sub)

    from .audit.cli import add_parser as add_audit  # the implementation lives in gradinv/audit

    add_audit(sub)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if not args.verbose:
        warnings.filterwarnings("ignore", category=UserWarning)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError) as e:  # bad input or file: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
