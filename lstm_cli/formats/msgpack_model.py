"""spaCy/thinc models: msgpack, read with a small pure-Python decoder (no msgpack package).

thinc's Model.to_bytes writes one msgpack map {"nodes": [...], "attrs": [...], "params": [...],
"shims": [[shim bytes, ...] per node]}; a PyTorch layer (PyTorchWrapper, PyTorchLSTM inside
spaCy's TorchBiLSTMEncoder) keeps a PyTorchShim whose bytes are msgpack again,
{"config": ..., "state": torch.save(model.state_dict()) bytes}. Every bytes value that is a
torch.save zip is read with the torch reader's rules (weights_only, else safe_unpickle), so the
nn.LSTM's state_dict comes out under the path it sits at, e.g. "shims.2.0.state.weight_ih_l0".
thinc's own layers (its native LSTM, Linear, ...) keep numpy arrays under their own names and
gate layouts: they are not read.
"""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path
from typing import Any

import torch

from lstm_cli.formats import safe_unpickle, torch_file
from lstm_cli.formats.base import Contents, FormatError
from lstm_cli.formats.named_tensors import find_in_tensors, flatten

MAX_DEPTH = 64  # thinc nests a few levels; deeper is a damaged or hostile file


class MsgpackError(ValueError):
    """The bytes are not valid msgpack (one sentence)."""


def read(file: Path, trust: bool = False) -> Contents:
    data = file.read_bytes()
    try:
        value = unpack(data)
    except MsgpackError as exc:
        raise FormatError(f"a msgpack file that cannot be decoded (truncated or corrupt?): {exc}") from None
    thinc = isinstance(value, dict) and "nodes" in value and "shims" in value
    what = "a spaCy/thinc model (msgpack)" if thinc else "a msgpack file"
    replaced: list[str] = []
    found_any = [False]
    value = _torch_inside(value, replaced, found_any)
    if not found_any[0]:
        raise FormatError(
            f"{what} with no torch.save'd PyTorch weights inside: lstm-cli reads the nn.LSTM of a "
            "thinc PyTorchWrapper shim (spaCy's TorchBiLSTMEncoder), not thinc's own layers"
        )
    format_name = f"{what[2:]}, PyTorch shim state_dict"
    if replaced:  # some torch.save bytes needed safe_unpickle: say so, as for a torch file
        contents = torch_file.contents_of(safe_unpickle.SafeLoad(value, sorted(set(replaced))), format_name)
    else:
        contents = find_in_tensors(flatten(value, torch.Tensor), format_name)
    nodes = value.get("nodes") if thinc else None
    for found in contents.found:
        found.conversions.insert(0, f"the torch.save'd state_dict inside {_node_name(found.name, nodes)}, read as a torch file")
    return contents


def _node_name(path: str, nodes: Any) -> str:
    """'thinc node 2 (pytorch_lstm)'s PyTorch shim' for a path shims.2.0.state...."""
    parts = path.split(".")
    if len(parts) >= 2 and parts[0] == "shims" and parts[1].isdigit() and isinstance(nodes, list):
        index = int(parts[1])
        node = nodes[index] if index < len(nodes) else None
        name = node.get("name") if isinstance(node, dict) else None
        return f"thinc node {index}" + (f" ({name})" if isinstance(name, str) else "") + "'s PyTorch shim"
    return f"'{path}'"


def _torch_inside(value: Any, replaced: list[str], found_any: list[bool], depth: int = 0) -> Any:
    """`value` with each bytes value that is msgpack or a torch.save zip replaced by what it holds."""
    if depth > MAX_DEPTH:
        raise FormatError(f"a msgpack file nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        return {key: _torch_inside(item, replaced, found_any, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [_torch_inside(item, replaced, found_any, depth + 1) for item in value]
    if isinstance(value, bytes):
        if value.startswith(b"PK\x03\x04"):
            found_any[0] = True
            return _load_torch_bytes(value, replaced)
        if value[:1] and (0x80 <= value[0] <= 0x8F or value[0] in (0xDE, 0xDF)):  # a shim's own msgpack map
            try:
                inner = unpack(value)
            except MsgpackError:
                return value
            return _torch_inside(inner, replaced, found_any, depth + 1)
    return value


def _load_torch_bytes(data: bytes, replaced: list[str]) -> Any:
    """A torch.save zip held as bytes: weights_only first, then safe_unpickle (never code)."""
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass
    except Exception as exc:
        raise FormatError(f"a msgpack file whose torch.save bytes torch cannot read: {torch_file.reason(exc)}") from None
    loaded = torch_file.safe_read(lambda: safe_unpickle.load_torch_bytes(data),
                                  "a msgpack file holding torch.save bytes", "lstm-cli refuses it")
    replaced.extend(loaded.replaced)
    return loaded.value


# -- a msgpack decoder (the spec: github.com/msgpack/msgpack/blob/master/spec.md) --------------


class Ext:
    """A msgpack extension value (type code and raw bytes), kept undecoded."""

    def __init__(self, code: int, data: bytes):
        self.code, self.data = code, data


def unpack(data: bytes) -> Any:
    """The one msgpack value that spans `data`."""
    value, end = _decode(data, 0, 0)
    if end != len(data):
        raise MsgpackError(f"{len(data) - end} bytes after the first value")
    return value


def _take(data: bytes, position: int, size: int) -> bytes:
    if size < 0 or position + size > len(data):
        raise MsgpackError(f"a value of {size} bytes at offset {position} runs past the end ({len(data)} bytes)")
    return data[position : position + size]


def _uint(data: bytes, position: int, size: int) -> int:
    return int.from_bytes(_take(data, position, size), "big")


# first byte -> (struct format, size) of fixed-size numbers
_NUMBERS = {
    0xCA: (">f", 4), 0xCB: (">d", 8),
    0xCC: (">B", 1), 0xCD: (">H", 2), 0xCE: (">I", 4), 0xCF: (">Q", 8),
    0xD0: (">b", 1), 0xD1: (">h", 2), 0xD2: (">i", 4), 0xD3: (">q", 8),
}
_FIXEXT = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}
# first byte -> size of the length that follows (bin, ext, str, array, map)
_LENGTH_SIZE = {
    0xC4: 1, 0xC5: 2, 0xC6: 4, 0xC7: 1, 0xC8: 2, 0xC9: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4,
    0xDC: 2, 0xDD: 4, 0xDE: 2, 0xDF: 4,
}


def _decode(data: bytes, position: int, depth: int) -> tuple[Any, int]:
    if depth > MAX_DEPTH:
        raise MsgpackError(f"values nested deeper than {MAX_DEPTH} levels")
    first = _uint(data, position, 1)
    position += 1
    if first <= 0x7F:
        return first, position
    if first >= 0xE0:
        return first - 0x100, position
    if 0xA0 <= first <= 0xBF:
        return _text(_take(data, position, first & 0x1F)), position + (first & 0x1F)
    if 0x90 <= first <= 0x9F:
        return _array(data, position, first & 0x0F, depth)
    if 0x80 <= first <= 0x8F:
        return _map(data, position, first & 0x0F, depth)
    if first in (0xC0, 0xC2, 0xC3):
        return {0xC0: None, 0xC2: False, 0xC3: True}[first], position
    if first in _NUMBERS:
        fmt, size = _NUMBERS[first]
        return struct.unpack(fmt, _take(data, position, size))[0], position + size
    if first in _FIXEXT:
        size = _FIXEXT[first]
        return Ext(_uint(data, position, 1), _take(data, position + 1, size)), position + 1 + size
    if first not in _LENGTH_SIZE:  # 0xC1 is never used
        raise MsgpackError(f"byte 0x{first:02x} at offset {position - 1} starts no msgpack value")
    size = _LENGTH_SIZE[first]
    length = _uint(data, position, size)
    position += size
    if first in (0xC4, 0xC5, 0xC6):
        return _take(data, position, length), position + length
    if first in (0xD9, 0xDA, 0xDB):
        return _text(_take(data, position, length)), position + length
    if first in (0xC7, 0xC8, 0xC9):
        return Ext(_uint(data, position, 1), _take(data, position + 1, length)), position + 1 + length
    if first in (0xDC, 0xDD):
        return _array(data, position, length, depth)
    return _map(data, position, length, depth)


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MsgpackError("a string that is not UTF-8") from None


def _array(data: bytes, position: int, count: int, depth: int) -> tuple[list, int]:
    if count > len(data) - position:  # every item takes at least one byte: no huge preallocation
        raise MsgpackError(f"an array of {count} items in {len(data) - position} bytes")
    items = []
    for _ in range(count):
        item, position = _decode(data, position, depth + 1)
        items.append(item)
    return items, position


def _map(data: bytes, position: int, count: int, depth: int) -> tuple[dict, int]:
    if 2 * count > len(data) - position:
        raise MsgpackError(f"a map of {count} entries in {len(data) - position} bytes")
    out: dict[Any, Any] = {}
    for _ in range(count):
        key, position = _decode(data, position, depth + 1)
        value, position = _decode(data, position, depth + 1)
        if isinstance(key, bytes):  # msgpack-numpy writes b"nd", b"data", ...
            key = key.decode("latin-1")
        elif not isinstance(key, (str, int, float, bool)) and key is not None:
            key = repr(key)[:40]  # an array or map as a key: keep it, named
        out[key] = value
    return out, position
