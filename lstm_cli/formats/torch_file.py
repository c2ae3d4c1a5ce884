"""torch.save files (zip, or the legacy pre-1.6 format): a state_dict, nested or prefixed
(Lightning's {"state_dict": {...}, "epoch": 3}), read with torch.load(weights_only=True), which
unpickles tensors and plain containers only.

A file that also pickles Python objects (a Lightning checkpoint's omegaconf hyper-parameters, a
whole nn.Module saved with torch.save(model)) is refused by weights_only; it is then read with
safe_unpickle, which replaces every class by an inert stand-in and keeps the tensors, so no code
in the file runs. --trust-checkpoint loads it with weights_only=False instead (real objects,
code and all); then the LSTMs are found among the module's own submodules.
"""

from __future__ import annotations

import functools
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lstm_cli.formats import safe_unpickle
from lstm_cli.formats.base import Contents, FormatError, Found
from lstm_cli.formats.detect import LEGACY_TORCH_MAGIC, detect
from lstm_cli.formats.named_tensors import find_in_tensors, flatten
from lstm_cli.paths import file_version

TRUST_HINT = "if you trust whoever made this file, rerun with --trust-checkpoint"


def read(file: Path, trust: bool = False) -> Contents:
    if trust:
        return _read_trusted(file)
    loaded = load_checkpoint_safely(file)
    if loaded.replaced is None:  # torch.load(weights_only=True) read it
        return find_in_tensors(flatten(loaded.value, torch.Tensor), "PyTorch state_dict (torch.save)")
    return contents_of(loaded, "PyTorch checkpoint (torch.save, read without running code)")


def contents_of(loaded: safe_unpickle.SafeLoad, format_name: str) -> Contents:
    """The LSTMs among what safe_unpickle read, each with the note that says how."""
    contents = find_in_tensors(flatten(loaded.value, torch.Tensor), format_name)
    note = safe_unpickle.note(loaded.replaced)
    contents.notes.append(note)
    for found in contents.found:
        found.notes.append(note)  # the header shows each LSTM's notes
        layout = loaded.batch_first.get(found.name)
        if layout is not None:
            found.batch_first = layout
            found.conversions.append(f"batch_first={layout}, read from the pickled nn.LSTM's state")
    return contents


def load_checkpoint(file: Path) -> Any:
    """A --weights file's torch.load(weights_only=True) value (or, when weights_only refuses
    it, safe_unpickle's plain containers), read once per file version: the LSTM's reader and
    the text input (its vocabulary and embedding) share it."""
    return load_checkpoint_safely(file).value


@dataclass
class Loaded:
    value: Any
    replaced: list[str] | None  # None: weights_only read it; else the classes safe_unpickle replaced
    batch_first: dict[str, bool]


def load_checkpoint_safely(file: Path) -> Loaded:
    return _load_checkpoint(file, file_version(file))


@functools.lru_cache(maxsize=2)
def _load_checkpoint(file: Path, version: tuple[int, int]) -> Loaded:
    if not _is_legacy(file):
        try:
            return Loaded(load_weights_only(file), None, {})
        except _PicklesObjects:
            pass
    loaded = _safe_load(file)
    if not loaded.replaced:  # a legacy file of tensors and containers: what weights_only gives
        return Loaded(loaded.value, None, {})
    return Loaded(loaded.value, loaded.replaced, loaded.batch_first)


def _is_legacy(file: Path) -> bool:
    """torch.save's pre-1.6 format. torch's legacy reader allocates each storage at the size the
    pickle declares before reading it, so weights_only would try a 4 TB allocation for a few
    bytes of file; safe_unpickle checks every size first and reads the same tensors."""
    with open(file, "rb") as handle:
        return LEGACY_TORCH_MAGIC in handle.read(32)


def _safe_load(file: Path) -> safe_unpickle.SafeLoad:
    return safe_read(lambda: safe_unpickle.load_torch(file), "a torch.save file",
                     "unpickling it could run code, so lstm-cli refuses it (--trust-checkpoint would run it)")


def safe_read(load: Callable[[], safe_unpickle.SafeLoad], what: str, advice: str) -> safe_unpickle.SafeLoad:
    """A safe_unpickle load whose refusals become one FormatError sentence about `what` (a
    torch.save file, a plain pickle, the torch.save bytes inside a msgpack file)."""
    try:
        return load()
    except safe_unpickle.Hostile as exc:
        raise FormatError(f"{what} that names {exc.name}, which only a pickle built to run code needs; {advice}") from None
    except safe_unpickle.Refused as exc:
        raise FormatError(f"{what} that lstm-cli refuses to read: {exc}") from None
    except Exception as exc:  # a damaged pickle raises many kinds of error
        raise FormatError(f"{what} that cannot be unpickled (truncated or corrupt?): {reason(exc)}") from None


class _PicklesObjects(FormatError):
    """weights_only refused a class the file names (the message says which)."""


def load_weights_only(file: Path, advice: str = f"save model.state_dict() instead, or {TRUST_HINT}") -> Any:
    """torch.load with weights_only=True (legacy files: safe_unpickle, refusing what
    weights_only refuses); an object it refuses is named with what it asks for."""
    refused = (
        "a torch.save file that pickles Python objects{what}, not only tensors; unpickling "
        f"them could run code, so lstm-cli refuses: {advice}"
    )
    if _is_legacy(file):
        loaded = _safe_load(file)
        if loaded.replaced:
            raise _PicklesObjects(refused.format(what=f" ({loaded.replaced[0]})"))
        return loaded.value
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        blocked = re.search(r"GLOBAL ([\w.]+)", str(exc))
        raise _PicklesObjects(refused.format(what=f" ({blocked.group(1)})" if blocked else "")) from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, AttributeError, IndexError) as exc:
        raise FormatError(f"a torch.save file that torch cannot read (truncated or corrupt?): {reason(exc)}") from None


def reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]


def _read_trusted(file: Path) -> Contents:
    """--trust-checkpoint: any pickle, code and all; the LSTMs are the nn.LSTM and nn.LSTMCell
    submodules of whatever modules it holds (or the names of a plain state_dict)."""
    try:
        if detect(file).kind == "pickle":  # a plain pickle, not torch.save's format
            with open(file, "rb") as handle:
                value = pickle.load(handle)  # noqa: S301 - the user trusts this file (--trust-checkpoint)
        else:
            value = torch.load(file, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as exc:  # the file's classes come from a package not installed here
        raise FormatError(
            f"the file pickles objects of module '{exc.name}', which is not installed here; without "
            "--trust-checkpoint lstm-cli reads its tensors without it"
        ) from None
    except Exception as exc:  # arbitrary unpickling can raise anything, e.g. a missing class
        raise FormatError(
            f"a torch.save file that could not be unpickled even with --trust-checkpoint "
            f"({type(exc).__name__}: {reason(exc)}); the classes it pickles must be importable here"
        ) from None
    # Every nn.LSTM and nn.LSTMCell inside whatever modules the file holds, by dotted name.
    modules = {
        name: module
        for prefix, top in flatten(value, nn.Module).items()
        for name, module in top.named_modules(prefix=prefix)
        if isinstance(module, (nn.LSTM, nn.LSTMCell))
    }
    if not modules:
        return find_in_tensors(flatten(value, torch.Tensor), "PyTorch state_dict (torch.save, loaded with --trust-checkpoint)")
    contents = Contents("pickled PyTorch module (loaded with --trust-checkpoint)")
    contents.found.extend(module_found(name, module) for name, module in modules.items())
    return contents


def module_found(name: str, module: nn.LSTM | nn.LSTMCell) -> Found:
    """An nn.LSTM or nn.LSTMCell module's weights under nn.LSTM's names (a cell is layer 0 of
    a one-layer nn.LSTM)."""
    if isinstance(module, nn.LSTM):
        state = {k: v.detach() for k, v in module.state_dict().items()}
        return Found(name, state, batch_first=module.batch_first, conversions=[
            f"nn.LSTM module '{name}' (batch_first={module.batch_first}, read from the module)"
        ])
    state = {f"{k}_l0": v.detach() for k, v in module.state_dict().items()}
    return Found(name, state, conversions=[
        f"nn.LSTMCell module '{name}' -> layer 0 of a one-layer nn.LSTM (names + _l0; same weights)"
    ])
