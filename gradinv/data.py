"""Images shipped inside installed packages (no download): CIFAR-shaped crops and digits.

Sources
-------
"photos"  the two photographs of ``sklearn.datasets.load_sample_images`` and seven colour
          photographs bundled with scikit-image (astronaut, chelsea, coffee, rocket,
          immunohistochemistry, retina, hubble_deep_field).
"digits"  ``sklearn.datasets.load_digits`` (8×8 grey levels).

Crops are taken at a random scale (a square window of 32 to 256 pixels, resized to the
output size), so a batch mixes textures, edges and whole objects as CIFAR-10 does.
"""

from functools import lru_cache

import numpy as np
from sklearn.utils import check_random_state

SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina", "hubble_deep_field")


@lru_cache(maxsize=1)
def photos():
    """The bundled colour photographs as float64 arrays in [0, 1], shape (H, W, 3)."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    images = [np.asarray(im, dtype=np.float64) / 255.0 for im in load_sample_images().images]
    for name in SKIMAGE_PHOTOS:
        images.append(np.asarray(getattr(skimage.data, name)()[..., :3], dtype=np.float64) / 255.0)
    return tuple(images)


def random_crops(n_images, size=32, *, random_state=None):
    """``n_images`` random square crops of the bundled photographs, (n, size, size, 3) in [0, 1],
    and the index of the photograph each came from (a natural class label)."""
    from skimage.transform import resize

    rng = check_random_state(random_state)
    images = photos()
    out = np.empty((n_images, size, size, 3))
    labels = rng.randint(len(images), size=n_images)
    for i in range(n_images):
        im = images[labels[i]]
        window = int(rng.randint(size, min(8 * size, *im.shape[:2]) + 1))
        r, c = rng.randint(im.shape[0] - window + 1), rng.randint(im.shape[1] - window + 1)
        patch = im[r : r + window, c : c + window]
        out[i] = resize(patch, (size, size), anti_aliasing=True) if window != size else patch
    return out, labels


def digits(n_images, *, random_state=None):
    """``n_images`` distinct handwritten digits in [0, 1], shape (n, 8, 8, 1), and their labels."""
    from sklearn.datasets import load_digits

    rng = check_random_state(random_state)
    d = load_digits()
    idx = rng.choice(len(d.images), size=n_images, replace=False)
    return d.images[idx, :, :, None] / 16.0, d.target[idx]


@lru_cache(maxsize=8)
def channel_statistics(source="photos", size=32):
    """Fixed per-channel mean and std of a source: 2048 crops (seed 0), or all 1797 digits."""
    if source == "digits":
        from sklearn.datasets import load_digits

        x = load_digits().images[..., None] / 16.0
    else:
        x, _ = random_crops(2048, size, random_state=0)
    return x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2))


def load_images(n_images, *, source="photos", size=32, standardised=True, random_state=None):
    """A batch of images from ``source`` ("photos" or "digits"), (n, H, W, C), and labels
    (the source photograph's index, or the digit).

    ``standardised`` subtracts the source's per-channel mean and divides by its std
    (:func:`channel_statistics`), as image classifiers are usually fed; otherwise pixels are in [0, 1].
    """
    if source == "photos":
        x, labels = random_crops(n_images, size, random_state=random_state)
    elif source == "digits":
        x, labels = digits(n_images, random_state=random_state)
    else:
        raise ValueError(f"unknown image source {source!r}; use 'photos' or 'digits'")
    if standardised:
        mean, std = channel_statistics(source, size)
        x = (x - mean) / std
    return x, labels
