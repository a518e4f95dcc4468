"""Flower's own defences, as a federation turns them on, and the ε each client spends against the server.

Nothing here clips or adds noise: the mods and the strategy wrapper are Flower's.

* ``"clipping"``: central DP with client-side clipping.  Each client's ``fixedclipping_mod`` scales
  its update θ_E − θ₀ to norm at most C (the clipping norm the server's
  ``DifferentialPrivacyClientSideFixedClipping`` sends it); the wrapper adds N(0, (z C / K)²) to
  the *aggregate* of the K clients.  The server sees every clipped update before that noise, so
  against the server ε = ∞ (a clipped update is the gradient times one scalar: the end-to-end
  check reads it, :func:`gradinv.end_to_end.label_counts`); the released models are
  (ε, δ)-DP for each client at noise multiplier z over the rounds.
* ``"local-dp"``: Flower's ``LocalDpMod(C, Δ, ε₁, δ)`` clips the update to C and adds
  N(0, s²), s = Δ √(2 ln(1.25/δ)) / ε₁, to every parameter the client sends: (ε₁, δ)-DP per round
  against everyone, the server included; over r rounds the Gaussian mechanism at noise multiplier
  s/Δ composed r times (Opacus' RDP accountant, :func:`gradinv.audit.privacy.epsilon`, sampling
  rate 1: each client takes part in every round).

* ``"secagg"``: Flower's SecAgg+ (``secaggplus_mod`` on the clients, ``SecAggPlusWorkflow`` on
  the server): the server sees only the round's aggregate, quantised
  (:mod:`gradinv.flower.secure_aggregation`), never one client's update; no noise is added for
  privacy, so ε = ∞.

ε is per client (client-level: the unit protected is the client's whole update), at the δ given.
"""

import math
from dataclasses import dataclass

from ..audit.privacy import DEFAULT_DELTA, epsilon
from ._flwr import require_flwr

DEFENCES = ("none", "clipping", "local-dp", "secagg")
"""The ``defence`` values of a run configuration."""


@dataclass(frozen=True)
class ClientDefence:
    """What every client applies to its update before the server receives it, with Flower's own code.

    Parameters
    ----------
    name : {"none", "clipping", "local-dp", "secagg"}
    clipping_norm : float
        C, the norm each update is clipped to (both defences).
    noise_multiplier : float
        z of the central DP wrapper ("clipping"): the aggregate gets noise of std z C / K.
    epsilon, delta : float
        ε₁ and δ of ``LocalDpMod`` per round ("local-dp"); δ is also the δ of every ε reported.
    sensitivity : float, optional
        Δ of ``LocalDpMod``; default C (a clipped update moves at most C).
    clients : int
        K, the clients sampled per round (the central wrapper's ``num_sampled_clients``).
    max_weight : float
        ``max_weight`` of ``SecAggPlusWorkflow`` ("secagg"): each client scales its parameters by
        n_k / max_weight before the quantisation (default: Flower's, 1000).
    """

    name: str = "none"
    clipping_norm: float = 1.0
    noise_multiplier: float = 1.0
    epsilon: float = 1.0
    delta: float = DEFAULT_DELTA
    sensitivity: float = None
    clients: int = 1
    max_weight: float = 1000.0

    def __post_init__(self):
        if self.name not in DEFENCES:
            raise ValueError(f"unknown defence {self.name!r}; choose one of {DEFENCES}")
        if self.name == "secagg" and not self.max_weight > 0:
            raise ValueError(f"SecAgg+'s max weight must be positive, got {self.max_weight}")
        if self.name in ("none", "secagg"):
            return
        if not self.clipping_norm > 0:
            raise ValueError(f"the clipping norm must be positive, got {self.clipping_norm}")
        if self.name == "clipping" and not self.noise_multiplier >= 0:
            raise ValueError(f"the noise multiplier must be non-negative, got {self.noise_multiplier}")
        if self.name == "local-dp" and not (self.epsilon > 0 and 0 < self.delta < 1):
            raise ValueError(f"LocalDpMod needs ε > 0 and 0 < δ < 1, got ε = {self.epsilon}, δ = {self.delta}")

    @classmethod
    def from_run_config(cls, cfg):
        """The defence of a Flower run configuration (keys ``defence``, ``clipping-norm``,
        ``noise-multiplier``, ``dp-epsilon``, ``dp-delta``, ``clients``, ``secagg-max-weight``); "none"
        without them."""
        name = str(cfg.get("defence", "none"))
        if name == "none":
            return cls()
        if name == "secagg":
            return cls(name, clients=int(cfg["clients"]), max_weight=float(cfg["secagg-max-weight"]))
        return cls(name, clipping_norm=float(cfg["clipping-norm"]), noise_multiplier=float(cfg["noise-multiplier"]),
                   epsilon=float(cfg["dp-epsilon"]), delta=float(cfg["dp-delta"]), clients=int(cfg["clients"]))

    @property
    def local_sensitivity(self):
        """Δ of ``LocalDpMod``: the one given, else C."""
        return self.clipping_norm if self.sensitivity is None else self.sensitivity

    @property
    def local_noise_std(self):
        """s, the std of ``LocalDpMod``'s noise on each parameter (0 for the other defences)."""
        if self.name != "local-dp":
            return 0.0
        return self.local_sensitivity * math.sqrt(2 * math.log(1.25 / self.delta)) / self.epsilon

    def client_mod(self):
        """Flower's client mod of this defence (``mods=[...]`` of a ``ClientApp``), or None.  SecAgg+'s
        mod needs Flower's legacy client API: the demo's ``secagg_client_app`` holds it."""
        if self.name in ("none", "secagg"):
            return None
        require_flwr()
        from flwr.clientapp.mod import LocalDpMod, fixedclipping_mod

        if self.name == "clipping":
            return fixedclipping_mod
        return LocalDpMod(self.clipping_norm, self.local_sensitivity, self.epsilon, self.delta)

    def wrap_strategy(self, strategy):
        """The server's strategy as this defence needs it: Flower's central DP wrapper for "clipping"."""
        if self.name != "clipping":
            return strategy
        require_flwr()
        from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping

        return DifferentialPrivacyClientSideFixedClipping(strategy, self.noise_multiplier, self.clipping_norm,
                                                          self.clients)

    def spent(self, rounds):
        """The ε each client has spent after ``rounds`` rounds, at δ: ``epsilon_server`` against the
        server that receives its update, ``epsilon_released`` against those who see only the
        global models (∞ without noise)."""
        if self.name == "local-dp":
            server = released = epsilon(self.local_noise_std / self.local_sensitivity, 1.0, rounds, self.delta)
        elif self.name == "clipping":
            server, released = math.inf, epsilon(self.noise_multiplier, 1.0, rounds, self.delta)
        else:
            server = released = math.inf
        return {"defence": self.name, "epsilon_server": server, "epsilon_released": released, "delta": self.delta}
