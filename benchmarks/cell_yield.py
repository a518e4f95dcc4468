"""Yield of one round of the gradient-only cell search (``gradinv.search.arrangement``): how many of its starts
round to exact columns of dL/dZ, and how many distinct ones.

The true columns are known to this script (not to the attack).  One round: ``--starts`` starts
spread by the singular values (``gradinv.search.starts._round_starts``), the cell–kernel
alternation (``gradinv.search.arrangement._alternate``, ``--passes`` passes), then the exact rounding of each
(``gradinv.search.arrangement._round_candidate``), without the acceptance checks.

    OMP_NUM_THREADS=1 python benchmarks/cell_yield.py --victim random_upstream --batch-size 150 --passes 8 20
"""

import argparse
import json
import time

import numpy as np
import torch
from sklearn.utils import check_random_state

from gradinv import GradientFactorization, stack_gradient
from gradinv.cases import make_victim
from gradinv.search import arrangement as cells
from gradinv.search.starts import _cell_margin, _remaining_inputs_coords, _round_starts
from gradinv.search.tolerances import tolerances
from gradinv.cases import make_client


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--victim", default="random_upstream", help="random_upstream or a zoo kind")
    p.add_argument("--batch-size", type=int, default=150)
    p.add_argument("--width", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--starts", type=int, default=100)
    p.add_argument("--passes", type=int, nargs="+", default=[cells.ALTERNATIONS])
    args = p.parse_args(argv)
    b, kind = args.batch_size, args.victim
    v = (make_victim if kind == "random_upstream" else make_client)(kind, batch_size=b, width=args.width,
                                                                     random_state=args.seed)
    fg = GradientFactorization().fit_transform(stack_gradient(v.grad_W, v.grad_b).numpy())
    L = torch.as_tensor(np.asarray(fg.L))
    R = torch.as_tensor(np.asarray(fg.R))
    V = torch.linalg.svd(R, full_matrices=False)[2].T
    A = (v.layer.weight.detach().to(torch.float64) @ V)[fg.rows]
    bias = v.layer.bias.detach().to(torch.float64)[fg.rows]
    true = v.grad_Z.detach().to(torch.float64)[fg.rows]
    true = true / true.norm(dim=0)
    tols = tolerances(fg.zero_tol, fg.floor)
    rows = []
    for passes in args.passes:
        rng = check_random_state(args.seed)
        norm = R.shape[1] ** 0.5
        typical = _cell_margin(A, bias, R @ V, norm, rng)
        coords = _remaining_inputs_coords([], R @ V)
        c0 = _round_starts(coords, norm, args.starts, rng)
        t0 = time.perf_counter()
        c, q = cells._alternate(c0, torch.linalg.qr(coords)[0], A, bias, L, margin=cells.CELL_FIT_MARGIN * typical,
                                deadline=float("inf"), passes=passes)
        hits = []
        for ci, qi in zip(c, q):
            d = cells._round_candidate(ci, qi, A, bias, L, tols, None)
            if d is not None:  # one column, or a block's first direction
                g = L @ d[0]
                cos = (true.T @ (g / g.norm())).abs()
                if float(cos.max()) > 1 - 1e-9:
                    hits.append(int(cos.argmax()))
        row = dict(victim=kind, m=args.width, b=b, seed=args.seed, starts=args.starts, passes=passes,
                   exact=len(hits), distinct=len(set(hits)), time=time.perf_counter() - t0)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
