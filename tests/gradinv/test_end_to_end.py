"""Certificates from the whole model (issue 21 items 2, 3): the end-to-end check, the reason
each sample is or is not certified, and the mode (exact / approximate) detected from the update."""

import numpy as np
import pytest
import torch

from gradinv import invert_layer
from gradinv.cases import dp_sgd_gradient, fedavg_update, make_victim
from gradinv.metrics import evaluate
from gradinv.models import attack_model


def sent_gradients(v):
    """Every parameter's gradient of one mean cross-entropy step on the victim's batch."""
    v.model.zero_grad()
    torch.nn.functional.cross_entropy(v.model(v.inputs), v.labels).backward()
    return {n: p.grad.detach().clone() for n, p in v.model.named_parameters()}


@pytest.fixture(scope="module")
def client():
    return make_victim("cross_entropy", batch_size=20, width=600, random_state=0)


def test_exact_batch_is_certified_end_to_end(client):
    res, _ = attack_model(client.model, sent_gradients(client), random_state=0, max_time=120)
    ev = evaluate(client.inputs, res.inputs, res.exact)
    assert res.mode == "exact" and res.end_to_end.startswith("passed")
    assert ev["exact"] == 20 and ev["certified"] == 20 and ev["false_certificates"] == 0
    assert set(res.certificate_reason) == {"certified: end to end"}


def test_scaled_bias_gradient_certifies_nothing(client):
    """Issue 21: dL/db × 1.01, the rest the client's.  The batch X/1.01 meets the attacked layer's
    equations (most of its ReLU patterns are unchanged: the layer alone certifies samples that are
    1 % off); the model's other gradients refute it, and every such certificate is revoked."""
    grads = sent_gradients(client)
    grads["0.bias"] = grads["0.bias"] * 1.01
    layer_only = invert_layer(grads["0.weight"], grads["0.bias"], random_state=0, max_time=120,
                              **client.knowledge())
    assert evaluate(client.inputs, layer_only.inputs, layer_only.exact)["false_certificates"] > 0
    res, _ = attack_model(client.model, grads, random_state=0, max_time=120)
    assert res.end_to_end.startswith("failed")
    assert evaluate(client.inputs, res.inputs, res.exact)["false_certificates"] == 0 and not res.exact.any()
    assert all(r.startswith("not certified") for r in res.certificate_reason)


def test_reasons_name_what_is_missing(client):
    """The gradient-only search on a cross-entropy client misses columns (three on this one, more
    than the last-column step completes): each uncertified sample says which other columns fail
    and how; the approximate mode says so."""
    missing = make_victim("cross_entropy", batch_size=20, width=600, random_state=1)
    res = invert_layer(missing.grad_W, missing.grad_b, solver="logcosh", random_state=0,
                       weight=missing.layer.weight.detach(), bias=missing.layer.bias.detach())
    assert res.mode == "exact" and res.end_to_end.startswith("not made")
    uncertified = res.certificate_reason[~res.exact]
    assert len(uncertified) and all(r.startswith("not certified: ") for r in uncertified)
    assert any("other missing column" in r for r in uncertified)
    approx = invert_layer(client.grad_W, client.grad_b, approximate=True, random_state=0, max_time=60,
                          **client.knowledge())
    assert approx.mode == "approximate" and set(approx.certificate_reason) == {"not certified: approximate mode"}


def test_dp_sgd_update_is_detected_and_attacked_approximately(client):
    """Opacus DP-SGD at σ = 1e-5, no mode flag: the tail of the singular values gives it away
    before any search; the approximate reconstruction comes back, nothing certified."""
    pytest.importorskip("opacus")
    gW, gb = dp_sgd_gradient(client.model, client.layer_name, client.inputs, client.labels,
                             noise_multiplier=1e-5, max_grad_norm=1.0, random_state=0)
    res = invert_layer(gW, gb, batch_size=20, random_state=0, max_time=60, **client.knowledge())
    assert res.mode == "approximate" and res.approximate and "tail" in res.mode_reason
    ev = evaluate(client.inputs, res.inputs, res.exact)
    assert not res.exact.any() and ev["psnr"] > 40


def test_fedavg_two_step_update_is_detected_and_attacked_approximately(client):
    """Two full-batch FedAvg steps keep rank b, so only the exact search can tell: it finds no
    column with exact zeros, and the attack reruns in the approximate mode (its accuracy on such
    updates: ``tests/gradinv/test_threat_models.py``)."""
    gW, gb = fedavg_update(client.model, client.layer_name, client.inputs, client.labels, epochs=2, lr=0.01)
    res = invert_layer(gW, gb, random_state=0, max_time=20, **client.knowledge())  # the exact search runs it out
    assert res.mode == "approximate" and "no column of dL/dZ with exact zeros" in res.mode_reason
    assert tuple(res.inputs.shape) == tuple(client.inputs.shape) and not res.exact.any()
    assert set(res.certificate_reason) == {"not certified: approximate mode"}


def test_clean_gradient_is_attacked_once_in_exact_mode(client, monkeypatch):
    """No double work on a clean gradient: one factorisation, exact mode."""
    from gradinv.factorize import GradientFactorization

    calls = []
    real = GradientFactorization.fit_transform
    monkeypatch.setattr(GradientFactorization, "fit_transform", lambda self, g, y=None: calls.append(1) or real(self, g))
    res = invert_layer(client.grad_W, client.grad_b, random_state=0, max_time=120, **client.knowledge())
    assert len(calls) == 1 and res.mode == "exact" and res.mode_reason.startswith("detected: exact")
    forced = invert_layer(client.grad_W, client.grad_b, approximate=False, random_state=0, max_time=120,
                          **client.knowledge())
    assert forced.mode == "exact" and forced.mode_reason == "approximate=False given"


def test_failed_batch_check_keeps_the_certificates_its_columns_confirm():
    """A near-duplicate pair (one label, one ReLU mask) is recovered as a block: its two samples are
    wrong, so the batch's gradients do not match; the other 18 keep their layer certificates,
    each confirmed by the model's own column at its recovered input, and none is false."""
    v = make_victim("cross_entropy", batch_size=20, width=300, random_state=0)
    noise = torch.randn(v.inputs.shape[1], generator=torch.Generator().manual_seed(0), dtype=v.inputs.dtype)
    v.inputs[1], v.labels[1] = v.inputs[0] + 1e-3 * v.inputs[0].norm() * noise / v.inputs.shape[1] ** 0.5, v.labels[0]
    res, _ = attack_model(v.model, sent_gradients(v), random_state=0, max_time=120)
    ev = evaluate(v.inputs, res.inputs, res.exact)
    assert res.end_to_end.startswith("failed")
    assert ev["exact"] >= 18 and ev["certified"] == 18 and ev["false_certificates"] == 0


def test_the_model_confirms_columns_the_layer_cannot_prove():
    """The zoo's mlp2_windows client, b = 20: two windows 0.24 % apart share a ReLU mask (a block),
    and a third column's zero set is fragile (one row carries a direction), so the layer certifies
    1 sample.  The model's own column at each recovered input confirms the fragile one, and
    every sample outside the block is certified, none falsely."""
    from gradinv.cases import make_client

    v = make_client("mlp2_windows", batch_size=20, width=1000, random_state=0)
    res, _ = attack_model(v.model, v.gradients, random_state=0)
    ev = evaluate(v.inputs, res.inputs, res.exact)
    assert res.end_to_end.startswith("failed") and int(res.layer_exact.sum()) <= 2
    assert ev["exact"] == 18 and ev["certified"] == 18 and ev["false_certificates"] == 0
    assert "certified: its column and every other match the model" in set(res.certificate_reason)
    assert sum(r.startswith("not certified: block") for r in res.certificate_reason) == 2
    assert res.outcome()["groups"] == [2] and "a group of 2 inputs known only by their span" in res.describe()


@pytest.mark.parametrize("batch_size", [None, 20])
def test_an_input_sent_twice_is_weighed_twice(batch_size):
    """The same input and label twice: one column of dL/dZ twice the size, 19 recovered samples for
    a batch of 20.  The model weighs that sample twice and the batch's gradients match, whether the
    client said its batch size (Flower's clients do) or not: the 18 others are certified end to end,
    and the one standing for two samples is exact but not certified (two inputs closer than the
    gradient resolves would give the same gradients)."""
    v = make_victim("cross_entropy", batch_size=20, width=300, random_state=0)
    v.inputs[1], v.labels[1] = v.inputs[0], v.labels[0]
    res, _ = attack_model(v.model, sent_gradients(v), batch_size=batch_size, random_state=0, max_time=120)
    assert res.batch_size == 19 and res.end_to_end.startswith("passed") and "batch of 20" in res.end_to_end
    assert res.multiplicity.sum() == 20 and res.exact.sum() == 18
    (twice,) = np.flatnonzero(res.multiplicity == 2)
    assert not res.exact[twice] and res.certificate_reason[twice].startswith("not certified: one input for several")
    assert res.describe().startswith("18 inputs recovered exactly; 1 input standing for 2 samples")
    X = res.inputs.reshape(19, -1)
    assert all(float(torch.min((X - x).norm(dim=1))) <= 1e-6 * float(x.norm()) for x in v.inputs)


def test_an_input_sent_twice_with_two_labels_is_one_input_with_both():
    """The same input with two labels: one column of dL/dZ (their sum), 19 recovered samples for a
    batch of 20; the model runs that input once per label, and the gradients match."""
    v = make_victim("cross_entropy", batch_size=20, width=300, random_state=0)
    other = (int(v.labels[0]) + 1) % 10
    v.inputs[1], v.labels[1] = v.inputs[0], other
    res, _ = attack_model(v.model, sent_gradients(v), random_state=0, max_time=120)
    assert res.batch_size == 19 and res.end_to_end.startswith("passed") and "batch of 20" in res.end_to_end
    assert res.exact.sum() == 18 and res.multiplicity.sum() == 20
    (twice,) = np.flatnonzero(res.multiplicity == 2)
    assert set(np.flatnonzero(res.label_counts[twice])) == {int(v.labels[0]), other}
    assert float((torch.as_tensor(res.inputs[twice]) - v.inputs[0]).norm()) <= 1e-6 * float(v.inputs[0].norm())


def test_a_pair_closer_than_the_gradient_resolves_gets_no_false_certificate():
    """Two inputs 1e-5 apart (relative) with one label: dL/dW drops their pair's singular value at
    rounding and every gradient matches one input sent twice to 1e-14, so the gradient cannot tell
    them from a duplicate; the merged input (5e-6 from either) is reported standing for two samples,
    not certified."""
    from gradinv.cases import layer_gradient, make_client, parameter_gradients

    v = make_client("mlp2_raw", batch_size=8, width=200, random_state=0)
    x, y = v.inputs.clone(), v.labels.clone()
    step = torch.randn(x.shape[1], generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    x[1], y[1] = x[0] + 1e-5 * x[0].norm() * step / step.norm(), y[0]
    v.model.zero_grad()
    layer_gradient(v.model, v.layer_name, x, y)
    for batch_size in (None, 8):
        res, _ = attack_model(v.model, parameter_gradients(v.model), batch_size=batch_size, random_state=0,
                              max_time=30)
        ev = evaluate(x, res.inputs, res.exact)
        assert res.end_to_end.startswith("passed") and res.outcome()["shared"] == [2]
        assert ev["false_certificates"] == 0 and res.exact.sum() == 6


def test_label_counts_read_the_multiplicities_and_the_labels():
    from gradinv.end_to_end import label_counts

    rng = np.random.default_rng(0)
    b, C, m = 30, 5, 60
    M, J = rng.random((b, m)) < 0.5, rng.standard_normal((b, m, C))
    logits = rng.standard_normal((b, C))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    per_label = np.einsum("jm,jmc,jyc->jym", M, J, p[:, None, :] - np.eye(C)[None])
    n = np.zeros((b, C), int)
    n[np.arange(b), rng.integers(0, C, b)] = 1
    n[3, 1] += 1  # one input sent twice with one label
    n[7] = 0
    n[7, [0, 4]] = 1  # and one with two
    B = int(n.sum())
    recovered = np.einsum("jy,jym->jm", n / B, per_label)
    counts, batch = label_counts(per_label, recovered)
    np.testing.assert_array_equal(counts, n)
    assert batch == pytest.approx(B, rel=1e-12)
    single = np.zeros((b, C), int)
    single[np.arange(b), rng.integers(0, C, b)] = 1
    assert label_counts(per_label, np.einsum("jy,jym->jm", single / b, per_label)) is None
    counts, denominator = label_counts(per_label, 1.01 * np.einsum("jy,jym->jm", single / b, per_label))
    np.testing.assert_array_equal(counts, single)  # a scaled update: each input once, the mean's scale read
    assert denominator == pytest.approx(b / 1.01, rel=1e-12)


@pytest.mark.parametrize("scale", [0.3, 1 / 7])
def test_an_update_clipped_as_a_whole_is_certified(scale):
    """A client that clips its whole update (Flower's fixedclipping_mod) sends c·∇ for one c < 1:
    the inputs and labels are the client's, the loss's denominator reads b/c, and every sample is
    certified end to end (before, c = 0.3 read as a batch of 67 and certified none)."""
    v = make_victim("cross_entropy", batch_size=20, width=300, random_state=0)
    sent = {k: scale * g for k, g in sent_gradients(v).items()}
    res, _ = attack_model(v.model, sent, random_state=0, max_time=120)
    ev = evaluate(v.inputs, res.inputs, res.exact)
    assert res.end_to_end.startswith("passed") and f"scaled by {scale:.6g} as a whole" in res.end_to_end
    assert ev["exact"] == 20 and ev["certified"] == 20 and ev["false_certificates"] == 0
    assert res.multiplicity.sum() == 20
