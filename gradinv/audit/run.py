"""``run_audit``: the grid of cells as Dask tasks, results streamed to ``DIR/results.csv``.

Every argument is checked before a cluster starts (:class:`~gradinv.audit.cells.AuditError`).
The workers receive the model factory's ``module:function`` string, the state_dict and the data
as NumPy arrays (scattered once to every worker), and run one task per cell
(:func:`~gradinv.audit.cells.run_cell`).  Each finished cell is appended to ``results.csv`` at
once, so an interrupted audit resumes: cells already in the file are skipped, and the file's
settings (``audit.json``) must match the new call's.
"""

import csv
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ..io import load_tensors
from .cells import AuditError, ClientSettings, attacked_layers, build_model, make_grid, run_cell, warm_up
from .files import CELLS, FIELDS, RESULTS, SETTINGS, cell_key, read_results
from .privacy import DEFAULT_DELTA
from .report import write_report



@dataclass
class AuditSummary:
    """What ``run_audit`` did: cells in the grid, computed now, skipped (already in the file), and
    cells whose task raised (not written, so a rerun retries them)."""

    out_dir: Path
    n_cells: int
    n_computed: int
    n_skipped: int
    errors: list
    wall_time_s: float
    report: Path = None


def load_audit_data(path):
    """(x, y) from an .npz with ``x`` (inputs as the model takes them) and ``y`` (integer labels)."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise AuditError(f"{path}: the data must be an .npz file with arrays 'x' and 'y'")
    arrays = load_tensors(path)
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise AuditError(f"{path}: missing key(s) {missing}; found {sorted(arrays)} (need 'x' and 'y')")
    x, y = arrays["x"], arrays["y"]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise AuditError(f"{path}: 'y' must be a 1-D array of integer labels, got {y.dtype} of shape {y.shape}")
    if x.ndim < 2 or len(x) != len(y):
        raise AuditError(f"{path}: 'x' must hold one input per label (first axis {len(y)}), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
        raise AuditError(f"{path}: 'x' must be finite numbers, got {x.dtype}")
    if y.min() < 0:
        raise AuditError(f"{path}: labels must be >= 0, found {y.min()}")
    return x, y


def _check_grid(batch_sizes, noise_multipliers, local_steps, n_seeds, n_samples):
    if not batch_sizes or not noise_multipliers or not local_steps:
        raise AuditError("give at least one batch size, noise multiplier and number of local steps")
    if min(batch_sizes) < 1 or min(local_steps) < 1 or n_seeds < 1:
        raise AuditError("batch sizes, local steps and seeds must be >= 1")
    if min(noise_multipliers) < 0 or not all(math.isfinite(s) for s in noise_multipliers):
        raise AuditError(f"noise multipliers must be finite and >= 0, got {list(noise_multipliers)}")
    if max(batch_sizes) > n_samples:
        raise AuditError(f"batch size {max(batch_sizes)} is larger than the data ({n_samples} samples)")


def _check_model(model, x, y):
    try:
        with torch.no_grad():
            out = model(torch.as_tensor(x[:2]).to(next(model.parameters()).dtype))
    except Exception as e:  # any failure of the user's forward pass on the user's data
        raise AuditError(f"the model does not accept the data's inputs of shape {x.shape[1:]}: "
                         f"{type(e).__name__}: {' '.join(str(e).split())}") from e
    if out.ndim != 2 or out.shape[1] <= int(y.max()):
        raise AuditError(f"the model's output has shape {tuple(out.shape)} for 2 inputs; need (2, C) "
                         f"logits with C > the largest label {int(y.max())}")


def _sha256(path):
    return None if path is None else hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _prepare_out_dir(out_dir, settings_record):
    """Create DIR, check its settings match, rewrite results.csv with its complete rows; return them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CELLS).mkdir(exist_ok=True)
    settings_path = out_dir / SETTINGS
    if settings_path.is_file():
        previous = json.loads(settings_path.read_text())
        changed = sorted(k for k in settings_record if previous.get(k) != settings_record[k])
        if changed:
            raise AuditError(f"{out_dir} holds an audit with other settings ({', '.join(changed)}); "
                             "resume with the same ones or choose another --out")
    settings_path.write_text(json.dumps(settings_record, indent=2))
    rows = read_results(out_dir / RESULTS)
    tmp = out_dir / (RESULTS + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out_dir / RESULTS)
    return rows


def _client(scheduler, n_workers, n_cells):
    """A Dask client: on the cluster at ``scheduler``, or on a new LocalCluster of worker processes."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout="20s"), None
        except OSError as e:
            raise AuditError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from e
    n = n_workers or max(1, min(os.cpu_count() or 1, n_cells))
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.CRITICAL)
    return Client(cluster), cluster


def run_audit(model_factory, data, out_dir, *, batch_sizes, noise_multipliers=(0.0,), local_steps=(1,), n_seeds=1,
              state=None, layers=None, max_grad_norm=1.0, lr=0.01, max_time=60.0, scheduler=None, n_workers=None,
              report=True, progress=True, delta=DEFAULT_DELTA, rounds=1):
    """Audit ``model_factory`` (``"module:function"``) on ``data`` (.npz with x, y) over the grid
    layers × b × σ × E × seeds (``layers``: names of Linear → ReLU layers; default every one);
    write ``out_dir``/results.csv (and report.html).  ``scheduler``: the address
    of a running Dask scheduler (``tcp://host:port``); default: a LocalCluster of ``n_workers``
    processes.  The report states ε (Opacus' accountant) at ``delta`` for a client that takes part in
    ``rounds`` rounds.  Returns an :class:`AuditSummary`."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    x, y = load_audit_data(data)
    _check_grid(batch_sizes, noise_multipliers, local_steps, n_seeds, len(x))
    if max_grad_norm <= 0 or lr <= 0 or max_time <= 0:
        raise AuditError(f"need max_grad_norm, lr and max_time > 0, got {max_grad_norm}, {lr}, {max_time}")
    if not 0 < delta < 1 or rounds < 1:
        raise AuditError(f"need 0 < delta < 1 and rounds >= 1, got {delta}, {rounds}")
    params = None if state is None else load_tensors(state)
    model = build_model(model_factory, params)
    targets = attacked_layers(model, layers)
    _check_model(model, x, y)
    params = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    settings = ClientSettings(model_factory, tuple(t.name for t in targets), max_grad_norm=float(max_grad_norm),
                              lr=float(lr), max_time=float(max_time))
    record = dict(settings.to_dict(), layers=list(settings.layers), state=None if state is None else str(state),
                  state_sha256=_sha256(state), data=str(data), data_sha256=_sha256(data),
                  sample_shape=list(x.shape[1:]), n_samples=len(x), reasons={t.name: t.reason for t in targets})
    done = {cell_key(r) for r in _prepare_out_dir(out_dir, record)}
    grid = make_grid(settings.layers, batch_sizes, noise_multipliers, local_steps, n_seeds)
    todo = [c for c in grid if c.key not in done]
    errors = []
    if todo:
        errors = _compute(todo, len(grid), settings, params, x, y, out_dir, scheduler, n_workers, progress)
    summary = AuditSummary(out_dir, len(grid), len(todo) - len(errors), len(grid) - len(todo), errors,
                           time.perf_counter() - start)
    if report:

        summary.report = write_report(out_dir, delta=delta, rounds=rounds)
    return summary


def _compute(todo, n_grid, settings, params, x, y, out_dir, scheduler, n_workers, progress):
    """Run ``todo`` as one Dask task per cell (after a warm-up on each worker); append each finished
    row; return the errors."""
    from distributed import as_completed
    from tqdm.auto import tqdm

    client, cluster = _client(scheduler, n_workers, len(todo))
    errors = []
    try:
        state_f, x_f, y_f = (client.scatter(a, broadcast=True) for a in (params, x, y))
        smallest = min(c.batch_size for c in todo)
        client.gather([client.submit(warm_up, settings, state_f, x_f, y_f, smallest, workers=[w], pure=False)
                       for w in client.scheduler_info()["workers"]])
        futures = {client.submit(run_cell, cell, settings, state_f, x_f, y_f, pure=False): cell for cell in todo}
        with open(out_dir / RESULTS, "a", newline="") as f, \
                tqdm(total=n_grid, initial=n_grid - len(todo), desc="audit cells", unit="cell",
                     disable=not progress) as bar:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            for future in as_completed(futures):
                cell = futures[future]
                try:
                    row, kept = future.result()
                except Exception as e:  # a bug or a crash in one cell must not lose the others
                    errors.append(f"{cell.name}: {type(e).__name__}: {e}")
                    bar.update()
                    continue
                if kept:
                    np.savez(out_dir / CELLS / f"{cell.name}.npz", **kept)
                row["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
                writer.writerow(row)
                f.flush()
                bar.update()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return errors
