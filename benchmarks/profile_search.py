"""Where the attack's time goes: seconds per stage of ``attack_model`` on zoo clients, by cProfile.

Each cell (kind, m, b, seed) builds the zoo client and attacks its gradients as a user would
(``attack_model(model, gradients)``, the default search for what the model gives), under
cProfile; the stages are the cumulative times of the functions in :data:`STAGES`.  The search's
own stages (starts, descents, polish, exact rounding, line completion) nest inside "search";
"kernel tests" (the null spaces and zero-set kernels) is counted wherever it is called, inside the
rounding as well, so the rows do not add up to the total.  One SVD of the stacked gradient is
timed beside, in the same process, for the ratio.

Resumable (``benchmarks/_resumable.py``): one JSON line per finished cell in ``--out``.jsonl,
cells already there are skipped, each cell is capped; the table is made from every row of the file.

    python benchmarks/profile_search.py --zoo mlp2_photos --batch-sizes 200 --seeds 1 --out docs/profile_m1000_b200
    python benchmarks/profile_search.py --zoo mlp2_photos --widths 200 --batch-sizes 10 --out /tmp/p
"""

import argparse
import cProfile
import datetime
import json
import os
import platform
import pstats
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from gradinv.cases import ZOO, make_client
from gradinv.factorize import stack_gradient
from gradinv.metrics import evaluate
from gradinv.models import attack_model

sys.path.insert(0, str(Path(__file__).parent))
from _resumable import append_row, done_keys, read_rows, run_capped  # noqa: E402

STAGES = {
    "factorise": [("gradinv/factorize.py", "fit_transform")],
    "search": [("gradinv/search/informed.py", "informed_search"), ("gradinv/search/arrangement.py", "cell_search"),
               ("gradinv/search/spearpp.py", "spearpp_search")],
    "starts": [("gradinv/search/starts.py", "_round_starts"), ("gradinv/search/starts.py", "_cell_margin")],
    "descents": [("gradinv/search/objective.py", "_descend"), ("gradinv/search/arrangement.py", "_alternate"),
                 ("gradinv/search/spearpp.py", "l1_sphere_radam")],
    "polish": [("gradinv/search/polish.py", "_polish_projected")],
    "exact rounding": [("gradinv/search/rounding.py", "_round_polished"),
                       ("gradinv/search/arrangement.py", "_round_candidate"), ("sudl/rounding.py", "round_directions")],
    "kernel tests": [("gradinv/search/rounding.py", "_null_space"), ("gradinv/certificate.py", "zero_set_kernels")],
    "line completion": [("gradinv/search/completion.py", "scan_line")],
    "last column": [("gradinv/last_column.py", "fit_transform")],
    "end-to-end check": [("gradinv/end_to_end.py", "certify_end_to_end")],
}
"""Stage → the functions (file suffix, name) whose cumulative time it is (a function called inside
another stage's counts there too)."""

KEY = ("victim", "m", "b", "seed")


def stage_seconds(stats):
    """Cumulative seconds per stage of :data:`STAGES` from a :class:`pstats.Stats`."""
    out = dict.fromkeys(STAGES, 0.0)
    for (path, _, name), (_, _, _, cumulative, _) in stats.stats.items():
        path = path.replace(os.sep, "/")
        for stage, functions in STAGES.items():
            if any(path.endswith(suffix) and name == fn for suffix, fn in functions):
                out[stage] += cumulative
    return out


def run_cell(kind, m, b, seed, args):
    """One row: the client's attack under cProfile, seconds per stage, and the score."""
    torch.set_default_dtype(torch.float64)
    v = make_client(kind, batch_size=b, width=m, random_state=seed)
    layer = v.layer_name
    grad = stack_gradient(v.gradients[f"{layer}.weight"], v.gradients[f"{layer}.bias"]).numpy()
    t = time.perf_counter()
    np.linalg.svd(grad, full_matrices=False)
    svd_time = time.perf_counter() - t
    profiler = cProfile.Profile()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        t = time.perf_counter()
        profiler.enable()
        res = attack_model(v.model, v.gradients, random_state=seed, max_time=args.max_time)[0]
        profiler.disable()
        total = time.perf_counter() - t
    ev = evaluate(v.inputs, res.inputs, res.exact)
    stages = stage_seconds(pstats.Stats(profiler))
    return dict(victim=kind, m=m, b=b, seed=seed, solver=res.solver, exact=ev["exact"] / b,
                certified=ev["certified"] / b, total=total, svd_time=svd_time, time_over_svd=total / svd_time,
                stages=stages, stop_reason=res.pipeline.named_steps["search"].result_.stop_reason)


def run_grid(args):
    path = args.out.with_suffix(".jsonl")
    done = done_keys(path, KEY)
    command = " ".join(["python benchmarks/profile_search.py", *args.argv])
    for kind in args.zoo:
        for m in args.widths:
            for b in args.batch_sizes:
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    if (kind, m, b, seed) in done:
                        continue
                    status, row = run_capped(Path(__file__), "run_cell", (kind, m, b, seed, args), args.cell_cap)
                    if status != "ok":
                        row = dict(victim=kind, m=m, b=b, seed=seed, exact=0.0, certified=0.0,
                                   error=f"cell cap {args.cell_cap:.0f} s reached" if status == "capped"
                                   else row[-300:])
                    row.update(command=command, date=str(datetime.date.today()))
                    append_row(path, row)
                    print(json.dumps(row), flush=True)


def markdown(rows):
    commands = list(dict.fromkeys(r.get("command", "") for r in rows))
    lines = [f"Search profile, {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, float64; "
             "seconds per stage of `attack_model` (cProfile's cumulative time; the search's stages nest inside "
             "\"search\", and \"kernel tests\" counts wherever they are called, so rows do not add up).", "",
             "Command(s) that wrote the rows (a run resumes its file):", "",
             *(f"- `{c}`" for c in commands), ""]
    cols = ["victim", "m", "b", "seed", "solver", "exact", "certified", "total", "time_over_svd", *STAGES]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = {**r, **r.get("stages", {})}
        lines.append("| " + " | ".join(f"{cells[c]:.3g}" if isinstance(cells.get(c), float) else str(cells.get(c, ""))
                                       for c in cols) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo", nargs="+", default=["mlp2_photos"], choices=list(ZOO))
    p.add_argument("--widths", nargs="+", type=int, default=[1000])
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[200])
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--max-time", type=float, default=None, help="bound of one attack, seconds (default: the library's)")
    p.add_argument("--cell-cap", type=float, default=3600.0, help="wall-clock cap of one cell, seconds")
    p.add_argument("--out", type=Path, default=Path("docs/profile"), help="output prefix: rows in .jsonl, table in .md")
    args = p.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    run_grid(args)
    rows = read_rows(args.out.with_suffix(".jsonl"))
    args.out.with_suffix(".md").write_text(markdown(rows))
    print(markdown(rows))
    return rows


if __name__ == "__main__":
    main()
