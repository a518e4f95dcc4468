"""Acceptance of a rounded column: the next layer's fit of its active rows."""

import torch


DEEP_NEXT_LAYER_RTOL = 0.5
"""How loosely Jᵀu must fit a column's active rows when J is a candidate's, not the sample's own (a
deep downstream network); the zeros alone make the column exact."""


def _next_layer_fit(g, J, zero):
    """(u, relative residual) of the least-squares fit of the active rows of g by W₂ᵀu."""
    act = ~zero
    u = torch.linalg.lstsq(J[act], g[act, None]).solution[:, 0]
    return u, float((J[act] @ u - g[act]).norm() / g[act].norm())
