"""The audit's directory: its file names and the reading of ``results.csv`` (one row per finished cell)."""

import csv
from pathlib import Path

FIELDS = ["batch_size", "noise_multiplier", "local_steps", "seed", "status", "distinct", "exact_fraction",
          "certified_fraction", "psnr_db", "time_s", "attack_time_s", "approximate", "false_certificates", "solver",
          "layer", "first_layer", "outcome", "reason", "finished_at"]
"""The columns of ``results.csv``; ``exact_fraction`` and ``certified_fraction`` are over the batch's
``distinct`` inputs (an input drawn twice is one column of the gradient: the attack's ``outcome``
says how many samples it stands for)."""
RESULTS, SETTINGS, CELLS = "results.csv", "audit.json", "cells"


def cell_name(layer, batch_size, noise_multiplier, local_steps, seed):
    """The name of a cell's kept arrays, ``cells/NAME.npz``."""
    return f"layer{layer}_b{batch_size}_sigma{noise_multiplier:g}_E{local_steps}_seed{seed}"


def cell_key(row):
    """The grid cell (layer, b, σ, E, seed) of a results row."""
    return (row["layer"], int(row["batch_size"]), float(row["noise_multiplier"]), int(row["local_steps"]),
            int(row["seed"]))


def read_results(path):
    """The complete rows of a results.csv (a line cut by an interruption is dropped)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                cell_key(row)
            except (TypeError, ValueError):
                continue
            if row.get("finished_at"):
                rows.append(row)
    return rows
