"""The factorisation step against a full SVD, side by side on the same gradients (issue 5).

For the cross-entropy client at b = 100 and m ∈ {1000, 4000}: time of
``GradientFactorization`` (Gram eigenvalues + subspace iteration + small SVD) and of
``numpy.linalg.svd``, and how far a true column of dL/dZ lies outside span L for each
(largest relative residual over the columns).

    OMP_NUM_THREADS=1 python benchmarks/factorize_speed.py
"""

import time

import numpy as np

from gradinv import GradientFactorization, stack_gradient
from gradinv.cases import make_victim


def span_error(L, G):
    Q = np.linalg.qr(L)[0]
    return float((np.linalg.norm(G - Q @ (Q.T @ G), axis=0) / np.linalg.norm(G, axis=0)).max())


def main():
    for m in (1000, 4000):
        v = make_victim("cross_entropy", batch_size=100, width=m, random_state=0)
        grad = stack_gradient(v.grad_W, v.grad_b).numpy()
        t0 = time.perf_counter()
        fact = GradientFactorization()
        fg = fact.fit_transform(grad)
        t_fact = time.perf_counter() - t0
        t0 = time.perf_counter()
        U = np.linalg.svd(grad[fg.rows, :-1], full_matrices=False)[0]
        t_svd = time.perf_counter() - t0
        G = v.grad_Z.numpy()[fg.rows]
        print(f"m={m}, b=100: factorisation {t_fact:.2f} s, numpy SVD {t_svd:.2f} s, ratio {t_fact / t_svd:.2f}; "
              f"batch size {fact.batch_size_}; span error {span_error(fg.L, G):.1e} (SVD {span_error(U[:, :100], G):.1e})")


if __name__ == "__main__":
    main()
