"""Every checkpoint format lstm-cli reads, one module each, behind one interface (base.py).

A file's format is decided by its bytes (detect.py), never by its name. Adding a format is one
module with `read(file, trust) -> Contents` and one REGISTRY line here.
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path

from lstm_cli.formats.base import Contents, FormatError
from lstm_cli.formats.detect import Detected, detect

# kind (from detect) -> (module, function). Modules import their optional packages lazily.
REGISTRY: dict[str, tuple[str, str]] = {
    "torch": ("lstm_cli.formats.torch_file", "read"),
    "torchscript": ("lstm_cli.formats.torchscript", "read"),
    "safetensors": ("lstm_cli.formats.safetensors_file", "read"),
    "npz": ("lstm_cli.formats.numpy_files", "read_npz"),
    "pickle": ("lstm_cli.formats.numpy_files", "read_pickle"),
    "onnx": ("lstm_cli.formats.onnx_model", "read"),
    "hdf5": ("lstm_cli.formats.keras", "read"),
    "keras": ("lstm_cli.formats.keras", "read"),
    "msgpack": ("lstm_cli.formats.msgpack_model", "read"),
}


def read_file(file: Path, trust: bool = False) -> Contents:
    """What `file` holds, read by the module of its format; FormatError says what it is when
    lstm-cli cannot read it. Cached per file version: a run reads its checkpoint once."""
    stat = file.stat()
    return _read(file, trust, (stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=4)
def _read(file: Path, trust: bool, version: tuple[int, int]) -> Contents:
    found: Detected = detect(file)
    if found.kind not in REGISTRY:  # None, or an .npy array (an input, never weights)
        raise FormatError(f"{found.what}")
    if trust and found.kind not in ("torch", "pickle"):
        raise FormatError(f"--trust-checkpoint applies to pickled torch files, and this is {found.what}")
    module, function = REGISTRY[found.kind]
    if found.kind == "pickle" and trust:
        module, function = REGISTRY["torch"]  # a trusted plain pickle: torch.load(weights_only=False)
    return getattr(importlib.import_module(module), function)(file, trust)
