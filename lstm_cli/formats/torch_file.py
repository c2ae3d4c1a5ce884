"""torch.save files (zip, or the legacy pre-1.6 format): a state_dict, nested or prefixed
(Lightning's {"state_dict": {...}, "epoch": 3}), read with torch.load(weights_only=True), which
unpickles tensors and plain containers only.

A file that pickles whole modules needs arbitrary unpickling, which can run code: refused by
default, and loaded with weights_only=False only when the user opts in (--trust-checkpoint);
then the LSTMs are found among the module's own submodules.
"""

from __future__ import annotations

import functools
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lstm_cli.formats.base import Contents, FormatError, Found
from lstm_cli.formats.detect import detect
from lstm_cli.formats.named_tensors import find_in_tensors, flatten
from lstm_cli.paths import file_version

TRUST_HINT = "if you trust whoever made this file, rerun with --trust-checkpoint"


def read(file: Path, trust: bool = False) -> Contents:
    if trust:
        return _read_trusted(file)
    return find_in_tensors(flatten(load_checkpoint(file), torch.Tensor), "PyTorch state_dict (torch.save)")


def load_checkpoint(file: Path) -> Any:
    """A --weights file's torch.load(weights_only=True) value, read once per file version: the
    LSTM's reader and the text input (its vocabulary and embedding) share it."""
    return _load_checkpoint(file, file_version(file))


@functools.lru_cache(maxsize=2)
def _load_checkpoint(file: Path, version: tuple[int, int]) -> Any:
    return load_weights_only(file)


def load_weights_only(file: Path, advice: str = f"save model.state_dict() instead, or {TRUST_HINT}") -> Any:
    """torch.load with weights_only=True; an object it refuses is named with what it asks for."""
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        blocked = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" ({blocked.group(1)})" if blocked else ""
        raise FormatError(
            f"a torch.save file that pickles Python objects{what}, not only tensors; unpickling "
            f"them could run code, so lstm-cli refuses: {advice}"
        ) from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, AttributeError, IndexError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FormatError(f"a torch.save file that torch cannot read (truncated or corrupt?): {reason[:160]}") from None


def _read_trusted(file: Path) -> Contents:
    """--trust-checkpoint: any pickle, code and all; the LSTMs are the nn.LSTM and nn.LSTMCell
    submodules of whatever modules it holds (or the names of a plain state_dict)."""
    try:
        if detect(file).kind == "pickle":  # a plain pickle, not torch.save's format
            with open(file, "rb") as handle:
                value = pickle.load(handle)  # noqa: S301 - the user trusts this file (--trust-checkpoint)
        else:
            value = torch.load(file, map_location="cpu", weights_only=False)
    except Exception as exc:  # arbitrary unpickling can raise anything, e.g. a missing class
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FormatError(
            f"a torch.save file that could not be unpickled even with --trust-checkpoint "
            f"({type(exc).__name__}: {reason[:160]}); the classes it pickles must be importable here"
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
    for name, module in modules.items():
        if isinstance(module, nn.LSTM):
            state = {k: v.detach() for k, v in module.state_dict().items()}
            contents.found.append(Found(name, state, batch_first=module.batch_first, conversions=[
                f"nn.LSTM module '{name}' (batch_first={module.batch_first}, read from the module)"
            ]))
        else:  # nn.LSTMCell
            state = {f"{k}_l0": v.detach() for k, v in module.state_dict().items()}
            contents.found.append(Found(name, state, conversions=[
                f"nn.LSTMCell module '{name}' -> layer 0 of a one-layer nn.LSTM (names + _l0; same weights)"
            ]))
    return contents
