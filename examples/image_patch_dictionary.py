"""Learn a complete sparse dictionary from real image patches and save the atoms as a picture.

8×8 patches of scikit-image's ``camera`` image (64 pixels) are fitted by
``SparselyUsedDictionaryLearning(random_state=0, n_restarts=1)`` and the 64 atoms are drawn as an 8×8 grid of
8×8 tiles (left panel), next to the same estimator with ``rounding=None``, i.e. the solver's
approximate atoms before they are made exact (right panel).  Certified atoms are framed in red,
the DC atom (not learnt, see ``load_patches``) in blue; tiles go from sparsest code (largest
kurtosis) to densest.  Real patches are not an exactly sparse code times a dictionary, so few
or no atoms get a certificate: the script prints what it gets, honestly.

What it shows (10000 patches, 9809 distinct, 2-core VM, one BLAS thread, about 65 s in all): both
panels have oriented edge / bar / Gabor-like atoms (condition number 8.8; fits 40 s and 24 s);
0/64 atoms certified and 0 % exact zeros in the code, as expected for real patches.  Rounding
leaves a direction it cannot make exact as the solver gave it, so the two panels agree.

Run: ``python examples/image_patch_dictionary.py [--out image_patch_atoms.png] [--n-patches 10000]``.
"""

import argparse
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from scipy.linalg import null_space  # noqa: E402
from skimage import data  # noqa: E402
from sklearn.feature_extraction.image import extract_patches_2d  # noqa: E402

from sudl import SparselyUsedDictionaryLearning  # noqa: E402

SIZE = 8


def load_patches(n_patches=10000, random_state=0):
    """Distinct, mean-free camera patches in an orthonormal basis of the mean-free subspace.

    Returns (Y, basis): Y (n × 63) are the coordinates, basis (63 × 64) maps them back to pixels.
    """
    image = data.camera().astype(np.float64) / 255.0
    patches = extract_patches_2d(image, (SIZE, SIZE), max_patches=n_patches, random_state=random_state)
    patches = patches.reshape(len(patches), -1)
    # Duplicate patches (flat regions of an 8-bit image) must go: a direction vanishing on 63
    # patches also vanishes on their copies, so it would get more than n exact zeros and a
    # spurious certificate (with duplicates kept, every atom is "certified" on 63 distinct patches).
    patches = np.unique(patches, axis=0)
    # Subtract each patch's mean: the DC component is dense (every patch uses it), it can never
    # be an exactly sparse code and it dominates the variance.  The mean-free patches span only
    # the 63-dim complement of the all-ones vector (a 64-atom fit would be rank deficient), so we
    # learn 63 atoms in an orthonormal basis of it and add the constant DC atom by hand.
    patches = patches - patches.mean(axis=1, keepdims=True)
    basis = null_space(np.ones((1, SIZE * SIZE))).T
    return patches @ basis.T, basis


def kurtosis(code):
    code = np.asarray(code)
    return np.mean(code**4, axis=0) / np.mean(code**2, axis=0) ** 2


def draw_panel(ax, atoms, exact, order, title):
    """atoms: (64, 64) pixel atoms, last one the DC; draws an 8×8 mosaic with frames."""
    k, step = SIZE, SIZE + 1
    mosaic = np.full((k * step - 1, k * step - 1), np.nan)
    for pos, i in enumerate(order):
        r, c = divmod(pos, k)
        a = atoms[i].reshape(SIZE, SIZE)
        mosaic[r * step:r * step + SIZE, c * step:c * step + SIZE] = a / np.abs(a).max()
        colour = "blue" if i == len(atoms) - 1 else ("red" if exact[i] else None)
        if colour:
            ax.add_patch(Rectangle((c * step - 0.5, r * step - 0.5), SIZE, SIZE, fill=False, ec=colour, lw=1.5))
    cmap = plt.get_cmap("gray").copy()
    cmap.set_bad("white")
    ax.imshow(mosaic, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="image_patch_atoms.png", help="PNG of the atoms")
    parser.add_argument("--n-patches", type=int, default=10000, help="random patches drawn (before de-duplication)")
    args = parser.parse_args(argv)

    Y, basis = load_patches(args.n_patches)
    dc = np.full((1, SIZE * SIZE), 1.0 / SIZE)  # the unit-norm constant atom, not learnt
    fig, axes = plt.subplots(1, 2, figsize=(11, 6))
    # n_restarts=1: on real patches no restart can certify atoms, extra restarts only cost time.
    for ax, rounding in zip(axes, ["sampling", None]):
        est = SparselyUsedDictionaryLearning(rounding=rounding, n_restarts=1, random_state=0)
        t0 = time.perf_counter()
        est.fit(Y)
        seconds = time.perf_counter() - t0
        code = est.transform(Y)
        n_cert = int(est.exact_.sum())
        sparsity = float(np.mean(code == 0.0))
        cond = float(np.linalg.cond(est.components_))
        print(f"rounding={rounding!r}: {Y.shape[0]} distinct mean-free patches × {Y.shape[1]} coordinates, "
              f"fit {seconds:.1f} s")
        print(f"  certified atoms (est.exact_): {n_cert}/64 = {n_cert / 64:.2f} (the DC atom is not learnt)")
        print(f"  code sparsity (exact zeros of est.transform(Y)): {sparsity:.4f}")
        print(f"  condition number of the 63 learnt atoms: {cond:.1f}")
        atoms = np.vstack([est.components_ @ basis, dc])
        exact = np.append(est.exact_, False)
        order = list(np.argsort(-kurtosis(code), kind="stable")) + [len(atoms) - 1]
        draw_panel(ax, atoms, exact, order,
                   f"rounding={rounding!r}: {n_cert}/64 certified, {100 * sparsity:.1f}% exact zeros, "
                   f"cond {cond:.0f}, {seconds:.0f} s")
    fig.suptitle(f"8×8 atoms of {Y.shape[0]} camera patches (red: certified, blue: DC)", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    plt.close(fig)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
