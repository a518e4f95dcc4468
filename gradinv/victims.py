"""Victim clients: a PyTorch model, a private batch, and the gradient the client shares.

Two families.  :func:`make_victim` builds the original clients of :data:`KINDS`:

===================  ==================================================================
"cross_entropy"      cross-entropy, 10 classes, standardised images, network at
                     initialisation: the usual client, the default, the one that counts
"cross_entropy_raw"  the same with raw [0, 1] pixels
"trained"            cross-entropy, standardised images, network trained first for
                     ``train_steps`` Adam steps on other crops
"random_upstream"    synthetic: loss ⟨R, ReLU(Z)⟩ with R Gaussian, the SUDL theory's model
===================  ==================================================================

Their labels are the index of the photograph each crop came from.  Architectures: "mlp" =
Linear(n, m) → ReLU → Linear(m, classes), the first Linear is attacked and X are the images;
"conv" = Conv–ReLU–Conv–ReLU–Flatten → Linear(f, m) → ReLU → Linear(m, classes), the first
Linear after the flatten is attacked and X are **features**, not pixels.

:func:`make_client` builds the **client zoo** :data:`ZOO`, the clients an attack is judged on
(the worst case over kinds and seeds is the figure that counts).  Each kind is a
:class:`ClientSpec` crossing depth (number of Linear layers, every hidden one of width m),
architecture, image source and crop (:mod:`gradinv.data`), training state, label distribution
and input scaling; one mean cross-entropy step, C = 10 classes.  Kinds differ from
"mlp2_photos" (the reference) in the columns marked *:

===================  =====  =====  ===============  =======  ====  ========  =======  =======
kind                 depth  arch   source           crop     size  state     labels   scaling
===================  =====  =====  ===============  =======  ====  ========  =======  =======
mlp2_photos          2      mlp    photos           random   32    init      uniform  dataset
mlp2_windows         2      mlp    photos           window*  32    init      uniform  dataset
mlp2_raw             2      mlp    photos           random   32    init      uniform  raw*
mlp2_batchstd        2      mlp    photos           random   32    init      uniform  batch*
mlp2_one_label       2      mlp    photos           random   32    init      one*     dataset
mlp2_skewed          2      mlp    photos           random   32    init      skewed*  dataset
mlp2_trained         2      mlp    photos           random   32    trained*  uniform  dataset
mlp2_trained_raw     2      mlp    photos           random   32    trained*  uniform  raw*
mlp2_sklearn_photos  2      mlp    sklearn_photos*  random   32    init      uniform  dataset
mlp2_skimage_colour  2      mlp    skimage_colour*  random   32    init      uniform  dataset
mlp2_grey28          2      mlp    skimage_grey*    random   28*   init      uniform  dataset
mlp2_grey_windows    2      mlp    skimage_grey*    window*  32    init      uniform  dataset
mlp2_digits          2      mlp    digits*          full*    8*    init      uniform  dataset
mlp3_photos          3*     mlp    photos           random   32    init      uniform  dataset
mlp3_trained         3*     mlp    photos           random   32    trained*  uniform  dataset
mlp6_photos          6*     mlp    photos           random   32    init      uniform  dataset
mlp2_duplicates      2      mlp    photos           random   32    init      uniform  dataset  (quirk "duplicates")
mlp2_blanks          2      mlp    photos           random   32    init      uniform  dataset  (quirk "blanks")
mlp2_near            2      mlp    photos           random   32    init      uniform  dataset  (quirk "near")
mlp3_duplicates      3*     mlp    photos           random   32    init      uniform  dataset  (quirk "duplicates")
mlp3_blanks          3*     mlp    photos           random   32    init      uniform  dataset  (quirk "blanks")
conv_photos          2      conv*  photos           random   32    init      uniform  dataset
conv_trained         2      conv*  photos           random   32    trained*  uniform  dataset
===================  =====  =====  ===============  =======  ====  ========  =======  =======

Quirks (:func:`gradinv.data.apply_quirk`), what a real loader's batch holds: "duplicates" (one
picture twice with its label, another twice with two labels), "blanks" (a white and a black
frame), "near" (two pictures each with a copy shifted by one pixel).

Labels: "uniform" draws each label uniformly over the C classes, independently of the image;
"one" gives the whole batch one label; "skewed" draws from Zipf-like probabilities p_k ∝ 1/k
over a random order of the classes.  Training state "trained": :data:`TRAIN_STEPS` Adam steps
(batches of 32, learning rate 1e-3, in float32) on a pool of :data:`TRAIN_POOL` other images of
the same source (none equal to a batch image, labelled by the image they came from, or the
digit), scaled as the client scales.  "dataset" scaling uses fixed per-channel statistics of
crops of the same kind (:func:`gradinv.data.scale_images`).
The attacked layer is the first Linear followed by ReLU ("0" for MLPs, the Linear after the
flatten for conv); its inputs X (b × n) are pixels for MLPs and features for conv, so the batch
size is bounded by n (64 for digits).  A seed fixes the network, the batch and the labels; the
"trained" and "init" kinds of a seed share the batch.
"""

from dataclasses import dataclass, fields

import numpy as np
import torch
from sklearn.utils import check_random_state
from torch import nn

from .data import (CHANNELS, CROPS, DIGIT_SIZE, N_DIGITS, QUIRKS, SCALINGS, SOURCES, apply_quirk, load_images,
                   sample_images, scale_images)

KINDS = ("cross_entropy", "cross_entropy_raw", "trained", "random_upstream")
ARCHITECTURES = ("mlp", "conv")
TRAINING_STATES = ("init", "trained")
LABEL_DISTRIBUTIONS = ("uniform", "one", "skewed")
CONV_CHANNELS = 8
TRAIN_STEPS = 200
TRAIN_POOL = 512


@dataclass
class Victim:
    """A client and the gradient it shares for the attacked layer Z = W X + b.

    ``inputs`` (b × n) are the attacked layer's inputs (one per row), ``grad_Z`` (m × b) is
    dL/dZ, so grad_W = grad_Z @ inputs and grad_b = grad_Z.sum(1).  ``grad_next_bias`` (C,) is
    the gradient of the bias of the classifier fed by the attacked layer's ReLU (None when that
    ReLU feeds a hidden layer, and for "random_upstream").  ``gradients`` maps every parameter
    name of ``model`` to its gradient, as the client sends them (a parameter the loss does not
    reach is left out); ``spec`` is the zoo kind's :class:`ClientSpec` (None for :data:`KINDS`).
    ``images`` (b, H, W, C) are the client's images as fed to the model, ``model_inputs`` the same
    as the tensor ``model`` takes (what :func:`gradinv.dp_sgd_gradient` and
    :func:`gradinv.fedavg_update` need; for conv it is not ``inputs``).
    """

    kind: str
    model: nn.Module
    layer_name: str
    images: np.ndarray
    labels: torch.Tensor
    inputs: torch.Tensor
    grad_W: torch.Tensor
    grad_b: torch.Tensor
    grad_Z: torch.Tensor
    grad_next_bias: torch.Tensor = None
    gradients: dict = None
    spec: "ClientSpec" = None
    model_inputs: torch.Tensor = None

    @property
    def layer(self):
        return self.model.get_submodule(self.layer_name)

    @property
    def batch_size(self):
        return self.inputs.shape[0]

    @property
    def classifier(self):
        """The model's last Linear if the attacked layer's ReLU feeds it directly, else None."""
        if self.kind == "random_upstream":  # its loss does not pass through the classifier
            return None
        names = [name for name, _ in self.model.named_children()]
        return self.model[-1] if names.index(self.layer_name) + 2 == len(names) - 1 else None

    def knowledge(self):
        """What the honest-but-curious server knows besides the gradient, as keyword arguments of
        :func:`gradinv.invert_layer`: the layer's weight and bias, and the classifier fed by its ReLU
        (omitted when the ReLU feeds a hidden layer, and for "random_upstream")."""
        known = dict(weight=self.layer.weight.detach(), bias=self.layer.bias.detach())
        if self.classifier is not None:
            known["next_weight"] = self.classifier.weight.detach()
        return known

    def attack_kwargs(self):
        """Keyword arguments of :func:`gradinv.invert_layer` for this client's honest gradient:
        :meth:`knowledge` and the classifier's bias gradient (``next_bias_grad``), which the client
        sends with dL/dW and dL/db (not for a DP-SGD or FedAvg update: that has its own)."""
        known = self.knowledge()
        if self.grad_next_bias is not None and "next_weight" in known:
            known["next_bias_grad"] = self.grad_next_bias
        return known


def _linear_stack(n_in, width, n_classes, depth, dtype):
    """Linear(n_in, m) → ReLU → [Linear(m, m) → ReLU] × (depth − 2) → Linear(m, n_classes)."""
    if depth < 2:
        raise ValueError(f"depth (number of Linear layers) must be >= 2, got {depth}")
    dims = [n_in] + [width] * (depth - 1)
    layers = []
    for d_in, d_out in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(d_in, d_out, dtype=dtype), nn.ReLU()]
    return layers + [nn.Linear(width, n_classes, dtype=dtype)]


def make_mlp(n_in, width, n_classes=10, dtype=None, depth=2):
    """Linear(n_in, width) → ReLU → … → Linear(width, n_classes), ``depth`` Linear layers; the
    attacked layer is "0".  Parameters are drawn in ``dtype`` (default: torch's), so a seed gives
    one network whatever the global default."""
    return nn.Sequential(*_linear_stack(n_in, width, n_classes, depth, dtype))


def make_conv_net(in_channels, image_size, width, n_classes=10, channels=CONV_CHANNELS, dtype=None, depth=2):
    """Conv → ReLU → Conv(stride 2) → ReLU → Flatten → ``depth`` Linear layers (as :func:`make_mlp`);
    attacked: "5", the Linear after the flatten."""
    features = channels * ((image_size + 1) // 2) ** 2
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, padding=1, dtype=dtype), nn.ReLU(),
        nn.Conv2d(channels, channels, 3, stride=2, padding=1, dtype=dtype), nn.ReLU(),
        nn.Flatten(),
        *_linear_stack(features, width, n_classes, depth, dtype),
    )


def layer_gradient(model, layer_name, x, labels=None, upstream=None):
    """One client step: the attacked layer's input X, dL/dW, dL/db and dL/dZ (every parameter's
    ``.grad`` of ``model`` is left set by the same backward pass).

    Loss: mean cross-entropy of ``model(x)`` against ``labels``; or, when ``upstream`` (b × m)
    is given, ⟨upstream, ReLU(Z)⟩ (the synthetic random-upstream client).
    """
    layer = model.get_submodule(layer_name)
    seen = {}

    def hook(module, args, output):
        seen["X"] = args[0].detach()
        output.retain_grad()
        seen["Z"] = output

    handle = layer.register_forward_hook(hook)
    try:
        model.zero_grad()
        out = model(x)
        loss = (upstream * torch.relu(seen["Z"])).sum() if upstream is not None else nn.functional.cross_entropy(out, labels)
        loss.backward()
    finally:
        handle.remove()
    return seen["X"], layer.weight.grad.detach().clone(), layer.bias.grad.detach().clone(), seen["Z"].grad.detach().T.clone()


def parameter_gradients(model):
    """{name: gradient} of every parameter the last backward pass reached."""
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


def _to_torch_images(images, architecture, dtype):
    x = torch.as_tensor(images, dtype=dtype)
    return x.permute(0, 3, 1, 2).contiguous() if architecture == "conv" else x.reshape(x.shape[0], -1)


def _adam_steps(model, batches, architecture, dtype, lr=1e-3):
    """Train ``model`` with Adam on each (images, labels) of ``batches`` (one step each)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for images, labels in batches:
        loss = nn.functional.cross_entropy(model(_to_torch_images(images, architecture, dtype)),
                                           torch.as_tensor(labels))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.zero_grad()


def make_victim(kind="cross_entropy", *, batch_size, width=1000, n_classes=10, architecture="mlp",
                source="photos", image_size=32, dtype=torch.float64, train_steps=100, random_state=0):
    """Build a victim client of ``kind`` (one of :data:`KINDS`, see module doc) and compute the
    gradient it shares."""
    if kind not in KINDS:
        raise ValueError(f"unknown victim kind {kind!r}; choose one of {KINDS} (the zoo: make_client)")
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be 'mlp' or 'conv', got {architecture!r}")
    seed = int(np.random.RandomState(random_state).randint(2**31))
    torch.manual_seed(seed)
    standardised = kind != "cross_entropy_raw"
    images, labels = load_images(batch_size, source=source, size=image_size, standardised=standardised,
                                 random_state=seed)
    channels = images.shape[-1]
    if architecture == "mlp":
        model, layer_name = make_mlp(images[0].size, width, n_classes, dtype=dtype), "0"
    else:
        model, layer_name = make_conv_net(channels, images.shape[1], width, n_classes, dtype=dtype), "5"
    if kind == "trained":
        rng = np.random.RandomState(seed + 1)  # fresh standardised crops, labelled by their photograph
        crops = (load_images(64, source=source, size=image_size, random_state=rng) for _ in range(train_steps))
        _adam_steps(model, ((x, y % n_classes) for x, y in crops), architecture, dtype)
    x = _to_torch_images(images, architecture, dtype)
    labels = torch.as_tensor(labels % n_classes)
    upstream = None
    if kind == "random_upstream":
        gen = torch.Generator().manual_seed(seed)
        upstream = torch.randn(batch_size, width, generator=gen, dtype=dtype)
    X, gW, gb, gZ = layer_gradient(model, layer_name, x, labels, upstream)
    g_next = None if upstream is not None else model[-1].bias.grad.detach().clone()
    return Victim(kind, model, layer_name, images, labels, X, gW, gb, gZ, g_next, parameter_gradients(model),
                  model_inputs=x)


@dataclass(frozen=True)
class ClientSpec:
    """One kind of zoo client (see the module doc's table).

    depth: number of Linear layers (≥ 2; every hidden one of width m); architecture: "mlp" or
    "conv" (a conv front end before the Linear layers); source, crop, size: the images
    (:mod:`gradinv.data`); training: "init" or "trained"; labels: "uniform", "one" or "skewed";
    scaling: "raw", "dataset" or "batch"; n_classes: C; quirk: what the batch holds besides
    distinct crops (:func:`gradinv.data.apply_quirk`: "duplicates", "blanks", "near").
    """

    depth: int = 2
    architecture: str = "mlp"
    source: str = "photos"
    crop: str = "random"
    size: int = 32
    training: str = "init"
    labels: str = "uniform"
    scaling: str = "dataset"
    n_classes: int = 10
    quirk: str = "none"

    def __post_init__(self):
        for name, allowed in (("architecture", ARCHITECTURES), ("source", SOURCES), ("crop", CROPS),
                              ("training", TRAINING_STATES), ("labels", LABEL_DISTRIBUTIONS),
                              ("scaling", SCALINGS), ("quirk", QUIRKS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"ClientSpec.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.depth < 2:
            raise ValueError(f"ClientSpec.depth (number of Linear layers) must be >= 2, got {self.depth}")
        if self.n_classes < 2:
            raise ValueError(f"ClientSpec.n_classes must be >= 2, got {self.n_classes}")
        if (self.source == "digits") != (self.crop == "full") or (self.source == "digits" and self.size != DIGIT_SIZE):
            raise ValueError("'digits' (and only digits) are whole 8×8 images: crop='full', size=8")

    @property
    def n_inputs(self):
        """n, the attacked layer's input dimension (pixels for MLPs, features for conv)."""
        if self.architecture == "conv":
            return CONV_CHANNELS * ((self.size + 1) // 2) ** 2
        return self.size * self.size * CHANNELS[self.source]

    @property
    def max_batch_size(self):
        """The largest batch the client can hold: b ≤ n (else rank(X) < b) and, for digits, ≤ 1797."""
        return min(self.n_inputs, N_DIGITS) if self.source == "digits" else self.n_inputs

    def describe(self):
        """The spec as a dict (for tables and JSON)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


_REFERENCE = ClientSpec()
ZOO = {
    "mlp2_photos": _REFERENCE,
    "mlp2_windows": ClientSpec(crop="window"),
    "mlp2_raw": ClientSpec(scaling="raw"),
    "mlp2_batchstd": ClientSpec(scaling="batch"),
    "mlp2_one_label": ClientSpec(labels="one"),
    "mlp2_skewed": ClientSpec(labels="skewed"),
    "mlp2_trained": ClientSpec(training="trained"),
    "mlp2_trained_raw": ClientSpec(training="trained", scaling="raw"),
    "mlp2_sklearn_photos": ClientSpec(source="sklearn_photos"),
    "mlp2_skimage_colour": ClientSpec(source="skimage_colour"),
    "mlp2_grey28": ClientSpec(source="skimage_grey", size=28),
    "mlp2_grey_windows": ClientSpec(source="skimage_grey", crop="window"),
    "mlp2_digits": ClientSpec(source="digits", crop="full", size=DIGIT_SIZE),
    "mlp3_photos": ClientSpec(depth=3),
    "mlp3_trained": ClientSpec(depth=3, training="trained"),
    "mlp6_photos": ClientSpec(depth=6),
    "mlp2_duplicates": ClientSpec(quirk="duplicates"),
    "mlp2_blanks": ClientSpec(quirk="blanks"),
    "mlp2_near": ClientSpec(quirk="near"),
    "mlp3_duplicates": ClientSpec(depth=3, quirk="duplicates"),
    "mlp3_blanks": ClientSpec(depth=3, quirk="blanks"),
    "conv_photos": ClientSpec(architecture="conv"),
    "conv_trained": ClientSpec(architecture="conv", training="trained"),
}
"""The client zoo: kind name → :class:`ClientSpec` (module doc)."""


def draw_labels(distribution, n, n_classes, random_state=None):
    """``n`` labels in [0, C): "uniform", "one" (one label for all) or "skewed" (p_k ∝ 1/k over a
    random order of the classes)."""
    rng = check_random_state(random_state)
    if distribution == "uniform":
        return rng.randint(n_classes, size=n)
    if distribution == "one":
        return np.full(n, rng.randint(n_classes))
    if distribution == "skewed":
        p = 1.0 / np.arange(1, n_classes + 1)
        return rng.permutation(n_classes)[rng.choice(n_classes, size=n, p=p / p.sum())]
    raise ValueError(f"label distribution must be one of {LABEL_DISTRIBUTIONS}, got {distribution!r}")


def _training_pool(spec, batch, seed):
    """:data:`TRAIN_POOL` images of the spec's source, none equal to an image of ``batch``."""
    n = TRAIN_POOL + len(batch)
    if spec.source == "digits":
        n = min(n, N_DIGITS)
    x, natural = sample_images(spec.source, n, size=spec.size, crop=spec.crop, random_state=seed)
    held = {im.tobytes() for im in batch}
    keep = [i for i in range(n) if x[i].tobytes() not in held][:TRAIN_POOL]
    return x[keep], natural[keep] % spec.n_classes


def _train_on_pool(model, spec, pool, seed, batch=32):
    """:data:`TRAIN_STEPS` Adam steps on mini-batches of ``pool``, in float32 (as clients train);
    the model is cast back to its dtype after."""
    x, y = pool
    rng = np.random.RandomState(seed)
    dtype = next(model.parameters()).dtype

    def batches():
        for _ in range(TRAIN_STEPS):
            idx = rng.choice(len(x), size=min(batch, len(x)), replace=False)
            yield scale_images(x[idx], spec.scaling, source=spec.source, size=spec.size, crop=spec.crop), y[idx]

    _adam_steps(model.float(), batches(), spec.architecture, torch.float32)
    model.to(dtype)


def _attacked_layer(model):
    """The name of the first Linear whose next module is a ReLU."""
    children = list(model.named_children())
    return next(name for (name, mod), (_, nxt) in zip(children, children[1:])
                if isinstance(mod, nn.Linear) and isinstance(nxt, nn.ReLU))


def make_client(kind, *, batch_size, width=1000, random_state=0, dtype=torch.float64):
    """Build a zoo client: ``kind`` is a name of :data:`ZOO` (or a :class:`ClientSpec`); one mean
    cross-entropy step on a batch of ``batch_size`` images, hidden width m = ``width``.

    Returns a :class:`Victim` whose ``gradients`` hold every parameter's gradient (what the
    client sends; ``gradinv.models.attack_model(v.model, v.gradients)`` attacks it as a user
    would) and whose ``inputs`` are the attacked layer's inputs (the truth to compare with).
    The caller's torch random state is left as it was.
    """
    if isinstance(kind, ClientSpec):
        spec, name = kind, "custom"
    elif kind in ZOO:
        spec, name = ZOO[kind], kind
    else:
        raise ValueError(f"unknown client kind {kind!r}; choose one of {tuple(ZOO)} (or pass a ClientSpec)")
    if int(batch_size) != batch_size or batch_size < 1 or int(width) != width or width < 1:
        raise ValueError(f"batch_size and width must be positive integers, got {batch_size}, {width}")
    if batch_size > spec.max_batch_size:
        raise ValueError(f"batch_size {batch_size} exceeds {spec.max_batch_size} for kind {name!r}: the attacked "
                         f"layer has n = {spec.n_inputs} inputs, and b > n inputs have rank < b")
    seed = int(np.random.RandomState(random_state).randint(2**31))
    data_seed, label_seed, train_seed = (int(s) for s in np.random.RandomState(seed).randint(2**31, size=3))
    images, _ = sample_images(spec.source, batch_size, size=spec.size, crop=spec.crop, random_state=data_seed)
    labels = draw_labels(spec.labels, batch_size, spec.n_classes, label_seed)
    images, labels = apply_quirk(images, labels, spec.quirk, spec.n_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if spec.architecture == "mlp":
            model = make_mlp(images[0].size, width, spec.n_classes, dtype=dtype, depth=spec.depth)
        else:
            model = make_conv_net(images.shape[-1], spec.size, width, spec.n_classes, dtype=dtype, depth=spec.depth)
    if spec.training == "trained":
        _train_on_pool(model, spec, _training_pool(spec, images, train_seed), train_seed)
    images = scale_images(images, spec.scaling, source=spec.source, size=spec.size, crop=spec.crop)
    layer_name = _attacked_layer(model)
    labels, x = torch.as_tensor(labels), _to_torch_images(images, spec.architecture, dtype)
    X, gW, gb, gZ = layer_gradient(model, layer_name, x, labels)
    victim = Victim(name, model, layer_name, images, labels, X, gW, gb, gZ, gradients=parameter_gradients(model),
                    spec=spec, model_inputs=x)
    if victim.classifier is not None:
        victim.grad_next_bias = victim.classifier.bias.grad.detach().clone()
    return victim
