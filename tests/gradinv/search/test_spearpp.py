"""SPEAR++ (solver="spear++": ℓ1 on the sphere with RAdam, the gradient alone; gradinv.search.spearpp)."""

import numpy as np
import torch

from gradinv.search.spearpp import l1_sphere_radam


def test_l1_sphere_radam_stays_on_the_sphere_and_lowers_the_l1_loss():
    rng = np.random.default_rng(0)
    L = torch.as_tensor(np.linalg.qr(rng.standard_normal((200, 6)) * (rng.random((200, 6)) < 0.5))[0])
    starts = torch.as_tensor(rng.standard_normal((8, 6)))
    starts = starts / starts.norm(dim=1, keepdim=True)
    q = l1_sphere_radam(L, starts, steps=100)
    assert torch.allclose(q.norm(dim=1), torch.ones(8, dtype=q.dtype))
    assert float((q @ L.T).abs().mean()) < float((starts @ L.T).abs().mean())
