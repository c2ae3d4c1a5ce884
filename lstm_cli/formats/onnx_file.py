"""ONNX models: every LSTM node, and onnxruntime's int8 DynamicQuantizeLSTM, at the top level and
inside If/Loop/Scan subgraphs, turned into nn.LSTM's parameter names, layout and gate order.

ONNX stores W [D, 4H, I], R [D, 4H, H] and B [D, 8H] = [Wb | Rb] with the gate blocks in the
order i, o, f, c; nn.LSTM wants weight_ih (4H, I), weight_hh (4H, H), bias_ih and bias_hh (4H,)
in the order i, f, g (= c), o, with `_reverse` for the backward direction.

Weights come from initializers, Constant nodes, or a few constant-only nodes folded here with
numpy (Add, Mul, Transpose, Reshape, DequantizeLinear, ...). Everything is bounded: no tensor
over MAX_ELEMENTS values is read or computed, no fold follows more than MAX_FOLD_NODES nodes,
no subgraph deeper than MAX_DEPTH is searched, and external data files are never opened.
onnx and onnxruntime are an optional extra, imported only when a file is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lstm_cli.formats.base import Contents, FormatError, Found, Rejected

MAX_ELEMENTS = 2**28  # per tensor, declared or computed: 1 GiB of float32
MAX_FOLD_VALUES = 2 * MAX_ELEMENTS  # all tensors one fold reads or computes together
MAX_FOLD_NODES = 200  # nodes followed to fold one LSTM input to a constant
MAX_DEPTH = 16  # subgraph nesting searched (If inside Loop inside If ...)

# ONNX gate blocks are i, o, f, c; nn.LSTM's are i, f, g, o. Block k of nn.LSTM's weight is
# block ONNX_BLOCK_FOR_TORCH[k] of ONNX's.
ONNX_BLOCK_FOR_TORCH = (0, 2, 3, 1)
REORDER = "gate blocks reordered i,o,f,c -> i,f,g,o"

DEFAULT_DOMAINS = ("", "ai.onnx")
# Op types reported: each becomes a Found or a Rejected (whatever its domain).
RECURRENT_OPS = {"LSTM", "GRU", "RNN", "DynamicQuantizeLSTM", "AttnLSTM"}
DEFAULT_ACTIVATIONS = ("sigmoid", "tanh", "tanh")
FLOAT_TYPES = (np.float16, np.float32, np.float64)
# Ops folded with numpy when an LSTM input is computed from constants; the common ways an
# exporter or a quantizer writes a constant weight.
FOLDABLE = {
    "Identity", "Cast", "Add", "Sub", "Mul", "Div", "Neg", "Transpose", "Reshape", "Concat",
    "Unsqueeze", "Squeeze", "Slice", "Gather", "Split", "DequantizeLinear",
}


class _Refused(Exception):
    """This node cannot become an nn.LSTM; the message is the one-sentence Rejected reason."""


def read(file: Path, trust: bool = False) -> Contents:
    """Every LSTM in an ONNX model. `trust` changes nothing: reading ONNX never runs code from
    the file (onnxruntime later runs only a rebuilt single LSTM node)."""
    try:
        import onnx
    except ImportError:
        raise FormatError("reading ONNX needs the onnx package: pip install 'lstm-cli[onnx]'") from None
    from google.protobuf.message import DecodeError  # onnx's own dependency

    try:
        import onnxruntime
    except ImportError:
        onnxruntime = None  # no runtime: each Found keeps run_original=None

    # The bytes are parsed directly (what onnx.load(load_external_data=False) does) so that the
    # file's suffix never picks a text or JSON parser and no external data file is ever opened.
    try:
        model = onnx.load_model_from_string(Path(file).read_bytes())
    except OSError as exc:
        raise FormatError(f"could not read the file: {exc.strerror or exc}") from None
    except (DecodeError, ValueError, RecursionError) as exc:  # truncated, foreign or absurdly nested bytes
        raise FormatError(f"not a readable ONNX model: {_first_line(exc)}") from None
    if not model.HasField("graph"):
        raise FormatError("not a readable ONNX model: it has no graph")

    opset = next((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), 0)
    contents = Contents(format="ONNX model")
    producer = " ".join(_text(p) for p in (model.producer_name, model.producer_version) if p)
    contents.notes.append(f"opset {opset}" + (f", produced by {producer}" if producer else ""))
    if len(model.functions):
        contents.notes.append(
            f"the model's {len(model.functions)} local function(s) were not searched for LSTMs"
        )

    reader = _Reader(onnx, onnxruntime, opset)
    reader.walk(_Scope(model.graph, None, ""), depth=0)
    if not reader.contents_found and not reader.rejected:
        ops = sorted({_text(node.op_type) for node in model.graph.node})
        listed = ", ".join(ops[:12]) + (", ..." if len(ops) > 12 else "")
        raise FormatError(f"no LSTM node in this ONNX model (its ops: {listed or 'none'})")
    contents.found = reader.contents_found
    contents.rejected = reader.rejected
    return contents


# -- where names live -------------------------------------------------------------------------


class _Scope:
    """One graph: its initializers, the nodes producing each value, its inputs; names a
    subgraph does not define resolve in the graphs around it."""

    def __init__(self, graph: Any, parent: _Scope | None, where: str) -> None:
        self.graph = graph
        self.parent = parent
        self.where = where  # "" at the top level, else "If node 'x' (then_branch)" and so on
        self.initializers = {t.name: t for t in graph.initializer}
        self.sparse = {t.values.name for t in graph.sparse_initializer}
        self.producers = {out: node for node in graph.node for out in node.output if out}
        self.inputs = {value.name for value in graph.input}

    def lookup(self, name: str) -> tuple[str, Any, _Scope] | None:
        scope: _Scope | None = self
        while scope is not None:
            # An initializer that is also a graph input is a default value; it is what the
            # file stores, so it wins.
            if name in scope.initializers:
                return "initializer", scope.initializers[name], scope
            if name in scope.sparse:
                return "sparse", None, scope
            if name in scope.producers:
                return "node", scope.producers[name], scope
            if name in scope.inputs:
                return "input", None, scope
            scope = scope.parent
        return None


# -- reading tensors --------------------------------------------------------------------------


def _text(value: str | bytes, limit: int = 80) -> str:
    """A string from the file, safe to show on one line: protobuf hands back invalid UTF-8 as
    bytes, and a name may hold control characters or run to megabytes."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    value = "".join(ch if ch.isprintable() else "?" for ch in value[: limit + 1])
    return value if len(value) <= limit else value[:limit] + "..."


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]


def _shape(shape: tuple[int, ...] | list[int]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _tensor_array(onnx: Any, tensor: Any, name: str) -> np.ndarray:
    """A TensorProto as a numpy array, after checking that its data is in this file, that its
    declared shape is not huge and that the stored values match that shape."""
    name = _text(name)
    if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
        location = _text(next((entry.value for entry in tensor.external_data if entry.key == "location"), "?"))
        raise FormatError(
            f"tensor '{name}' is stored in an external file ({location!r}); lstm-cli reads only the given file"
        )
    dims = list(tensor.dims)
    if any(d < 0 for d in dims):
        raise FormatError(f"tensor '{name}' declares a negative dimension: {_shape(dims)}")
    count = math.prod(dims)
    if count > MAX_ELEMENTS:
        raise FormatError(
            f"tensor '{name}' declares shape {_shape(dims)}, {count} values, over lstm-cli's limit of {MAX_ELEMENTS}"
        )
    kind = onnx.TensorProto
    readable = {
        kind.FLOAT: "float_data", kind.DOUBLE: "double_data", kind.FLOAT16: "int32_data",
        kind.INT8: "int32_data", kind.UINT8: "int32_data", kind.INT16: "int32_data",
        kind.INT32: "int32_data", kind.INT64: "int64_data", kind.BOOL: "int32_data",
    }
    if tensor.data_type not in readable:
        type_name = kind.DataType.Name(tensor.data_type) if tensor.data_type in kind.DataType.values() else tensor.data_type
        raise _Refused(f"tensor '{name}' has data type {type_name}, which lstm-cli does not read")
    itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    if tensor.HasField("raw_data"):
        stored, expected = len(tensor.raw_data), count * itemsize
        unit = "bytes"
    else:
        stored, expected = len(getattr(tensor, readable[tensor.data_type])), count
        unit = "values"
    if stored != expected:
        raise FormatError(
            f"tensor '{name}' declares shape {_shape(dims)} ({expected} {unit}) but stores {stored} {unit}"
        )
    try:
        return np.array(onnx.numpy_helper.to_array(tensor))  # a writable copy
    except (ValueError, TypeError) as exc:
        raise FormatError(f"tensor '{name}' is malformed: {_first_line(exc)}") from None


def _constant_node_value(onnx: Any, node: Any, name: str) -> np.ndarray:
    """The value of a Constant node, in any of the attribute forms ONNX allows."""
    for attribute in node.attribute:
        if attribute.name == "value":
            return _tensor_array(onnx, attribute.t, name)
        if attribute.name == "value_float":
            return np.array(attribute.f, dtype=np.float32)
        if attribute.name == "value_floats":
            return np.array(list(attribute.floats), dtype=np.float32)
        if attribute.name == "value_int":
            return np.array(attribute.i, dtype=np.int64)
        if attribute.name == "value_ints":
            return np.array(list(attribute.ints), dtype=np.int64)
    raise _Refused(f"'{_text(name)}' is a Constant node without a numeric value, which lstm-cli does not read")


# -- folding constant subgraphs ---------------------------------------------------------------


class _Folder:
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
            raise FormatError(f"tensor '{_text(name)}' would hold {array.size} values, over lstm-cli's limit of {MAX_ELEMENTS}")
        self.values += array.size
        if self.values > MAX_FOLD_VALUES:
            raise FormatError(
                f"folding {self.role} to a constant would need over {MAX_FOLD_VALUES} values (reached at tensor '{_text(name)}')"
            )
        return array

    def value(self, name: str, scope: _Scope, top: bool = True) -> np.ndarray:
        """The constant value of `name`; _Refused when it depends on anything known only at
        run time. Recursion goes one frame per node and stops after MAX_FOLD_NODES, which also
        ends a (malformed) cycle."""
        found = scope.lookup(name)
        if found is None:
            raise _Refused(f"{self.role} uses '{_text(name)}', which nothing in the model defines")
        kind, item, owner = found
        if kind == "initializer":
            return self.count(_tensor_array(self.onnx, item, name), name)
        if kind == "sparse":
            raise _Refused(f"{self.role} uses sparse initializer '{_text(name)}', which lstm-cli does not read")
        if kind == "input":
            if owner.parent is None:
                source = f"graph input '{_text(name)}'"
            else:
                source = f"'{_text(name)}', an input of the subgraph of {owner.where},"
            if top:
                raise _Refused(f"{self.role} is {source.rstrip(',')}, given at run time")
            raise _Refused(f"{self.role} is computed from {source} at run time")
        node = item
        if id(node) not in self.done:
            self.done[id(node)] = self.compute(node, owner, name)
        outputs = self.done[id(node)]
        index = list(node.output).index(name)
        if index >= len(outputs):
            raise _Refused(f"{self.role} uses output {index} of a {_text(node.op_type)} node, which produces only {len(outputs)}")
        return outputs[index]

    def compute(self, node: Any, owner: _Scope, name: str) -> list[np.ndarray]:
        """The outputs of one node whose inputs fold to constants."""
        if node.domain in DEFAULT_DOMAINS and node.op_type == "Constant":
            return [self.count(_constant_node_value(self.onnx, node, name), name)]
        self.nodes_left -= 1
        if self.nodes_left < 0:
            raise _Refused(f"{self.role} is computed by more than {MAX_FOLD_NODES} nodes; lstm-cli folds at most that many")
        if node.domain not in DEFAULT_DOMAINS or node.op_type not in FOLDABLE:
            label = f" ('{_text(node.name)}')" if node.name else ""
            raise _Refused(f"{self.role} is computed by a {_text(node.op_type)} node{label}, which lstm-cli does not fold to a constant")
        inputs = [self.value(i, owner, top=False) if i else None for i in node.input]
        try:
            # A hostile file may divide by zero or cast NaN to int: results, not warnings on stderr.
            with np.errstate(all="ignore"):
                outputs = _evaluate(self.onnx, node, inputs)
        except (ValueError, IndexError, TypeError, KeyError, OverflowError, ZeroDivisionError) as exc:
            raise _Refused(
                f"folding {self.role} failed at {node.op_type} node '{_text(node.name or node.output[0])}': {_first_line(exc)}"
            ) from None
        self.folded.append(node.op_type)
        return [self.count(out, out_name) for out, out_name in zip(outputs, node.output)]


def _check_size(shape: tuple[int, ...], node: Any) -> None:
    """Refuse before allocating an output that could outgrow its inputs (broadcast, Concat,
    Gather)."""
    count = math.prod(shape)
    if count > MAX_ELEMENTS:
        raise FormatError(
            f"tensor '{_text(node.output[0])}' would hold {count} values, over lstm-cli's limit of {MAX_ELEMENTS}"
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


# -- the search and the conversion ------------------------------------------------------------


@dataclass
class _Node:
    """One recurrent node found in the walk, with the name --key will know it by."""

    node: Any
    scope: _Scope
    name: str
    notes: list[str] = field(default_factory=list)


class _Reader:
    """Walks the graphs, names each recurrent node, converts or rejects it."""

    def __init__(self, onnx: Any, onnxruntime: Any, opset: int) -> None:
        self.onnx = onnx
        self.onnxruntime = onnxruntime
        self.opset = opset
        self.contents_found: list[Found] = []
        self.rejected: list[Rejected] = []
        self.seen_per_op: dict[str, int] = {}
        self.names: set[str] = set()

    def walk(self, scope: _Scope, depth: int) -> None:
        """Every node of this graph in order, descending into each subgraph where its node is."""
        for node in scope.graph.node:
            self.visit(node, scope)
            for attribute in node.attribute:
                graphs = [attribute.g] if attribute.type == self.onnx.AttributeProto.GRAPH else []
                if attribute.type == self.onnx.AttributeProto.GRAPHS:
                    graphs = list(attribute.graphs)
                for graph in graphs:
                    if depth + 1 > MAX_DEPTH:
                        raise FormatError(f"its subgraphs are nested more than {MAX_DEPTH} levels deep")
                    label = f"{_text(node.op_type)} node" + (f" '{_text(node.name)}'" if node.name else "")
                    where = f"{label} ({_text(attribute.name)})"
                    self.walk(_Scope(graph, scope, f"{scope.where} > {where}" if scope.where else where), depth + 1)

    def unique_name(self, node: Any) -> tuple[str, list[str]]:
        """node.name, or '<op>#k' (the k-th node of that op in the file) when it has none;
        a repeated name gets '#2', '#3', ... so that --key always picks one node."""
        number = self.seen_per_op[node.op_type] = self.seen_per_op.get(node.op_type, 0) + 1
        notes = []
        name = _text(node.name)
        if not name:
            name = f"{node.op_type}#{number}"
            notes.append(f"the node has no name: called '{name}' here ({node.op_type} node number {number} in the file)")
        if name in self.names:
            base, k = name, 2
            while f"{base}#{k}" in self.names:
                k += 1
            name = f"{base}#{k}"
            notes.append(f"another node is also called '{base}': this one is called '{name}' here")
        self.names.add(name)
        return name, notes

    def visit(self, node: Any, scope: _Scope) -> None:
        op, domain = node.op_type, node.domain
        if op not in RECURRENT_OPS:
            return
        name, notes = self.unique_name(node)
        if scope.where:
            notes.insert(0, f"inside {scope.where}")
        if domain in DEFAULT_DOMAINS and op in ("GRU", "RNN"):
            self.rejected.append(Rejected(name, f"an ONNX {op} node, not an LSTM"))
        elif domain == "com.microsoft" and op == "AttnLSTM":
            self.rejected.append(Rejected(name, "a com.microsoft AttnLSTM node (an LSTM with attention), which nn.LSTM is not"))
        elif (op == "LSTM" and domain in DEFAULT_DOMAINS) or (op == "DynamicQuantizeLSTM" and domain == "com.microsoft"):
            try:
                self.contents_found.append(self.convert(_Node(node, scope, name, notes)))
            except _Refused as exc:
                self.rejected.append(Rejected(name, str(exc)))
        else:
            self.rejected.append(Rejected(name, f"a node {op} of domain '{_text(domain)}', not the ONNX LSTM"))

    def constant(self, found: _Node, index: int, role: str, conversions: list[str]) -> np.ndarray | None:
        """Input `index` of the node as a constant array (None when the input is absent); a
        folded value gets one conversion line saying how it was computed."""
        inputs = found.node.input
        if index >= len(inputs) or not inputs[index]:
            return None
        folder = _Folder(self.onnx, role)
        array = folder.value(inputs[index], found.scope)
        if folder.folded:
            ops = ", ".join(dict.fromkeys(folder.folded))
            conversions.append(f"{role} folded to a constant from {len(folder.folded)} node(s): {ops}")
        return array

    def convert(self, found: _Node) -> Found:
        node, quantized = found.node, found.node.op_type == "DynamicQuantizeLSTM"
        attrs, ignored = self.attributes(node)
        direction = attrs.get("direction", "forward")
        if direction == "reverse":
            raise _Refused("direction=reverse: nn.LSTM has no reverse-only layer")
        if direction not in ("forward", "bidirectional"):
            raise _Refused(f"direction={direction!r} is not an ONNX LSTM direction")
        directions = 2 if direction == "bidirectional" else 1
        if "clip" in attrs:
            raise _Refused(f"clip={attrs['clip']:g}: nn.LSTM does not clip its gate inputs")
        if attrs.get("input_forget", 0):
            raise _Refused("input_forget=1 couples the input and forget gates, which nn.LSTM does not do")
        activations = attrs.get("activations", [])
        if activations and (
            len(activations) % 3 or [a.lower() for a in activations] != list(DEFAULT_ACTIVATIONS) * (len(activations) // 3)
        ):
            raise _Refused(f"activations {', '.join(activations)}: nn.LSTM computes only Sigmoid, Tanh, Tanh")
        if attrs.get("activation_alpha") or attrs.get("activation_beta"):
            raise _Refused("activation_alpha/activation_beta are given: nn.LSTM's activations take no parameters")
        layout = attrs.get("layout", 0)
        if layout not in (0, 1):
            raise _Refused(f"layout={layout} is not an ONNX LSTM layout (0 or 1)")

        conversions: list[str] = []
        notes = list(found.notes)
        notes.extend(f"attribute '{name}' is not an ONNX LSTM attribute: ignored" for name in ignored)
        for role, index in (("W", 1), ("R", 2)):
            if index >= len(node.input) or not node.input[index]:
                raise _Refused(f"the node has no {role} input")
        w = self.constant(found, 1, "W", conversions)
        r = self.constant(found, 2, "R", conversions)
        b = self.constant(found, 3, "B", conversions)
        p = self.constant(found, 7, "P", conversions)
        stored = {"W": w, "R": r, "B": b, "P": p}
        if quantized:
            scales = {
                role: self.constant(found, index, role, conversions)
                for role, index in (("W_scale", 8), ("W_zero_point", 9), ("R_scale", 10), ("R_zero_point", 11))
            }
            missing = [role for role, value in scales.items() if value is None]
            if missing:
                raise _Refused(f"the DynamicQuantizeLSTM node has no {missing[0]} input")
            stored.update(scales)
            w, r = self.dequantize(w, r, scales, directions, conversions)
            notes.append(
                "dequantized from int8: this run approximates the int8 model (onnxruntime also quantizes activations dynamically)"
            )

        hidden = self.check_shapes(w, r, b, p, directions, attrs.get("hidden_size"), direction)
        state: dict[str, torch.Tensor] = {}
        suffixes = ("", "_reverse")[:directions]
        for d, suffix in enumerate(suffixes):
            state[f"weight_ih_l0{suffix}"] = _torch_order(w[d], hidden)
            state[f"weight_hh_l0{suffix}"] = _torch_order(r[d], hidden)
            if b is not None:
                state[f"bias_ih_l0{suffix}"] = _torch_order(b[d, : 4 * hidden], hidden)
                state[f"bias_hh_l0{suffix}"] = _torch_order(b[d, 4 * hidden :], hidden)

        def both(kind: str) -> str:
            return ", ".join(f"{kind}_l0{suffix}" for suffix in suffixes)

        split = "direction axis dropped" if directions == 1 else "split by direction"
        conversions.append(f"W {_shape(w.shape)} -> {both('weight_ih')}: {split}, {REORDER}")
        conversions.append(f"R {_shape(r.shape)} -> {both('weight_hh')}: {split}, {REORDER}")
        if b is not None:
            conversions.append(
                f"B {_shape(b.shape)} split into {both('bias_ih')} (first 4H: Wb) and {both('bias_hh')} (last 4H: Rb), {REORDER}"
            )
        else:
            conversions.append("no B input: nn.LSTM with bias=False (no bias_* tensors), the exact equivalent of ONNX's zero default")
        if layout == 1:
            conversions.append("layout=1 (X is [N, L, I]): batch_first=True")

        if p is not None:
            if np.any(p != 0):
                raise _Refused(f"peephole weights P are nonzero (largest |P| {float(np.max(np.abs(p))):g}): nn.LSTM has no peepholes")
            notes.append("peephole weights P are all zero: dropped")
        notes.extend(self.run_time_inputs(found))

        if self.onnxruntime is not None and stored["W"].dtype == np.float64:
            notes.append("onnxruntime's CPU LSTM does not run float64: there is no onnxruntime run to compare with")
            run, run_name = None, None
        else:
            run, run_name = self.runner(found, stored, attrs)
        if run is not None and layout == 1:
            notes.append("onnxruntime runs only layout=0: its check runs this node with layout=0 on time-major input, the same computation")
        return Found(
            name=found.name, state=state, conversions=conversions, notes=notes,
            batch_first=layout == 1, run_original=run, run_original_name=run_name, run_original_exact=not quantized,
        )

    def attributes(self, node: Any) -> tuple[dict[str, Any], list[str]]:
        """The node's LSTM attributes by name, strings decoded, each of the type ONNX's schema
        gives it (a hostile file could give hidden_size as a string), and the names of any
        other attributes."""
        ignored: list[str] = []
        kind = self.onnx.AttributeProto
        expected = {
            "hidden_size": kind.INT, "layout": kind.INT, "input_forget": kind.INT, "direction": kind.STRING,
            "clip": kind.FLOAT, "activations": kind.STRINGS, "activation_alpha": kind.FLOATS, "activation_beta": kind.FLOATS,
        }
        attrs: dict[str, Any] = {}
        for attribute in node.attribute:
            if attribute.name not in expected:
                ignored.append(_text(attribute.name))
                continue
            if attribute.type != expected[attribute.name]:
                got = kind.AttributeType.Name(attribute.type) if attribute.type in kind.AttributeType.values() else attribute.type
                raise _Refused(
                    f"attribute {attribute.name} is of type {got}, not {kind.AttributeType.Name(expected[attribute.name])}"
                )
            value = self.onnx.helper.get_attribute_value(attribute)
            if attribute.type == kind.STRING:
                value = value.decode(errors="replace")
            elif attribute.type == kind.STRINGS:
                value = [item.decode(errors="replace") for item in value]
            attrs[attribute.name] = value
        return attrs, ignored

    def dequantize(
        self, w: np.ndarray, r: np.ndarray, scales: dict[str, np.ndarray], directions: int, conversions: list[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """DynamicQuantizeLSTM's W [D, I, 4H] and R [D, H, 4H], int8 or uint8, as float32 in
        ONNX's LSTM layout [D, 4H, I] and [D, 4H, H]."""
        out = []
        for role, q in (("W", w), ("R", r)):
            if q.dtype not in (np.int8, np.uint8) or q.ndim != 3:
                raise _Refused(f"{role} is {q.dtype} {_shape(q.shape)}; DynamicQuantizeLSTM needs int8 or uint8 [D, in, 4H]")
            scale, zero = scales[f"{role}_scale"], scales[f"{role}_zero_point"]
            columns = q.shape[2]
            if scale.shape == (directions,) and zero.shape == (directions,):
                kind, scale_b, zero_b = "per direction", scale[:, None, None], zero[:, None, None]
            elif scale.shape == (directions, columns) and zero.shape == (directions, columns):
                kind, scale_b, zero_b = "per output column", scale[:, None, :], zero[:, None, :]
            else:
                raise _Refused(
                    f"{role}_scale is {_shape(scale.shape)} and {role}_zero_point {_shape(zero.shape)}; "
                    f"DynamicQuantizeLSTM needs both ({directions},) or ({directions}, {columns})"
                )
            if zero.dtype != q.dtype:
                raise _Refused(f"{role}_zero_point is {zero.dtype} but {role} is {q.dtype}")
            # (q - zero) is an exact small integer in float32; one rounding in the product. An
            # absurd scale overflows to inf quietly: the caller's NaN/Inf check reports it.
            with np.errstate(all="ignore"):
                values = (q.astype(np.float32) - zero_b.astype(np.float32)) * scale_b.astype(np.float32)
            conversions.append(
                f"{role} {q.dtype} {_shape(q.shape)} dequantized to float32 as ({role} - {role}_zero_point) * {role}_scale, {kind}"
            )
            conversions.append(f"{role} {_shape(q.shape)} transposed to {_shape((q.shape[0], q.shape[2], q.shape[1]))}")
            out.append(np.ascontiguousarray(values.transpose(0, 2, 1)))
        return out[0], out[1]

    def check_shapes(
        self, w: np.ndarray, r: np.ndarray, b: np.ndarray | None, p: np.ndarray | None,
        directions: int, hidden_attr: int | None, direction: str,
    ) -> int:
        """hidden_size from R (or the attribute), and every shape checked against it."""
        for role, array in (("W", w), ("R", r), ("B", b), ("P", p)):
            if array is not None and array.dtype.type not in FLOAT_TYPES:
                raise _Refused(f"{role} has dtype {array.dtype}; an LSTM's weights are floating point")
        if r.ndim != 3:
            raise _Refused(f"R is {_shape(r.shape)}; an ONNX LSTM's R is [D, 4H, H]")
        hidden = hidden_attr if hidden_attr is not None else r.shape[2]
        if hidden <= 0:
            raise _Refused(f"hidden_size is {hidden}")
        if w.ndim != 3 or w.shape[0] != directions or w.shape[1] != 4 * hidden or w.shape[2] <= 0:
            raise _Refused(
                f"W is {_shape(w.shape)} but a {direction} LSTM with hidden_size {hidden} needs "
                f"({directions}, {4 * hidden}, input_size)"
            )
        expected = {"R": (directions, 4 * hidden, hidden), "B": (directions, 8 * hidden), "P": (directions, 3 * hidden)}
        for role, array in (("R", r), ("B", b), ("P", p)):
            if array is not None and array.shape != expected[role]:
                raise _Refused(
                    f"{role} is {_shape(array.shape)} but a {direction} LSTM with hidden_size {hidden} needs {_shape(expected[role])}"
                )
        return hidden

    def run_time_inputs(self, found: _Node) -> list[str]:
        """Notes on sequence_lens, initial_h and initial_c, which are part of a run, not of the
        weights: lstm-cli (and the onnxruntime check) run full-length sequences from zero state."""
        notes = []
        for role, index in (("sequence_lens", 4), ("initial_h", 5), ("initial_c", 6)):
            inputs = found.node.input
            if index >= len(inputs) or not inputs[index]:
                continue
            try:
                value = _Folder(self.onnx, role).value(inputs[index], found.scope)
            except _Refused:
                value = None
            if role != "sequence_lens" and value is None and self.zeros_of_run_time_shape(inputs[index], found.scope):
                notes.append(f"{role} is zeros shaped at run time: a zero state, the same as lstm-cli's")
                continue
            if role == "sequence_lens":
                if value is not None and value.size <= 16:
                    lengths = ",".join(str(int(v)) for v in value.reshape(-1))
                    notes.append(f"sequence_lens is the constant {lengths}: lstm-cli runs full-length sequences unless given --lengths {lengths}")
                else:
                    notes.append(f"sequence_lens comes from '{_text(inputs[index])}': lstm-cli runs full-length sequences unless given --lengths")
            elif value is None:
                notes.append(f"{role} comes from '{_text(inputs[index])}' at run time: lstm-cli and the onnxruntime check start from zero state")
            elif np.any(value != 0):
                notes.append(
                    f"{role} is a nonzero constant {_shape(value.shape)}: lstm-cli and the onnxruntime check start from "
                    "zero state, so their outputs differ from this graph's"
                )
            else:
                notes.append(f"{role} is a constant zero state, the same as lstm-cli's")
        return notes

    def zeros_of_run_time_shape(self, name: str, scope: _Scope) -> bool:
        """Whether `name` is Expand(constant zeros, shape) or ConstantOfShape(shape) with a zero
        value: zeros whatever the shape (torch.onnx.export writes the initial state this way,
        sized from the batch)."""
        found = scope.lookup(name)
        if found is None or found[0] != "node" or found[1].domain not in DEFAULT_DOMAINS:
            return False
        node, owner = found[1], found[2]
        try:
            if node.op_type == "Expand" and node.input and node.input[0]:
                data = _Folder(self.onnx, "the state").value(node.input[0], owner)
            elif node.op_type == "ConstantOfShape":
                data = next(
                    (_tensor_array(self.onnx, a.t, name) for a in node.attribute if a.name == "value"), np.zeros(1)
                )
            else:
                return False
        except _Refused:
            return False
        return bool(np.all(data == 0))

    def runner(self, found: _Node, stored: dict[str, np.ndarray | None], attrs: dict[str, Any]) -> tuple[Any, str | None]:
        """The node alone, rebuilt with its constant inputs as initializers exactly as stored,
        run by onnxruntime: (run_original, run_original_name), or (None, None) without it.

        The rebuilt node always has layout=0: onnxruntime's CPU LSTM refuses layout=1, and
        layout only says which axis of X and Y is the batch, so layout=0 on time-major input is
        the same computation."""
        ort = self.onnxruntime
        if ort is None:
            return None, None
        onnx, node = self.onnx, found.node
        quantized = node.op_type == "DynamicQuantizeLSTM"
        # initial_h and initial_c are graph inputs: the step check starts the node from given states.
        order = ["W", "R", "B", "", "initial_h", "initial_c", "P"] + (["W_scale", "W_zero_point", "R_scale", "R_zero_point"] if quantized else [])
        states = ("initial_h", "initial_c")
        inputs = ["X"] + [role if role in states or (role and stored.get(role) is not None) else "" for role in order]
        while inputs[-1] == "":
            inputs.pop()
        initializers = [onnx.numpy_helper.from_array(stored[role], role) for role in inputs[1:] if role and role not in states]
        x_type = onnx.TensorProto.FLOAT if quantized else onnx.helper.np_dtype_to_tensor_dtype(stored["W"].dtype)
        input_size = stored["W"].shape[1 if quantized else 2]
        directions, hidden = stored["R"].shape[0], stored["R"].shape[1 if quantized else 2]
        # The checked attributes (empty lists have no type to write) and a fixed node name: the
        # file's name may not even be valid UTF-8.
        kept = {key: value for key, value in attrs.items() if key != "layout" and value != []}
        single = onnx.helper.make_node(node.op_type, inputs, ["Y", "Y_h", "Y_c"], name="lstm", domain=node.domain, **kept)
        graph = onnx.helper.make_graph(
            [single], "lstm_cli_check",
            [onnx.helper.make_tensor_value_info("X", x_type, ["L", "N", input_size])]
            + [onnx.helper.make_tensor_value_info(name, x_type, [directions, "N", hidden]) for name in states],
            [onnx.helper.make_tensor_value_info(out, x_type, None) for out in ("Y", "Y_h", "Y_c")],
            initializer=initializers,
        )
        opsets = [onnx.helper.make_opsetid("", max(self.opset, 7))]
        if quantized:
            opsets.append(onnx.helper.make_opsetid("com.microsoft", 1))
        single_model = onnx.helper.make_model(graph, opset_imports=opsets)
        # The oldest IR version that carries these opsets, which every onnxruntime accepts
        # (make_model would write this onnx's newest, which an older onnxruntime refuses).
        single_model.ir_version = onnx.helper.find_min_ir_version_for(opsets, ignore_unknown=True)
        serialized = single_model.SerializeToString()
        np_type = onnx.helper.tensor_dtype_to_np_dtype(x_type)
        session: list[Any] = []  # built on the first call, then reused

        def run_original(x: torch.Tensor, h0: torch.Tensor | None = None,
                         c0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            if not session:
                options = ort.SessionOptions()
                # One thread: this run checks values, not speed, and a spinning thread pool
                # stalls the torch loops that run beside it in this process.
                options.intra_op_num_threads = 1
                options.inter_op_num_threads = 1
                options.log_severity_level = 4  # fatal only: readers never print; errors come back as FormatError
                try:
                    session.append(ort.InferenceSession(serialized, options, providers=["CPUExecutionProvider"]))
                except Exception as exc:  # noqa: BLE001 - onnxruntime's errors subclass Exception directly
                    raise FormatError(f"onnxruntime cannot run node '{found.name}': {_first_line(exc)}") from None
            def array(t: torch.Tensor) -> np.ndarray:
                return np.ascontiguousarray(t.detach().cpu().numpy().astype(np_type))

            zeros = torch.zeros(directions, x.shape[1], hidden)
            feed = {"X": array(x), "initial_h": array(zeros if h0 is None else h0),
                    "initial_c": array(zeros if c0 is None else c0)}
            try:
                y, y_h, y_c = session[0].run(None, feed)
            except Exception as exc:  # noqa: BLE001 - onnxruntime's errors subclass Exception directly
                raise FormatError(f"onnxruntime failed running node '{found.name}': {_first_line(exc)}") from None
            steps, y_directions, batch, y_hidden = y.shape  # Y [L, D, N, H]
            # nn.LSTM's output puts the directions side by side: [forward H | backward H].
            output = y.transpose(0, 2, 1, 3).reshape(steps, batch, y_directions * y_hidden)
            return tuple(torch.from_numpy(np.ascontiguousarray(t)) for t in (output, y_h, y_c))

        return run_original, f"onnxruntime {ort.__version__} running node '{found.name}'"


def _torch_order(block: np.ndarray, hidden: int) -> torch.Tensor:
    """Rows stacked in ONNX's gate order i, o, f, c, restacked as nn.LSTM's i, f, g, o."""
    parts = [block[k * hidden : (k + 1) * hidden] for k in ONNX_BLOCK_FOR_TORCH]
    return torch.from_numpy(np.ascontiguousarray(np.concatenate(parts, axis=0)))
