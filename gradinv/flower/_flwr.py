"""flwr, imported on demand: the Flower audit is an optional extra."""

FLWR_MISSING = "the Flower audit needs flwr: pip install 'spearkit[flower]'"


def require_flwr():
    """Import flwr or raise an ImportError that says how to install it."""
    try:
        import flwr
    except ImportError as e:  # pragma: no cover - the test extra installs flwr
        raise ImportError(FLWR_MISSING) from e
    return flwr
