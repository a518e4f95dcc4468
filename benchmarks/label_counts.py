"""How well the classifier's bias gradient gives the samples per class (gradinv.labels.label_counts).

For cross-entropy clients of several (b, m) and seeds, prints the true counts per class and the
largest error of the estimate, with a uniform softmax and with the softmax fitted from k known
upstream gradients u_j (the true columns' least-squares fits, as the informed search has them
for the columns it found; oriented and rescaled as a found direction would be).

    python benchmarks/label_counts.py
"""

import argparse
import json

import numpy as np
import torch

from gradinv.search import templates
from gradinv.cases import make_victim
from gradinv.labels import label_counts


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", nargs="+", default=["150x1000", "400x4000", "600x4000"], help="b x m")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--known", type=int, nargs="+", default=[10, 30], help="numbers k of known u_j")
    args = p.parse_args(argv)
    rows = []
    for cell in args.cells:
        b, m = map(int, cell.split("x"))
        for seed in range(args.seeds):
            v = make_victim("cross_entropy", batch_size=b, width=m, random_state=seed)
            true = np.bincount(v.labels.numpy(), minlength=v.grad_next_bias.shape[0])
            W2, G = v.model[-1].weight.detach().numpy(), v.grad_Z.numpy()
            rng = np.random.default_rng(seed)
            row = dict(b=b, m=m, seed=seed, true=true.tolist(),
                       max_error_uniform=float(np.abs(label_counts(v.grad_next_bias, b) - true).max()))
            for k in args.known:
                U = []
                for j in rng.choice(b, k, replace=False):
                    active = G[:, j] != 0
                    u = np.linalg.lstsq(W2[:, active].T, G[active, j], rcond=None)[0]
                    U.append(templates.oriented_upstream(torch.as_tensor(u * rng.choice([-1, 1]) * rng.uniform(0.1, 10))))
                row[f"max_error_known_{k}"] = float(np.abs(label_counts(v.grad_next_bias, b, torch.stack(U)) - true).max())
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


if __name__ == "__main__":
    main()
