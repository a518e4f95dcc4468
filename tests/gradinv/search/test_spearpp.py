"""SPEAR++ (solver="spear++": ℓ1 on the sphere with RAdam, the gradient alone; gradinv.search.spearpp)."""

import numpy as np
import torch

from gradinv import GradientFactorization, stack_gradient
from gradinv.cases import make_client
from gradinv.search.spearpp import l1_sphere_radam
from sudl.rounding import round_directions


def test_l1_sphere_radam_stays_on_the_sphere_and_lowers_the_l1_loss():
    rng = np.random.default_rng(0)
    L = torch.as_tensor(np.linalg.qr(rng.standard_normal((200, 6)) * (rng.random((200, 6)) < 0.5))[0])
    starts = torch.as_tensor(rng.standard_normal((8, 6)))
    starts = starts / starts.norm(dim=1, keepdim=True)
    q = l1_sphere_radam(L, starts, steps=100)
    assert torch.allclose(q.norm(dim=1), torch.ones(8, dtype=q.dtype))
    assert float((q @ L.T).abs().mean()) < float((starts @ L.T).abs().mean())


def test_l1_sphere_radam_reaches_the_columns_from_random_starts():
    """The loss is taken at q/‖q‖: on ‖L q‖₁ itself Adam's steps are mostly radial, undone by the
    retraction, and no start came near a column (here: 0 of 64 within |cos| 0.99; now 53)."""
    from gradinv import GradientFactorization, stack_gradient
    from gradinv.cases import make_victim

    v = make_victim("random_upstream", batch_size=24, width=400, random_state=1)
    fg = GradientFactorization(batch_size=24).fit_transform(stack_gradient(v.grad_W, v.grad_b).numpy())
    L = np.asarray(fg.L)
    G = v.grad_Z.double().numpy()[fg.rows]
    Q_true = L.T @ (G / np.linalg.norm(G, axis=0))
    Q_true /= np.linalg.norm(Q_true, axis=0)
    starts = torch.as_tensor(np.random.default_rng(0).standard_normal((64, 24)))
    q = l1_sphere_radam(torch.as_tensor(L), starts).numpy()
    nearest = np.abs(q @ Q_true).max(1)
    assert (nearest > 0.99).sum() >= 16


def test_the_rounding_splits_two_same_label_columns_left_for_a_lower_l1():
    """Two crops of one photograph with one label give columns sharing ~460 of their ~480 zeros and
    nearly equal elsewhere: their difference has a lower ℓ1 than either column, and the IRLS of the
    rounding moves it further off, to a direction with ~55 exact zeros.  The rounding still splits the
    block that the given difference spans into both columns."""
    v = make_client("mlp3_photos", batch_size=65, width=1000, random_state=1)
    fg = GradientFactorization().fit_transform(stack_gradient(v.grad_W, v.grad_b))
    L = np.asarray(fg.L)
    G = v.grad_Z.numpy()[fg.rows]
    G = G / np.linalg.norm(G, axis=0)
    Q = np.linalg.lstsq(L, G, rcond=None)[0]  # G = L Q
    a, b = 51, 29  # same label, 463 shared zeros
    assert v.labels[a] == v.labels[b]
    Y = torch.as_tensor(L * L.shape[0] ** 0.5)
    rounded = round_directions(Y, torch.as_tensor((Q[:, a] - Q[:, b])[None]), random_state=0)
    atoms = np.vstack([np.asarray(rounded.directions), rounded.block_atoms])
    cos = np.abs((L @ atoms.T / np.linalg.norm(L @ atoms.T, axis=0)).T @ G[:, [a, b]])
    assert rounded.exact[0] and np.allclose(np.sort(cos.max(0)), 1, atol=1e-9)
