"""How exact the true columns of dL/dZ are in the factored gradient, against their rounding floor.

For each zoo client (kind, b) the true columns g_j are known to this script (not to the attack).
With dL/dW = L R factored as the attack factors it (:class:`gradinv.GradientFactorization`) and
q_j = Lᵀ g_j / ‖g_j‖, it prints the largest over j of

* σ_min/σ_max of L on g_j's exact zeros (what the exact rounding asks to be ≤ the kernel threshold),
* max over those zeros of |L_k q_j| / max |L q_j| (what the zero test asks to be ≤ the zero tolerance),

each against the rounding floor f(q_j) = ε′ s₁ ‖(R Rᵀ)^(−½) q_j‖ (:func:`gradinv.factorize.rounding_floor`),
and how many columns would fail the fixed thresholds (kernel t/10, zeros t, t the zero tolerance:
1e-9 in float64) without the floor.
The largest ratios justify :data:`gradinv.factorize.FLOOR_FACTOR`.

    OMP_NUM_THREADS=1 python benchmarks/rounding_floor.py --clients mlp2_trained:20 mlp2_trained:50 \\
        mlp2_trained_raw:50 mlp2_photos:50 conv_trained:50 mlp3_trained:100 conv_trained:100
"""

import argparse

import numpy as np
import torch

from gradinv import GradientFactorization, stack_gradient
from gradinv.factorize import FLOOR_FACTOR
from gradinv.cases import make_client


def column_exactness(fg, grad_Z):
    """(σ ratio, zero-entry ratio, floor) per true column (columns of ``grad_Z`` on the kept rows)."""
    L = np.asarray(fg.L)
    G = grad_Z[fg.rows]
    Q = L.T @ (G / np.linalg.norm(G, axis=0))
    F = fg.floor
    out = []
    for j in range(G.shape[1]):
        zero = G[:, j] == 0
        s = np.linalg.svd(L[zero], compute_uv=False)
        code = np.abs(L @ Q[:, j])
        out.append((s[-1] / s[0], code[zero].max() / code.max(), np.linalg.norm(F @ Q[:, j]) / np.linalg.norm(Q[:, j])))
    return np.array(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", nargs="+", default=["mlp2_trained:20", "mlp2_trained:50", "mlp2_trained_raw:50",
                                                     "mlp2_photos:50", "conv_trained:50"],
                   help="kind:batch_size pairs of gradinv.cases.ZOO")
    p.add_argument("--width", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--float32", action="store_true", help="clients computed in float32 (default float64)")
    args = p.parse_args(argv)
    print(f"FLOOR_FACTOR = {FLOOR_FACTOR}")
    print("| client | b | s_b/s_1 | max sigma/f | max zero/f | max f | fail kernel t/10 | fail zeros t |")
    print("|---|---|---|---|---|---|---|---|")
    worst, rows = [0.0, 0.0], []
    for spec in args.clients:
        kind, b = spec.split(":")
        v = make_client(kind, batch_size=int(b), width=args.width, random_state=args.seed,
                        dtype=torch.float32 if args.float32 else torch.float64)
        fg = GradientFactorization(batch_size=int(b)).fit_transform(stack_gradient(v.grad_W, v.grad_b).numpy())
        e = column_exactness(fg, v.grad_Z.double().numpy())
        s = fg.singular_values
        worst = [max(worst[0], (e[:, 0] / e[:, 2]).max()), max(worst[1], (e[:, 1] / e[:, 2]).max())]
        print(f"| {kind} | {b} | {s[int(b) - 1] / s[0]:.1e} | {(e[:, 0] / e[:, 2]).max():.2f} | "
              f"{(e[:, 1] / e[:, 2]).max():.2f} | {e[:, 2].max():.1e} | {int((e[:, 0] > fg.zero_tol / 10).sum())} | "
              f"{int((e[:, 1] > fg.zero_tol).sum())} |")
        rows.append(dict(client=kind, b=int(b), sigma_over_floor=float((e[:, 0] / e[:, 2]).max()),
                         zero_over_floor=float((e[:, 1] / e[:, 2]).max())))
    print(f"\nlargest ratios: sigma/f {worst[0]:.2f}, zero/f {worst[1]:.2f} (FLOOR_FACTOR {FLOOR_FACTOR})")
    return rows


if __name__ == "__main__":
    main()
