"""Images shipped inside installed packages (no download): crops, windows and digits.

Sources (:data:`SOURCES`)
-------------------------
"photos"          the two photographs of ``sklearn.datasets.load_sample_images`` and the seven
                  colour photographs bundled with scikit-image (:data:`SKIMAGE_PHOTOS`)
"sklearn_photos"  the two scikit-learn photographs alone (china, flower)
"skimage_colour"  the seven scikit-image colour photographs alone
"skimage_grey"    scikit-image's bundled grey images (:data:`SKIMAGE_GREY`), one channel
"digits"          ``sklearn.datasets.load_digits`` (8×8 grey levels, 1797 images)

Crops (:data:`CROPS`) of the image sources: "random" takes a square window of ``size`` to
8·``size`` pixels at a random place and resizes it to ``size`` (so a batch mixes textures,
edges and whole objects as CIFAR-10 does); "window" takes a fixed ``size``×``size`` window
at a random place, pixels as they are.  Digits are whole images ("full").

Scalings (:data:`SCALINGS`) of a batch x (:func:`scale_images`): "raw" pixels in [0, 1];
"dataset" (x − μ)/σ with fixed per-channel statistics of :data:`DATASET_CROPS` crops of the
same source, size and crop (:func:`channel_statistics`; :func:`load_images` uses 2048); "batch"
(x − μ_B)/σ_B with the batch's own per-channel mean and std.  (Statistics over the whole
images' pixels would not do: large dark backgrounds, retina's and hubble_deep_field's, weigh
them and leave the crops off-centre.)
"""

from functools import lru_cache

import numpy as np
from sklearn.utils import check_random_state

SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina", "hubble_deep_field")
SKIMAGE_GREY = ("camera", "coins", "moon", "page", "text", "clock", "brick", "grass", "gravel")
SOURCES = ("photos", "sklearn_photos", "skimage_colour", "skimage_grey", "digits")
CHANNELS = {"photos": 3, "sklearn_photos": 3, "skimage_colour": 3, "skimage_grey": 1, "digits": 1}
CROPS = ("random", "window", "full")
SCALINGS = ("raw", "dataset", "batch")
QUIRKS = ("none", "duplicates", "blanks", "near", "sky")
"""What a real loader's batch holds that random crops do not (:func:`apply_quirk`)."""
SKY_DEPTH = 1e-3
"""How far the "sky" quirk's frame falls below white (arbitrary: a faint gradient, well inside one
8-bit grey level of 1/255, so its ReLU pattern is mostly the white frame's)."""
DIGIT_SIZE = 8  # load_digits' images are 8×8
N_DIGITS = 1797  # load_digits holds 1797 images
DATASET_CROPS = 512  # arbitrary: crops whose per-channel mean and std stand for the dataset's


SKIMAGE_MISSING = ("the simulated clients' images and crops need scikit-image, an optional extra: "
                   "pip install 'spearkit[cases]'")


def skimage_module(module):
    """``skimage.<module>``, or an ImportError that says how to install it (the ``cases`` extra)."""
    import importlib

    try:
        return importlib.import_module(f"skimage.{module}")
    except ImportError as e:
        raise ImportError(SKIMAGE_MISSING) from e


def _check_source(source):
    if source not in SOURCES:
        raise ValueError(f"unknown image source {source!r}; choose one of {SOURCES}")


@lru_cache(maxsize=1)
def photos():
    """The bundled colour photographs as float64 arrays in [0, 1], shape (H, W, 3)."""
    from sklearn.datasets import load_sample_images

    skimage_data = skimage_module("data")
    images = [np.asarray(im, dtype=np.float64) / 255.0 for im in load_sample_images().images]
    for name in SKIMAGE_PHOTOS:
        images.append(np.asarray(getattr(skimage_data, name)()[..., :3], dtype=np.float64) / 255.0)
    return tuple(images)


@lru_cache(maxsize=1)
def grey_images():
    """scikit-image's bundled grey images (:data:`SKIMAGE_GREY`) in [0, 1], shape (H, W, 1)."""
    skimage_data = skimage_module("data")
    return tuple(np.asarray(getattr(skimage_data, name)(), dtype=np.float64)[..., None] / 255.0
                 for name in SKIMAGE_GREY)


def source_images(source):
    """The full images of an image source (not "digits"), each (H, W, C) in [0, 1]."""
    _check_source(source)
    if source == "digits":
        raise ValueError("'digits' has no large images to crop: use digits() or sample_images()")
    return {"photos": photos, "sklearn_photos": lambda: photos()[:2], "skimage_colour": lambda: photos()[2:],
            "skimage_grey": grey_images}[source]()


def crops(source, n_images, size=32, *, crop="random", random_state=None):
    """``n_images`` square crops of ``source``'s images, (n, size, size, C) in [0, 1], and the
    index of the image each came from (a natural class label).  ``crop``: "random" (a window of
    ``size`` to 8·``size`` pixels resized to ``size``) or "window" (a ``size``×``size`` window)."""
    resize = skimage_module("transform").resize

    if crop not in ("random", "window"):
        raise ValueError(f"crop must be 'random' or 'window' for image sources, got {crop!r}")
    rng = check_random_state(random_state)
    images = source_images(source)
    if size > min(min(im.shape[:2]) for im in images):
        raise ValueError(f"size {size} exceeds the smallest image of source {source!r}")
    out = np.empty((n_images, size, size, images[0].shape[-1]))
    labels = rng.randint(len(images), size=n_images)
    for i in range(n_images):
        im = images[labels[i]]
        window = int(rng.randint(size, min(8 * size, *im.shape[:2]) + 1)) if crop == "random" else size
        r, c = rng.randint(im.shape[0] - window + 1), rng.randint(im.shape[1] - window + 1)
        patch = im[r : r + window, c : c + window]
        out[i] = resize(patch, (size, size), anti_aliasing=True) if window != size else patch
    return out, labels


def digits(n_images, *, random_state=None):
    """``n_images`` distinct handwritten digits in [0, 1], shape (n, 8, 8, 1), and their labels."""
    from sklearn.datasets import load_digits

    if n_images > N_DIGITS:
        raise ValueError(f"'digits' holds {N_DIGITS} images, {n_images} distinct ones asked for")
    rng = check_random_state(random_state)
    d = load_digits()
    idx = rng.choice(len(d.images), size=n_images, replace=False)
    return d.images[idx, :, :, None] / 16.0, d.target[idx]


def apply_quirk(images, labels, quirk, n_classes):
    """The batch (images in [0, 1], labels) with a data quirk, in place of its first samples:

    * "duplicates": sample 1 an exact copy of sample 0 with its label, sample 3 a copy of sample 2
      with another label (the same picture twice in a dataset, once mislabelled);
    * "blanks": sample 0 white and sample 1 black (empty frames);
    * "near": samples 1 and 3 are samples 0 and 2 shifted by one pixel (overlapping crops, bursts).
    * "sky": "blanks" and sample 2 a near-white frame, 1 − :data:`SKY_DEPTH` · (a ramp from 0 at
      the top row to 1 at the bottom): an overexposed sky, whose ReLU pattern is often the white
      frame's.

    Returns new arrays; "none" returns them unchanged.
    """
    if quirk not in QUIRKS:
        raise ValueError(f"quirk must be one of {QUIRKS}, got {quirk!r}")
    images, labels = np.array(images, copy=True), np.array(labels, copy=True)
    pairs = [(0, 1), (2, 3)][: len(images) // 2]
    if quirk == "duplicates":
        for k, (i, j) in enumerate(pairs):
            images[j], labels[j] = images[i], labels[i] if k == 0 else (labels[i] + 1) % n_classes
    elif quirk in ("blanks", "sky"):
        images[0] = 1.0
        if len(images) > 1:
            images[1] = 0.0
        if quirk == "sky" and len(images) > 2:
            images[2] = 1.0 - SKY_DEPTH * np.linspace(0.0, 1.0, images.shape[1])[:, None, None]
    elif quirk == "near":
        for i, j in pairs:
            images[j] = np.roll(images[i], 1, axis=1)
    return images, labels


def sample_images(source, n_images, *, size=32, crop="random", random_state=None):
    """``n_images`` images of ``source`` in [0, 1], (n, H, W, C), and natural labels (the image
    each crop came from, or the digit).  Digits are whole 8×8 images: ``size`` must be 8 and
    ``crop`` "full"."""
    _check_source(source)
    if source == "digits":
        if size != DIGIT_SIZE or crop != "full":
            raise ValueError(f"'digits' are whole 8×8 images: use size=8, crop='full' (got {size}, {crop!r})")
        return digits(n_images, random_state=random_state)
    return crops(source, n_images, size, crop=crop, random_state=random_state)


@lru_cache(maxsize=16)
def channel_statistics(source="photos", size=32, crop="random", n_crops=2048):
    """Fixed per-channel mean μ and std σ of a source's crops: ``n_crops`` crops (seed 0), or all
    1797 digits."""
    _check_source(source)
    if source == "digits":
        from sklearn.datasets import load_digits

        x = load_digits().images[..., None] / 16.0
    else:
        x, _ = crops(source, n_crops, size, crop=crop, random_state=0)
    return x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2))


def scale_images(x, scaling, *, source="photos", size=32, crop="random"):
    """Scale a batch x (n, H, W, C) in [0, 1] as :data:`SCALINGS` says: "dataset" uses the
    statistics of :data:`DATASET_CROPS` crops of the same kind (:func:`channel_statistics`),
    "batch" x's own per-channel μ_B, σ_B (a constant channel keeps σ_B = 1)."""
    if scaling == "raw":
        return x
    if scaling == "dataset":
        mean, std = channel_statistics(source, size, crop, DATASET_CROPS)
    elif scaling == "batch":
        mean, std = x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2))
        std = np.where(std > 0, std, 1.0)
    else:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    return (x - mean) / std


def load_images(n_images, *, source="photos", size=32, standardised=True, random_state=None):
    """A batch of random-scale crops (or digits) from ``source``, (n, H, W, C), and natural labels
    (the source image's index, or the digit).

    ``standardised`` subtracts the source's per-channel mean and divides by its std
    (:func:`channel_statistics`), as image classifiers are usually fed; otherwise pixels are in [0, 1].
    """
    _check_source(source)
    if source == "digits":
        x, labels = digits(n_images, random_state=random_state)
    else:
        x, labels = crops(source, n_images, size, crop="random", random_state=random_state)
    if standardised:
        mean, std = channel_statistics(source, size)
        x = (x - mean) / std
    return x, labels
