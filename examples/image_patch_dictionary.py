"""Learn a complete sparse dictionary from real image patches and save the atoms as a picture.

8×8 patches of scikit-image's ``camera`` image (64 features, 20000 random patches) are fitted
by ``SparselyUsedDictionaryLearning(random_state=0)``; the 64 atoms (rows of ``components_``)
are drawn as an 8×8 grid of 8×8 tiles, most exact code zeros first, certified atoms framed
in red.  Real patches are not an exactly sparse code times a dictionary, so only few atoms
get a certificate; the script prints what it gets, honestly.

RESULT_LINE

Run: ``python examples/image_patch_dictionary.py [--out image_patch_atoms.png]``.
"""

import argparse
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage import data  # noqa: E402
from sklearn.feature_extraction.image import extract_patches_2d  # noqa: E402

from sudl import SparselyUsedDictionaryLearning  # noqa: E402


def load_patches(n_patches=20000, size=8, random_state=0):
    """Random ``size``×``size`` patches of the camera image as rows of Y (values in [0, 1])."""
    image = data.camera().astype(np.float64) / 255.0
    patches = extract_patches_2d(image, (size, size), max_patches=n_patches, random_state=random_state)
    # No per-patch mean removal: the DC component is dense (every patch uses it), so it could
    # never be an exactly sparse code, but subtracting each patch's mean would make every row
    # orthogonal to the all-ones vector, i.e. Y of rank 63 < 64, and a complete 64-atom
    # dictionary needs full column rank (sudl raises RankDeficientError).  Kept, the DC simply
    # becomes one dense, uncertified atom.  No centring either: it would destroy exact zeros.
    return patches.reshape(len(patches), -1)


def plot_atoms(components, exact, n_zeros, path, size=8, title=""):
    order = np.argsort(-np.asarray(n_zeros), kind="stable")
    k = int(np.ceil(np.sqrt(len(components))))
    fig, axes = plt.subplots(k, k, figsize=(1.1 * k, 1.1 * k + 0.6))
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    for ax, i in zip(axes.ravel(), order):
        atom = components[i].reshape(size, size)
        lim = np.abs(atom).max()
        ax.imshow(atom, cmap="gray", vmin=-lim, vmax=lim, interpolation="nearest")
        if exact[i]:
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_color("red")
                spine.set_linewidth(2)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="image_patch_atoms.png", help="PNG of the atoms")
    parser.add_argument("--n-patches", type=int, default=20000)
    args = parser.parse_args(argv)

    Y = load_patches(args.n_patches)
    t0 = time.perf_counter()
    est = SparselyUsedDictionaryLearning(random_state=0).fit(Y)
    seconds = time.perf_counter() - t0
    code = est.transform(Y)
    certified = float(np.mean(est.exact_))
    sparsity = float(np.mean(code == 0.0))
    print(f"patches: {Y.shape[0]} × {Y.shape[1]} (8×8 camera patches)")
    print(f"fit time: {seconds:.1f} s")
    print(f"certified atoms (est.exact_): {int(est.exact_.sum())}/{len(est.exact_)} = {certified:.2f}")
    print(f"code sparsity (exact zeros of est.transform(Y)): {sparsity:.3f}")
    if est.exact_.any():
        per_atom = est.n_zeros_[est.exact_] / Y.shape[0]
        print(f"exact-zero fraction of the certified atoms' codes: min {per_atom.min():.3f}, "
              f"median {np.median(per_atom):.3f}, max {per_atom.max():.3f}")
    title = (f"camera 8×8 patches: {int(est.exact_.sum())}/64 atoms certified (red), "
             f"code {100 * sparsity:.1f}% exact zeros")
    plot_atoms(est.components_, est.exact_, est.n_zeros_, args.out, title=title)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
