"""Print the table of bad inputs and the error each one gets (issue 7): ``python docs/bad_inputs.py``.

Also builds a .npz and a .pt whose pickles would create a marker file if they were ever unpickled,
and checks that loading them did not.
"""
import numpy as np, torch, tempfile, os, warnings
warnings.simplefilter("ignore")
from sudl import SparselyUsedDictionaryLearning
from gradinv import invert_layer
from gradinv.io import load_gradient
rng = np.random.default_rng(0)
G = rng.normal(size=(60, 4)) * (rng.random((60, 4)) < .5); X = rng.normal(size=(4, 10))
gW, gb = G @ X, G.sum(1)


def duplicate_samples():
    """Not an error: the attack warns and recovers the distinct inputs."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = invert_layer(G @ np.vstack([X[:1], X[:1], X[2:]]), gb, batch_size=4)
    return f"warning: {caught[0].category.__name__}: {caught[0].message}; {res.batch_size} inputs recovered"


cases = [
 ("sudl: 1-D Y", lambda: SparselyUsedDictionaryLearning().fit(np.ones(10))),
 ("sudl: NaN", lambda: SparselyUsedDictionaryLearning().fit(np.array([[np.nan, 1.], [1., 2.], [3., 1.]]))),
 ("sudl: inf", lambda: SparselyUsedDictionaryLearning().fit(np.array([[np.inf, 1.], [1., 2.], [3., 1.]]))),
 ("sudl: fewer samples than features", lambda: SparselyUsedDictionaryLearning().fit(rng.normal(size=(3, 5)))),
 ("sudl: rank-deficient Y", lambda: SparselyUsedDictionaryLearning().fit(np.outer(np.arange(1., 11.), np.ones(3)))),
 ("sudl: complex", lambda: SparselyUsedDictionaryLearning().fit(np.ones((10, 3), complex))),
 ("sudl: object dtype", lambda: SparselyUsedDictionaryLearning().fit(np.array([[object()] * 3] * 10))),
 ("sudl: empty", lambda: SparselyUsedDictionaryLearning().fit(np.zeros((0, 3)))),
 ("gradinv: 1-D grad_W", lambda: invert_layer(np.ones(5), np.ones(5))),
 ("gradinv: grad_b shape mismatch", lambda: invert_layer(gW, gb[:-1])),
 ("gradinv: zero gradient (rank 0)", lambda: invert_layer(np.zeros_like(gW), np.zeros_like(gb))),
 ("gradinv: NaN in grad_W", lambda: invert_layer(np.where(gW > 0, np.nan, gW), gb)),
 ("gradinv: inf in grad_W", lambda: invert_layer(np.where(gW > 0, np.inf, gW), gb)),
 ("gradinv: complex", lambda: invert_layer(gW.astype(complex), gb)),
 ("gradinv: b > n", lambda: invert_layer(gW, gb, batch_size=11)),
 ("gradinv: full-rank/noisy gradient, b not given", lambda: invert_layer(rng.normal(size=(60, 10)), gb)),
 ("gradinv: duplicate samples, b given", lambda: duplicate_samples()),
 ("gradinv: informed without weights", lambda: invert_layer(gW, gb, solver="informed")),
 ("gradinv: unknown solver", lambda: invert_layer(gW, gb, solver="magic")),
 ("gradinv: empty array", lambda: invert_layer(np.zeros((0, 3)), np.zeros(0))),
 ("gradinv: integer gradient (converted)", lambda: invert_layer(np.round(gW * 100).astype(int), gb) and "accepted: converted to float64"),
]
d = tempfile.mkdtemp()
MARKER = os.path.join(d, "payload_ran")
class Exploit:
    def __reduce__(self): return (open, (MARKER, "w"))
np.savez(f"{d}/evil.npz", grad_W=np.array([Exploit()], dtype=object), grad_b=np.ones(3))
torch.save({"grad_W": Exploit()}, f"{d}/evil.pt")
open(f"{d}/t.npz", "wb").write(open(f"{d}/evil.npz", "rb").read()[:40])
np.savez(f"{d}/k.npz", weight=gW)
cases += [
 ("file: pickled object in .npz", lambda: load_gradient(f"{d}/evil.npz")),
 ("file: pickle payload in .pt", lambda: load_gradient(f"{d}/evil.pt")),
 ("file: truncated .npz", lambda: load_gradient(f"{d}/t.npz")),
 ("file: missing keys", lambda: load_gradient(f"{d}/k.npz")),
 ("file: plain pickle", lambda: (open(f"{d}/g.pkl", "wb").write(b"x"), load_gradient(f"{d}/g.pkl"))),
]
print("| bad input | error |\n|---|---|")
for name, f in cases:
    try:
        out = f(); msg = f"no error: {out if isinstance(out, str) else 'returned'}"
    except Exception as e:
        msg = f"{type(e).__name__}: {str(e).splitlines()[0][:150]}"
    print(f"| {name} | {msg} |")
print("marker file created by a payload:", os.path.exists(MARKER))
