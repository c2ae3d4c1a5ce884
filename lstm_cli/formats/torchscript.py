"""TorchScript archives (torch.jit.save): the parameters of the scripted module, read with
torch.jit.load(map_location="cpu").state_dict().

Loading compiles the archive's TorchScript code into a graph; it runs no Python and does not
call the module's forward, so it cannot run code the way unpickling can. Only the parameter
names and shapes are used: the scripted forward is never run (lstm-cli runs its own nn.LSTM).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from lstm_cli.formats.base import Contents, FormatError
from lstm_cli.formats.named_tensors import find_in_tensors


def read(file: Path, trust: bool = False) -> Contents:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's own loader warnings are not the user's business
            module = torch.jit.load(str(file), map_location="cpu")
        state = {name: t.detach() for name, t in module.state_dict().items()}
    except Exception as exc:  # torch.jit raises RuntimeError and assorted C++ errors
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise FormatError(f"a TorchScript archive that torch.jit cannot load: {reason}") from None
    contents = find_in_tensors(state, "TorchScript archive (torch.jit.save)")
    for found in contents.found:
        layout = getattr(_submodule(module, found.name), "batch_first", None)
        if isinstance(layout, bool):  # a scripted nn.LSTM keeps its constructor's constants
            found.batch_first = layout
            found.conversions.append(f"batch_first={layout}, read from the scripted module")
    return contents


def _submodule(module, name: str):
    for part in filter(None, name.split(".")):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module
