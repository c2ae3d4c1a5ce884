"""safetensors files: a JSON header and raw tensor bytes, nothing executable."""

from __future__ import annotations

from pathlib import Path

from lstm_cli.formats.base import Contents, FormatError
from lstm_cli.formats.named_tensors import find_in_tensors


def read(file: Path, trust: bool = False) -> Contents:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise FormatError("reading safetensors needs the safetensors package: pip install 'lstm-cli[safetensors]'") from None
    try:
        tensors = dict(load_file(str(file), device="cpu"))
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise FormatError(f"a safetensors file that cannot be read: {str(exc)[:160]}") from None
    return find_in_tensors(tensors, "safetensors")
