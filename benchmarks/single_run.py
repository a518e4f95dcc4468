"""One attack on one client, with the time of one SVD of the same gradient (the ratio the scale issue
asks for) and, with ``--spear-max-time``, SPEAR's sampling on the same gradient, side by side.

    python benchmarks/single_run.py --victim cross_entropy --batch-size 100 --width 4000 --max-time 900
    python benchmarks/single_run.py --batch-size 20 --width 1000 --spear-max-time 900
"""

import argparse
import json
import time

import torch

from gradinv import invert_layer
from gradinv.cases import KINDS, make_victim
from gradinv.metrics import evaluate


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--victim", choices=KINDS, default="cross_entropy")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--width", type=int, default=4000)
    p.add_argument("--max-time", type=float, default=900.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--spear-max-time", type=float, default=0.0, help="also run SPEAR within this bound (s)")
    args = p.parse_args(argv)
    v = make_victim(args.victim, batch_size=args.batch_size, width=args.width, random_state=args.seed)
    t0 = time.perf_counter()
    torch.linalg.svd(v.grad_W, full_matrices=False)
    t_svd = time.perf_counter() - t0
    known = v.knowledge()
    r = invert_layer(v.grad_W, v.grad_b, random_state=args.seed, max_time=args.max_time, **v.attack_kwargs())
    e = evaluate(v.inputs, r.inputs, r.exact)
    b = args.batch_size
    row = dict(victim=args.victim, m=args.width, b=b, solver=r.solver, columns_found=int(r.sparse.sum()),
               exact=e["exact"] / b,
               certified=e["certified"] / b, false_certificates=e["false_certificates"], psnr=e["psnr"],
               time=r.time, svd_time=t_svd, time_over_svd=r.time / t_svd)
    if args.spear_max_time > 0:
        sp = invert_layer(v.grad_W, v.grad_b, solver="spear", random_state=args.seed, max_time=args.spear_max_time,
                          weight=known["weight"], bias=known["bias"])
        e = evaluate(v.inputs, sp.inputs, sp.exact)
        row.update(spear_exact=e["exact"] / b, spear_certified=e["certified"] / b, spear_time=sp.time,
                   spear_bound=args.spear_max_time, spear_over_attack=sp.time / r.time)
    print(json.dumps(row))
    return row


if __name__ == "__main__":
    main()
