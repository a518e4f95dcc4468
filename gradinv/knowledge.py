"""What the server knows about the attacked layer, and the one place that picks a search from it.

Levels of knowledge, weakest first, and the search each allows (:meth:`Knowledge.default_search`):

===============  ==========================================  ==============================
level            the server has                              default search
===============  ==========================================  ==============================
``gradient``     dL/dW and dL/db only                        ``"logcosh"`` (a ``sudl`` solver on L)
``layer``        also the layer's W and b                    ``"cells"`` (:mod:`gradinv.search.arrangement`)
``network``      also a deeper network after the ReLU        ``"cells"`` (the network gives labels
                                                             and the end-to-end certificate)
``classifier``   also the classifier W₂ the ReLU feeds       ``"informed"`` (:mod:`gradinv.search`)
===============  ==========================================  ==============================

Measured for ``layer``: see :meth:`Knowledge.default_search`.
"""

from dataclasses import dataclass

from torch import nn

from .downstream import Downstream, single_linear


@dataclass(frozen=True)
class Knowledge:
    """What the server knows: the attacked layer's ``weight`` W (m × n) and ``bias`` b, the
    classifier its ReLU feeds (``next_weight`` W₂, C × m) or the whole ``downstream`` network
    (an ``nn.Module`` or :class:`~gradinv.downstream.Downstream` from the activations to the
    logits), and the classifier's bias gradient ``next_bias_grad``.  Any may be None."""

    weight: object = None
    bias: object = None
    next_weight: object = None
    downstream: object = None
    next_bias_grad: object = None

    @property
    def level(self):
        """"gradient", "layer", "network" or "classifier" (the module doc's table)."""
        if self.weight is None or self.bias is None:
            return "gradient"
        if self.next_weight is not None:
            return "classifier"
        if self.downstream is None:
            return "layer"
        down = self.downstream  # read, not built: a Downstream, a network, or the classifier's W₂
        if isinstance(down, Downstream):
            linear = down.is_linear
        else:
            linear = not isinstance(down, nn.Module) or single_linear(down) is not None
        return "classifier" if linear else "network"

    def default_search(self):
        """The strongest search this knowledge allows: the only place a default search is chosen.

        With W and b the cell search needs nothing downstream, and it is what the layer's
        parameters allow beyond the gradient.  On random-upstream clients (m = 1000, seeds 0–2,
        ``python benchmarks/frontier.py --victims random_upstream --batch-sizes 20 50 --seeds 3
        --spear-max-b 0 [--solver logcosh] --out docs/frontier_random_upstream_default``) the cell
        search recovered and certified every input (b = 20 in 2.4–2.7 s, b = 50 in 8.5–9.0 s),
        log-cosh 85–95 % at b = 20 and 72–82 % at b = 50 (none certified there).
        For a deeper network J(h) differs from one candidate to the next (2 % of noise on a
        sample's input coordinates changes J by 9 % on a 3-layer client), and the cell search,
        which uses the zeros alone, measured as well or better on every deep kind of the zoo at
        m = 1000 (b = 20: mlp3_photos 20/20 in 4.5 s against 20/20 in 4 s with the informed search,
        mlp3_trained 20/20 in 3.6 s against 5.5 s, mlp6_photos 20/20 in 6.7 s against 0/20 in 79 s).
        """
        return {"gradient": "logcosh", "layer": "cells", "network": "cells", "classifier": "informed"}[self.level]

    def approximate_searches(self):
        """The searches an approximate update (DP noise, local steps) is inverted with when the
        whole model is known (:func:`gradinv.models.attack_model`): each runs, and the batch that
        best explains every gradient sent is kept (:func:`gradinv.end_to_end.update_mismatch`).

        With the classifier both the informed and the cell search: neither wins everywhere.
        Measured, DP-SGD σ = 1e-5 at b = 20, m = 1000: cells ≥ 30 dB on 32 of the zoo's 36 rows,
        informed on 15 (``docs/threat_models_zoo.md``); the Flower demo's MLP (64 → 128 → 10, b = 12,
        relative noise 1e-9 to 1e-5 on its update): cells 11–22 dB, informed 97–150 dB.  With a
        deeper network the cell search alone (the informed search found no column on mlp6_photos).
        """
        return ("informed", "cells") if self.level == "classifier" else (self.default_search(),)

    def search_reason(self):
        """One line: the default search, what it uses, and what more knowledge would add."""
        return {
            "gradient": "logcosh: the gradient alone (with the layer's weight and bias: the cell search, "
                        "and certificates)",
            "layer": "cells: the layer's weight and bias (with the network after the layer: labels and "
                     "the end-to-end check; with the classifier it feeds: the informed search)",
            "network": "cells: the layer's weight and bias; the network after it gives the labels and "
                       "the end-to-end check",
            "classifier": "informed: the layer's weight and bias and the classifier its ReLU feeds",
        }[self.level]
