"""Resumable benchmark files: one JSON line per finished cell, each cell run under a wall-clock cap.

A long benchmark appends each cell's row to ``PREFIX.jsonl`` as soon as the cell ends, so that it
can be stopped at any moment and continued later: a rerun with the same file skips the cells
already in it (:func:`done_keys`) and its tables are made from every row the file holds.  Each
cell runs in a child process (spawned, so that no thread state of the parent is copied) and is
killed at its cap (the caller's row then says so, and the cell counts as finished and failed).
"""

import importlib.util
import json
import multiprocessing
import traceback
from pathlib import Path


def read_rows(path):
    """Every row of the JSON-lines file ``path`` (none if it does not exist); a torn last line
    (a run killed while writing it) is ignored."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def cell_key(row, fields):
    return tuple(row.get(f) for f in fields)


def done_keys(path, fields):
    """The cells (tuples of ``fields``) that ``path`` already holds."""
    return {cell_key(r, fields) for r in read_rows(path)}


def append_row(path, row):
    """Append ``row`` to ``path`` as one JSON line, flushed to disk."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()


def _child(script, function, args, conn):
    spec = importlib.util.spec_from_file_location(Path(script).stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        conn.send(("ok", getattr(module, function)(*args)))
    except Exception:  # the row records the failure; the run goes on with the next cell
        conn.send(("error", traceback.format_exc(limit=3)))
    conn.close()


def run_capped(script, function, args, cap):
    """``function(*args)`` of the benchmark file ``script``, in a spawned child killed after ``cap``
    seconds.  Returns ("ok", value), ("error", traceback text) or ("capped", None)."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(str(script), function, args, child))  # not a daemon: a cell may start processes
    proc.start()
    child.close()
    outcome = ("capped", None)
    if parent.poll(cap):
        try:
            outcome = parent.recv()
        except EOFError:  # the child died without a word (killed for memory, a crash in native code)
            outcome = ("error", f"the cell's process ended with exit code {proc.exitcode}")
    proc.join(timeout=5)
    if proc.is_alive():
        proc.kill()
        proc.join()
    return outcome
