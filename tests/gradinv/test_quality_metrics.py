import numpy as np

from gradinv.metrics import evaluate, psnr


def test_psnr_is_finite_on_blank_images_and_batches():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4, 30))
    X[1] = 0.0  # a black frame
    X[2] = 0.7  # a grey one
    noisy = X + 1e-3 * rng.normal(size=X.shape)
    ev = evaluate(X, noisy, np.zeros(4, bool))
    assert np.isfinite(ev["psnr"]) and 40 < ev["psnr"] < 150
    assert ev["psnr"] == np.mean([psnr(a, b, data_range=np.ptp(X)) for a, b in zip(X, noisy)])
    assert np.isfinite(psnr(X[1], noisy[1])) and np.isfinite(psnr(X[2], noisy[2]))
    assert evaluate(X, X, np.ones(4, bool))["psnr"] == 150.0


def test_a_nan_reconstruction_scores_low_not_the_cap():
    X = np.random.default_rng(1).normal(size=(3, 20))
    bad = X.copy()
    bad[0] = np.nan
    ev = evaluate(X, bad, np.zeros(3, bool))
    assert np.isfinite(ev["psnr"]) and ev["psnr"] < 150 and ev["exact"] == 2
