"""Loading a gradient file never runs code from it."""

import pickle

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from gradinv.io import GradientFileError, load_gradient, save_batch

SENTINEL = "gradinv_pwned_marker.txt"


class Exploit:
    def __reduce__(self):  # what a malicious pickle would run on load
        return (open, (SENTINEL, "w"))


@pytest.fixture
def grads():
    rng = np.random.default_rng(0)
    return rng.normal(size=(6, 4)), rng.normal(size=6)


def test_npz_pt_safetensors_roundtrip(tmp_path, grads):
    gW, gb = grads
    np.savez(tmp_path / "g.npz", grad_W=gW, grad_b=gb)
    torch.save({"fc1.weight": torch.tensor(gW), "fc1.bias": torch.tensor(gb)}, tmp_path / "g.pt")
    save_file({"grad_W": gW, "grad_b": gb}, str(tmp_path / "g.safetensors"))
    for name, layer in [("g.npz", None), ("g.pt", "fc1"), ("g.safetensors", None)]:
        W, b = load_gradient(tmp_path / name, layer=layer)
        np.testing.assert_array_equal(W, gW)
        np.testing.assert_array_equal(b, gb)


def test_pickled_objects_in_npz_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "evil.npz", grad_W=np.array([Exploit()], dtype=object), grad_b=np.ones(3))
    with pytest.raises(GradientFileError, match="pickle"):
        load_gradient(tmp_path / "evil.npz")
    assert not (tmp_path / SENTINEL).exists()


def test_pickle_in_pt_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"grad_W": Exploit(), "grad_b": torch.ones(3)}, tmp_path / "evil.pt", pickle_protocol=2)
    (tmp_path / SENTINEL).unlink(missing_ok=True)  # torch.save itself does not run __reduce__'s call
    with pytest.raises(GradientFileError, match="unsafe"):
        load_gradient(tmp_path / "evil.pt")
    assert not (tmp_path / SENTINEL).exists()


def test_plain_pickle_file_is_refused(tmp_path):
    (tmp_path / "g.pkl").write_bytes(pickle.dumps({"grad_W": 1}))
    with pytest.raises(GradientFileError, match="unsupported format"):
        load_gradient(tmp_path / "g.pkl")


def test_truncated_and_missing(tmp_path, grads):
    np.savez(tmp_path / "g.npz", grad_W=grads[0], grad_b=grads[1])
    data = (tmp_path / "g.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(GradientFileError, match="unreadable"):
        load_gradient(tmp_path / "t.npz")
    with pytest.raises(GradientFileError, match="no such file"):
        load_gradient(tmp_path / "nope.npz")
    np.savez(tmp_path / "k.npz", weight=grads[0])
    with pytest.raises(GradientFileError, match="needs keys 'grad_W' and 'grad_b'"):
        load_gradient(tmp_path / "k.npz")


def test_save_batch(tmp_path):
    save_batch(tmp_path / "o.npz", np.ones((2, 3)), np.array([True, False]))
    with np.load(tmp_path / "o.npz") as f:
        assert f["inputs"].shape == (2, 3) and f["exact"].tolist() == [True, False]
