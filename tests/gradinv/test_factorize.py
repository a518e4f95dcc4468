import numpy as np
import torch

from gradinv import GradientFactorization, make_victim, stack_gradient


def test_batch_size_estimate_on_real_clients():
    """Issue 6: the batch size read from the singular values is right on >= 95% of noiseless clients,
    in float64 and float32."""
    rng = np.random.default_rng(0)
    cases = [(kind, int(b), dtype) for kind in ("cross_entropy", "cross_entropy_raw", "random_upstream")
             for b, dtype in zip(rng.integers(2, 60, size=7), [torch.float64, torch.float32] * 4)]
    right = 0
    for kind, b, dtype in cases:
        v = make_victim(kind, batch_size=b, width=300, random_state=b, dtype=dtype)
        est = GradientFactorization().fit(stack_gradient(v.grad_W, v.grad_b)).batch_size_
        right += est == b
    assert right >= 0.95 * len(cases)


def test_dead_neurons_are_dropped():
    v = make_victim("cross_entropy_raw", batch_size=10, width=300, random_state=0)
    fg = GradientFactorization().fit_transform(stack_gradient(v.grad_W.numpy(), v.grad_b.numpy()))
    dead = np.flatnonzero(np.all(v.grad_Z.numpy() == 0, axis=1))
    assert len(dead) > 0 and not np.isin(dead, fg.rows).any() and len(fg.rows) + len(dead) == 300
