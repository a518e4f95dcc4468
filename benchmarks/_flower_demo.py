"""What the live-federation benchmarks share: ``gradinv flower-demo`` run as a user runs it, its records read back."""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _resumable import append_row, done_keys


def add_federation_arguments(parser, default_out):
    """The federation's size, the cap of one run and the resumable file's prefix."""
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cell-cap", type=int, default=900, help="seconds for one federation (its --timeout)")
    parser.add_argument("--out", type=Path, default=Path(default_out))
    parser.add_argument("--report", action="store_true", help="only write OUT.md from OUT.jsonl")


def run_federation(args, batch_size, seed, extra=()):
    """One ``gradinv flower-demo`` run (``args.clients`` × ``args.rounds``, capped at ``args.cell_cap``)
    with the ``extra`` arguments; returns (its leakage records, its return code, seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo"
        cmd = [sys.executable, "-m", "gradinv.cli", "flower-demo", "--batch-size", str(batch_size),
               "--clients", str(args.clients), "--rounds", str(args.rounds), "--seed", str(seed), "--out", str(out),
               "--no-progress", "--timeout", str(args.cell_cap), *extra]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.cell_cap + 120, check=False)
        leakage = out / "leakage.jsonl"
        records = [json.loads(line) for line in leakage.read_text().splitlines()] if leakage.exists() else []
    return records, done.returncode, time.perf_counter() - t0



def run_missing_cells(path, key, cells, run_cell, shown):
    """Run each cell (a tuple of the ``key`` fields' values) that the resumable file ``path`` lacks:
    ``run_cell(*cell)`` gives its row, appended at once, and its ``shown`` fields are printed."""
    done = done_keys(path, key)
    for cell in cells:
        if tuple(cell) in done:
            continue
        row = run_cell(*cell)
        append_row(path, row)
        print(json.dumps({k: row[k] for k in shown}), flush=True)
