"""Fuzz: perturbed gradients (noise, dropped rows, scaled columns, shuffled bias gradient) never yield a
certified wrong sample.

"Wrong" means: not the input that produced the gradient.  Scaling the input coordinates of dL/dW
gives the exact gradient of another batch, X ⊙ scale; that batch is then the right answer."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from gradinv import GradientError, invert_layer

from .test_theorems import layers, relative_errors


@given(layers(max_b=5), st.sampled_from(["noise", "drop_rows", "scale_columns", "swap_bias"]),
       st.floats(1e-9, 1e-3), st.integers(0, 2**31 - 1))
def test_perturbed_gradient_never_certifies_a_wrong_sample(layer, how, size, seed):
    rng = np.random.default_rng(seed)
    gW, gb, X = layer["grad_W"].copy(), layer["grad_b"].copy(), layer["X"]
    if how == "noise":
        gW += size * np.abs(gW).max() * rng.standard_normal(gW.shape)
    elif how == "drop_rows":
        gW[rng.choice(len(gW), max(1, len(gW) // 10), replace=False)] = 0.0
    elif how == "scale_columns":
        scale = 1 + size * 1e3 * rng.standard_normal(gW.shape[1])
        gW, X = gW * scale, X * scale
    else:
        gb = rng.permutation(gb)
    try:
        res = invert_layer(gW, gb, batch_size=layer["b"], solver="spear", weight=layer["W"], bias=layer["bias"],
                           random_state=0, max_time=2)
    except GradientError as e:  # a clear refusal (no exact column left) is a right answer
        assert "exact zeros" in str(e)
        return
    err = relative_errors(X, res.inputs)
    assert np.all(err[res.exact] <= 1e-6), how
