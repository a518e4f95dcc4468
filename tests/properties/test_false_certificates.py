"""The false-certificate fuzz (issue 21) as a property, on small zoo clients: whatever is perturbed
(gradients at 1e-12…1e-6, the server's W or b, one row, dL/db, duplicates, DP-like noise, a
rank-deficient batch), no certified sample is other than the client's.

The perturbations and the trial are those of ``benchmarks/false_certificates.py`` (the full
study, ``docs/certificates.md``); here a fast draw of them."""

import importlib.util
from functools import lru_cache
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from gradinv.cases import make_client

_spec = importlib.util.spec_from_file_location(
    "false_certificates", Path(__file__).resolve().parents[2] / "benchmarks" / "false_certificates.py")
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

LAYER_BLIND_SPOT = ("bias_scaled", "bias_in_span")
"""dL/db changed inside the span of dL/dZ: the attacked layer alone reads each sample's scale off
it and cannot tell; only the rest of the model can (:mod:`gradinv.end_to_end`)."""


@lru_cache(maxsize=None)
def client(kind, batch_size, seed):
    return make_client(kind, batch_size=batch_size, width=64, random_state=seed)


@st.composite
def perturbations(draw):
    how = draw(st.sampled_from(sorted(fuzz.PERTURBATIONS)))
    return how, draw(st.sampled_from(fuzz.PERTURBATIONS[how]))


@given(st.sampled_from(["mlp2_digits", "mlp3_photos"]), st.integers(4, 8), st.integers(0, 1), perturbations())
def test_no_certified_sample_is_not_the_clients(kind, batch_size, seed, perturbation):
    how, size = perturbation
    row = fuzz.trial(client(kind, batch_size, seed), how, size, seed, max_time=10.0)
    assert row["false_certificates"] == 0, row
    if how not in LAYER_BLIND_SPOT:
        assert row["layer_false_certificates"] == 0, row


def test_a_merged_near_duplicate_pair_is_not_counted_twice():
    """Two inputs 1e-4 apart with one label, merged by the factorisation into their midpoint: counted
    twice (as an input sent twice would be), that midpoint matches every gradient to second order
    in their distance (3.6e-13 here), so the end-to-end check must not weigh samples when dL/dW
    dropped a singular value above rounding.  The case the full fuzz found."""
    v = make_client("mlp2_trained", batch_size=8, width=200, random_state=1)
    row = fuzz.trial(v, "near_duplicate", 1e-4, 1, max_time=5.0)
    assert row["n"] == 7 and row["false_certificates"] == 0 and row["certified"] == 0, row
