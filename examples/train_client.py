"""A plain PyTorch client: one training step of an MLP on handwritten digits, saving what it would share.

Writes ``client_model.pt`` (the state_dict, as the server has it) and ``client_grads.pt`` (the
gradient of every parameter for one batch), both readable with ``torch.load(weights_only=True)``.
Then, as the server:

    gradinv attack client_grads.pt --model-factory examples.train_client:make_model \
        --state client_model.pt -o recovered.npz

The model is built by ``make_model`` (the server knows the architecture); no file holds code.
"""

import argparse

import torch
from sklearn.datasets import load_digits
from torch import nn


def make_model():
    """The architecture: 64 pixels → 200 ReLU units → 10 classes."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 200), nn.ReLU(), nn.Linear(200, 10)).double()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--model-out", default="client_model.pt")
    p.add_argument("--grads-out", default="client_grads.pt")
    p.add_argument("--inputs-out", default=None, help="also save the private batch (to check the attack)")
    args = p.parse_args(argv)
    digits = load_digits()
    x = torch.tensor(digits.data[: args.batch_size] / 16.0)
    y = torch.tensor(digits.target[: args.batch_size])
    model = make_model()
    torch.save(model.state_dict(), args.model_out)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    torch.save({n: p.grad for n, p in model.named_parameters()}, args.grads_out)
    if args.inputs_out:
        torch.save({"inputs": x}, args.inputs_out)
    print(f"wrote {args.model_out} and {args.grads_out} (batch of {args.batch_size} digits, loss {loss.item():.3f})")


if __name__ == "__main__":
    main()
