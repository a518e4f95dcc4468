import numpy as np
import pytest
import torch

from gradinv.cli import main


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "demo" in capsys.readouterr().out


def test_demo_writes_png_and_table(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert main(["demo", "--victim", "random_upstream", "--batch-size", "8", "--width", "200", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.stat().st_size > 1000 and "8/8" in text and "PSNR" in text


def test_attack_on_file_with_weights(tmp_path, ru10, capsys):
    np.savez(tmp_path / "g.npz", grad_W=ru10.grad_W.numpy(), grad_b=ru10.grad_b.numpy())
    torch.save({"weight": ru10.layer.weight.detach(), "bias": ru10.layer.bias.detach()}, tmp_path / "w.pt")
    assert main(["attack", str(tmp_path / "g.npz"), "--weights", str(tmp_path / "w.pt"), "-o", str(tmp_path / "o.npz")]) == 0
    with np.load(tmp_path / "o.npz") as f:
        assert f["inputs"].shape == tuple(ru10.inputs.shape) and f["exact"].all()
    assert "10 certified exact" in capsys.readouterr().out


def test_attack_bad_file_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "g.npz").write_bytes(b"not a zip")
    assert main(["attack", str(tmp_path / "g.npz"), "-o", str(tmp_path / "o.npz")]) == 2
    assert "error:" in capsys.readouterr().err
