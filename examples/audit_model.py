"""A model to audit with ``gradinv audit``: a small convolution-free MLP for 8×8 digits that is
none of gradinv's victims (input images of shape (1, 8, 8), a Flatten, 256 ReLU units, 10 classes).

Write its data and run an audit (from the repository root):

    python examples/audit_model.py --data digits.npz
    gradinv audit --model-factory examples.audit_model:make_model --data digits.npz \
        --batch-sizes 4 8 16 32 --noise-multipliers 0 1e-5 1e-3 --local-steps 1 2 --out audit-digits

``digits.npz`` holds ``x`` (scikit-learn's load_digits, pixels scaled to [0, 1], shape
(1797, 1, 8, 8)) and ``y`` (the digit, 0–9).
"""

import argparse

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn


def make_model():
    """(1, 8, 8) images → Flatten → Linear(64, 256) → ReLU → Linear(256, 10), float64, seeded."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10)).double()


def make_deep_model():
    """The same with a second hidden layer, Linear(256, 128) → ReLU: two layers a server may attack."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                         nn.Linear(128, 10)).double()


def write_data(path):
    """Save load_digits as DATA.npz: x (n, 1, 8, 8) in [0, 1], y (n,) integer labels."""
    digits = load_digits()
    np.savez(path, x=(digits.images / 16.0)[:, None].astype(np.float64), y=digits.target.astype(np.int64))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="digits.npz", help="where to write the data (.npz)")
    args = p.parse_args(argv)
    write_data(args.data)
    print(f"wrote {args.data}")


if __name__ == "__main__":
    main()
