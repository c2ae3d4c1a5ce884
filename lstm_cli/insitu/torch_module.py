"""A user's whole PyTorch model named on the command line: built by the user's own factory
function, given its weights and its input from files, run once under `Watch`; what reached one of
its LSTMs comes back as a `Captured`.

Every failure is one line (lstm_cli.errors.UsageError): the CLI prints it and exits 2.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lstm_cli.errors import UsageError
from lstm_cli.formats.base import FormatError
from lstm_cli.formats.torch_file import load_weights_only
from lstm_cli.insitu.captured import Captured
from lstm_cli.insitu.torch_hooks import Watch
from lstm_cli.paths import readable_file
from lstm_cli.formats.text import a_type

# "package.module:factory"; the factory may be an attribute path (module:Class.create).
_TARGET = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def _first_line(exc: BaseException) -> str:
    """`ExcType: first line of its message` (just the type when the message is empty)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


def load_factory_module(target: str, flag: str = "--model") -> nn.Module:
    """`factory()` of "package.module:factory", imported with the current working directory on
    sys.path (as `python -m` would see it); sys.path is restored afterwards."""
    if not _TARGET.match(target):
        raise UsageError(f"{flag} {target!r}: expected MODULE:FACTORY, e.g. mymodels.net:build "
                         "(a module importable from here and a function that returns the nn.Module)")
    module_name, attribute = target.split(":")
    saved = list(sys.path)
    sys.path.insert(0, os.getcwd())
    try:
        importlib.invalidate_caches()  # a file written a moment ago must be found
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # Is it the named module itself (or a parent package) that is missing, or something
            # the user's module imports?
            if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
                raise UsageError(f"{flag} {target}: no module named {exc.name!r} in the current folder "
                                 f"({os.getcwd()}) or on the Python path") from None
            raise UsageError(f"{flag} {target}: importing {module_name} failed: {_first_line(exc)}") from None
        except (Exception, SystemExit) as exc:  # the user's module runs code at import: anything
            raise UsageError(f"{flag} {target}: importing {module_name} failed: {_first_line(exc)}") from None
        factory: Any = module
        for part in attribute.split("."):
            if not hasattr(factory, part):
                raise UsageError(f"{flag} {target}: {module_name} has no attribute {attribute!r}")
            factory = getattr(factory, part)
        if not callable(factory):
            raise UsageError(f"{flag} {target}: {attribute} is {a_type(factory)}, not a function to call")
        try:
            model = factory()
        except (Exception, SystemExit) as exc:
            raise UsageError(f"{flag} {target}: calling {attribute}() failed: {_first_line(exc)}") from None
    finally:
        sys.path[:] = saved
    if not isinstance(model, nn.Module):
        raise UsageError(f"{flag} {target}: {attribute}() returned {a_type(model)}, not a torch.nn.Module")
    return model


def load_state_into(module: nn.Module, weights_path: str | Path, flag: str = "--weights") -> None:
    """Load a state_dict file (plain, or under a 'state_dict' / 'model' entry) into `module`,
    strictly, with lstm-cli's safe reader (no code in the file runs)."""
    file = readable_file(flag, str(weights_path))
    try:
        value = load_weights_only(file)
    except FormatError as exc:
        raise UsageError(f"{flag} {weights_path}: {exc}") from None
    state = value
    if isinstance(value, dict):
        for entry in ("state_dict", "model"):  # Lightning's and many training scripts' nesting
            if isinstance(value.get(entry), dict):
                state = value[entry]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"{flag} {weights_path}: expected a state_dict (names -> tensors), "
                         f"or a dict with one under 'state_dict' or 'model'; it holds {a_type(value)}")
    mismatch = _mismatch(module, state)
    if mismatch:
        raise UsageError(f"{flag} {weights_path} does not fit {type(module).__name__}: {mismatch}")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # what _mismatch did not foresee
        raise UsageError(f"{flag} {weights_path} does not fit {type(module).__name__}: {_first_line(exc)}") from None


def _mismatch(module: nn.Module, state: dict[str, torch.Tensor]) -> str:
    """The first missing, unexpected and misshapen names, in one line ('' when it all fits)."""
    def shape(t: torch.Tensor) -> str:
        return "(" + ", ".join(map(str, t.shape)) + ")"

    def few(items: list[str]) -> str:
        return ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")

    expected = module.state_dict()
    missing = [f"{k} {shape(v)}" for k, v in expected.items() if k not in state]
    unexpected = [f"{k} {shape(v)}" for k, v in state.items() if k not in expected]
    wrong = [f"{k} is {shape(state[k])} in the file, {shape(v)} in the model"
             for k, v in expected.items() if k in state and state[k].shape != v.shape]
    parts = []
    if missing:
        parts.append(f"missing {few(missing)}")
    if unexpected:
        parts.append(f"unexpected {few(unexpected)}")
    if wrong:
        parts.append(few(wrong))
    return "; ".join(parts)


def load_model_input(path: str | Path, flag: str = "--model-input") -> tuple[tuple, dict]:
    """The model's call arguments from a file: a .npy array (one tensor), or a torch.save file
    holding a tensor, a tuple/list of arguments, or a dict of keyword arguments."""
    file = readable_file(flag, str(path))
    if file.suffix.lower() == ".npy":
        try:
            array = np.load(file, allow_pickle=False)
        except Exception as exc:  # not a .npy, truncated, or an object array (needs pickle)
            raise UsageError(f"{flag} {path}: not a readable .npy array ({_first_line(exc)})") from None
        if not isinstance(array, np.ndarray):
            raise UsageError(f"{flag} {path}: expected one array")
        return (torch.from_numpy(array),), {}
    try:
        value = load_weights_only(file, advice="save tensors, tuples, lists or dicts of them")
    except FormatError as exc:
        raise UsageError(f"{flag} {path}: {exc} (give a torch.save file or a .npy array)") from None
    if isinstance(value, torch.Tensor):
        return (value,), {}
    if isinstance(value, (tuple, list)):
        return tuple(value), {}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return (), dict(value)
    raise UsageError(f"{flag} {path}: holds {a_type(value)}; expected a tensor, a tuple or list "
                     "of arguments, or a dict of keyword arguments")


def capture_module(module: nn.Module, args: tuple, kwargs: dict, key: str | None,
                   input_name: str) -> tuple[Captured, nn.Module]:
    """Run `module(*args, **kwargs)` once (eval mode, no grad) and return what reached LSTM `key`
    (None: the only one called) and that LSTM module."""
    module.eval()  # dropout off: the run the user analyses is the deterministic one
    watch = Watch(module)  # refuses TorchScript before anything runs
    try:
        with torch.no_grad(), watch:
            module(*args, **kwargs)
    except Exception as exc:
        raise UsageError(f"running {type(module).__name__} on {input_name} failed: {_first_line(exc)}") from None
    name = watch.resolve(key)
    captured = watch.captured(name)
    return dataclasses.replace(captured, where=f"{captured.where} running {input_name}"), watch.module(name)
