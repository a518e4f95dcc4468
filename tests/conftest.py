"""Test configuration: Hypothesis profiles ("ci" is the default and fast; "long" for local runs:
``HYPOTHESIS_PROFILE=long pytest tests/properties``)."""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=12, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def bg_small():
    """Bernoulli–Gaussian data, 20 atoms, 400 samples, density 0.5."""
    from sudl import make_sparsely_used_signal

    return make_sparsely_used_signal(400, 20, density=0.5, random_state=0)


def codes_match(true_code, est_code, tol=1e-8):
    """Number of true code columns matched by an estimated column up to scale (|cos| > 1 − tol)."""
    T = true_code / np.linalg.norm(true_code, axis=0)
    E = est_code / np.linalg.norm(est_code, axis=0)
    return int(np.sum(np.abs(T.T @ E).max(axis=1) > 1 - tol))
