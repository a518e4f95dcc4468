"""What the server knows, in the search's coordinates: the layer (A = W V, b), the neurons kept, the downstream network."""

import torch


class SearchKnowledge:
    """What the server knows, in the search's coordinates c ∈ ℝ^b of an input x = V c.

    ``A`` = W V and ``bias`` on the neurons ``rows`` that L keeps (the hyperplane arrangement
    A c + b = 0 whose cells are the zero sets), the same on every neuron (``A_full``,
    ``bias_full``: h = ReLU(A c + b) is what the downstream network sees), and the
    :class:`~gradinv.downstream.Downstream` network, whose Jacobian J(h) replaces the classifier
    W₂ wherever the column structure g = mask ⊙ Jᵀu is used.
    """

    def __init__(self, A_full, bias_full, rows, downstream):
        self.A_full, self.bias_full, self.rows, self.downstream = A_full, bias_full, rows, downstream
        self.A, self.bias = A_full[rows], bias_full[rows]
        self._cast = {}

    def _in(self, dtype):
        if dtype not in self._cast:
            self._cast[dtype] = tuple(a.to(dtype) for a in (self.A_full, self.bias_full))
        return self._cast[dtype]

    def jacobians(self, c, dtype=torch.float64):
        """Jᵀ on the kept rows at the candidates c (rows): (m' × C), one for all, when the downstream
        network is the classifier W₂; else J(ReLU(A c + b))ᵀ for each, (B × m' × C)."""
        if self.downstream.is_linear:
            return self.downstream.weight_rows(self.rows, dtype)
        A, bias = self._in(dtype)
        return self.downstream.jacobians(torch.relu(c.to(dtype) @ A.T + bias), self.rows)
