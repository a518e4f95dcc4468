"""Class templates: at initialisation the loss gradient at the logits is u_j ≈ α (1/C − e_y), so rounds may
fix u to a template t_y, drawn by the classes still missing (from the classifier's bias gradient)."""

import numpy as np
import torch

from ..labels import label_counts


TEMPLATE_DEVIATION = 0.2
"""Descents fix u to a class template once the columns found are within this (median
:func:`template_deviation`) of theirs: :func:`_round_templates`."""
TEMPLATE_EVIDENCE = 10
"""Columns found before the class templates are trusted (arbitrary, not measured)."""
GENERIC_EVERY = 4
"""With class templates in use, every GENERIC_EVERY-th round still runs the general descent
(arbitrary, not measured)."""


def _deviation_from_template(v):
    t = torch.full_like(v, 1.0 / v.shape[-1])
    t[int(torch.argmin(v))] -= 1
    return float((v - (v @ t) / (t @ t) * t).norm() / v.norm())


def template_deviation(u):
    """‖u − α t‖/‖u‖ for the class template t = 1/C − e_y, y = argmin(±u), and the best scale α.

    u = softmax(logits) − e_y (times 1/B) of a cross-entropy client is α t exactly when the softmax
    is uniform, as it nearly is at initialisation (measured on the cross-entropy client, b = 300:
    median 0.05, max 0.15).  The sign of a direction found is arbitrary, so both signs are tried.
    """
    return min(_deviation_from_template(u), _deviation_from_template(-u))


def oriented_upstream(u):
    """±u, the sign closer to its class template (:func:`template_deviation`): its label is argmin."""
    return u if _deviation_from_template(u) <= _deviation_from_template(-u) else -u


def class_probabilities(counts, found_labels, n_classes):
    """How often template descents draw each class: ∝ max(n_c − found_c, 0) + 1, with n the expected
    samples per class (:func:`gradinv.labels.label_counts`) and found_c the columns found with label
    c; the + 1 keeps every class in reach when n is misestimated (measured: up to 10.5 samples
    from 10 columns found, 4.1 from 30, at b ≤ 600; ``benchmarks/label_counts.py``)."""
    found = np.bincount(np.asarray(found_labels, dtype=int), minlength=n_classes)[:n_classes]
    weights = np.maximum(np.asarray(counts, np.float64) - found, 0.0) + 1.0
    return weights / weights.sum()


def _missing_class_probabilities(next_bias_grad, batch_size, found_u, n_classes):
    """:func:`class_probabilities` from the classifier's bias gradient and the oriented u of the
    columns found (their labels, and the softmax :func:`~gradinv.labels.label_counts` fits); None
    (uniform) without that gradient."""
    if next_bias_grad is None:
        return None
    counts = label_counts(next_bias_grad, batch_size, torch.stack(found_u) if found_u else None)
    return class_probabilities(counts, [int(torch.argmin(u)) for u in found_u], n_classes)


def _round_templates(deviations, n_starts, n_classes, round_index, rng, class_p=None):
    """Class templates (n_starts × C, classes drawn with probabilities ``class_p``, default uniform)
    for a round's descents, or None for the general descent: templates once
    :data:`TEMPLATE_EVIDENCE` columns are found and their median :func:`template_deviation` is at
    most :data:`TEMPLATE_DEVIATION`, but for every :data:`GENERIC_EVERY`-th round, which still
    reaches samples whose u is far from a template."""
    if (len(deviations) < TEMPLATE_EVIDENCE or float(np.median(deviations)) > TEMPLATE_DEVIATION
            or round_index % GENERIC_EVERY == 0):
        return None
    T = torch.full((n_starts, n_classes), 1.0 / n_classes, dtype=torch.float64)
    T[torch.arange(n_starts), torch.as_tensor(rng.choice(n_classes, n_starts, p=class_p))] -= 1
    return T
