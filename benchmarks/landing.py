"""Where the informed search's limits lie (issue 5): how wide the rounding's basin is, and how
close the descents from isotropic starts and from the attack's starts get to a true input.

For the cross-entropy client (m, b): the true coordinates c_j = Vᵀx_j are known to this script
(not to the attack).  Prints (1) for relative perturbations ε of 16 true c_j, how many the
descent + rounding and the rounding alone bring back to column j; (2) for 64 isotropic starts
and 64 of the attack's starts (spread along V by the singular values of dL/dW), the cosine to
the nearest true c before and after one descent, and how many distinct columns they land on.

    python benchmarks/landing.py --batch-size 150
"""

import argparse
import time

import numpy as np
import torch

from gradinv import GradientFactorization, stack_gradient
from gradinv.cases import make_victim
from gradinv.search import objective, rounding, starts
from gradinv.search.tolerances import tolerances


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=150)
    p.add_argument("--width", type=int, default=1000)
    p.add_argument("--steps", type=int, default=50)
    args = p.parse_args(argv)
    b = args.batch_size
    v = make_victim("cross_entropy", batch_size=b, width=args.width, random_state=0)
    fg = GradientFactorization().fit_transform(stack_gradient(v.grad_W, v.grad_b).numpy())
    L, R = torch.as_tensor(fg.L), torch.as_tensor(fg.R)
    V = torch.linalg.svd(R, full_matrices=False)[2].T
    rows = torch.as_tensor(fg.rows)
    A = (v.layer.weight.detach() @ V)[rows]
    bias = v.layer.bias.detach()[rows]
    W2 = v.model[-1].weight.detach().T[rows]
    tols = tolerances(fg.zero_tol)
    C = v.inputs @ V
    Cn = C / C.norm(dim=1, keepdim=True)
    Qt = L.T @ v.grad_Z[rows]
    Qt = Qt / Qt.norm(dim=0)
    norm = float(C.norm(dim=1).mean())
    r = L.shape[1]  # the rank: b less any duplicated inputs
    eye = torch.eye(r, dtype=torch.float64)
    LtL, fragile = L.T @ L, rounding.fragile_rows(L)
    rng = np.random.default_rng(0)

    def descend(c0):
        return objective._descend(c0, eye, A, bias, L, W2, steps=args.steps, lr=0.05, tau=(0.03, 0.001),
                            deadline=time.perf_counter() + 600)

    def column_of(c):
        """The true column the rounding from c lands on, or None."""
        block = rounding._polish_and_round(c, A, bias, L, W2, tols, gram=LtL, fragile=fragile,
                                      max_misfit=rounding.MAX_POLISH_MISFIT)
        if block is None:
            return None
        cos = (block[0] @ Qt).abs()
        return int(cos.argmax()) if float(cos.max()) > 1 - 1e-8 else None

    print(f"cross_entropy, m={args.width}, b={b} (rank {r})")
    for eps in (0.0, 0.1, 0.2, 0.4):
        js = rng.choice(b, 16, replace=False)
        c0 = C[js] + eps * norm * torch.as_tensor(rng.standard_normal((16, r))) / r**0.5
        cf = descend(c0)
        both = sum(column_of(cf[k]) == j for k, j in enumerate(js))
        alone = sum(column_of(c0[k]) == j for k, j in enumerate(js))
        print(f"  true c + {eps:.0%} noise: descent+rounding {both}/16, rounding alone {alone}/16")
    z = torch.as_tensor(rng.standard_normal((64, r)))
    coords = starts._remaining_inputs_coords([], R @ V)  # the attack's starts: spread along V by S
    for name, c0 in (("isotropic", z), ("the attack's (spread by S)", z @ coords.T)):
        c0 = c0 * norm / c0.norm(dim=1, keepdim=True)
        cf = descend(c0)
        before = (c0 / c0.norm(dim=1, keepdim=True) @ Cn.T).max(1).values
        after = (cf / cf.norm(dim=1, keepdim=True) @ Cn.T).max(1).values
        hits = {column_of(c) for c in cf} - {None}
        print(f"  64 {name} starts: cosine to the nearest true c, median {float(before.median()):.2f} before, "
              f"{float(after.median()):.2f} after one descent (best {float(after.max()):.2f}); "
              f"{len(hits)} distinct columns landed")


if __name__ == "__main__":
    main()
