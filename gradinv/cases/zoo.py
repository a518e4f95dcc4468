"""The client zoo :data:`ZOO`: the clients an attack is judged on (the worst case over kinds and
seeds is the figure that counts); :func:`make_client` builds one.  Each kind is a
:class:`ClientSpec` crossing depth (number of Linear layers; every hidden one of width m, or, with widths
"taper", m, m/2, m/4, …), architecture, image source and crop (:mod:`gradinv.cases.data`), training state, label distribution
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
mlp3_windows         3*     mlp    photos           window*  32    init      uniform  dataset
mlp4_windows_taper   4*     mlp    photos           window*  32    init      uniform  dataset  (widths "taper")
mlp6_windows         6*     mlp    photos           window*  32    init      uniform  dataset
mlp3_grey28          3*     mlp    skimage_grey*    random   28*   init      uniform  dataset
mlp4_grey_taper      4*     mlp    skimage_grey*    random   28*   init      uniform  dataset  (widths "taper")
mlp6_grey_taper      6*     mlp    skimage_grey*    random   28*   init      uniform  dataset  (widths "taper")
mlp2_duplicates      2      mlp    photos           random   32    init      uniform  dataset  (quirk "duplicates")
mlp2_blanks          2      mlp    photos           random   32    init      uniform  dataset  (quirk "blanks")
mlp2_near            2      mlp    photos           random   32    init      uniform  dataset  (quirk "near")
mlp3_duplicates      3*     mlp    photos           random   32    init      uniform  dataset  (quirk "duplicates")
mlp3_blanks          3*     mlp    photos           random   32    init      uniform  dataset  (quirk "blanks")
mlp2_grey_blanks     2      mlp    skimage_grey*    random   28*   init      uniform  dataset  (quirk "blanks")
mlp3_grey_blanks     3*     mlp    skimage_grey*    random   28*   init      uniform  dataset  (quirk "blanks")
mlp2_grey_sky        2      mlp    skimage_grey*    random   28*   init      uniform  dataset  (quirk "sky")
mlp3_grey_sky        3*     mlp    skimage_grey*    random   28*   init      uniform  dataset  (quirk "sky")
conv_photos          2      conv*  photos           random   32    init      uniform  dataset
conv_trained         2      conv*  photos           random   32    trained*  uniform  dataset
===================  =====  =====  ===============  =======  ====  ========  =======  =======

The deep kinds put 3, 4 and 6 Linear layers, constant and tapering, in front of native-resolution colour
crops ("window": 32×32 pixels of the photograph as they are, smooth and nearly collinear) and of grey
crops.  Quirks (:func:`gradinv.cases.data.apply_quirk`), what a real loader's batch holds: "duplicates" (one
picture twice with its label, another twice with two labels), "blanks" (a white and a black
frame; on one channel, the grey kinds, the two are multiples of one another), "near" (two pictures
each with a copy shifted by one pixel), "sky" (the two frames and a near-white one, an overexposed
sky: its ReLU pattern is often the white frame's, :mod:`gradinv.collinear`).

Labels: "uniform" draws each label uniformly over the C classes, independently of the image;
"one" gives the whole batch one label; "skewed" draws from Zipf-like probabilities p_k ∝ 1/k
over a random order of the classes.  Training state "trained": :data:`TRAIN_STEPS` Adam steps
(batches of 32, learning rate 1e-3, in float32) on a pool of :data:`TRAIN_POOL` other images of
the same source (none equal to a batch image, labelled by the image they came from, or the
digit), scaled as the client scales.  "dataset" scaling uses fixed per-channel statistics of
crops of the same kind (:func:`gradinv.cases.data.scale_images`).
The attacked layer is the first Linear followed by ReLU ("0" for MLPs, the Linear after the
flatten for conv); its inputs X (b × n) are pixels for MLPs and features for conv, so the batch
size is bounded by n (64 for digits).  A seed fixes the network, the batch and the labels; the
"trained" and "init" kinds of a seed share the batch.
"""

from dataclasses import dataclass, fields

import numpy as np
import torch
from sklearn.utils import check_random_state

from .data import (CHANNELS, CROPS, DIGIT_SIZE, N_DIGITS, QUIRKS, SCALINGS, SOURCES, apply_quirk, sample_images,
                   scale_images)
from .networks import (ARCHITECTURES, CONV_CHANNELS, WIDTHS, adam_steps, attacked_layer, make_conv_net, make_mlp,
                       model_inputs)
from .updates import layer_gradient, parameter_gradients
from .victims import Victim

TRAINING_STATES = ("init", "trained")
LABEL_DISTRIBUTIONS = ("uniform", "one", "skewed")
TRAIN_STEPS = 200  # arbitrary: a network past its initialisation, as a client's in mid-training
TRAIN_POOL = 512  # arbitrary: other images of the source to train on


@dataclass(frozen=True)
class ClientSpec:
    """One kind of zoo client (see the module doc's table).

    depth: number of Linear layers (≥ 2); widths: the hidden layers' widths, every one m ("constant")
    or m, m/2, m/4, … ("taper", :func:`gradinv.cases.networks.hidden_widths`); architecture: "mlp" or
    "conv" (a conv front end before the Linear layers); source, crop, size: the images
    (:mod:`gradinv.cases.data`); training: "init" or "trained"; labels: "uniform", "one" or "skewed";
    scaling: "raw", "dataset" or "batch"; n_classes: C; quirk: what the batch holds besides
    distinct crops (:func:`gradinv.cases.data.apply_quirk`: "duplicates", "blanks", "near", "sky").
    """

    depth: int = 2
    widths: str = "constant"
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
        for name, allowed in (("widths", WIDTHS), ("architecture", ARCHITECTURES), ("source", SOURCES), ("crop", CROPS),
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
    "mlp3_windows": ClientSpec(depth=3, crop="window"),
    "mlp4_windows_taper": ClientSpec(depth=4, widths="taper", crop="window"),
    "mlp6_windows": ClientSpec(depth=6, crop="window"),
    "mlp3_grey28": ClientSpec(depth=3, source="skimage_grey", size=28),
    "mlp4_grey_taper": ClientSpec(depth=4, widths="taper", source="skimage_grey", size=28),
    "mlp6_grey_taper": ClientSpec(depth=6, widths="taper", source="skimage_grey", size=28),
    "mlp2_duplicates": ClientSpec(quirk="duplicates"),
    "mlp2_blanks": ClientSpec(quirk="blanks"),
    "mlp2_near": ClientSpec(quirk="near"),
    "mlp3_duplicates": ClientSpec(depth=3, quirk="duplicates"),
    "mlp3_blanks": ClientSpec(depth=3, quirk="blanks"),
    "mlp2_grey_blanks": ClientSpec(source="skimage_grey", size=28, quirk="blanks"),  # one channel: collinear frames
    "mlp3_grey_blanks": ClientSpec(depth=3, source="skimage_grey", size=28, quirk="blanks"),
    "mlp2_grey_sky": ClientSpec(source="skimage_grey", size=28, quirk="sky"),
    "mlp3_grey_sky": ClientSpec(depth=3, source="skimage_grey", size=28, quirk="sky"),
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

    adam_steps(model.float(), batches(), spec.architecture, torch.float32)
    model.to(dtype)


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
            model = make_mlp(images[0].size, width, spec.n_classes, dtype=dtype, depth=spec.depth, widths=spec.widths)
        else:
            model = make_conv_net(images.shape[-1], spec.size, width, spec.n_classes, dtype=dtype, depth=spec.depth,
                                  widths=spec.widths)
    if spec.training == "trained":
        _train_on_pool(model, spec, _training_pool(spec, images, train_seed), train_seed)
    images = scale_images(images, spec.scaling, source=spec.source, size=spec.size, crop=spec.crop)
    layer_name = attacked_layer(model)
    labels, x = torch.as_tensor(labels), model_inputs(images, spec.architecture, dtype)
    X, gW, gb, gZ = layer_gradient(model, layer_name, x, labels)
    victim = Victim(name, model, layer_name, images, labels, X, gW, gb, gZ, gradients=parameter_gradients(model),
                    spec=spec, model_inputs=x)
    if victim.classifier is not None:
        victim.grad_next_bias = victim.classifier.bias.grad.detach().clone()
    return victim
