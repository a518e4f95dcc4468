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


def _digits_mlp(tmp_path, widths=(200, 50)):
    """A plain PyTorch client as a user writes it (Flatten → Linear/ReLU … → 10), float64, 16 digits:
    its state_dict, its gradients and its batch in tmp_path, and a factory module ``mymodel.py``."""
    from sklearn.datasets import load_digits

    source = ("import torch\n\n\ndef make_model():\n    torch.manual_seed(0)\n    layers = [torch.nn.Flatten()]\n"
              f"    sizes = (64, *{tuple(widths)!r})\n"
              "    for a, b in zip(sizes[:-1], sizes[1:]):\n        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]\n"
              "    return torch.nn.Sequential(*layers, torch.nn.Linear(sizes[-1], 10)).double()\n")
    (tmp_path / "mymodel.py").write_text(source)
    namespace = {}
    exec(compile(source, "mymodel.py", "exec"), namespace)  # the test's own source, as the user's module
    net = namespace["make_model"]()
    digits = load_digits()
    x, y = torch.tensor(digits.data[:16] / 16.0), torch.tensor(digits.target[:16])
    torch.nn.functional.cross_entropy(net(x), y).backward()
    torch.save(net.state_dict(), tmp_path / "model.pt")
    grads = {n: p.grad for n, p in net.named_parameters()}
    torch.save(grads, tmp_path / "grads.pt")
    return net, grads, x


@pytest.mark.parametrize("widths", [(200,), (200, 50), (200, 100, 50)])
def test_attack_from_files_takes_the_strongest_search_and_names_it(tmp_path, capsys, monkeypatch, widths):
    """A state_dict and a gradient dict of 2-, 3- and 4-layer MLPs: every input exact and certified,
    and the output says which search ran and why."""
    from gradinv.metrics import evaluate

    _, _, x = _digits_mlp(tmp_path, widths)
    monkeypatch.chdir(tmp_path)
    assert main(["attack", "--model", "model.pt", "--grads", "grads.pt", "-o", "b.npz"]) == 0
    out = capsys.readouterr().out
    search = "informed" if len(widths) == 1 else "cells"
    assert f"search: chosen by what is known: {search}" in out
    with np.load(tmp_path / "b.npz") as f:
        ev = evaluate(x.numpy(), f["inputs"], f["exact"])
    assert ev["exact"] == 16 and ev["certified"] == 16 and ev["false_certificates"] == 0


@pytest.fixture
def restored_examples_modules():
    """sys.modules' ``examples`` package and its modules as they were before the test, after it."""
    import sys

    def ours(name):
        return name == "examples" or name.startswith("examples.")

    saved = {name: module for name, module in sys.modules.items() if ours(name)}
    yield
    for name in [name for name in sys.modules if ours(name)]:
        del sys.modules[name]
    sys.modules.update(saved)


def test_a_factory_in_the_current_folder_is_imported_even_if_an_installed_package_has_its_name(
        tmp_path, capsys, monkeypatch, restored_examples_modules):
    """Opacus installs a top-level package ``examples``; a project's own ``examples/`` must win."""
    import sys

    _digits_mlp(tmp_path)
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "__init__.py").write_text("")
    (tmp_path / "mymodel.py").rename(tmp_path / "examples" / "my_client.py")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path / "elsewhere"))  # an installed 'examples' elsewhere, found first
    (tmp_path / "elsewhere" / "examples").mkdir(parents=True)
    (tmp_path / "elsewhere" / "examples" / "__init__.py").write_text("")
    assert main(["attack", "grads.pt", "--model-factory", "examples.my_client:make_model", "--state", "model.pt",
                 "-o", "b.npz"]) == 0
    assert "16 certified exact" in capsys.readouterr().out
    assert sys.modules["examples"].__file__ == str(tmp_path / "examples" / "__init__.py")


@pytest.mark.parametrize("case, message", [
    ("missing_bias_grad", "gradients lack '1.bias'"),
    ("transposed", "looks transposed"),
    ("string_dtype", "grad_W"),
    ("other_models_state", "do not match"),
    ("factory_function_missing", "has no function 'nope'"),
    ("factory_module_missing", "cannot import the model factory's module 'no_such_module'"),
    ("state_mismatch", "the state does not fit the model built by mymodel:make_model"),
])
def test_bad_inputs_are_one_line_errors_with_status_2(tmp_path, capsys, monkeypatch, case, message):
    import time

    net, grads, _ = _digits_mlp(tmp_path)
    monkeypatch.chdir(tmp_path)
    files = ["--model", "model.pt", "--grads", "grads.pt"]
    if case == "missing_bias_grad":
        torch.save({k: v for k, v in grads.items() if k != "1.bias"}, "grads.pt")
    elif case == "transposed":
        np.savez("g.npz", grad_W=grads["1.weight"].numpy().T, grad_b=grads["1.bias"].numpy())
        files = ["g.npz"]
    elif case == "string_dtype":
        np.savez("g.npz", grad_W=np.full((3, 2), "a"), grad_b=np.zeros(3))
        files = ["g.npz"]
    elif case == "other_models_state":
        torch.save({"1.weight": torch.zeros(30, 64), "1.bias": torch.zeros(30), "3.weight": torch.zeros(10, 30),
                    "3.bias": torch.zeros(10)}, "model.pt")
    elif case.startswith("factory"):
        spec = "mymodel:nope" if case == "factory_function_missing" else "no_such_module:make_model"
        files = ["grads.pt", "--model-factory", spec, "--state", "model.pt"]
    elif case == "state_mismatch":
        torch.save({"1.weight": torch.zeros(30, 64)}, "other.pt")
        files = ["grads.pt", "--model-factory", "mymodel:make_model", "--state", "other.pt"]
    start = time.perf_counter()
    assert main(["attack", *files, "-o", "b.npz"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err, err
    assert time.perf_counter() - start < 30
