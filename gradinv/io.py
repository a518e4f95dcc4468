"""Reading gradients and writing batches.  Loading never executes code from the file.

Formats: ``.npz`` (``numpy.load(allow_pickle=False)``), ``.pt``/``.pth``
(``torch.load(weights_only=True)``: tensors and plain containers only), ``.safetensors``.
A gradient file holds ``grad_W`` and ``grad_b``, or a layer's ``<name>.weight`` and
``<name>.bias`` entries (a gradient dict as ``{n: p.grad for n, p in model.named_parameters()}``).
"""

from pathlib import Path

import numpy as np


class GradientFileError(ValueError):
    """A gradient or model file that cannot be read safely or lacks what is needed."""


def load_tensors(path):
    """A dict name → NumPy array from a .npz, .pt/.pth or .safetensors file, without running code."""
    path = Path(path)
    if not path.is_file():
        raise GradientFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        if suffix in (".pt", ".pth"):
            import torch

            obj = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(obj, dict):
                raise GradientFileError(f"{path}: expected a dict of tensors, got {type(obj).__name__}")
            return {str(k): v.detach().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
                    for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if suffix == ".safetensors":
            from safetensors.numpy import load_file

            return load_file(str(path))
    except GradientFileError:
        raise
    except ValueError as e:
        if "allow_pickle" in str(e) or "pickle" in str(e).lower():
            raise GradientFileError(f"{path}: contains pickled Python objects; refusing to load them") from e
        raise GradientFileError(f"{path}: unreadable ({e})") from e
    except Exception as e:  # truncated or corrupt archives, unsafe pickles rejected by weights_only
        raise GradientFileError(f"{path}: unreadable or unsafe ({type(e).__name__}: {e})") from e
    raise GradientFileError(f"{path}: unsupported format {suffix!r}; use .npz, .pt/.pth or .safetensors")


def load_gradient(path, layer=None):
    """(grad_W, grad_b) from a file: keys ``grad_W``/``grad_b``, or ``<layer>.weight``/``<layer>.bias``."""
    tensors = load_tensors(path)
    if layer is None and {"grad_W", "grad_b"} <= tensors.keys():
        return tensors["grad_W"], tensors["grad_b"]
    if layer is not None:
        keys = (f"{layer}.weight", f"{layer}.bias")
        if all(k in tensors for k in keys):
            return tensors[keys[0]], tensors[keys[1]]
        raise GradientFileError(f"{path}: no entries {keys[0]!r} and {keys[1]!r}; found {sorted(tensors)}")
    raise GradientFileError(
        f"{path}: needs keys 'grad_W' and 'grad_b' (or name the layer with layer=...); found {sorted(tensors)}"
    )


def save_batch(path, inputs, exact, **extra):
    """Write the reconstructed batch (and per-sample certificates) to a .npz file."""
    from sudl._array_api import to_numpy

    np.savez(path, inputs=to_numpy(inputs), exact=np.asarray(exact), **{k: to_numpy(v) for k, v in extra.items()})
