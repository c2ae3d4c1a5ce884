"""Constant folding: an LSTM input computed from constants by a few nodes (Cast, Add, Mul,
Transpose, Reshape, DequantizeLinear, ...) evaluated with numpy, with ONNX's semantics, bounded
in the nodes it follows and the values it holds."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lstm_cli.formats.base import FormatError
from lstm_cli.formats.onnx_model.graph import DEFAULT_DOMAINS, Scope
from lstm_cli.formats.onnx_model.messages import Refused
from lstm_cli.formats.text import first_line, printable
from lstm_cli.formats.onnx_model.tensors import (
    MAX_ELEMENTS,
    constant_node_value,
    tensor_array,
)

MAX_FOLD_VALUES = 2 * MAX_ELEMENTS  # all tensors one fold reads or computes together
MAX_FOLD_NODES = 200  # nodes followed to fold one LSTM input to a constant
# Ops folded with numpy when an LSTM input is computed from constants; the common ways an
# exporter or a quantizer writes a constant weight.
FOLDABLE = {
    "Identity", "Cast", "Add", "Sub", "Mul", "Div", "Neg", "Transpose", "Reshape", "Concat",
    "Unsqueeze", "Squeeze", "Slice", "Gather", "Split", "DequantizeLinear",
}


class Folder:
    """Computes one LSTM input from the constants it depends on, following at most
    MAX_FOLD_NODES nodes and holding at most MAX_FOLD_VALUES values in all."""

    def __init__(self, onnx: Any, role: str) -> None:
        self.onnx = onnx
        self.role = role  # "W", "R", "B", ... for messages
        self.nodes_left = MAX_FOLD_NODES
        self.values = 0
        self.folded: list[str] = []  # op types of the nodes computed, in evaluation order
        self.done: dict[int, list[np.ndarray]] = {}  # id(node) -> its outputs

    def count(self, array: np.ndarray, name: str) -> np.ndarray:
        if array.size > MAX_ELEMENTS:
            raise FormatError(f"tensor '{printable(name)}' would hold {array.size} values, over lstm-cli's limit of {MAX_ELEMENTS}")
        self.values += array.size
        if self.values > MAX_FOLD_VALUES:
            raise FormatError(
                f"folding {self.role} to a constant would need over {MAX_FOLD_VALUES} values (reached at tensor '{printable(name)}')"
            )
        return array

    def value(self, name: str, scope: Scope, top: bool = True) -> np.ndarray:
        """The constant value of `name`; Refused when it depends on anything known only at
        run time. Recursion goes one frame per node and stops after MAX_FOLD_NODES, which also
        ends a (malformed) cycle."""
        found = scope.lookup(name)
        if found is None:
            raise Refused(f"{self.role} uses '{printable(name)}', which nothing in the model defines")
        kind, item, owner = found
        if kind == "initializer":
            return self.count(tensor_array(self.onnx, item, name), name)
        if kind == "sparse":
            raise Refused(f"{self.role} uses sparse initializer '{printable(name)}', which lstm-cli does not read")
        if kind == "input":
            if owner.parent is None:
                source = f"graph input '{printable(name)}'"
            else:
                source = f"'{printable(name)}', an input of the subgraph of {owner.where},"
            if top:
                raise Refused(f"{self.role} is {source.rstrip(',')}, given at run time")
            raise Refused(f"{self.role} is computed from {source} at run time")
        node = item
        if id(node) not in self.done:
            self.done[id(node)] = self.compute(node, owner, name)
        outputs = self.done[id(node)]
        index = list(node.output).index(name)
        if index >= len(outputs):
            raise Refused(f"{self.role} uses output {index} of a {printable(node.op_type)} node, which produces only {len(outputs)}")
        return outputs[index]

    def compute(self, node: Any, owner: Scope, name: str) -> list[np.ndarray]:
        """The outputs of one node whose inputs fold to constants."""
        if node.domain in DEFAULT_DOMAINS and node.op_type == "Constant":
            return [self.count(constant_node_value(self.onnx, node, name), name)]
        self.nodes_left -= 1
        if self.nodes_left < 0:
            raise Refused(f"{self.role} is computed by more than {MAX_FOLD_NODES} nodes; lstm-cli folds at most that many")
        if node.domain not in DEFAULT_DOMAINS or node.op_type not in FOLDABLE:
            label = f" ('{printable(node.name)}')" if node.name else ""
            raise Refused(f"{self.role} is computed by a {printable(node.op_type)} node{label}, which lstm-cli does not fold to a constant")
        inputs = [self.value(i, owner, top=False) if i else None for i in node.input]
        try:
            # A hostile file may divide by zero or cast NaN to int: results, not warnings on stderr.
            with np.errstate(all="ignore"):
                outputs = _evaluate(self.onnx, node, inputs)
        except (ValueError, IndexError, TypeError, KeyError, OverflowError, ZeroDivisionError) as exc:
            raise Refused(
                f"folding {self.role} failed at {node.op_type} node '{printable(node.name or node.output[0])}': {first_line(exc)}"
            ) from None
        self.folded.append(node.op_type)
        return [self.count(out, out_name) for out, out_name in zip(outputs, node.output)]


def _check_size(shape: tuple[int, ...], node: Any) -> None:
    """Refuse before allocating an output that could outgrow its inputs (broadcast, Concat,
    Gather)."""
    count = math.prod(shape)
    if count > MAX_ELEMENTS:
        raise FormatError(
            f"tensor '{printable(node.output[0])}' would hold {count} values, over lstm-cli's limit of {MAX_ELEMENTS}"
        )


def _ints(array: np.ndarray | None) -> list[int]:
    return [] if array is None else [int(v) for v in np.asarray(array).reshape(-1)]


def _evaluate(onnx: Any, node: Any, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
    """One foldable node, with ONNX's semantics for the attribute-or-input forms of each op
    across opsets."""
    op = node.op_type
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def required(k: int) -> np.ndarray:
        if k >= len(inputs) or inputs[k] is None:
            raise ValueError(f"its input {k} is missing")
        return inputs[k]

    x = required(0)
    if op == "Identity":
        return [x]
    if op == "Cast":
        return [x.astype(onnx.helper.tensor_dtype_to_np_dtype(attrs["to"]))]
    if op in ("Add", "Sub", "Mul", "Div"):
        y = required(1)
        _check_size(np.broadcast_shapes(x.shape, y.shape), node)
        if op == "Add":
            out = x + y
        elif op == "Sub":
            out = x - y
        elif op == "Mul":
            out = x * y
        elif np.issubdtype(x.dtype, np.integer):
            out = np.trunc(x / y)  # ONNX integer Div truncates toward zero
        else:
            out = x / y
        return [out.astype(x.dtype)]  # ONNX keeps the operands' type; numpy would promote
    if op == "Neg":
        return [-x]
    if op == "Transpose":
        perm = attrs.get("perm") or list(range(x.ndim))[::-1]
        return [np.transpose(x, perm)]
    if op == "Reshape":
        shape = _ints(required(1))
        if not attrs.get("allowzero", 0):
            shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
        return [np.reshape(x, shape)]
    if op == "Concat":
        parts = [part for part in inputs if part is not None]
        axis = attrs["axis"] % parts[0].ndim
        shape = list(parts[0].shape)
        shape[axis] = sum(part.shape[axis] for part in parts)
        _check_size(tuple(shape), node)
        return [np.concatenate(parts, axis=axis)]
    if op == "Unsqueeze":
        axes = attrs.get("axes") or _ints(inputs[1] if len(inputs) > 1 else None)
        return [np.expand_dims(x, tuple(axes))]
    if op == "Squeeze":
        axes = attrs.get("axes") or _ints(inputs[1] if len(inputs) > 1 else None)
        return [np.squeeze(x, axis=tuple(axes)) if axes else np.squeeze(x)]
    if op == "Slice":
        if "starts" in attrs:  # opset < 10
            starts, ends, axes, steps = attrs["starts"], attrs["ends"], attrs.get("axes"), None
        else:
            starts, ends = _ints(required(1)), _ints(required(2))
            axes = _ints(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else None
            steps = _ints(inputs[4]) if len(inputs) > 4 and inputs[4] is not None else None
        axes = axes or list(range(len(starts)))
        steps = steps or [1] * len(starts)
        index = [slice(None)] * x.ndim
        for start, end, axis, step in zip(starts, ends, axes, steps):
            index[axis % x.ndim] = slice(start, end, step)
        return [x[tuple(index)]]
    if op == "Gather":
        indices = required(1)
        axis = attrs.get("axis", 0) % x.ndim
        _check_size(x.shape[:axis] + indices.shape + x.shape[axis + 1 :], node)
        return [np.take(x, indices, axis=axis)]
    if op == "Split":
        axis = attrs.get("axis", 0) % x.ndim
        sizes = attrs.get("split") or _ints(inputs[1] if len(inputs) > 1 else None)
        if not sizes:
            parts = len(node.output)
            step = -(-x.shape[axis] // parts)  # opset 18: the last part may be smaller
            sizes = [min(step, x.shape[axis] - k * step) for k in range(parts)]
        return list(np.split(x, np.cumsum(sizes)[:-1], axis=axis))
    if op == "DequantizeLinear":
        if attrs.get("block_size", 0):
            raise ValueError("blocked quantization is not folded")
        scale = required(1)
        zero = inputs[2] if len(inputs) > 2 and inputs[2] is not None else np.zeros_like(scale, dtype=x.dtype)
        if scale.ndim == 1 and scale.size > 1:  # per axis: line scale and zero point up with that axis
            shape = [1] * x.ndim
            shape[attrs.get("axis", 1) % x.ndim] = scale.size
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        # (x - zero) is an exact small integer in float32; one rounding in the product.
        values = (x.astype(np.float32) - zero.astype(np.float32)) * scale.astype(np.float32)
        return [values.astype(scale.dtype)]
    raise ValueError(f"{op} is not folded")
