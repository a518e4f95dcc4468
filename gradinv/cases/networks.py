"""The simulated clients' networks: MLPs and a small conv front end, and how a batch of images
(b, H, W, C) enters them.

The attacked layer is the first Linear followed by a ReLU (:func:`attacked_layer`): "0" for an
MLP, the Linear after the flatten for the conv net, whose inputs X are features, not pixels.
"""

import torch
from torch import nn

CONV_CHANNELS = 8  # arbitrary: a small front end whose 8·(s/2)² features exceed the batch sizes tested
ARCHITECTURES = ("mlp", "conv")
WIDTHS = ("constant", "taper")
"""Hidden widths: every one m ("constant"), or m, m/2, m/4, … ("taper", never below the classes)."""


def hidden_widths(width, depth, widths="constant", n_classes=10):
    """The widths of the depth − 1 hidden layers (:data:`WIDTHS`)."""
    if widths not in WIDTHS:
        raise ValueError(f"widths must be one of {WIDTHS}, got {widths!r}")
    if widths == "constant":
        return [width] * (depth - 1)
    return [max(width // 2**i, n_classes) for i in range(depth - 1)]


def _linear_stack(n_in, width, n_classes, depth, dtype, activation, widths="constant"):
    """Linear(n_in, m₁) → act → [Linear(mᵢ, mᵢ₊₁) → act] × (depth − 2) → Linear(m_last, n_classes),
    mᵢ from :func:`hidden_widths`."""
    if depth < 2:
        raise ValueError(f"depth (number of Linear layers) must be >= 2, got {depth}")
    dims = [n_in] + hidden_widths(width, depth, widths, n_classes)
    layers = []
    for d_in, d_out in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(d_in, d_out, dtype=dtype), activation()]
    return layers + [nn.Linear(dims[-1], n_classes, dtype=dtype)]


def make_mlp(n_in, width, n_classes=10, dtype=None, depth=2, activation=nn.ReLU, widths="constant"):
    """Linear(n_in, width) → activation → … → Linear(·, n_classes), ``depth`` Linear layers with the
    hidden ``widths`` of :func:`hidden_widths`; the attacked layer is "0".  Parameters are drawn in
    ``dtype`` (default: torch's), so a seed gives one network whatever the global default."""
    return nn.Sequential(*_linear_stack(n_in, width, n_classes, depth, dtype, activation, widths))


def make_conv_net(in_channels, image_size, width, n_classes=10, channels=CONV_CHANNELS, dtype=None, depth=2,
                  widths="constant"):
    """Conv → ReLU → Conv(stride 2) → ReLU → Flatten → ``depth`` Linear layers (as :func:`make_mlp`);
    attacked: "5", the Linear after the flatten."""
    features = channels * ((image_size + 1) // 2) ** 2
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, padding=1, dtype=dtype), nn.ReLU(),
        nn.Conv2d(channels, channels, 3, stride=2, padding=1, dtype=dtype), nn.ReLU(),
        nn.Flatten(),
        *_linear_stack(features, width, n_classes, depth, dtype, nn.ReLU, widths),
    )


def model_inputs(images, architecture, dtype):
    """Images (b, H, W, C) as the network of ``architecture`` takes them: (b, C, H, W) for "conv",
    flattened rows (b, H·W·C) for "mlp"."""
    x = torch.as_tensor(images, dtype=dtype)
    return x.permute(0, 3, 1, 2).contiguous() if architecture == "conv" else x.reshape(x.shape[0], -1)


def adam_steps(model, batches, architecture, dtype, lr=1e-3):
    """Train ``model`` with Adam on each (images, labels) of ``batches`` (one step each)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for images, labels in batches:
        loss = nn.functional.cross_entropy(model(model_inputs(images, architecture, dtype)), torch.as_tensor(labels))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.zero_grad()


def attacked_layer(model):
    """The name of the first Linear whose next module is a ReLU."""
    children = list(model.named_children())
    return next(name for (name, mod), (_, nxt) in zip(children, children[1:])
                if isinstance(mod, nn.Linear) and isinstance(nxt, nn.ReLU))
