"""Defence audit: sweep batch size b, DP noise multiplier σ and local steps E over the user's own
model and data on Dask, attack every cell, and write ``results.csv`` and ``report.html``.

Modules: :mod:`~gradinv.audit.cells` (the grid and one cell's client update and attack),
:mod:`~gradinv.audit.run` (``run_audit`` on Dask, streaming and resuming results.csv),
:mod:`~gradinv.audit.report` (the HTML report), :mod:`~gradinv.audit.cli` (``gradinv audit``).
"""

from .cells import AuditError, Cell, make_grid, run_cell
from .run import AuditSummary, run_audit

__all__ = ["run_audit", "AuditSummary", "AuditError", "Cell", "make_grid", "run_cell"]
