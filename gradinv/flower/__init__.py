"""Auditing a Flower federation: what the server learns from each client update.

* :class:`~gradinv.flower.strategy.LeakageAudit` wraps any Flower strategy (``flwr.serverapp``
  message API): aggregation is the wrapped strategy's, unchanged; every training reply is
  inverted and one JSON line per client update is written to ``leakage.jsonl``.
* :class:`~gradinv.flower.secure_aggregation.SecureAggregationAudit` wraps a legacy strategy run
  under Flower's ``SecAggPlusWorkflow``: the server sees each round's aggregate only, inverted as
  one batch of the clients' samples.
* :mod:`gradinv.flower.apps` holds the demo federation's ``ServerApp`` and ``ClientApp``,
  :mod:`gradinv.flower.processes` starts Flower's SuperLink and SuperNodes on loopback, and
  :mod:`gradinv.flower.demo` is the ``gradinv flower-demo`` command.

Needs the ``flower`` extra: ``pip install spearkit[flower]``.
"""

from ._flwr import FLWR_MISSING, require_flwr

__all__ = ["FLWR_MISSING", "LeakageAudit", "require_flwr"]


def __getattr__(name):
    if name == "LeakageAudit":
        require_flwr()
        from .strategy import LeakageAudit

        return LeakageAudit
    raise AttributeError(name)
