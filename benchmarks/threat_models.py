"""Threat-model benchmark: the attack against what real clients share (issue 6).

Victim: the cross-entropy client (10 classes, standardised 32×32 photo crops, MLP at
initialisation, width m, float64 unless said), attacked with the informed solver.

* ``dp``: one DP-SGD step through Opacus (per-sample clipping to C, noise σC on the sum, /B),
  σ ∈ ``--noise-multipliers``; σ = 0 in exact mode, σ > 0 in approximate mode (no certificates).
* ``fedavg``: θ₀ − θ_E after E local epochs of SGD (mini-batch, learning rate η), inverted as the
  pseudo-gradient (θ₀ − θ_E)/η with the server's θ₀, in exact and in approximate mode.
* ``float32``: the float32 client at ``--float32-batch``.
* ``batch_size``: the batch size read from the singular-value gap, over noiseless cases.
* ``labels``: a single-class batch and a batch with duplicated inputs (the warning, what is recovered).
* ``zoo``: every kind of the client zoo (``gradinv.cases.ZOO``, ``--zoo`` to choose) over
  ``--zoo-seeds`` seeds: one Opacus DP-SGD step at σ = ``--zoo-sigma`` (C = ``--max-grad-norm``)
  and ``--zoo-steps`` full-batch FedAvg steps at η = ``--zoo-lr`` (``--zoo-threats`` picks), every parameter's update handed
  to ``attack_model`` as a user would: with no mode flag and no batch size (the attack reads both
  from the update; ``--zoo-hints`` passes ``approximate=True`` and the true b).  Resumable: each
  cell runs capped in a child process and is appended to ``--out``.jsonl as it ends; a rerun skips
  the cells there.  The worst mean PSNR over kinds and seeds per threat is printed first, with
  the rows whose batch size was read right.

Per row: exact samples (relative error ≤ 1e-6, 1e-4 in float32), certified, false
certificates, mean PSNR (dB, matched pairs), label accuracy, time.  Writes JSON, Markdown and a
PNG of PSNR vs σ.

    python benchmarks/threat_models.py --out docs/threat_models
    python benchmarks/threat_models.py --quick --out /tmp/tm
    python benchmarks/threat_models.py --sections zoo --zoo-seeds 0 1 2 --out docs/threat_models_zoo_read
"""

import argparse
import datetime
import json
import os
import platform
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from gradinv import GradientError, invert_layer
from gradinv.cases import (ZOO, dp_sgd_gradient, dp_sgd_gradients, fedavg_pseudo_gradients, fedavg_update,
                           layer_gradient, make_client, make_victim)
from gradinv.factorize import DependentInputsWarning, GradientFactorization, stack_gradient
from gradinv.metrics import distinct_inputs, evaluate
from gradinv.models import attack_model

sys.path.insert(0, str(Path(__file__).parent))
from _resumable import append_row, done_keys, read_rows, run_capped  # noqa: E402


def scored_row(base, attack, inputs, labels, dtype="float64"):
    """``base`` with the score of ``attack()`` (an InversionResult) against the true ``inputs`` and
    ``labels``; a :class:`GradientError` is a failed row."""
    try:
        res = attack()
    except GradientError as e:
        return dict(base, exact=0, certified=0, false_certificates=0, psnr=float("nan"), label_accuracy=float("nan"),
                    time=float("nan"), solver="", error=str(e)[:80])
    ev = evaluate(inputs, res.inputs, res.exact, dtype=dtype)
    rows, cols = ev["pairs"]
    return dict(base, exact=ev["exact"], certified=ev["certified"], false_certificates=ev["false_certificates"],
                psnr=ev["psnr"], label_accuracy=float(np.mean(res.labels[cols] == labels.numpy()[rows])),
                time=res.time, solver=res.solver)


def attack_row(victim, grad_W, grad_b, *, threat, setting, approximate, args, labels=None, dtype="float64"):
    """Attack (grad_W, grad_b) with the victim's knowledge; score against the victim's inputs."""
    b = victim.batch_size
    base = dict(threat=threat, setting=setting, mode="approximate" if approximate else "exact", b=b)
    return scored_row(base, lambda: invert_layer(grad_W, grad_b, batch_size=b if approximate else None, random_state=0,
                                                 max_time=args.max_time, approximate=approximate,
                                                 **victim.knowledge()),
                      victim.inputs, victim.labels if labels is None else labels, dtype)


def dp_rows(args):
    v = make_victim("cross_entropy", batch_size=args.batch_size, width=args.width, random_state=0)
    out = []
    for sigma in args.noise_multipliers:
        gW, gb = dp_sgd_gradient(v.model, v.layer_name, v.inputs, v.labels, noise_multiplier=sigma,
                                 max_grad_norm=args.max_grad_norm, random_state=0)
        row = attack_row(v, gW, gb, threat="dp", setting=f"sigma={sigma:g}, C={args.max_grad_norm:g}",
                         approximate=sigma > 0, args=args)
        row["noise_multiplier"] = sigma
        out.append(row)
        print(json.dumps(row), flush=True)
    return out


def fedavg_rows(args):
    v = make_victim("cross_entropy", batch_size=args.batch_size, width=args.width, random_state=0)
    out = []
    for epochs in args.epochs:
        for minibatch in args.minibatches:
            for lr in args.lrs:
                gW, gb = fedavg_update(v.model, v.layer_name, v.inputs, v.labels, epochs=epochs,
                                       minibatch_size=minibatch, lr=lr, random_state=0)
                for approximate in (False, True):
                    row = attack_row(v, gW, gb, threat="fedavg", setting=f"E={epochs}, b_mini={minibatch}, lr={lr:g}",
                                     approximate=approximate, args=args)
                    out.append(row)
                    print(json.dumps(row), flush=True)
    return out


def float32_rows(args):
    v = make_victim("cross_entropy", batch_size=args.float32_batch, width=args.width, dtype=torch.float32,
                    random_state=0)
    row = attack_row(v, v.grad_W, v.grad_b, threat="float32", setting="float32 client", approximate=False,
                     args=args, dtype="float32")
    print(json.dumps(row), flush=True)
    return [row]


def batch_size_rows(args):
    """Fraction of noiseless clients whose batch size the singular-value gap gives exactly."""
    hits = total = 0
    for dtype in (torch.float64, torch.float32):
        for b in args.estimate_batches:
            for seed in range(args.estimate_seeds):
                v = make_victim("cross_entropy", batch_size=b, width=args.width, dtype=dtype, random_state=seed)
                fact = GradientFactorization()
                fact.fit_transform(stack_gradient(v.grad_W, v.grad_b))
                hits += fact.batch_size_ == b
                total += 1
    row = dict(threat="batch_size", setting=f"b in {args.estimate_batches}, float64+float32, {args.estimate_seeds} seeds",
               mode="exact", b=total, exact=hits, certified=0, false_certificates=0, psnr=float("nan"),
               label_accuracy=float("nan"), time=float("nan"))
    print(json.dumps(row), flush=True)
    return [row]


def label_rows(args):
    """A single-class batch, and a batch whose first input appears three times."""
    v = make_victim("cross_entropy", batch_size=args.batch_size, width=args.width, random_state=0)
    out = []
    one_class = torch.full_like(v.labels, 3)
    X, gW, gb, _ = layer_gradient(v.model, v.layer_name, v.inputs, one_class)
    out.append(attack_row(v, gW, gb, threat="labels", setting="single class", approximate=False, args=args,
                          labels=one_class))
    dup = v.inputs.clone()
    dup[1] = dup[2] = dup[0]
    _, gW, gb, _ = layer_gradient(v.model, v.layer_name, dup, v.labels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DependentInputsWarning)
        res = invert_layer(gW, gb, batch_size=args.batch_size, random_state=0, max_time=args.max_time,
                           **v.knowledge())
    distinct = torch.cat([dup[:1], dup[3:]])
    ev = evaluate(distinct, res.inputs, res.exact)
    out.append(dict(threat="labels", setting=f"input 0 three times: {res.n_dependent_inputs} dependent reported, "
                    f"warned={any(w.category is DependentInputsWarning for w in caught)}", mode="exact",
                    b=len(distinct), exact=ev["exact"], certified=ev["certified"],
                    false_certificates=ev["false_certificates"], psnr=ev["psnr"], label_accuracy=float("nan"),
                    time=res.time))
    for row in out:
        print(json.dumps(row), flush=True)
    return out


ZOO_KEY = ("client", "seed", "threat", "setting", "hints")
"""A cell of the zoo section: a row of its file with these values is not run again."""


def zoo_update(kind, seed, threat, args):
    """The zoo client ``kind`` (seed ``seed``) and the update it sends under ``threat``: one Opacus
    DP-SGD step, or ``--zoo-steps`` full-batch FedAvg steps as a pseudo-gradient."""
    v = make_client(kind, batch_size=args.batch_size, width=args.width, random_state=seed)
    x, y = v.model_inputs, v.labels
    if threat == "dp":
        return v, dp_sgd_gradients(v.model, x, y, noise_multiplier=args.zoo_sigma, max_grad_norm=args.max_grad_norm,
                                   random_state=seed)
    return v, fedavg_pseudo_gradients(v.model, x, y, epochs=args.zoo_steps, lr=args.zoo_lr)


def zoo_cell(kind, seed, threat, setting, args):
    """One row of the zoo section: the update attacked through ``attack_model`` as a user would, with
    no mode flag and no batch size unless ``--zoo-hints`` (then ``approximate=True`` and the true b)."""
    torch.set_default_dtype(torch.float64)
    v, grads = zoo_update(kind, seed, threat, args)
    b = len(v.labels)
    hints = dict(batch_size=b, approximate=True) if args.zoo_hints else {}
    base = dict(client=kind, seed=seed, threat=threat, setting=setting, hints=args.zoo_hints, b=b,
                distinct=len(distinct_inputs(v.inputs)))
    read = {}

    def attack():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            res = attack_model(v.model, grads, max_time=args.max_time, random_state=seed, **hints)[0]
        read.update(mode=res.mode, mode_reason=res.mode_reason[:200],
                    batch_size_read=None if args.zoo_hints else int(res.batch_size))
        return res

    row = scored_row(base, attack, v.inputs, v.labels)
    return {"mode": "", **row, **read}


def zoo_settings(args):
    """{threat: its setting} of the zoo section's threats ``--zoo-threats``."""
    settings = {"dp": f"sigma={args.zoo_sigma:g}, C={args.max_grad_norm:g}",
                "fedavg": f"E={args.zoo_steps}, b_mini={args.batch_size}, lr={args.zoo_lr:g}"}
    return {threat: settings[threat] for threat in args.zoo_threats}


def zoo_rows(args):
    """DP-SGD and FedAvg updates of every zoo client, attacked through ``attack_model`` (module doc).
    Each cell runs capped in a child process and is appended to ``--out``.jsonl at once; cells
    already there are skipped.  Returns every zoo row of the file."""
    path = args.out.with_suffix(".jsonl")
    done = done_keys(path, ZOO_KEY)
    cap = args.zoo_cell_cap or 4 * args.max_time + 120
    for kind in [] if args.report else args.zoo:
        for seed in args.zoo_seeds:
            for threat, setting in zoo_settings(args).items():
                if (kind, seed, threat, setting, args.zoo_hints) in done:
                    continue
                status, row = run_capped(Path(__file__), "zoo_cell", (kind, seed, threat, setting, args), cap)
                if status != "ok":
                    row = dict(client=kind, seed=seed, threat=threat, setting=setting, hints=args.zoo_hints,
                               b=args.batch_size, mode="", exact=0, certified=0, false_certificates=0,
                               psnr=float("nan"), label_accuracy=float("nan"), time=float("nan"), solver="",
                               error=f"cell cap {cap:.0f} s reached" if status == "capped" else row[-300:])
                row.update(command=args.command, date=str(datetime.date.today()))
                append_row(path, row)
                print(json.dumps(row), flush=True)
    return [r for r in read_rows(path) if "client" in r]


def zoo_worst_case(rows):
    """Per threat, setting (and hints given or not) of the zoo rows: the worst mean PSNR over kinds and seeds
    (a failed attack counts as −∞ dB), the kind it falls on, how many rows reach 30 dB, and on how
    many rows the batch size the attack read from the update was the number of distinct inputs (an
    input sent twice is one column of dL/dW)."""
    out = []
    zoo = [r for r in rows if r.get("client", "cross_entropy") != "cross_entropy"]
    for threat, setting, hints in dict.fromkeys((r["threat"], r["setting"], r.get("hints", True)) for r in zoo):
        sub = [r for r in zoo if (r["threat"], r["setting"], r.get("hints", True)) == (threat, setting, hints)]
        psnr = [r["psnr"] if np.isfinite(r["psnr"]) else -np.inf for r in sub]
        worst = sub[int(np.argmin(psnr))]
        read = [r for r in sub if r.get("batch_size_read") is not None]
        out.append(dict(threat=threat, setting=setting, hints=hints, worst_psnr=float(min(psnr)),
                        worst_client=f"{worst['client']} (seed {worst['seed']})",
                        rows_over_30db=sum(p >= 30 for p in psnr), rows=len(sub),
                        batch_size_read_right=sum(r["batch_size_read"] == r.get("distinct", r["b"]) for r in read)
                        if read else None))
    return out


def markdown(rows, header):
    worst = zoo_worst_case(rows)
    lines = []
    if worst:
        lines += [header, "", "Worst case over the zoo's kinds and seeds (mean PSNR of a batch; a failed attack is −∞; "
                  "hints: `approximate=True` and the true batch size passed to `attack_model`, else neither):",
                  "", "| threat | setting | hints | worst_psnr | worst_client | rows ≥ 30 dB | batch size read right |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {w['threat']} | {w['setting']} | {w['hints']} | {w['worst_psnr']:.3g} | {w['worst_client']} | "
                  f"{w['rows_over_30db']} of {w['rows']} | "
                  + (f"{w['batch_size_read_right']} of {w['rows']} |" if w["batch_size_read_right"] is not None
                     else "(given) |") for w in worst]
        lines.append("")
        header = "Every row:"
    cols = ["client", "seed", "threat", "setting", "hints", "mode", "solver", "b", "batch_size_read", "exact", "certified",
            "false_certificates", "psnr", "label_accuracy", "time"]
    lines += [header, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        r = {"client": "cross_entropy", "seed": 0, **r}
        lines.append("| " + " | ".join(f"{r[c]:.3g}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols)
                     + " |")
    return "\n".join(lines) + "\n"


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(r["noise_multiplier"], r["psnr"]) for r in rows if r["threat"] == "dp" and r["noise_multiplier"] > 0]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.semilogx([p[0] for p in pts], [p[1] for p in pts], marker="o")
    ax.set_xlabel("Opacus noise multiplier σ")
    ax.set_ylabel("mean PSNR (dB)")
    ax.set_title("DP-SGD, cross-entropy client", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


SECTIONS = {"dp": dp_rows, "fedavg": fedavg_rows, "float32": float32_rows, "batch_size": batch_size_rows,
            "labels": label_rows, "zoo": zoo_rows}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", nargs="+", default=[k for k in SECTIONS if k != "zoo"], choices=list(SECTIONS),
                   help="default: all but zoo")
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--width", type=int, default=1000)
    p.add_argument("--max-time", type=float, default=30.0, help="bound of one attack, seconds")
    p.add_argument("--noise-multipliers", nargs="+", type=float, default=[0.0, 1e-6, 1e-5, 3e-5, 1e-4])
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--epochs", nargs="+", type=int, default=[1, 5])
    p.add_argument("--minibatches", nargs="+", type=int, default=[20, 10])
    p.add_argument("--lrs", nargs="+", type=float, default=[0.001, 0.01, 0.1])
    p.add_argument("--float32-batch", type=int, default=50)
    p.add_argument("--estimate-batches", nargs="+", type=int, default=[5, 10, 20, 50])
    p.add_argument("--estimate-seeds", type=int, default=5)
    p.add_argument("--zoo", nargs="+", default=list(ZOO), choices=list(ZOO), help="zoo kinds of the zoo section")
    p.add_argument("--zoo-seeds", nargs="+", type=int, default=[0])
    p.add_argument("--zoo-threats", nargs="+", default=["dp", "fedavg"], choices=["dp", "fedavg"],
                   help="zoo section: the updates sent (default both)")
    p.add_argument("--zoo-sigma", type=float, default=1e-5, help="Opacus noise multiplier of the zoo section")
    p.add_argument("--zoo-steps", type=int, default=2, help="full-batch FedAvg steps of the zoo section")
    p.add_argument("--zoo-lr", type=float, default=0.01, help="FedAvg learning rate of the zoo section")
    p.add_argument("--zoo-hints", action="store_true",
                   help="zoo section: pass approximate=True and the true batch size (default: neither, as a user "
                        "who does not know them)")
    p.add_argument("--zoo-cell-cap", type=float, default=None,
                   help="zoo section: wall-clock cap of one cell, seconds (default 4·max-time + 120); a capped cell "
                        "is recorded as failed")
    p.add_argument("--out", type=Path, default=Path("docs/threat_models"),
                   help="output prefix (.json, .md, .png; the zoo section's rows also in .jsonl, resumed)")
    p.add_argument("--report", action="store_true",
                   help="zoo section: only write the tables from the rows already in --out.jsonl")
    p.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.batch_size, args.width, args.max_time, args.float32_batch = 6, 200, 10.0, 6
        args.noise_multipliers, args.epochs, args.minibatches, args.lrs = [0.0, 1e-6], [1], [6], [0.01]
        args.estimate_batches, args.estimate_seeds = [4, 6], 1
        args.zoo = args.zoo if len(args.zoo) < len(ZOO) else ["mlp2_photos"]
    args.command = " ".join(["python benchmarks/threat_models.py", *(argv if argv is not None else sys.argv[1:])])
    torch.set_default_dtype(torch.float64)
    rows = [row for name in args.sections for row in SECTIONS[name](args)]
    commands = list(dict.fromkeys([r["command"] for r in rows if "command" in r] + [args.command] * (not args.report)))
    header = (f"Threat-model benchmark, {datetime.date.today()}, {platform.machine()}, {os.cpu_count()} cores, "
              f"torch {torch.__version__}; m={args.width}; the cross-entropy client with the informed solver, the zoo's "
              "clients through attack_model.\n\n"
              "Command(s) that wrote the rows (the zoo section resumes its .jsonl file, skipping the cells already "
              "in it):\n\n" + "\n".join(f"- `{c}`" for c in commands))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(markdown(rows, header))
    args.out.with_suffix(".json").write_text(json.dumps({"rows": rows, "worst_case": zoo_worst_case(rows)}, indent=1))
    if "dp" in args.sections:
        plot(rows, args.out.with_suffix(".png"))
    print(markdown(rows, header))
    return rows


if __name__ == "__main__":
    main()
