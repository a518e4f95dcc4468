"""Frontier benchmark: exact-recovery fraction vs batch size per victim, width and solver.

For each (victim kind, width m, batch size b, seed) it builds the client (``gradinv.make_victim``,
float64), then on the same gradient measures: one SVD of dL/dW, the attack (``invert_layer``
with the solver that applies: "informed" where the loss passes through the classifier, else
"logcosh"), and, for b ≤ ``--spear-max-b``, SPEAR's sampling baseline within ``--spear-max-time``.
Reported per row: exact fraction (relative error ≤ 1e-6), certified fraction, false
certificates, mean PSNR, wall time, the attack/SVD time ratio, the speed-up over SPEAR, and
with ``--memory`` the attack's peak memory over the gradient's size, measured in a fresh
process (``benchmarks/peak_memory.py``).  Writes JSON, a Markdown table
and a PNG plot (exact fraction vs b, a line per victim and solver).

Zoo mode (``--zoo [KIND ...]``, default every kind of ``gradinv.victims.ZOO``; shell-style
patterns such as ``'mlp2_*'`` select several): each client is built with
``gradinv.victims.make_client`` and attacked as a user would, ``attack_model(v.model,
v.gradients)`` (the search it picks is recorded), then for b ≤ ``--spear-max-b`` with
``solver="spear"`` on the same gradient.  The Markdown output starts with the **worst case over
kinds and seeds** per (m, b) (the least exact fraction, the kind and seed that gave it, the
longest time), then the per-kind table (min / median over seeds), then every row.  Cells whose
b exceeds a kind's largest batch (b ≤ n, the attacked layer's inputs: 64 for digits) are listed
as skipped.

    python benchmarks/frontier.py                      # the documented grid (long)
    python benchmarks/frontier.py --quick              # smoke run (seconds)
    python benchmarks/frontier.py --zoo --batch-sizes 20 100 --seeds 3   # every zoo kind
    python benchmarks/frontier.py --zoo 'mlp2_*' --quick                 # zoo smoke run
    python benchmarks/frontier.py --device cuda        # torch-CUDA arrays when a GPU exists
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

from gradinv import GradientError, invert_layer, make_victim
from gradinv.metrics import evaluate
from gradinv.models import attack_model
from gradinv.victims import ZOO, make_client

sys.path.insert(0, str(Path(__file__).parent))
from peak_memory import attack_peak_memory  # noqa: E402


def solver_for(kind):
    return "logcosh" if kind == "random_upstream" else "informed"


def to_device(a, device):
    return a if device == "cpu" else a.to(device)


def run_one(kind, m, b, seed, args):
    v = make_victim(kind, batch_size=b, width=m, random_state=seed)
    gW, gb = to_device(v.grad_W, args.device), to_device(v.grad_b, args.device)
    knowledge = {k: to_device(t, args.device) for k, t in v.attack_kwargs().items()}
    t_svd = svd_time(gW)
    solver = solver_for(kind)
    t0 = time.perf_counter()
    try:
        res = invert_layer(gW, gb, solver=solver, random_state=seed, max_time=args.max_time, **knowledge)
    except GradientError as err:  # e.g. no exact column found within the bound: a failed row, not a crash
        t = time.perf_counter() - t0
        return dict(victim=kind, m=m, b=b, seed=seed, solver=solver, exact=0.0, certified=0.0, false_certificates=0,
                    time=t, svd_time=t_svd, time_over_svd=t / t_svd, grad_mb=gW.numel() * gW.element_size() / 2**20,
                    error=str(err))
    ev = evaluate(v.inputs, res.inputs, res.exact)
    row = dict(victim=kind, m=m, b=b, seed=seed, solver=solver, exact=ev["exact"] / b, certified=ev["certified"] / b,
               false_certificates=ev["false_certificates"], psnr=ev["psnr"], time=res.time, svd_time=t_svd,
               time_over_svd=res.time / t_svd, grad_mb=gW.numel() * gW.element_size() / 2**20,
               columns_found=int(getattr(res.pipeline.named_steps["sudl"], "n_found_", np.sum(res.sparse))))
    # JSON only: how far a failed search got (the informed search's own count; else the gradient-only test)
    if args.memory and args.device == "cpu" and solver == "informed":
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
    """(row fields, error) of ``attack_model`` on the client's gradients, evaluated against v.inputs."""
    model, grads = v.model, v.gradients
    if args.device != "cpu":
        model, grads = model.to(args.device), {k: t.to(args.device) for k, t in grads.items()}
    t0 = time.perf_counter()
    try:
        res, layer = attack_model(model, grads, random_state=seed, **kwargs)
    except GradientError as err:  # e.g. no exact column found within the bound: a failed row, not a crash
        return dict(solver=kwargs.get("solver", "auto"), exact=0.0, certified=0.0, false_certificates=0,
                    time=time.perf_counter() - t0, error=str(err))
    ev = evaluate(v.inputs, res.inputs, res.exact)
    b = v.batch_size
    return dict(solver=res.solver, layer=layer.name, exact=ev["exact"] / b, certified=ev["certified"] / b,
                false_certificates=ev["false_certificates"], psnr=ev["psnr"], time=res.time)


def run_client(kind, m, b, seed, args):
    """One zoo row: the client ``kind`` attacked through ``attack_model`` (and SPEAR for small b)."""
    v = make_client(kind, batch_size=b, width=m, random_state=seed)
    t_svd = svd_time(to_device(v.grad_W, args.device))
    row = dict(victim=kind, m=m, b=b, seed=seed, **attack_client(v, seed, args, max_time=args.max_time))
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
                     slowest_kind=slowest["victim"], max_time_over_svd=max(r["time_over_svd"] for r in cell),
                     solvers="/".join(sorted({r["solver"] for r in cell})))
        spear = [r for r in cell if "spear_exact" in r]
        if spear:
            entry.update(min_spear_exact=min(r["spear_exact"] for r in spear),
                         min_speedup_over_spear=min(r["speedup_over_spear"] for r in spear))
        table.append(entry)
    return table


def per_kind(rows):
    """Per (kind, m, b): min / median over seeds of the exact and certified fractions, times."""
    table = []
    for (kind, m, b), cell in _cells(rows, lambda r: (r["victim"], r["m"], r["b"])):
        ex, ce, t = ([r[c] for r in cell] for c in ("exact", "certified", "time"))
        entry = dict(victim=kind, m=m, b=b, seeds=len(cell), solvers="/".join(sorted({r["solver"] for r in cell})),
                     min_exact=min(ex), median_exact=float(np.median(ex)), min_certified=min(ce),
                     median_certified=float(np.median(ce)), false_certificates=sum(r["false_certificates"] for r in cell),
                     median_time=float(np.median(t)), max_time=max(t),
                     median_time_over_svd=float(np.median([r["time_over_svd"] for r in cell])),
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


def run_header(args, argv):
    return (f"Frontier benchmark, {datetime.date.today()}, {platform.machine()}, {os.cpu_count()} cores, "
            f"device {args.device}, torch {torch.__version__}, float64.\n\nCommand: `{command_line(argv)}`")


def earlier_command(earlier, path):
    """The command of an earlier --out JSON ``earlier`` read from ``path`` (its "command", else its
    Markdown's "Command:" line)."""
    if "command" in earlier:
        return earlier["command"]
    return path.with_suffix(".md").read_text().split("Command: `")[1].split("`")[0]


def run_zoo(args, argv):
    """Zoo mode: every (kind, m, b, seed) through :func:`run_client`; writes JSON, Markdown, PNG
    (with ``--merge``, of these rows and the earlier run's rows of the other kinds)."""
    kinds = zoo_kinds(args.zoo)
    rows, skipped = [], []
    for kind in kinds:
        for m in args.widths:
            for b in args.batch_sizes:
                if b > ZOO[kind].max_batch_size:
                    skipped.append(dict(victim=kind, m=m, b=b, reason=f"b > {ZOO[kind].max_batch_size} "
                                                                     f"(n = {ZOO[kind].n_inputs} inputs)"))
                    continue
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    row = run_client(kind, m, b, seed, args)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    header, command = run_header(args, argv), command_line(argv)
    if args.merge is not None:  # keep the other kinds' rows of an earlier run
        earlier = json.loads(args.merge.read_text())
        rows = [r for r in earlier["rows"] if r["victim"] not in kinds] + rows
        skipped = [s for s in earlier["skipped"] if s["victim"] not in kinds] + skipped
        run_now = kinds
        kinds = [k for k in ZOO if k in {r["victim"] for r in rows} | {s["victim"] for s in skipped}]
        before = earlier_command(earlier, args.merge)
        header += (f"\n\nRows of the kinds other than {', '.join(run_now)} are kept from `{args.merge}`, "
                   f"measured by: `{before}`")
        command = f"{before}; then {command}"
    text = zoo_markdown(rows, skipped, header)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"command": command, "worst_case": worst_case(rows), "per_kind": per_kind(rows), "rows": rows, "skipped": skipped,
         "kinds": {k: ZOO[k].describe() for k in kinds}}, indent=1))
    args.out.with_suffix(".md").write_text(text)
    if rows:
        zoo_plot(rows, args.out.with_suffix(".png"))
    print(text)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--victims", nargs="+", default=["cross_entropy", "cross_entropy_raw", "trained", "random_upstream"])
    p.add_argument("--widths", nargs="+", type=int, default=[1000])
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[10, 20, 50, 100])
    p.add_argument("--seeds", type=int, default=1, help="number of seeds per cell")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--max-time", type=float, default=300.0, help="bound of one attack, seconds")
    p.add_argument("--spear-max-b", type=int, default=20)
    p.add_argument("--spear-max-time", type=float, default=120.0)
    p.add_argument("--device", default="cpu", help="cpu, or cuda (torch-CUDA arrays) when a GPU exists")
    p.add_argument("--out", type=Path, default=Path("docs/frontier"), help="output prefix (.json, .md, .png)")
    p.add_argument("--memory", action="store_true",
                   help="also measure each informed attack's peak memory in a fresh process (benchmarks/peak_memory.py)")
    p.add_argument("--zoo", nargs="*", metavar="KIND",
                   help="zoo mode: these kinds of gradinv.victims.ZOO (names or patterns; none given: all)")
    p.add_argument("--merge", type=Path, default=None, metavar="JSON",
                   help="zoo mode: keep the rows of the kinds not run now from this earlier --out JSON")
    p.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = p.parse_args(argv)
    if args.quick and args.zoo is not None:
        args.widths, args.batch_sizes, args.seeds = [200], [4], 1
        args.max_time, args.spear_max_b, args.spear_max_time = 10.0, 4, 5.0
    elif args.quick:
        args.victims, args.widths, args.batch_sizes = ["random_upstream", "cross_entropy"], [200], [4, 6]
        args.max_time, args.spear_max_b, args.spear_max_time = 20.0, 6, 10.0
    torch.set_default_dtype(torch.float64)
    if args.zoo is not None:
        return run_zoo(args, argv)
    rows = []
    for kind in args.victims:
        for m in args.widths:
            for b in args.batch_sizes:
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    row = run_one(kind, m, b, seed, args)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    exps = growth_exponents(rows)
    header = run_header(args, argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"rows": rows, "growth_exponents": exps}, indent=1))
    args.out.with_suffix(".md").write_text(markdown(rows, exps, header))
    plot(rows, args.out.with_suffix(".png"))
    print(markdown(rows, exps, header))
    return rows


if __name__ == "__main__":
    main()
