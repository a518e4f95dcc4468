"""The certificate of an exact atom: its zero samples determine it (sudl.rounding.zeros_determine)."""

import warnings

import numpy as np
import pytest

from sudl import SparselyUsedDictionaryLearning, make_sparsely_used_signal
from sudl._whitening import whiten
from sudl.rounding import (
    block_kernel,
    round_directions,
    split_block,
    zeros_at_precision,
    zeros_determine,
)


def _shared_support(n=12, p=400, seed=0):
    """Y whose atoms 0 and 1 are used on the same samples: their span holds a line of directions
    vanishing on the same p/2 samples."""
    Y, code, D = make_sparsely_used_signal(p, n, density=0.5, random_state=seed)
    code[:, 1] = np.random.default_rng(seed).standard_normal(p) * (code[:, 0] != 0)
    return code @ D, code, D


def test_a_combination_of_atoms_sharing_their_zeros_is_not_certified():
    Y, code, D = _shared_support()
    white = whiten(Y)
    unmix = np.linalg.inv(D @ white.P).T  # code = Y D⁻¹ = Ȳ (D P)⁻¹ = Ȳ @ unmix.T
    atom, combo = unmix[2], unmix[0] + 0.7 * unmix[1]
    W = np.stack([atom, combo])
    codes = white.Y_white @ W.T
    zeros = (np.abs(codes) <= 1e-9 * np.abs(codes).max(0)).sum(0)
    assert zeros[1] > 2 * Y.shape[1]  # far more zeros than the n + 1 the count alone asks for
    assert list(zeros_determine(white.Y_white, W, 1e-9)) == [True, False]
    rounded = round_directions(white.Y_white, W, random_state=0, n_irls=0, n_samples=0)
    assert rounded.exact[0] and not rounded.exact[1]


def test_support_correlation_keeps_the_density_and_correlates_the_supports():
    _, free, _ = make_sparsely_used_signal(3000, 20, density=0.5, random_state=0)
    _, tied, _ = make_sparsely_used_signal(3000, 20, density=0.5, support_correlation=0.6, random_state=0)

    def mean_correlation(code):
        c = np.corrcoef((code != 0).T)
        return float(c[~np.eye(len(c), dtype=bool)].mean())

    assert abs((tied != 0).mean() - 0.5) < 0.03
    assert abs(mean_correlation(free)) < 0.05 and mean_correlation(tied) > 0.3
    with pytest.raises(ValueError, match="support_correlation"):
        make_sparsely_used_signal(10, 3, support_correlation=1.0)


@pytest.mark.parametrize("rho", [0.0, 0.7])
def test_every_certified_atom_is_a_code_column(rho):
    """Correlated supports make exactly sparse directions that are no atom (samples using few atoms
    span little); the estimator may miss atoms there, but certifies none of those."""
    Y, code, _ = make_sparsely_used_signal(600, 16, density=0.5, support_correlation=rho, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = SparselyUsedDictionaryLearning(random_state=0, max_iter=300).fit(Y)
    learnt = Y @ est.unmixing_.T
    cos = np.abs((learnt / np.linalg.norm(learnt, axis=0)).T @ (code / np.linalg.norm(code, axis=0)))
    assert np.all(cos.max(1)[est.exact_] > 1 - 1e-8)
    assert est.exact_.sum() >= (16 if rho == 0 else 1)


def test_a_block_of_two_atoms_with_nearly_shared_zeros_is_split_into_both():
    """Near-duplicate images give two code columns sharing most zeros: a direction in their span,
    vanishing on the shared zeros, is rounded to one of the two atoms, the other comes as a block atom."""
    rng = np.random.default_rng(2)
    Y, code, D = make_sparsely_used_signal(800, 12, density=0.5, random_state=2)
    flip = rng.random(800) < 0.05  # atom 1 used where atom 0 is, but for 5 % of the samples
    code[:, 1] = rng.standard_normal(800) * ((code[:, 0] != 0) ^ flip)
    Y = code @ D
    white = whiten(Y)
    unmix = np.linalg.inv(D @ white.P).T
    truth = unmix[:2] / np.linalg.norm(unmix[:2], axis=1, keepdims=True)
    combo = (unmix[0] / np.linalg.norm(unmix[0]) + 0.8 * truth[1])
    K = block_kernel(white.Y_white, combo, 1e-9)
    assert K is not None and K.shape[1] == 2
    atoms, n_zeros = split_block(white.Y_white, K, 1e-9)
    assert len(atoms) == 2 and np.allclose(np.sort(np.abs(atoms @ truth.T).max(1)), 1, atol=1e-9)
    rounded = round_directions(white.Y_white, combo[None], random_state=0, n_irls=0, n_samples=0)
    assert rounded.exact[0] and np.abs(rounded.directions[0] @ truth.T).max() > 1 - 1e-9
    both = np.vstack([rounded.directions[0], rounded.block_atoms])  # the block's other atom comes beside
    assert len(both) == 2 and np.allclose(np.sort(np.abs(both @ truth.T).max(0)), 1, atol=1e-9)
    unsplit = round_directions(white.Y_white, combo[None], random_state=0, n_irls=0, n_samples=0, split_blocks=False)
    assert not unsplit.exact[0]


def _split_block_of_first_three(code, D, seed):
    """The zero counts of the atoms ``split_block`` finds in the block of the first three atoms of the
    whitened Y = code D, once checked to be exactly those three."""
    white = whiten(code @ D)
    unmix = np.linalg.inv(D @ white.P).T
    truth = unmix[:3] / np.linalg.norm(unmix[:3], axis=1, keepdims=True)
    K = block_kernel(white.Y_white, truth.sum(0), 1e-9)
    assert K is not None and K.shape[1] == 3
    atoms, n_zeros = split_block(white.Y_white, K, 1e-9, rng=seed)
    assert len(atoms) == 3 and np.allclose(np.sort(np.abs(atoms @ truth.T).max(1)), 1, atol=1e-9)
    return n_zeros


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_block_of_three_atoms_with_few_zeros_of_their_own_is_split_into_all_three(seed):
    """Three near-constant images share most zeros, each with a few of its own (1 % of the samples):
    every atom comes out, on every draw.  A (d − 1)-subset of random samples lands among one atom's own
    zeros with probability ~(1/50)², so 512 of them find about one atom; a pivot sample among its own
    zeros with each other sample in turn finds it whatever the draw (measured on mlp3_grey_blanks, b = 100:
    the three atoms of such a block, where random pairs found two)."""
    rng = np.random.default_rng(seed)
    p, n = 1500, 12
    _, code, D = make_sparsely_used_signal(p, n, density=0.5, random_state=seed)
    shared = code[:, 0] != 0
    for j, own in zip((1, 2), rng.permutation(np.flatnonzero(shared))[: 2 * p // 100].reshape(2, -1)):
        support = shared.copy()
        support[own] = False
        code[:, j] = rng.standard_normal(p) * support
    code[rng.permutation(np.flatnonzero(shared))[: p // 100], 0] = 0.0
    n_zeros = _split_block_of_first_three(code, D, seed)
    assert np.all(n_zeros > p - shared.sum())  # each with zeros of its own beyond the shared ones


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_block_whose_two_atoms_share_own_zeros_still_gives_its_third_atom(seed):
    """Two atoms of a block of three share zeros of their own (two smooth crops dark in the same
    corner) and the third has few: a combination of the first two vanishing on one more sample has
    more zeros than the third atom, and is no atom.  The split returns all three atoms, which span
    the block (the split taking the d most zeros before testing them kept two)."""
    rng = np.random.default_rng(seed)
    p, n = 1500, 12
    _, code, D = make_sparsely_used_signal(p, n, density=0.5, random_state=seed)
    common = code[:, 0] == 0
    rows = rng.permutation(np.flatnonzero(~common))
    shared01, own0, own1, own2 = rows[:15], rows[15:18], rows[18:20], rows[20:26]
    for j in (1, 2):
        code[:, j] = rng.standard_normal(p) * ~common
    for j, own in ((0, np.r_[shared01, own0]), (1, np.r_[shared01, own1]), (2, own2)):
        code[own, j] = 0.0
    n_zeros = _split_block_of_first_three(code, D, seed)
    assert sorted(n_zeros - common.sum()) == [6, 17, 18]


def test_a_direction_whose_code_is_merely_small_on_many_samples_is_not_at_precision():
    """Zeros under the relative zero_tol (1e-9) that are not zeros to working precision (1e-11 of the
    largest entry, far above rounding) do not certify; the exact atom beside it does."""
    Y, code, D = make_sparsely_used_signal(400, 12, density=0.5, random_state=0)
    white = whiten(Y)
    unmix = np.linalg.inv(D @ white.P).T
    atom = unmix[0] / np.linalg.norm(unmix[0])
    zeros = code[:, 0] == 0
    # a direction off the atom by 1e-11 within the span of its zero samples: still under zero_tol there
    off = atom + 1e-11 * white.Y_white[zeros][0] / np.linalg.norm(white.Y_white[zeros][0])
    codes = white.Y_white @ np.stack([atom, off]).T
    assert ((np.abs(codes) <= 1e-9 * np.abs(codes).max(0))[zeros]).all()
    assert list(zeros_at_precision(white.Y_white, np.stack([atom, off]), 1e-9)) == [True, False]
