"""Benchmark: exact-recovery rate and fit time of the ``sudl`` solvers against scikit-learn.

For every cell (n_features, n_samples/n_features, density) and seed, one synthetic signal
Y = code @ D (``sudl.make_sparsely_used_signal``, Bernoulli(density)-Gaussian code, Gaussian
unit-norm atoms) is drawn and every method is fitted on the *same* Y:

* ``SparselyUsedDictionaryLearning(solver=s)`` for each requested solver s;
* ``sklearn.decomposition.FastICA`` (dictionary = ``mixing_.T``, rows are atoms, since
  Y = S @ mixing_.T + mean_);
* ``sklearn.decomposition.DictionaryLearning`` (dictionary = ``components_``), an
  approximate (lasso-penalised) method: its exact rate is expected to be ~0, compare its
  mean matched error instead.

Reported per (method, cell): exact-recovery rate (``exact_recovery_rate(D, atoms, tol=1e-8)``,
mean over seeds), mean matched atom error (``dictionary_recovery_error(D, atoms).mean()``,
mean over seeds), median fit time (``time.perf_counter``), fraction of atoms the estimator
certifies exact (sudl only) and the number of warnings raised during the fits.

``--support-correlations`` draws codes whose supports overlap (``support_correlation`` ρ of
``make_sparsely_used_signal``: the supports of a batch of similar images' gradient columns).

**Resumable**: every fit is appended as one JSON line to ``OUT.jsonl`` (``--out`` with the suffix
.jsonl) as soon as it ends; a rerun with the same ``--out`` takes the fits already there and runs
only the others, and the tables are made from every fit of the grid the file holds.  With
``--fit-cap`` each fit runs in a child process killed after that many seconds (recorded as a
failed fit).

Usage (from the repository root; one BLAS thread keeps timings comparable)::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/sudl_benchmark.py            # full grid → docs/sudl_benchmark.md
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/sudl_benchmark.py --quick    # smoke test, < 30 s, writes nothing
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/sudl_benchmark.py --scale    # n = 200, 400 at density 0.5 → docs/sudl_benchmark_scale.md
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/sudl_benchmark.py --n-features 65 210 --ratios 3.5 --nlogn \
        --densities 0.5 --support-correlations 0 0.45 0.7 --seeds 3 --solvers logcosh l1 --baselines FastICA \
        --fit-cap 1800 --out docs/sudl_benchmark_spearpp.md      # SPEAR++'s ratio, correlated supports
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy
import sklearn
from sklearn.decomposition import DictionaryLearning, FastICA

import sudl
from sudl import (
    SparselyUsedDictionaryLearning,
    dictionary_recovery_error,
    exact_recovery_rate,
    make_sparsely_used_signal,
)

sys.path.insert(0, str(Path(__file__).parent))
from _resumable import append_row, read_rows, run_capped  # noqa: E402

BASELINES = ("FastICA", "DictionaryLearning")
FIT_KEY = ("method", "n_features", "n_samples", "density", "support_correlation", "seed")
"""A fit of the grid: a row of the JSON-lines file with these values is not run again."""
DEFAULT_OUT = "docs/sudl_benchmark.md"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-features", type=int, nargs="+", default=[20, 50, 100], help="n_features values")
    p.add_argument("--ratios", type=float, nargs="+", default=[10, 20], help="n_samples / n_features values")
    p.add_argument("--densities", type=float, nargs="+", default=[0.1, 0.3, 0.5], help="code densities")
    p.add_argument("--solvers", nargs="+", default=["logcosh", "l1", "l4", "er_spud"], choices=sorted(sudl.solvers.SOLVERS),
                   help="sudl solvers to benchmark")
    p.add_argument("--baselines", nargs="*", default=list(BASELINES), choices=BASELINES,
                   help="scikit-learn baselines (none: pass the flag with no value)")
    p.add_argument("--support-correlations", type=float, nargs="+", default=[0.0],
                   help="support correlation ρ of the codes (0: independent Bernoulli supports)")
    p.add_argument("--seeds", type=int, default=2, help="number of seeds (0, 1, ...) per cell")
    p.add_argument("--fit-cap", type=float, default=None,
                   help="run each fit in a child process killed after this many seconds (a failed fit)")
    p.add_argument("--out", default=None,
                   help=f"Markdown output (default {DEFAULT_OUT}; with --quick nothing is written unless given)")
    p.add_argument("--json", default=None, help="optional JSON output: every fit and the aggregated rows")
    p.add_argument("--quick", action="store_true",
                   help="tiny grid for a smoke test: n_features 8, ratio 20, density 0.3, 1 seed, all methods")
    p.add_argument("--nlogn", action="store_true",
                   help="n_samples = ratio × n_features × ln(n_features) instead of ratio × n_features")
    p.add_argument("--scale", action="store_true",
                   help="the scale grid: n_features 200 and 400, n_samples = 10·n·ln n, density 0.5, --seeds seeds, logcosh "
                        "and FastICA (default output docs/sudl_benchmark_scale.md)")
    p.add_argument("--max-seconds", type=float, default=60.0,
                   help="per-fit time bound: once a fit of a method exceeds it, that method's remaining seeds "
                        "in the cell are skipped (marked in the table)")
    p.add_argument("--er-spud-max-density", type=float, default=0.3,
                   help="run er_spud only where density <= this (it needs density ≲ 1/sqrt(n))")
    p.add_argument("--er-spud-max-features", type=int, default=50, help="run er_spud only where n_features <= this")
    p.add_argument("--dl-alpha", type=float, default=0.1, help="DictionaryLearning sparsity penalty")
    p.add_argument("--dl-max-iter", type=int, default=20, help="DictionaryLearning iteration bound")
    p.add_argument("--dl-max-features", type=int, default=50,
                   help="run DictionaryLearning only where n_features <= this (≈200 s per fit at n=100)")
    args = p.parse_args(argv)
    if args.quick:
        args.n_features, args.ratios, args.densities, args.seeds = [8], [20.0], [0.3], 1
    if args.scale:
        args.n_features, args.ratios, args.densities, args.nlogn = [200, 400], [10.0], [0.5], True
        args.solvers, args.baselines = ["logcosh"], ["FastICA"]
        args.max_seconds = float("inf")
        args.out = args.out or DEFAULT_OUT.replace(".md", "_scale.md")
    if args.out is None and not args.quick:
        args.out = DEFAULT_OUT
    return args


def applicable(method, n, density, args):
    """Whether ``method`` runs on cell (n, density), and if not, why."""
    if method == "er_spud" and (density > args.er_spud_max_density or n > args.er_spud_max_features):
        return False
    if method == "DictionaryLearning" and n > args.dl_max_features:
        return False
    return True


def fit_method(method, Y, seed, args):
    """Fit one method on Y; return (atoms as rows, unmixing rows or None, certified fraction or None)."""
    n = Y.shape[1]
    if method == "FastICA":
        ica = FastICA(n_components=n, whiten="unit-variance", random_state=seed, max_iter=1000).fit(Y)
        # Y = S @ mixing_.T + mean_: the rows of mixing_.T are the atoms, S = (Y - mean_) @ components_.T
        return ica.mixing_.T, ica.components_, None
    if method == "DictionaryLearning":
        dl = DictionaryLearning(n_components=n, alpha=args.dl_alpha, random_state=seed, max_iter=args.dl_max_iter).fit(Y)
        return dl.components_, None, None
    est = SparselyUsedDictionaryLearning(solver=method, random_state=seed).fit(Y)
    return est.components_, est.unmixing_, float(np.mean(est.exact_))


def one_fit(method, n, n_samples, density, rho, seed, args):
    """One fit of the grid (its JSON line): ``method`` on the signal of (n, n_samples, density, ρ, seed)."""
    Y, _, D = make_sparsely_used_signal(n_samples, n, density=density, support_correlation=rho, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        try:
            atoms, unmixing, certified = fit_method(method, Y, seed, args)
            failure = None
        except Exception as exc:  # a failed fit counts as rate 0, error √2
            atoms, unmixing, certified = None, None, None
            failure = f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - t0
    if atoms is None:
        rate, err = 0.0, float(np.sqrt(2.0))
    else:  # atoms: rows of D; code columns: code = Y @ inv(D), i.e. unmixing rows = rows of inv(D).T
        rate = exact_recovery_rate(D, atoms, tol=1e-8)
        err = float(dictionary_recovery_error(D, atoms).mean())
    code_rate = None if unmixing is None else exact_recovery_rate(np.linalg.inv(D).T, unmixing, tol=1e-8)
    return dict(method=method, n_features=n, n_samples=n_samples, density=density, support_correlation=rho,
                seed=seed, exact_rate=rate, code_rate=code_rate, mean_error=err, seconds=seconds,
                certified=certified, n_warnings=len(caught), failure=failure)


def fit_or_reuse(key, done, jsonl, args):
    """The fit ``key`` (:data:`FIT_KEY` values) from the file when it is there, else run (capped with
    ``--fit-cap``) and appended to it."""
    if key in done:
        return done[key]
    if args.fit_cap is None:
        rec = one_fit(*key, args)
    else:
        status, rec = run_capped(Path(__file__), "one_fit", (*key, args), args.fit_cap)
        if status != "ok":
            failure = f"fit cap {args.fit_cap:g} s reached" if status == "capped" else rec.splitlines()[-1]
            rec = dict(zip(FIT_KEY, key), exact_rate=0.0, code_rate=0.0, mean_error=float(np.sqrt(2.0)),
                       seconds=args.fit_cap if status == "capped" else 0.0, certified=0.0, n_warnings=0,
                       failure=failure)
    if jsonl is not None:
        append_row(jsonl, rec)
    return rec


def run_grid(args):
    methods = list(args.solvers) + list(args.baselines)
    jsonl = Path(args.out).with_suffix(".jsonl") if args.out else None
    done = {tuple(r.get(k) for k in FIT_KEY): r for r in read_rows(jsonl)} if jsonl else {}
    fits, rows = [], []
    t_start = time.perf_counter()
    for n in args.n_features:
        for ratio in args.ratios:
            n_samples = int(round(ratio * n * (np.log(n) if args.nlogn else 1.0)))
            for density in args.densities:
                for rho in args.support_correlations:
                    cell = {m: [] for m in methods}
                    stopped = set()
                    for seed in range(args.seeds):
                        for m in methods:
                            if m in stopped or not applicable(m, n, density, args):
                                continue
                            rec = fit_or_reuse((m, n, n_samples, density, rho, seed), done, jsonl, args)
                            fits.append(rec)
                            cell[m].append(rec)
                            code_rate = rec["code_rate"]
                            print(f"[{time.perf_counter() - t_start:7.1f}s] n={n:4d} ratio={ratio:g} density={density:g} "
                                  f"rho={rho:g} seed={seed} {m:18s} rate={rec['exact_rate']:.2f} "
                                  f"code_rate={code_rate if code_rate is None else round(code_rate, 2)} "
                                  f"err={rec['mean_error']:.1e} time={rec['seconds']:.2f}s"
                                  + (f" FAILED {rec['failure']}" if rec["failure"] else ""), file=sys.stderr, flush=True)
                            if rec["seconds"] > args.max_seconds:
                                stopped.add(m)
                    for m in methods:
                        rows.append(aggregate(cell[m], m, n, ratio, density, rho, args, truncated=m in stopped))
    return fits, rows, time.perf_counter() - t_start


def aggregate(recs, m, n, ratio, density, rho, args, truncated):
    """The table row of one method on one cell, over its seeds."""
    row = dict(method=m, n_features=n, ratio=ratio, density=density, support_correlation=rho, seeds_run=len(recs),
               seeds=args.seeds, truncated=truncated and len(recs) < args.seeds, applicable=applicable(m, n, density, args))
    if recs:
        certs = [r["certified"] for r in recs if r["certified"] is not None]
        codes = [r["code_rate"] for r in recs if r["code_rate"] is not None]
        row.update(
            exact_rate=float(np.mean([r["exact_rate"] for r in recs])),
            code_rate=float(np.mean(codes)) if codes else None,
            min_code_rate=float(np.min(codes)) if codes else None,
            mean_error=float(np.mean([r["mean_error"] for r in recs])),
            median_seconds=float(statistics.median(r["seconds"] for r in recs)),
            certified=float(np.mean(certs)) if certs else None,
            n_warnings=sum(r["n_warnings"] for r in recs),
            n_failures=sum(r["failure"] is not None for r in recs),
        )
    return row


def _cell_label(r):
    return f"{r['n_features']} | {r['ratio']:g} | {r['density']:g} | {r['support_correlation']:g}"


def _short(r):
    """'rate (time s)' for the compact table."""
    if not r["applicable"]:
        return "—"
    if not r["seeds_run"]:
        return "skipped"
    mark = "†" if r["truncated"] else ""
    fail = "‡" if r["n_failures"] else ""
    code = "" if r["code_rate"] is None or abs(r["code_rate"] - r["exact_rate"]) < 0.005 else f" [{r['code_rate']:.2f}]"
    return f"{r['exact_rate']:.2f}{code} ({r['median_seconds']:.2g} s){mark}{fail}"


def markdown(rows, methods, args, total_seconds, command):
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    lines = [
        "# sudl benchmark: exact recovery of a complete sparsely-used dictionary",
        "",
        f"Generated {datetime.datetime.now().isoformat(timespec='seconds')} on {platform.node() or 'unknown host'} "
        f"({os.cpu_count()} cores reported by nproc, {cpu}; OMP_NUM_THREADS={threads}), Python {platform.python_version()}, "
        f"numpy {np.__version__}, scipy {scipy.__version__}, scikit-learn {sklearn.__version__}, sudl {sudl.__version__}; "
        f"command: `{command}`; total {total_seconds:.0f} s.",
        "",
        f"Y = code @ D, D square with Gaussian unit-norm atoms, code Bernoulli(density)–Gaussian (supports "
        f"correlated with ρ, `make_sparsely_used_signal(support_correlation=ρ)`); "
        f"n_samples = ratio × n_features{' × ln(n_features)' if args.nlogn else ''}; {args.seeds} seed(s) per cell; every method sees the same Y.",
        "",
        "## Summary: exact-recovery rate of the atoms [of the code columns, where different] (median fit time)",
        "",
        "| n | ratio | density | ρ | " + " | ".join(methods) + " |",
        "|---:|---:|---:|---:|" + "---|" * len(methods),
    ]
    by_cell = {}
    for r in rows:
        by_cell.setdefault(_cell_label(r), {})[r["method"]] = r
    for label, cell in by_cell.items():
        lines.append(f"| {label} | " + " | ".join(_short(cell[m]) for m in methods) + " |")
    lines += [
        "",
        "## Details",
        "",
        "| method | n | ratio | density | ρ | seeds | exact rate | code-column rate (min) | mean error | median time (s) | certified | warnings |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if not r["applicable"]:
            continue
        if not r["seeds_run"]:
            lines.append(f"| {r['method']} | {_cell_label(r)} | 0/{r['seeds']} | | | | | | | |")
            continue
        cert = "" if r["certified"] is None else f"{r['certified']:.2f}"
        code = "" if r["code_rate"] is None else f"{r['code_rate']:.2f} ({r['min_code_rate']:.2f})"
        seeds = f"{r['seeds_run']}/{r['seeds']}" + ("†" if r["truncated"] else "")
        lines.append(
            f"| {r['method']} | {_cell_label(r)} | {seeds} | {r['exact_rate']:.2f} | {code} | {r['mean_error']:.1e} | "
            f"{r['median_seconds']:.3g} | {cert} | {r['n_warnings']}" + (f" ({r['n_failures']} failed)" if r["n_failures"] else "") + " |"
        )
    lines += [
        "",
        "Notes",
        "",
        "* exact rate: fraction of true atoms matched (Hungarian, sign and scale free) with error ≤ 1e-8, mean over seeds; "
        "code-column rate: the same for the unmixing rows (code = Y @ unmixing.T; truth: rows of inv(D).T), i.e. "
        "the fraction of code columns recovered exactly. The atoms are the inverse of the whole unmixing matrix, so a "
        "single wrong direction spoils (almost) every atom: a low atom rate with a high code-column rate means "
        "partial recovery; "
        "mean error: mean matched atom error min_s ‖a/‖a‖ − s·â/‖â‖‖ (√2 = no match), mean over seeds; "
        "time: median wall time of `fit` over the seeds run; certified: fraction of atoms with `exact_` True (sudl only: "
        "the code column is exactly sparse and its zero samples determine it, `sudl.rounding.zeros_determine`); "
        "warnings: number of warnings (mostly `ConvergenceWarning`) raised by all the fits of the cell.",
        f"* `er_spud` (one LP per direction, valid only for sparse codes, density ≲ 1/√n) is run only where "
        f"density ≤ {args.er_spud_max_density:g} and n_features ≤ {args.er_spud_max_features}; elsewhere “—”.",
        "* FastICA: `FastICA(n_components=n, whiten='unit-variance', max_iter=1000)`, atoms = rows of `mixing_.T`; "
        "the sparse codes are not centred (FastICA subtracts the mean), reported as is.",
        f"* DictionaryLearning: `DictionaryLearning(n_components=n, alpha={args.dl_alpha:g}, max_iter={args.dl_max_iter})`, "
        f"atoms = rows of `components_`; an approximate (lasso) method, so its exact rate is ~0 by design — compare its "
        f"mean error. Run only where n_features ≤ {args.dl_max_features} (about 200 s per fit at n=100 even with 50 "
        "iterations); elsewhere “—”.",
        f"* † a fit took more than --max-seconds={args.max_seconds:g} s, so the method's remaining seeds in that cell were "
        "skipped (statistics over the seeds run). ‡ at least one fit raised an exception (counted as rate 0, error √2).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    command = "python " + shlex.join(sys.argv if argv is None else ["benchmarks/sudl_benchmark.py", *argv])
    if os.environ.get("OMP_NUM_THREADS"):
        command = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '')} " + command
    methods = list(args.solvers) + list(args.baselines)
    fits, rows, total = run_grid(args)
    text = markdown(rows, methods, args, total, command)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"command": command, "total_seconds": total, "rows": rows, "fits": fits},
                                              indent=1), encoding="utf-8")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
