"""Simulated clients: what a client holds, which network it trains, and what it sends.

==========  =====================================================================
data        images shipped inside installed packages: crops, windows, digits,
            scalings and the quirks of a real loader's batch
networks    the clients' MLPs and conv front end, and the attacked layer
updates     what a client sends: one SGD step, DP-SGD (Opacus), local steps
victims     the original clients (:data:`KINDS`, :func:`make_victim`)
zoo         the client zoo an attack is judged on (:data:`ZOO`, :func:`make_client`)
==========  =====================================================================

The zoo, the benchmarks, the audit and the Flower demo all build their clients here; the attack
(:mod:`gradinv`) does not import this package.  The image sources need scikit-image, the
``cases`` extra (``pip install 'spearkit[cases]'``); DP-SGD needs Opacus (the ``dp`` extra).

>>> from gradinv.cases import make_client
>>> v = make_client("mlp2_photos", batch_size=4, width=50, random_state=0)
>>> tuple(v.grad_W.shape), v.layer_name
((50, 3072), '0')
"""

from .networks import attacked_layer, make_conv_net, make_mlp, model_inputs
from .updates import (dp_fedavg_update, dp_sgd_gradient, dp_sgd_gradients, fedavg_pseudo_gradients, fedavg_update,
                      layer_gradient, local_sgd, parameter_gradients, sgd_gradients)
from .victims import KINDS, Victim, make_victim
from .zoo import ZOO, ClientSpec, make_client

__all__ = [
    "make_client", "ZOO", "ClientSpec", "make_victim", "Victim", "KINDS",
    "make_mlp", "make_conv_net", "model_inputs", "attacked_layer",
    "sgd_gradients", "layer_gradient", "parameter_gradients", "dp_sgd_gradients", "dp_sgd_gradient",
    "local_sgd", "fedavg_pseudo_gradients", "fedavg_update", "dp_fedavg_update",
]
