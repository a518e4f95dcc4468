"""False-certificate fuzz: perturbed gradients, wrong weights, duplicates, noise; count the
certified samples that are not the client's (issue 21).  That count must be 0.

Each trial takes a zoo client (:data:`gradinv.cases.ZOO`, one mean cross-entropy step, every
parameter's gradient sent), perturbs what the server receives or knows (:data:`PERTURBATIONS`),
and attacks it as a user would, ``attack_model(server_model, gradients)`` with no mode flag
(layer certificate, then the end-to-end check).  A certified sample is *false* when it is not
within the exact threshold (relative error 1e-6) of any of the client's inputs of the attacked
layer (the truth: the batch the client actually used, duplicates included).

Per trial it records the final certificates and the layer-level ones (``res.layer_exact``, what
:func:`gradinv.invert_layer` alone would report).

    OMP_NUM_THREADS=1 python benchmarks/false_certificates.py --seeds 2 --out docs/false_certificates
    python benchmarks/false_certificates.py --quick --out /tmp/fc
    python benchmarks/false_certificates.py --report --out docs/false_certificates   # tables from the rows

One row per trial is appended to ``OUT.jsonl`` as it ends; a rerun skips the trials already there.
"""

import argparse
import copy
import datetime
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from gradinv import GradientError
from gradinv.metrics import evaluate
from gradinv.models import attack_model
from gradinv.cases import ZOO, model_inputs, layer_gradient, make_client, parameter_gradients

sys.path.insert(0, str(Path(__file__).parent))
from _resumable import append_row, done_keys, read_rows  # noqa: E402

KEY = ("kind", "b", "width", "seed", "how", "size")
"""A trial of the grid: a row of ``OUT.jsonl`` with these values is not run again (each trial is
bounded by ``--max-time``)."""

PERTURBATIONS = {
    "none": [0.0],
    "noise": [1e-12, 1e-10, 1e-8, 1e-6],            # Gaussian on dL/dW, relative to max |dL/dW|
    "dp_noise": [1e-3, 1e-1, 1.0, 10.0],            # Gaussian on every gradient, × zero tolerance 1e-9 × max |g|
    "wrong_weight": [1e-8, 1e-6, 1e-4, 1e-2],       # the server's W off by this, relative
    "wrong_bias": [1e-8, 1e-6, 1e-4, 1e-2],         # the server's b off by this, relative to its spread
    "row_zeroed": [0.0],                            # one live row of dL/dW and dL/db zeroed
    "row_scaled": [1e-6, 1e-3, 1e-1],               # one row of dL/dW and dL/db scaled by 1 + size
    "bias_scaled": [1e-6, 1e-4, 1e-2, 1e-1],        # dL/db × (1 + size): consistent with X/(1 + size)
    "bias_in_span": [1e-6, 1e-4, 1e-2],             # dL/db + size·‖dL/db‖·(dL/dZ r): per-sample scales off
    "bias_off_span": [1e-8, 1e-4],                  # dL/db + size·‖dL/db‖·(random vector)
    "near_duplicate": [1e-6, 1e-4, 1e-2],           # x₁ = x₀ + size·‖x₀‖·noise, same label
    "duplicate": [0.0],                             # x₁ = x₀, same label
    "rank_deficient": [0.0],                        # x₂ = x₀ + x₁ (the images)
}


def _client_step(model, layer_name, images, labels, architecture):
    """The client's gradients for a batch of images: (attacked-layer inputs, {name: gradient})."""
    x = model_inputs(images, architecture, next(model.parameters()).dtype)
    X = layer_gradient(model, layer_name, x, labels)[0]
    return X, parameter_gradients(model)


def perturb(v, how, size, rng):
    """(server's model, gradients received, the client's true attacked-layer inputs) for one trial."""
    model, grads, truth = v.model, {k: g.clone() for k, g in v.gradients.items()}, v.inputs
    w, b = f"{v.layer_name}.weight", f"{v.layer_name}.bias"
    gW, gb = grads[w], grads[b]
    live = np.flatnonzero(gW.abs().sum(1).numpy() > 0)
    noise = lambda t: torch.as_tensor(rng.standard_normal(tuple(t.shape)), dtype=t.dtype)  # noqa: E731
    if how == "noise":
        grads[w] = gW + size * gW.abs().max() * noise(gW)
    elif how == "dp_noise":
        grads = {k: g + size * 1e-9 * g.abs().max() * noise(g) for k, g in grads.items()}
    elif how in ("wrong_weight", "wrong_bias"):
        model = copy.deepcopy(v.model)
        p = model.get_submodule(v.layer_name).weight if how == "wrong_weight" else model.get_submodule(v.layer_name).bias
        with torch.no_grad():
            p += size * (p.abs().max() if how == "wrong_weight" else p.std()) * noise(p)
    elif how in ("row_zeroed", "row_scaled"):
        k = rng.choice(live)
        factor = 0.0 if how == "row_zeroed" else 1 + size
        grads[w][k] *= factor
        grads[b][k] *= factor
    elif how == "bias_scaled":
        grads[b] = gb * (1 + size)
    elif how == "bias_in_span":
        delta = v.grad_Z @ torch.as_tensor(rng.standard_normal(v.batch_size), dtype=gb.dtype)
        grads[b] = gb + size * gb.norm() * delta / delta.norm()
    elif how == "bias_off_span":
        delta = noise(gb)
        grads[b] = gb + size * gb.norm() * delta / delta.norm()
    elif how in ("near_duplicate", "duplicate", "rank_deficient"):
        images, labels = v.images.copy(), v.labels.clone()
        if how == "rank_deficient":
            images[2] = images[0] + images[1]
        else:
            step = rng.standard_normal(images[0].shape)
            images[1] = images[0] + size * np.linalg.norm(images[0]) * step / np.linalg.norm(step)
            labels[1] = labels[0]
        model = copy.deepcopy(v.model)
        truth, grads = _client_step(model, v.layer_name, images, labels, v.spec.architecture)
    elif how != "none":
        raise ValueError(f"unknown perturbation {how!r}; choose one of {tuple(PERTURBATIONS)}")
    return model, grads, truth


def trial(v, how, size, seed, *, max_time=5.0):
    """Attack one perturbed client; the row of counts (see the module doc)."""
    model, grads, truth = perturb(v, how, size, np.random.default_rng(seed))
    row = dict(kind=v.kind, b=v.batch_size, how=how, size=size, seed=seed)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res, _ = attack_model(model, grads, random_state=seed, max_time=max_time)
    except GradientError as e:  # a clear refusal is a right answer
        return {**row, "error": str(e)[:120], "n": 0, "exact": 0, "certified": 0, "false_certificates": 0,
                "layer_certified": 0, "layer_false_certificates": 0, "mode": "refused", "time": time.perf_counter() - start}
    final = evaluate(truth, res.inputs, res.exact)
    layer = evaluate(truth, res.inputs, res.layer_exact)
    return {**row, "n": final["n"], "exact": final["exact"], "certified": final["certified"],
            "false_certificates": final["false_certificates"], "layer_certified": layer["certified"],
            "layer_false_certificates": layer["false_certificates"], "mode": res.mode,
            "end_to_end": res.end_to_end.split(":")[0], "time": time.perf_counter() - start}


def summarise(rows):
    """Per perturbation: trials, refusals, approximate, certified, false (final and layer-level)."""
    out = {}
    for r in rows:
        s = out.setdefault(r["how"], dict(trials=0, refused=0, approximate=0, exact=0, certified=0,
                                          false_certificates=0, layer_certified=0, layer_false_certificates=0))
        s["trials"] += 1
        s["refused"] += r["mode"] == "refused"
        s["approximate"] += r["mode"] == "approximate"
        for k in ("exact", "certified", "false_certificates", "layer_certified", "layer_false_certificates"):
            s[k] += r[k]
    return out


def write(out, rows, meta):
    """``out``.json (meta, summary, rows) and ``out``.md (the summary table)."""
    summary = summarise(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(dict(meta=meta, summary=summary, rows=rows), indent=1))
    head = ["perturbation", "trials", "refused", "approximate", "exact", "certified", "false", "layer certified",
            "layer false"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for how, c in summary.items():
        lines.append(f"| {how} | {c['trials']} | {c['refused']} | {c['approximate']} | {c['exact']} | "
                     f"{c['certified']} | {c['false_certificates']} | {c['layer_certified']} | "
                     f"{c['layer_false_certificates']} |")
    total = sum(c["false_certificates"] for c in summary.values())
    layer = sum(c["layer_false_certificates"] for c in summary.values())
    lines.append(f"\n{len(rows)} trials: {total} false certificates ({layer} at the layer level alone); "
                 f"{meta['total_time']:.0f} s")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kinds", nargs="+", default=list(ZOO), help="zoo kinds (default: all)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--width", type=int, default=200)
    p.add_argument("--seeds", type=int, default=1, help="clients per kind")
    p.add_argument("--max-time", type=float, default=5.0, help="time bound of each search, seconds")
    p.add_argument("--perturbations", nargs="+", default=list(PERTURBATIONS), choices=list(PERTURBATIONS),
                   help="which perturbations (default: all)")
    p.add_argument("--quick", action="store_true", help="two kinds, one seed, one size each (a smoke run)")
    p.add_argument("--report", action="store_true", help="only write the tables from the rows already in OUT.jsonl")
    p.add_argument("--out", type=Path, required=True,
                   help="output stem: one row per trial in .jsonl (a rerun skips the trials already there), "
                        "tables in .json and .md from every row of it")
    args = p.parse_args(argv)
    kinds = ["mlp2_digits", "mlp3_photos"] if args.quick else args.kinds
    path, start = args.out.with_suffix(".jsonl"), time.perf_counter()
    done, warm = done_keys(path, KEY), False
    meta = dict(date=datetime.date.today().isoformat(), command="python benchmarks/false_certificates.py "
                + " ".join(argv if argv is not None else sys.argv[1:]), host=platform.node(), kinds=kinds,
                batch_size=args.batch_size, width=args.width, seeds=args.seeds, max_time=args.max_time)
    for kind in [] if args.report else kinds:
        for seed in range(args.seeds):
            todo = [(how, size) for how in args.perturbations
                    for size in (PERTURBATIONS[how][:1] if args.quick else PERTURBATIONS[how])
                    if (kind, args.batch_size, args.width, seed, how, size) not in done]
            if not todo:
                continue
            v = make_client(kind, batch_size=args.batch_size, width=args.width, random_state=seed)
            if not warm:  # warm-up: the first search of a process pays for torch's start-up, not the attack's
                trial(v, "none", 0.0, seed, max_time=60.0)
                warm = True
            for how, size in todo:
                r = {**trial(v, how, size, seed, max_time=args.max_time), "width": args.width}
                append_row(path, r)
                print(f"{kind} seed {seed} {how} {size:g}: {r['mode']}, {r['certified']}/{r['n']} certified, "
                      f"{r['false_certificates']} false (layer {r['layer_false_certificates']}), "
                      f"{r['time']:.1f} s", flush=True)
    rows = read_rows(path)
    lines = write(args.out, rows, {**meta, "total_time": time.perf_counter() - start})
    print("\n".join(lines))
    return rows


if __name__ == "__main__":
    main()
