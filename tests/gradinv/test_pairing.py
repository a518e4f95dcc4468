import numpy as np

from gradinv.metrics import evaluate, match_inputs


def test_a_wild_reconstruction_does_not_steal_an_exact_pair():
    """One reconstruction far off (norm 10× an input's) must not pull the exact copy of the largest
    input onto another input: the pairing's costs are capped."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 50)) * np.array([1, 1, 1, 1, 1, 3.0])[:, None]
    X_hat = X.copy()
    X_hat[0] = 30 * rng.normal(size=50)  # sample 0 not recovered
    rows, cols, err = match_inputs(X, X_hat)
    assert np.array_equal(rows, cols)
    ev = evaluate(X, X_hat, np.array([False, True, True, True, True, True]))
    assert ev["exact"] == 5 and ev["certified"] == 5 and ev["false_certificates"] == 0
