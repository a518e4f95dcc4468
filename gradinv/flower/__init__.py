"""Auditing a Flower federation: what the server learns from each client update.

* :class:`~gradinv.flower.strategy.LeakageAudit` wraps any Flower strategy (``flwr.serverapp``
  message API): aggregation is the wrapped strategy's, unchanged; every training reply is
  inverted and one JSON line per client update is written to ``leakage.jsonl``.
* :mod:`gradinv.flower.apps` holds the demo federation's ``ServerApp`` and ``ClientApp``,
  :mod:`gradinv.flower.processes` starts Flower's SuperLink and SuperNodes on loopback, and
  :mod:`gradinv.flower.demo` is the ``gradinv flower-demo`` command.

Needs the ``flower`` extra: ``pip install spearkit[flower]``.
"""

FLWR_MISSING = "the Flower audit needs flwr: pip install 'spearkit[flower]'"


def require_flwr():
    """Import flwr or raise an ImportError that says how to install it."""
    try:
        import flwr
    except ImportError as e:  # pragma: no cover - the test extra installs flwr
        raise ImportError(FLWR_MISSING) from e
    return flwr


def __getattr__(name):
    if name == "LeakageAudit":
        require_flwr()
        from .strategy import LeakageAudit

        return LeakageAudit
    raise AttributeError(name)
