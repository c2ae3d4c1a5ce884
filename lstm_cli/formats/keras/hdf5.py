"""Safe HDF5 access for untrusted Keras files: links, datasets and attributes, each checked first.

No link (soft, external, user-defined) is followed, no dataset stored in or mapped from another
file is read, every path is bounded, every dataset's declared size and dtype are checked before it
is read, and attributes (split ones included) are decoded as UTF-8 text. h5py is passed in by the
caller, which imports it per read (an optional extra).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from lstm_cli.formats.base import FormatError
from lstm_cli.formats.text import first_line, printable

MAX_ELEMENTS = 2**28  # per dataset, declared: 1 GiB of float32
MAX_DEPTH = 32  # HDF5 path components followed, and model nesting in a config
MAX_ATTRIBUTE_BYTES = 64 * 2**20  # one attribute's declared size (model_config JSON included)
MAX_ATTRIBUTE_CHUNKS = 10_000  # layer_names0, layer_names1, ...


@contextlib.contextmanager
def open_hdf5(h5py, source: Any) -> Iterator[Any]:
    """The open HDF5 file; h5py's errors for damaged bytes, at opening or later, become one
    FormatError (ours pass through untouched). h5py raises TypeError for a damaged datatype."""
    try:
        handle = h5py.File(source, "r")
    except (OSError, ValueError) as exc:
        raise FormatError(f"not a readable HDF5 file (truncated or corrupt?): {first_line(exc)}") from None
    try:
        with handle:
            yield handle
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise FormatError(f"not a readable HDF5 file (truncated or corrupt?): {first_line(exc)}") from None


def hard_link(h5py, group, name: str, where: str):
    """The object `name` in `group` when a hard link leads there; None when there is no such
    link. Soft, external and user-defined links are refused, never followed."""
    link = group.get(name, getlink=True)
    if link is None:
        return None
    if isinstance(link, h5py.ExternalLink):
        raise FormatError(f"'{printable(where)}' links to another file '{printable(link.filename)}'; lstm-cli reads only the given file")
    if isinstance(link, h5py.SoftLink):
        raise FormatError(f"'{printable(where)}' is a soft link to '{printable(link.path)}', which Keras never writes; lstm-cli follows no HDF5 links")
    if not isinstance(link, h5py.HardLink):
        raise FormatError(f"'{printable(where)}' is a user-defined HDF5 link, which lstm-cli does not follow")
    return group[name]


def resolve(h5py, group, path: str):
    """The object at a relative path, one component at a time through hard links only, bounded."""
    parts = [part for part in path.split("/") if part]
    if any(part in (".", "..") for part in parts):
        return None  # Keras never writes them; "." would name the group itself
    if len(parts) > MAX_DEPTH:
        raise FormatError(f"'{printable(path)}' is nested deeper than {MAX_DEPTH} groups")
    current = group
    for index, part in enumerate(parts):
        if not isinstance(current, h5py.Group):
            return None
        current = hard_link(h5py, current, part, f"{group.name.rstrip('/')}/{'/'.join(parts[: index + 1])}")
        if current is None:
            return None
    return current


def link_names(group) -> list[str]:
    """The link names in a group, without following any; h5py gives bytes for one that is not
    valid text, which Keras never writes."""
    names = list(group.keys())
    if not all(isinstance(name, str) for name in names):
        raise FormatError(f"'{printable(group.name)}' holds a link whose name is not valid UTF-8 text")
    return names


def has_link(group, name: str) -> bool:
    """Whether `group` has a link `name`, without following it."""
    return group.get(name, getlink=True) is not None


def object_key(h5py, obj) -> tuple[int, int]:
    """The same group reached by two paths (a cycle) has one key."""
    info = h5py.h5o.get_info(obj.id)
    return info.fileno, info.addr


def read_dataset(h5py, dataset, where: str) -> np.ndarray:
    """A dataset's values after checking, from its metadata alone, that reading them is sane."""
    if not isinstance(dataset, h5py.Dataset):
        raise FormatError(f"'{printable(where)}' is not a dataset")
    if dataset.shape is None:
        raise FormatError(f"'{printable(where)}' is an empty dataset without a shape")
    count = math.prod(dataset.shape)
    if count > MAX_ELEMENTS:
        raise FormatError(
            f"'{printable(where)}' declares shape {dataset.shape} = {count:,} values, over lstm-cli's limit of {MAX_ELEMENTS:,} per tensor"
        )
    if dataset.dtype.kind != "f":
        if text_or_none(read_attribute(dataset, "dtype")) == "bfloat16":
            raise FormatError(f"'{printable(where)}' is stored as bfloat16, which lstm-cli does not read from Keras files")
        raise FormatError(f"'{printable(where)}' has dtype {dataset.dtype}, not a float type")
    if dataset.is_virtual:
        raise FormatError(f"'{printable(where)}' is a virtual dataset mapped from other files; lstm-cli reads only the given file")
    if dataset.id.get_create_plist().get_external_count():
        raise FormatError(f"'{printable(where)}' keeps its values in an external file; lstm-cli reads only the given file")
    try:
        return np.asarray(dataset[()])
    except (OSError, RuntimeError, ValueError) as exc:
        raise FormatError(f"'{printable(where)}' could not be read (truncated or corrupt?): {first_line(exc)}") from None


def has_attribute(obj, name: str) -> bool:
    return name in obj.attrs or f"{name}0" in obj.attrs


def read_attribute(obj, name: str) -> Any:
    """An attribute's value, None when absent, after checking its declared size."""
    if name not in obj.attrs:
        return None
    attribute = obj.attrs.get_id(name)
    count = math.prod(attribute.shape) if attribute.shape else 1
    if count * max(attribute.dtype.itemsize, 1) > MAX_ATTRIBUTE_BYTES:
        raise FormatError(f"the attribute '{name}' of '{obj.name}' declares {count:,} values, far more than Keras writes")
    return obj.attrs[name]


def as_text(value: Any, what: str) -> str:
    text = text_or_none(value)
    if text is None:
        raise FormatError(f"{what} is not text")
    return text


def text_or_none(value: Any) -> str | None:
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return str(value) if isinstance(value, str) else None


def read_text_list(obj, name: str) -> list[str]:
    """A list-of-strings attribute, joined from name0, name1, ... when Keras had to split it."""
    if name in obj.attrs:
        chunks = [read_attribute(obj, name)]
    else:
        chunks = []
        while f"{name}{len(chunks)}" in obj.attrs:
            if len(chunks) >= MAX_ATTRIBUTE_CHUNKS:
                raise FormatError(f"the attribute '{name}' of '{obj.name}' is split into over {MAX_ATTRIBUTE_CHUNKS:,} parts")
            chunks.append(read_attribute(obj, f"{name}{len(chunks)}"))
    texts = []
    for chunk in chunks:
        for value in np.atleast_1d(np.asarray(chunk, dtype=object)).ravel():
            texts.append(as_text(value, f"an entry of the attribute '{name}' of '{obj.name}'"))
    return texts
