"""The user's model factory, ``MODULE:FUNCTION``, as ``gradinv attack`` and ``gradinv audit`` take it.

MODULE is looked up in the current folder first, as ``python -m`` does, and a module or package
found there is the one imported even when an installed package has the same name (Opacus, for
one, installs a top-level ``examples`` package that would hide a project's own ``examples/``).
MODULE may also be a path to a ``.py`` file.
"""

import importlib
import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path


def _import_from_cwd(module_name):
    """Import ``module_name``, its top-level package taken from the current folder when it is there."""
    if os.getcwd() not in sys.path:  # as `python -m`: the factory's own imports of its sibling files work
        sys.path.insert(0, os.getcwd())
    top = module_name.split(".")[0]
    spec = importlib.machinery.PathFinder.find_spec(top, [os.getcwd()])
    loaded = sys.modules.get(top)
    if spec is not None and spec.origin is not None and getattr(loaded, "__file__", None) != spec.origin:
        for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:  # the installed one's
            del sys.modules[name]
        module = importlib.util.module_from_spec(spec)
        sys.modules[top] = module
        spec.loader.exec_module(module)
    return importlib.import_module(module_name)


def _import_file(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def factory_function(spec):
    """The callable named by ``spec`` (``MODULE:FUNCTION`` or ``path/to/file.py:FUNCTION``).

    Raises ValueError with one line that names what is wrong: the form, a module that cannot be
    imported (and why), or a function it lacks."""
    module_name, sep, func = str(spec).rpartition(":")
    if not sep or not module_name or not func:
        raise ValueError(f"--model-factory must be MODULE:FUNCTION, got {spec!r}")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise ValueError(f"--model-factory: no file {module_name!r}")
            module = _import_file(path)
        else:
            module = _import_from_cwd(module_name)
    except ImportError as e:
        raise ValueError(f"cannot import the model factory's module {module_name!r}: {e}") from e
    except SyntaxError as e:
        raise ValueError(f"the model factory's module {module_name!r} has a syntax error: {e}") from e
    fn = getattr(module, func, None)
    if not callable(fn):
        raise ValueError(f"module {module_name!r} has no function {func!r}")
    return fn


def build_model(spec, state=None):
    """``factory()`` of ``spec`` with the parameters ``state`` (name → array) loaded;
    ValueError (one line) when the factory fails, returns no ``nn.Module``, or ``state`` does not fit."""
    import torch
    from torch import nn

    try:
        model = factory_function(spec)()
    except ValueError:
        raise
    except Exception as e:  # the user's code: whatever it raises is reported in one line
        raise ValueError(f"the model factory {spec} failed: {type(e).__name__}: {' '.join(str(e).split())}") from e
    if not isinstance(model, nn.Module):
        raise ValueError(f"{spec} returned a {type(model).__name__}, not a torch.nn.Module")
    if state is not None:
        try:
            model.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
        except RuntimeError as e:
            detail = " ".join(str(e).split())  # torch's message spans lines; the CLI's error is one
            raise ValueError(f"the state does not fit the model built by {spec}: {detail}") from e
    return model
