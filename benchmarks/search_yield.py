"""Why the informed search stalls at large b (issue 5): its yield round by round.

For the cross-entropy client (m, b) the true inputs are known to this script (not to the attack).
Each round runs the attack's own steps — starts spread by S in the complement of the columns
found, one descent (with class templates when the attack would use them), polish alternated with
the nearest cell (``--projection-passes``), misfit gate and exact rounding of every descent
(without the attack's final zero-count and next-layer checks) — and prints how many of the descents end nearest (in cosine)
to an input already found, the median cosine of the descents to the nearest input still missing,
and how many new columns the round found.  At the end it compares the inputs found with those
still missing: median norm ‖x‖ and median |cosine| of c = Vᵀx to the top right singular vector of
dL/dW (the batch's mean direction, which the starts favour).

    python benchmarks/search_yield.py --batch-size 200 --max-time 240
"""

import argparse
import time

import numpy as np
import torch

from gradinv import GradientFactorization, stack_gradient
from gradinv.cases import make_victim
from gradinv.search import acceptance, objective, polish, rounding, starts, templates
from gradinv.search.tolerances import tolerances


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--width", type=int, default=1000)
    p.add_argument("--starts", type=int, default=100, help="descents per round (the attack's default)")
    p.add_argument("--max-time", type=float, default=240.0)
    p.add_argument("--no-class-templates", action="store_true",
                   help="general descents only (the attack's class_templates=False)")
    p.add_argument("--no-label-counts", action="store_true",
                   help="draw template classes uniformly, not from the classifier's bias gradient")
    p.add_argument("--projection-passes", type=int, default=polish.PROJECTION_PASSES,
                   help="alternations of the polish with the nearest cell (search.polish._polish_projected; 0: none)")
    p.add_argument("--ignore-fragile-rows", action="store_true",
                   help="round without the fragile rows' retry (search.rounding.fragile_rows), to measure what it adds")
    args = p.parse_args(argv)
    b = args.batch_size
    v = make_victim("cross_entropy", batch_size=b, width=args.width, random_state=0)
    fg = GradientFactorization().fit_transform(stack_gradient(v.grad_W, v.grad_b).numpy())
    L, R, rows = torch.as_tensor(fg.L), torch.as_tensor(fg.R), torch.as_tensor(fg.rows)
    V = torch.linalg.svd(R, full_matrices=False)[2].T
    A, bias = (v.layer.weight.detach() @ V)[rows], v.layer.bias.detach()[rows]
    W2 = v.model[-1].weight.detach().T[rows]
    C = v.inputs @ V
    C = C / C.norm(dim=1, keepdim=True)
    Qt = L.T @ v.grad_Z[rows]
    Qt = Qt / Qt.norm(dim=0)  # the true directions, one column per input
    masks = (v.grad_Z[rows] != 0).T.to(L.dtype)  # b × m', the true ReLU masks
    tols, rng, norm = tolerances(fg.zero_tol), np.random.RandomState(0), float(R.shape[1]) ** 0.5
    LtL, fragile = L.T @ L, None if args.ignore_fragile_rows else rounding.fragile_rows(L)
    found_q, found, found_inputs, rounds, deviations, found_u, found_zeros = [], None, set(), [], [], [], []
    A_pinv = torch.linalg.pinv(A)
    margin = starts._cell_margin(A, bias, R @ V, norm, rng)
    next_bias_grad = None if args.no_label_counts else v.grad_next_bias
    print(f"cross_entropy, m={args.width}, b={b} (rank {L.shape[1]})")
    t0 = time.perf_counter()
    deadline = t0 + args.max_time
    while time.perf_counter() < deadline and len(found_q) < L.shape[1]:
        coords = starts._remaining_inputs_coords(found_q, R @ V)
        c0 = starts._round_starts(coords, norm, args.starts, rng)
        class_p = templates._missing_class_probabilities(next_bias_grad, L.shape[1], found_u, W2.shape[1])
        round_templates = None if args.no_class_templates else templates._round_templates(
            deviations, args.starts, W2.shape[1], len(rounds), rng, class_p)
        cf = objective._descend(c0, torch.linalg.qr(coords)[0], A, bias, L, W2, steps=50, lr=0.05,
                          tau=(0.03, 0.001), deadline=deadline, templates=round_templates)
        cos = (cf / cf.norm(dim=1, keepdim=True) @ C.T).abs()
        missing = sorted(set(range(b)) - found_inputs)
        to_found = sum(int(j) in found_inputs for j in cos.argmax(1))
        cells = (cf @ A.T + bias > 0).to(L.dtype)
        hamming = cells @ (1 - masks).T + (1 - cells) @ masks.T  # descents × inputs
        done = torch.zeros(b, dtype=torch.bool)
        done[sorted(found_inputs)] = True
        to_missing = hamming[:, ~done].min(1).values
        mask_to_found = int((hamming[:, done].min(1).values < to_missing).sum()) if done.any() else 0
        new = 0
        zeros = torch.stack(found_zeros) if found_zeros else None
        for polished in polish._polish_projected(cf, A, A_pinv, bias, L, W2, margin, args.projection_passes, found, zeros):
            if polished is None:
                continue
            block = rounding._round_polished(polished, L, tols, found, gram=LtL, fragile=fragile,
                                        found_zeros=zeros,
                                        max_misfit=rounding.MAX_POLISH_MISFIT)
            if block is None:
                continue
            _, g, zero = rounding._refine_on_zeros(L, block[0], tols)
            u = acceptance._next_layer_fit(g, W2, zero)[0]
            deviations.append(templates.template_deviation(u))
            for i, q in enumerate(block):
                if len(found_q) >= L.shape[1]:
                    break
                if found is not None and torch.linalg.svdvals(torch.cat([found, q[None]]))[-1] < 1e-6:
                    continue
                if i == 0:
                    found_u.append(templates.oriented_upstream(u))
                    found_zeros.append(zero)
                found_q.append(q)
                found = torch.stack(found_q)
                found_inputs.add(int((q @ Qt).abs().argmax()))
                new += 1
        rounds.append(dict(time=time.perf_counter() - t0, found=len(found_q), new=new, to_found=to_found,
                           cos_missing=float(cos[:, missing].max(1).values.median()), mask_to_found=mask_to_found,
                           mask_missing=float(to_missing.median()) / masks.shape[1]))
        print(f"  {rounds[-1]['time']:5.0f} s, {len(found_q):3d} found: {to_found}/{args.starts} descents end "
              f"nearest a found input (cosine), {mask_to_found} (mask); median cosine to the nearest missing one "
              f"{rounds[-1]['cos_missing']:.2f}, mask distance {rounds[-1]['mask_missing']:.3f}; {new} new", flush=True)
    missing = sorted(set(range(b)) - found_inputs)
    if found_inputs and missing:
        top = C[:, 0].abs()  # V is ordered by singular value: |cos| of c_j to the top direction
        xnorm = v.inputs.norm(dim=1)
        for name, idx in (("found", sorted(found_inputs)), ("missing", missing)):
            print(f"  {name:7s} ({len(idx):3d}): median ‖x‖ {float(xnorm[idx].median()):.1f}, "
                  f"median |cos| to the top direction {float(top[idx].median()):.2f}")
    return rounds


if __name__ == "__main__":
    main()
