"""The audit's verdict in (ε, δ): Opacus' accountants for the noise multipliers of the grid.

A client that takes part in ``rounds`` rounds of ``local_steps`` DP-SGD steps each, every step on a
batch of b drawn from its n samples (sampling rate q = b/n), spends the ε that Opacus' RDP
accountant (``opacus.accountants.RDPAccountant``, Mironov's Rényi DP of the subsampled Gaussian
mechanism) gives for noise multiplier σ after ``rounds · local_steps`` steps, at the δ asked.
Nothing is reimplemented: the accountant is Opacus'.
"""

import math
import warnings

DEFAULT_DELTA = 1e-5
"""δ of the (ε, δ) reported (the usual choice: below 1/n for the datasets of this size)."""


def epsilon(noise_multiplier, sample_rate, steps, delta=DEFAULT_DELTA):
    """ε of ``steps`` DP-SGD steps at ``noise_multiplier`` σ and ``sample_rate`` q, at ``delta``
    (Opacus' RDP accountant); infinite without noise."""
    if noise_multiplier <= 0:
        return math.inf
    from opacus.accountants import RDPAccountant  # the "dp" extra

    accountant = RDPAccountant()
    accountant.history = [(float(noise_multiplier), float(min(sample_rate, 1.0)), int(steps))]
    with warnings.catch_warnings():  # "optimal order is the smallest alpha": ε is then an upper bound, as reported
        warnings.simplefilter("ignore", UserWarning)
        return float(accountant.get_epsilon(delta=delta))


def format_epsilon(eps):
    """ε as a report prints it: ∞ without noise, 3 significant digits otherwise."""
    return "∞" if math.isinf(eps) else f"{eps:.3g}"
