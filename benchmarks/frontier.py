"""Frontier benchmark: exact-recovery fraction vs batch size per victim, width and solver.

For each (victim kind, width m, batch size b, seed) it builds the client (``gradinv.cases.make_victim``,
float64), then on the same gradient measures: one SVD of dL/dW, the attack (``invert_layer``
with ``--solver``, by default the library's own choice for what the victim gives: "informed" where
the loss passes through the classifier, else "cells" with the layer's W and b), and, for
b ≤ ``--spear-max-b``, SPEAR's sampling baseline within ``--spear-max-time``.
Reported per row: exact fraction (relative error ≤ 1e-6), certified fraction, false
certificates, mean PSNR, wall time, the attack/SVD time ratio, the speed-up over SPEAR, and
with ``--memory`` the attack's peak memory over the gradient's size, measured in a fresh
process (``benchmarks/peak_memory.py``), and (JSON only) when each column was found.

**Resumable** (``benchmarks/_resumable.py``): each cell runs in a child process capped at
``--cell-cap`` seconds (a capped cell's row says so and counts as failed; a cell whose process
crashed is not written) and its row is appended to ``OUT.jsonl`` as soon as it ends; a rerun with
the same ``--out`` skips the cells already there, so a run can be stopped at any moment and
continued later, with other kinds, sizes or seeds added to the same file.  The tables (``OUT.json``,
``OUT.md``, and a PNG plot of exact fraction vs b) are made from every row the file holds;
``--report`` makes them without running anything.

Zoo mode (``--zoo [KIND ...]``, default every kind of ``gradinv.cases.ZOO``; shell-style
patterns such as ``'mlp2_*'`` select several): each client is built with
``gradinv.cases.make_client`` and attacked as a user would, ``attack_model(v.model,
v.gradients)`` (the search it picks is recorded; fractions are of the batch's *distinct* inputs,
an exact duplicate counted once, ``distinct`` in the row), then for b ≤ ``--spear-max-b`` with
``solver="spear"`` on the same gradient.  The Markdown output starts with the **worst case over
kinds and seeds** per (m, b) (the least exact fraction, the kind and seed that gave it, the
longest time), then the per-kind table (min / median over seeds), then every row.  Cells whose
b exceeds a kind's largest batch (b ≤ n, the attacked layer's inputs: 64 for digits) are listed
as skipped.  ``--knowledge layer`` gives the attack the attacked layer's dL/dW, dL/db, W and b
alone (``invert_layer``, SPEAR++'s knowledge: nothing downstream), the gradient-only benchmark of
``docs/gradient_only.md``.

    python benchmarks/frontier.py                      # the documented grid (long)
    python benchmarks/frontier.py --quick              # smoke run (seconds)
    python benchmarks/frontier.py --zoo --batch-sizes 20 100 --seeds 3   # every zoo kind
    python benchmarks/frontier.py --zoo 'mlp2_*' --quick                 # zoo smoke run
    python benchmarks/frontier.py --device cuda        # torch-CUDA arrays when a GPU exists
    python benchmarks/frontier.py --zoo --out docs/zoo_m1000_b20 --report   # tables from the file only
"""

import argparse
import datetime
import fnmatch
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gradinv import GradientError, invert_layer
from gradinv.cases import make_victim
from gradinv.metrics import distinct_inputs, evaluate
from gradinv.models import attack_model
from gradinv.cases import ZOO, make_client

sys.path.insert(0, str(Path(__file__).parent))
from _resumable import append_row, done_keys, read_rows, run_capped  # noqa: E402
from peak_memory import attack_peak_memory  # noqa: E402


def to_device(a, device):
    return a if device == "cpu" else a.to(device)


def run_one(kind, m, b, seed, args):
    """One row of the victims grid (run in a child process: :func:`run_grid`)."""
    torch.set_default_dtype(torch.float64)
    v = make_victim(kind, batch_size=b, width=m, random_state=seed)
    gW, gb = to_device(v.grad_W, args.device), to_device(v.grad_b, args.device)
    knowledge = {k: to_device(t, args.device) for k, t in v.attack_kwargs().items()}
    t_svd = svd_time(gW)
    solver = args.solver  # None: the library's default for what the victim gives (gradinv.knowledge)
    t0 = time.perf_counter()
    try:
        res = invert_layer(gW, gb, solver=solver, random_state=seed, max_time=args.max_time, **knowledge)
    except GradientError as err:  # e.g. no exact column found within the bound: a failed row, not a crash
        t = time.perf_counter() - t0
        return dict(victim=kind, m=m, b=b, seed=seed, solver=solver or "auto", exact=0.0, certified=0.0,
                    false_certificates=0,
                    time=t, svd_time=t_svd, time_over_svd=t / t_svd, grad_mb=gW.numel() * gW.element_size() / 2**20,
                    error=str(err))
    ev = evaluate(v.inputs, res.inputs, res.exact)
    row = dict(victim=kind, m=m, b=b, seed=seed, solver=res.solver, exact=ev["exact"] / b,
               certified=ev["certified"] / b, false_certificates=ev["false_certificates"], psnr=ev["psnr"],
               time=res.time, svd_time=t_svd, time_over_svd=res.time / t_svd,
               grad_mb=gW.numel() * gW.element_size() / 2**20, **search_progress(res))
    if args.memory and args.device == "cpu" and res.solver == "informed":
        row["peak_mem_over_grad"] = attack_peak_memory(
            v.grad_W.numpy(), v.grad_b.numpy(), {k: t.numpy() for k, t in v.attack_kwargs().items()},
            max_time=args.max_time)["peak_over_grad"]
    if b <= args.spear_max_b:
        sp = invert_layer(gW, gb, solver="spear", random_state=seed, max_time=args.spear_max_time,
                          weight=knowledge["weight"], bias=knowledge["bias"])
        ev_sp = evaluate(v.inputs, sp.inputs, sp.exact)
        row.update(spear_exact=ev_sp["exact"] / b, spear_time=sp.time,
                   spear_finished=bool(sp.time < args.spear_max_time), speedup_over_spear=sp.time / res.time)
    return row


def search_progress(res):
    """JSON only: how far the search got, why it stopped, and when each column came (seconds from the
    search's start, and the round: the searches that keep a bound)."""
    found = res.pipeline.named_steps["search"].result_
    out = dict(columns_found=found.n_found, stop_reason=found.stop_reason, rounds=found.n_rounds)
    if len(found.found_times):
        out["found_times"] = [round(float(t), 2) for t in found.found_times]
        out["found_rounds"] = [int(r) for r in found.found_rounds]
    return out


def svd_time(gW):
    t0 = time.perf_counter()
    torch.linalg.svd(gW, full_matrices=False)
    return time.perf_counter() - t0


def zoo_kinds(patterns):
    """The ZOO kinds matching ``patterns`` (names or shell-style patterns; empty: all), in ZOO order."""
    if not patterns:
        return list(ZOO)
    unknown = [p for p in patterns if not fnmatch.filter(ZOO, p)]
    if unknown:
        raise SystemExit(f"--zoo: no kind matches {unknown}; kinds: {', '.join(ZOO)}")
    return [k for k in ZOO if any(fnmatch.fnmatchcase(k, p) for p in patterns)]


def attack_client(v, seed, args, **kwargs):
    """(row fields, error) of the attack on the client's gradients, evaluated against v.inputs: with
    ``--knowledge model`` ``attack_model(v.model, v.gradients)``, as a user would; with ``layer``
    ``invert_layer`` on the attacked layer's dL/dW, dL/db, W and b alone (SPEAR++'s knowledge)."""
    t0 = time.perf_counter()
    try:
        if args.knowledge == "layer":
            W, bias = (to_device(t.detach(), args.device) for t in (v.layer.weight, v.layer.bias))
            res = invert_layer(to_device(v.grad_W, args.device), to_device(v.grad_b, args.device), weight=W,
                               bias=bias, random_state=seed, **kwargs)
            layer_name = v.layer_name
        else:
            model, grads = v.model, v.gradients
            if args.device != "cpu":
                model, grads = model.to(args.device), {k: t.to(args.device) for k, t in grads.items()}
            res, layer = attack_model(model, grads, random_state=seed, **kwargs)
            layer_name = layer.name
    except GradientError as err:  # e.g. no exact column found within the bound: a failed row, not a crash
        return dict(solver=kwargs.get("solver") or "auto", exact=0.0, certified=0.0, false_certificates=0,
                    time=time.perf_counter() - t0, error=str(err))
    distinct = distinct_inputs(v.inputs)
    ev = evaluate(distinct, res.inputs, res.exact)
    b = len(distinct)
    return dict(solver=res.solver, layer=layer_name, exact=ev["exact"] / b, certified=ev["certified"] / b,
                false_certificates=ev["false_certificates"], psnr=ev["psnr"], time=res.time, distinct=b,
                n_dependent_inputs=res.n_dependent_inputs, search_reason=res.search_reason, **search_progress(res))


def run_client(kind, m, b, seed, args):
    """One zoo row: the client ``kind`` attacked through ``attack_model`` (and SPEAR for small b); run in a
    child process (:func:`run_grid`)."""
    torch.set_default_dtype(torch.float64)
    v = make_client(kind, batch_size=b, width=m, random_state=seed)
    t_svd = svd_time(to_device(v.grad_W, args.device))
    row = dict(victim=kind, m=m, b=b, seed=seed,
               **attack_client(v, seed, args, solver=args.solver, max_time=args.max_time))
    row.update(svd_time=t_svd, time_over_svd=row["time"] / t_svd,
               grad_mb=v.grad_W.numel() * v.grad_W.element_size() / 2**20)
    if b <= args.spear_max_b:
        sp = attack_client(v, seed, args, solver="spear", max_time=args.spear_max_time)
        row.update(spear_exact=sp["exact"], spear_time=sp["time"], spear_finished=bool(sp["time"] < args.spear_max_time),
                   speedup_over_spear=sp["time"] / row["time"])
    return row


def _cells(rows, key):
    out = {}
    for r in rows:
        out.setdefault(key(r), []).append(r)
    return sorted(out.items())


def worst_case(rows):
    """Per (m, b): the least exact fraction over kinds and seeds (and which), the longest time."""
    table = []
    for (m, b), cell in _cells(rows, lambda r: (r["m"], r["b"])):
        worst = min(cell, key=lambda r: (r["exact"], r["certified"], -r["time"]))
        slowest = max(cell, key=lambda r: r["time"])
        entry = dict(m=m, b=b, kinds=len({r["victim"] for r in cell}), rows=len(cell), min_exact=worst["exact"],
                     worst_kind=worst["victim"], worst_seed=worst["seed"], min_certified=min(r["certified"] for r in cell),
                     false_certificates=sum(r["false_certificates"] for r in cell), max_time=slowest["time"],
                     slowest_kind=slowest["victim"],
                     max_time_over_svd=max((r["time_over_svd"] for r in cell if "time_over_svd" in r), default=None),
                     solvers="/".join(sorted({r["solver"] for r in cell})))
        spear = [r for r in cell if "spear_exact" in r]
        if spear:
            entry.update(min_spear_exact=min(r["spear_exact"] for r in spear),
                         min_speedup_over_spear=min(r["speedup_over_spear"] for r in spear))
        table.append(entry)
    return table


def median(values):
    return float(np.median(values)) if values else None


def per_kind(rows):
    """Per (kind, m, b): min / median over seeds of the exact and certified fractions, times."""
    table = []
    for (kind, m, b), cell in _cells(rows, lambda r: (r["victim"], r["m"], r["b"])):
        ex, ce, t = ([r[c] for r in cell] for c in ("exact", "certified", "time"))
        entry = dict(victim=kind, m=m, b=b, seeds=len(cell), solvers="/".join(sorted({r["solver"] for r in cell})),
                     min_exact=min(ex), median_exact=float(np.median(ex)), min_certified=min(ce),
                     median_certified=float(np.median(ce)), false_certificates=sum(r["false_certificates"] for r in cell),
                     median_time=float(np.median(t)), max_time=max(t),
                     median_time_over_svd=median([r["time_over_svd"] for r in cell if "time_over_svd" in r]),
                     errors=sum("error" in r for r in cell))
        spear = [r for r in cell if "spear_exact" in r]
        if spear:
            entry.update(min_spear_exact=min(r["spear_exact"] for r in spear),
                         median_speedup_over_spear=float(np.median([r["speedup_over_spear"] for r in spear])))
        table.append(entry)
    return table


def zoo_markdown(rows, skipped, header):
    kinds = sorted({r["victim"] for r in rows} | {s["victim"] for s in skipped}, key=list(ZOO).index)
    lines = [header, "", "## Worst case over kinds and seeds", "", table(worst_case(rows)),
             "## Per kind (over seeds)", "", table(per_kind(rows)), "## Every row", "",
             table(rows, ["victim", "m", "b", "seed", "solver", "layer", "exact", "certified", "false_certificates",
                          "psnr", "time", "svd_time", "time_over_svd", "grad_mb", "spear_exact", "spear_time",
                          "speedup_over_spear", "error"])]
    if skipped:
        lines += ["Skipped (b larger than the kind's largest batch):", ""]
        lines += [f"- {s['victim']}, m = {s['m']}, b = {s['b']}: {s['reason']}" for s in skipped] + [""]
    lines += ["## Kinds", "", table([dict(victim=k, **ZOO[k].describe()) for k in kinds])]
    return "\n".join(lines)


def zoo_plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for (kind, m), _ in _cells(rows, lambda r: (r["victim"], r["m"])):
        pts = [(e["b"], e["min_exact"]) for e in per_kind(rows) if (e["victim"], e["m"]) == (kind, m)]
        ax.plot(*zip(*pts), lw=0.8, alpha=0.5, marker=".", label=f"{kind}, m={m}")
    for m in sorted({r["m"] for r in rows}):
        pts = [(e["b"], e["min_exact"]) for e in worst_case(rows) if e["m"] == m]
        ax.plot(*zip(*pts), "k-", lw=2.5, marker="o", label=f"worst case, m={m}")
    ax.set_xlabel("batch size b")
    ax.set_ylabel("fraction of samples exact (min over seeds)")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=5, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(rows, cols=None):
    """A Markdown table of ``rows`` (dicts) with columns ``cols`` (default: every key, in order seen)."""
    cols = cols or list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(f"{v:.3g}" if isinstance(v, float) else str(v).replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def growth_exponents(rows):
    """Fitted slope of log(time) against log(b) per (victim, m, solver), over rows with full recovery."""
    out = {}
    for key in {(r["victim"], r["m"], r["solver"]) for r in rows}:
        pts = [(r["b"], r["time"]) for r in rows if (r["victim"], r["m"], r["solver"]) == key and r["exact"] >= 0.9]
        if len({b for b, _ in pts}) >= 2:
            x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
            out["/".join(map(str, key))] = float(np.polyfit(x, y, 1)[0])
    return out


def markdown(rows, exponents, header):
    cols = ["victim", "m", "b", "seed", "solver", "exact", "certified", "false_certificates", "psnr", "time",
            "svd_time", "time_over_svd", "peak_mem_over_grad", "grad_mb", "spear_exact", "spear_time", "speedup_over_spear"]
    lines = [header, "", table(rows, cols).rstrip("\n")]
    lines += ["", "Growth exponent of the attack's time in b (fit over rows with ≥ 90% exact):", ""]
    lines += [f"- {k}: {v:.2f}" for k, v in sorted(exponents.items())] or ["- (not enough rows)"]
    return "\n".join(lines) + "\n"


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key in sorted({(r["victim"], r["m"], r["solver"]) for r in rows}):
        pts = sorted((r["b"], r["exact"]) for r in rows if (r["victim"], r["m"], r["solver"]) == key)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{key[0]}, m={key[1]}, {key[2]}")
    spear = sorted((r["b"], r["spear_exact"]) for r in rows if "spear_exact" in r and r["victim"] == "cross_entropy")
    if spear:
        ax.plot([p[0] for p in spear], [p[1] for p in spear], "k--", marker="x", label="cross_entropy, SPEAR (bounded)")
    ax.set_xlabel("batch size b")
    ax.set_ylabel("fraction of samples exact")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def command_line(argv):
    return " ".join(["python benchmarks/frontier.py", *(argv if argv is not None else sys.argv[1:])])


def run_header(rows, device):
    """Where and how the rows were measured: the machine, and every command that added to the file."""
    commands = list(dict.fromkeys(r.get("command", "") for r in rows))
    dates = sorted({r.get("date", "") for r in rows} - {""})
    span = f"{dates[0]} to {dates[-1]}" if len(dates) > 1 else (dates[0] if dates else "")
    return (f"Frontier benchmark, measured {span}, {platform.machine()}, {os.cpu_count()} cores, device {device}, "
            f"torch {torch.__version__}, float64; one row per (kind, m, b, seed).\n\n"
            "Command(s) that wrote the rows (a run resumes its file, skipping the cells already in it):\n\n"
            + "\n".join(f"- `{c}`" for c in commands))


KEY = ("victim", "m", "b", "seed", "solver_asked", "knowledge")
"""A cell of the grid: a row of the file with these values is not run again (``knowledge`` is
written only for ``--knowledge layer``: absent means the whole model)."""


def grid(args):
    """The requested cells (kind, m, b, seed); a zoo cell whose b exceeds the kind's inputs carries
    the reason it is skipped, else None."""
    cells = []
    kinds = zoo_kinds(args.zoo) if args.zoo is not None else args.victims
    for kind in kinds:
        for m in args.widths:
            for b in args.batch_sizes:
                if args.zoo is not None and b > ZOO[kind].max_batch_size:
                    reason = f"b > {ZOO[kind].max_batch_size} (n = {ZOO[kind].n_inputs} inputs)"
                    cells.append((kind, m, b, None, reason))
                    continue
                cells += [(kind, m, b, seed, None) for seed in range(args.first_seed, args.first_seed + args.seeds)]
    return cells


def cell_cap(args):
    """Wall-clock cap of one cell: the attack's bound, SPEAR's, and room to build the client."""
    if args.cell_cap is not None:
        return args.cell_cap
    return 2 * args.max_time + args.spear_max_time + 600  # 600 s: training a zoo client, the SVD, the checks


def run_grid(args, argv):
    """Run every cell of the grid not yet in ``--out``.jsonl, appending each row as it ends (a
    skipped cell's row says why it was not run)."""
    path = args.out.with_suffix(".jsonl")
    asked = args.solver or "auto"
    done = done_keys(path, KEY)
    worker = "run_client" if args.zoo is not None else "run_one"
    cells = grid(args)
    knowledge = "layer" if args.knowledge == "layer" else None
    todo = [c for c in cells if (*c[:4], asked, knowledge) not in done]
    print(f"{path}: {len(cells) - len(todo)} of {len(cells)} cells already there, {len(todo)} to run", flush=True)
    for kind, m, b, seed, skip in todo:
        if skip:
            row = dict(victim=kind, m=m, b=b, seed=None, skipped=skip)
        else:
            status, row = run_capped(Path(__file__), worker, (kind, m, b, seed, args), cell_cap(args))
            if status == "error":  # a crash is not a measurement: not written, so a rerun retries the cell
                print(f"cell {kind} m={m} b={b} seed={seed} failed (not written): {row}", file=sys.stderr, flush=True)
                continue
            if status == "capped":
                row = dict(victim=kind, m=m, b=b, seed=seed, solver=asked, exact=0.0, certified=0.0,
                           false_certificates=0, time=cell_cap(args), error=f"cell cap {cell_cap(args):.0f} s reached")
        row.update(solver_asked=asked, mode="zoo" if args.zoo is not None else "victims",
                   command=command_line(argv), date=str(datetime.date.today()))
        if knowledge:
            row["knowledge"] = knowledge
        append_row(path, row)
        print(json.dumps(row), flush=True)


def report(args):
    """Write ``--out``.json / .md / .png from every row of ``--out``.jsonl; returns the rows measured."""
    every = read_rows(args.out.with_suffix(".jsonl"))
    rows = [r for r in every if "skipped" not in r]
    skipped = [dict(victim=r["victim"], m=r["m"], b=r["b"], reason=r["skipped"]) for r in every if "skipped" in r]
    header = run_header(every, args.device)
    zoo = any(r.get("mode") == "zoo" for r in every)
    if zoo:
        kinds = [k for k in ZOO if k in {r["victim"] for r in every}]
        text = zoo_markdown(rows, skipped, header)
        data = {"worst_case": worst_case(rows), "per_kind": per_kind(rows), "rows": rows, "skipped": skipped,
                "kinds": {k: ZOO[k].describe() for k in kinds}}
    else:
        exps = growth_exponents(rows)
        text = markdown(rows, exps, header)
        data = {"rows": rows, "growth_exponents": exps}
    args.out.with_suffix(".json").write_text(json.dumps(data, indent=1))
    args.out.with_suffix(".md").write_text(text)
    if rows:
        (zoo_plot if zoo else plot)(rows, args.out.with_suffix(".png"))
    print(text)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--victims", nargs="+", default=["cross_entropy", "cross_entropy_raw", "trained", "random_upstream"])
    p.add_argument("--solver", default=None,
                   help="the search (default: the library's own choice for what the client gives, gradinv.knowledge)")
    p.add_argument("--widths", nargs="+", type=int, default=[1000])
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[10, 20, 50, 100])
    p.add_argument("--seeds", type=int, default=1, help="number of seeds per cell")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--max-time", type=float, default=300.0,
                   help="bound of one attack, seconds; 0: the library's default bound (stagnation in rounds, "
                        "gradinv.bound), with --cell-cap as the only cap")
    p.add_argument("--cell-cap", type=float, default=None,
                   help="wall-clock cap of one cell, seconds (default 2·max-time + spear-max-time + 600); "
                        "a capped cell is recorded as failed")
    p.add_argument("--spear-max-b", type=int, default=20)
    p.add_argument("--spear-max-time", type=float, default=120.0)
    p.add_argument("--device", default="cpu", help="cpu, or cuda (torch-CUDA arrays) when a GPU exists")
    p.add_argument("--out", type=Path, default=Path("docs/frontier"),
                   help="output prefix: rows in .jsonl (resumed), tables in .json, .md, .png")
    p.add_argument("--report", action="store_true", help="only write the tables from the rows already in --out.jsonl")
    p.add_argument("--memory", action="store_true",
                   help="also measure each informed attack's peak memory in a fresh process (benchmarks/peak_memory.py)")
    p.add_argument("--zoo", nargs="*", metavar="KIND",
                   help="zoo mode: these kinds of gradinv.cases.ZOO (names or patterns; none given: all)")
    p.add_argument("--knowledge", choices=["model", "layer"], default="model",
                   help="zoo mode: what the server is given: the whole model (attack_model, default) or the "
                        "attacked layer's W and b only (invert_layer: SPEAR++'s knowledge, no downstream)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = p.parse_args(argv)
    if args.max_time == 0:
        if args.cell_cap is None:
            p.error("--max-time 0 (the default bound) needs --cell-cap")
        args.max_time = None
    if args.quick and args.zoo is not None:
        args.widths, args.batch_sizes, args.seeds = [200], [4], 1
        args.max_time, args.spear_max_b, args.spear_max_time = 10.0, 4, 5.0
    elif args.quick:
        args.victims, args.widths, args.batch_sizes = ["random_upstream", "cross_entropy"], [200], [4, 6]
        args.max_time, args.spear_max_b, args.spear_max_time = 20.0, 6, 10.0
    torch.set_default_dtype(torch.float64)
    if not args.report:
        run_grid(args, argv)
    return report(args)


if __name__ == "__main__":
    main()
