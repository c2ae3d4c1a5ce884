"""Tensors stored in an ONNX file (initializers and Constant nodes) read as numpy arrays, each
guarded first: data only from this file (never an external data file), a declared shape under
MAX_ELEMENTS values, stored bytes that match that shape, a data type lstm-cli reads."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lstm_cli.formats.base import FormatError
from lstm_cli.formats.onnx_model.messages import Refused
from lstm_cli.formats.text import first_line, printable
from lstm_cli.shapes import shape_text

MAX_ELEMENTS = 2**28  # per tensor, declared or computed: 1 GiB of float32


def tensor_array(onnx: Any, tensor: Any, name: str) -> np.ndarray:
    """A TensorProto as a numpy array, after checking that its data is in this file, that its
    declared shape is not huge and that the stored values match that shape."""
    name = printable(name)
    if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
        location = printable(next((entry.value for entry in tensor.external_data if entry.key == "location"), "?"))
        raise FormatError(
            f"tensor '{name}' is stored in an external file ({location!r}); lstm-cli reads only the given file"
        )
    dims = list(tensor.dims)
    if any(d < 0 for d in dims):
        raise FormatError(f"tensor '{name}' declares a negative dimension: {shape_text(dims)}")
    count = math.prod(dims)
    if count > MAX_ELEMENTS:
        raise FormatError(
            f"tensor '{name}' declares shape {shape_text(dims)}, {count} values, over lstm-cli's limit of {MAX_ELEMENTS}"
        )
    kind = onnx.TensorProto
    readable = {
        kind.FLOAT: "float_data", kind.DOUBLE: "double_data", kind.FLOAT16: "int32_data",
        kind.INT8: "int32_data", kind.UINT8: "int32_data", kind.INT16: "int32_data",
        kind.INT32: "int32_data", kind.INT64: "int64_data", kind.BOOL: "int32_data",
    }
    if tensor.data_type not in readable:
        type_name = kind.DataType.Name(tensor.data_type) if tensor.data_type in kind.DataType.values() else tensor.data_type
        raise Refused(f"tensor '{name}' has data type {type_name}, which lstm-cli does not read")
    itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    if tensor.HasField("raw_data"):
        stored, expected = len(tensor.raw_data), count * itemsize
        unit = "bytes"
    else:
        stored, expected = len(getattr(tensor, readable[tensor.data_type])), count
        unit = "values"
    if stored != expected:
        raise FormatError(
            f"tensor '{name}' declares shape {shape_text(dims)} ({expected} {unit}) but stores {stored} {unit}"
        )
    try:
        return np.array(onnx.numpy_helper.to_array(tensor))  # a writable copy
    except (ValueError, TypeError) as exc:
        raise FormatError(f"tensor '{name}' is malformed: {first_line(exc)}") from None


def constant_node_value(onnx: Any, node: Any, name: str) -> np.ndarray:
    """The value of a Constant node, in any of the attribute forms ONNX allows."""
    for attribute in node.attribute:
        if attribute.name == "value":
            return tensor_array(onnx, attribute.t, name)
        if attribute.name == "value_float":
            return np.array(attribute.f, dtype=np.float32)
        if attribute.name == "value_floats":
            return np.array(list(attribute.floats), dtype=np.float32)
        if attribute.name == "value_int":
            return np.array(attribute.i, dtype=np.int64)
        if attribute.name == "value_ints":
            return np.array(list(attribute.ints), dtype=np.int64)
    raise Refused(f"'{printable(name)}' is a Constant node without a numeric value, which lstm-cli does not read")
