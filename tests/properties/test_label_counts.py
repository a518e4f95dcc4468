"""Label counts from the classifier's bias gradient (gradinv.labels.label_counts) and the class
allocation of template descents (gradinv.search.class_probabilities, _round_templates).

Mean cross-entropy gives ∂L/∂b₂ = (1/b) Σ_j (softmax_j − e_(y_j)).  Properties: the counts are
exact when the softmax is uniform (no upstream needed) and, from any few known u_j (any positive
scales, either sign), whenever the batch shares its logits; the probabilities sum to 1, keep
every class in reach and favour the classes with more samples missing; the templates follow them.
"""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradinv.labels import label_counts
from gradinv.search import templates


def batch(C, b, logits, rng):
    """Labels, softmax rows and ∂L/∂b₂ of a batch of b sharing ``logits``."""
    y = rng.integers(0, C, b)
    p = np.exp(logits - logits.max())
    P = np.tile(p / p.sum(), (b, 1))
    U = P.copy()
    U[np.arange(b), y] -= 1
    return y, U, U.mean(0)


@settings(max_examples=50, deadline=None)
@given(C=st.integers(2, 20), b=st.integers(1, 300), seed=st.integers(0, 2**31 - 1))
def test_counts_exact_for_uniform_softmax(C, b, seed):
    y, _, grad = batch(C, b, np.zeros(C), np.random.default_rng(seed))
    assert np.allclose(label_counts(grad, b), np.bincount(y, minlength=C), atol=1e-8)


@settings(max_examples=50, deadline=None)
@given(C=st.integers(3, 20), b=st.integers(3, 300), k=st.integers(2, 12), spread=st.floats(0, 3),
       seed=st.integers(0, 2**31 - 1))
def test_counts_exact_from_known_upstream_when_logits_are_shared(C, b, k, spread, seed):
    rng = np.random.default_rng(seed)
    y, U, grad = batch(C, b, spread * rng.standard_normal(C), rng)
    known = rng.choice(b, min(k, b), replace=False)
    if len(set(y[known])) < 2:  # one label only: its own class's p is never seen
        return
    scaled = U[known] * np.exp(rng.uniform(-5, 5, (len(known), 1)))
    oriented = torch.stack([templates.oriented_upstream(torch.as_tensor(s * u)) for s, u in
                            zip(rng.choice([-1.0, 1.0], len(known)), scaled)])
    if not all(int(o.argmin()) == y[j] for o, j in zip(oriented, known)):
        return  # the template's sign test picked the other sign: the label is not readable either
    assert np.allclose(label_counts(grad, b, oriented), np.bincount(y, minlength=C), atol=1e-6 * b)


@given(counts=st.lists(st.floats(-5, 100), min_size=2, max_size=12), data=st.data())
def test_class_probabilities(counts, data):
    C = len(counts)
    found = data.draw(st.lists(st.integers(0, C - 1), max_size=60))
    p = templates.class_probabilities(counts, found, C)
    assert p.shape == (C,) and abs(p.sum() - 1) < 1e-12 and p.min() > 0
    missing = np.maximum(np.asarray(counts) - np.bincount(found, minlength=C), 0)
    order = np.argsort(missing, kind="stable")
    assert np.all(np.diff(p[order]) >= -1e-15)  # more missing, drawn at least as often


def test_templates_follow_the_class_probabilities():
    C, p = 5, np.array([0.7, 0.0, 0.3, 0.0, 0.0])
    T = templates._round_templates([0.0] * templates.TEMPLATE_EVIDENCE, 2000, C, 1, np.random.RandomState(0), p)
    drawn = np.bincount(T.argmin(1).numpy(), minlength=C) / 2000
    assert np.all(drawn[p == 0] == 0) and abs(drawn[0] - 0.7) < 0.05


@given(C=st.integers(2, 12), data=st.data())
def test_missing_class_probabilities_from_found_columns(C, data):
    """Without the bias gradient: None (uniform); with it, the found columns' labels are their u's
    argmin and are subtracted from the counts the same u's give."""
    labels = data.draw(st.lists(st.integers(0, C - 1), max_size=20))
    U = [torch.as_tensor(np.full(C, 1.0 / C)) for _ in labels]
    for u, y in zip(U, labels):
        u[y] -= 1
    g = torch.as_tensor(data.draw(st.lists(st.floats(-0.05, 0.05), min_size=C, max_size=C)), dtype=torch.float64)
    assert templates._missing_class_probabilities(None, 50, U, C) is None
    p = templates._missing_class_probabilities(g, 50, U, C)
    expected = templates.class_probabilities(label_counts(g, 50, torch.stack(U) if U else None), labels, C)
    assert np.allclose(p, expected, atol=1e-12)


def test_label_counts_rejects_bad_input():
    import pytest

    with pytest.raises(ValueError, match="NaN or infinite"):
        label_counts(np.array([0.1, np.nan]), 10)
    with pytest.raises(ValueError, match="vector"):
        label_counts(np.zeros((2, 2)), 10)
    with pytest.raises(ValueError, match="upstream must be"):
        label_counts(np.zeros(3), 10, np.ones((2, 4)))
