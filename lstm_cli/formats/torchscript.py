"""TorchScript archives (torch.jit.save): the parameters of the scripted module, read with
torch.jit.load(map_location="cpu").state_dict().

Loading compiles the archive's TorchScript code into a graph; it runs no Python and does not
call the module's forward, so it cannot run code the way unpickling can. Only the parameter
names and shapes are used: the scripted forward is never run (lstm-cli runs its own nn.LSTM).
A scripted nn.LSTM keeps batch_first as an attribute; a traced one only in the torch.lstm call
of its code, which is read as text.
"""

from __future__ import annotations

import re
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
        raise FormatError(_cannot_load(exc)) from None
    contents = find_in_tensors(state, "TorchScript archive (torch.jit.save)")
    for found in contents.found:
        submodule = _submodule(module, found.name)
        layout = getattr(submodule, "batch_first", None)
        if isinstance(layout, bool):  # a scripted nn.LSTM keeps its constructor's constants
            found.batch_first = layout
            found.conversions.append(f"batch_first={layout}, read from the scripted module")
        elif (layout := _traced_batch_first(submodule)) is not None:
            found.batch_first = layout
            found.conversions.append(f"batch_first={layout}, read from the traced torch.lstm call in the module's code")
    return contents


def _cannot_load(exc: BaseException) -> str:
    """torch's cause in one line: its messages run over many lines with C++ and TorchScript
    source frames, of which the first meaningful line says what went wrong."""
    text = str(exc)
    outdated = re.search(r"outdated version of ([\w.]*\w)", text)
    if outdated and "quantized" in outdated.group(1):
        return (
            "a TorchScript archive saved by an older torch with a dynamic-quantized LSTM; torch "
            f"{torch.__version__.split('+')[0]} cannot load it (outdated {outdated.group(1)}): re-export it with this torch"
        )
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    frames = ("Traceback", "File ", "Exception raised from", "frame #", "Serialized", "~", "^")
    reason = next((line for line in lines if not line.startswith(frames)), type(exc).__name__)
    return f"a TorchScript archive that torch {torch.__version__.split('+')[0]} cannot load: {reason[:160]}"


def _traced_batch_first(module) -> bool | None:
    """batch_first of a traced nn.LSTM, from the torch.lstm call its code records:
    torch.lstm(input, hx, params, has_biases, num_layers, dropout, train, bidirectional,
    batch_first). The packed-sequence overload (data, batch_sizes, hx, params, ...) has no
    batch_first; it is told apart by its fourth argument, a list rather than a bool."""
    try:
        code = module.code if module is not None else ""
    except Exception:  # a module without TorchScript code of its own (no forward)
        return None
    layouts = set()
    for call in re.finditer(r"torch\.lstm\(", code):
        args = _arguments(code, call.end())
        if len(args) == 9 and args[3] in ("True", "False") and args[8] in ("True", "False"):
            layouts.add(args[8] == "True")
    return layouts.pop() if len(layouts) == 1 else None


def _arguments(code: str, start: int) -> list[str]:
    """The top-level comma-separated arguments of the call whose '(' ends just before `start`."""
    args, depth, current = [], 0, []
    for ch in code[start:]:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            if depth == 0:
                args.append("".join(current).strip())
                return args
            depth -= 1
        elif ch == "," and depth == 0:
            args.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    return []


def _submodule(module, name: str):
    for part in filter(None, name.split(".")):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module
