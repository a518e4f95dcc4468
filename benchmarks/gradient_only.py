"""Gradient-only inversion: what the attack recovers from dL/dW, dL/db and the attacked layer's W, b alone.

SPEAR++'s knowledge: nothing downstream of the attacked layer is given to the attack
(``invert_layer(gW, gb, weight=W, bias=b, solver=...)``).  Victims:

* ``random_upstream``: :func:`gradinv.make_victim` (loss ⟨R, ReLU(Z)⟩, R Gaussian);
* ``mlp3`` / ``mlp6``: cross-entropy MLPs with 3 / 6 Linear layers (3072 → m → … → m → 10, ReLU
  between, at initialisation) on standardised 32×32×3 crops; the first Linear is attacked: the zoo's
  "mlp3_photos" / "mlp6_photos" (:func:`gradinv.victims.make_client`).

Every (victim, b, seed) gradient is attacked by each requested solver; reported: the exact fraction
(:func:`gradinv.metrics.evaluate`), certified fraction, false certificates, columns found and time.

    OMP_NUM_THREADS=1 python benchmarks/gradient_only.py --victims random_upstream --batch-sizes 50 100 \\
        --solvers cells spear++ --seeds 0 1 --max-time 240 --out docs/gradient_only_ru
"""

import argparse
import json
import time
from pathlib import Path


from gradinv import GradientError, invert_layer, make_victim
from gradinv import victims as victims_module
from gradinv.metrics import evaluate

DEPTHS = ("mlp3", "mlp6")


def make_deep_client(kind, batch_size, width, seed):
    """(inputs, dL/dW, dL/db, W, b) of the first Linear of the zoo's ``kind``_photos client."""
    v = victims_module.make_client(f"{kind}_photos", batch_size=batch_size, width=width, random_state=seed)
    return v.inputs, v.grad_W, v.grad_b, v.layer.weight.detach(), v.layer.bias.detach()


def client(kind, batch_size, width, seed):
    if kind == "random_upstream":
        v = make_victim(kind, batch_size=batch_size, width=width, random_state=seed)
        return v.inputs, v.grad_W, v.grad_b, v.layer.weight.detach(), v.layer.bias.detach()
    return make_deep_client(kind, batch_size, width, seed)


def run(args):
    rows = []
    for kind in args.victims:
        for b in args.batch_sizes:
            for seed in args.seeds:
                X, gW, gb, W, bias = client(kind, b, args.width, seed)
                for solver in args.solvers:
                    t0 = time.perf_counter()
                    row = dict(victim=kind, m=args.width, b=b, seed=seed, solver=solver, max_time=args.max_time)
                    try:
                        r = invert_layer(gW, gb, weight=W, bias=bias, solver=solver, batch_size=b,
                                         random_state=seed, max_time=args.max_time)
                    except GradientError as err:  # no exact column in the bound: a failed row, not a crash
                        row.update(exact=0.0, certified=0.0, false_certificates=0, columns_found=0,
                                   time=time.perf_counter() - t0, error=str(err))
                    else:
                        e = evaluate(X, r.inputs, r.exact)
                        row.update(exact=e["exact"] / b, certified=e["certified"] / b,
                                   false_certificates=e["false_certificates"], columns_found=int(r.sparse.sum()),
                                   time=time.perf_counter() - t0)
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    return rows


def write(rows, out, command):
    Path(out).with_suffix(".json").write_text(json.dumps(rows, indent=1))
    lines = [f"Command: `{command}`", "", "| victim | m | b | seed | solver | exact | certified | false cert. | "
             "columns | time (s) | bound (s) |", "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['victim']} | {r['m']} | {r['b']} | {r['seed']} | {r['solver']} | {r['exact']:.2f} | "
                     f"{r['certified']:.2f} | {r['false_certificates']} | {r['columns_found']} | {r['time']:.1f} | "
                     f"{r['max_time']:.0f} |")
    Path(out).with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--victims", nargs="+", default=["random_upstream", "mlp3", "mlp6"],
                   choices=["random_upstream", *DEPTHS])
    p.add_argument("--solvers", nargs="+", default=["cells", "spear++"])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[20, 50])
    p.add_argument("--width", type=int, default=1000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--max-time", type=float, default=120.0)
    p.add_argument("--out", default=None, help="write OUT.md and OUT.json")
    args = p.parse_args(argv)
    rows = run(args)
    if args.out:
        import sys
        write(rows, args.out, "python " + " ".join(["benchmarks/gradient_only.py", *sys.argv[1:]]))
    return rows


if __name__ == "__main__":
    main()
