"""One LSTM node of a user's ONNX model, captured in a run of the whole model on the user's data:
the node's X, sequence_lens, initial_h, initial_c, Y, Y_h and Y_c are added as graph outputs, the
model runs once in onnxruntime on the CPU, and the values come back in nn.LSTM's layouts.

What onnxruntime allows (onnxruntime 1.32, checked by tests/test_insitu_onnx.py):
- only values of the top-level graph can be graph outputs ("Graph output (Y) does not exist in
  the graph" for a name defined inside an If/Loop/Scan body), so a node inside a subgraph is
  refused in one sentence;
- its CPU LSTM refuses layout=1 ("Batchwise recurrent operations (layout == 1) are not
  supported"), so every layout=1 LSTM node runs as layout=0 between Transposes, which moves
  values without changing them; the captured names keep their batch-major values.

The model is read from its bytes, checked for external data (never opened), and run from bytes:
no temporary file, nothing left behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from lstm_cli.errors import UsageError
from lstm_cli.formats.base import FormatError
from lstm_cli.formats.onnx_model.graph import DEFAULT_DOMAINS, MAX_DEPTH, recurrent_nodes
from lstm_cli.formats.text import first_line, printable
from lstm_cli.insitu.captured import Captured
from lstm_cli.paths import readable_file
from lstm_cli.shapes import shape_text

# The LSTM node's inputs and outputs captured, by their index in the node (the same for
# com.microsoft's DynamicQuantizeLSTM, whose extra inputs come after P).
INPUT_ROLES = {"X": 0, "sequence_lens": 4, "initial_h": 5, "initial_c": 6}
OUTPUT_ROLES = {"Y": 0, "Y_h": 1, "Y_c": 2}


def capture_onnx(model_path: str, node_name: str, model_input_path: str) -> Captured:
    """What reaches and leaves node `node_name` in a run of the whole model; problems are one-line UsageErrors."""
    onnx, ort = _import_onnx()
    model_file = readable_file("--weights", model_path)
    input_file = readable_file("--model-input", model_input_path)
    model_name, input_name = model_file.name, input_file.name
    model_bytes = _read_bytes("--weights", model_file)
    model = _parse(onnx, model_bytes, model_path)
    _refuse_external_data(onnx, model, model_path)

    found = _find_node(onnx, model, node_name, model_name)
    node = found.node
    attrs = {a.name: a for a in node.attribute}
    layout = attrs["layout"].i if node.op_type == "LSTM" and "layout" in attrs else 0  # DynamicQuantizeLSTM has none
    reverse = "direction" in attrs and attrs["direction"].s == b"reverse"
    quantized = node.op_type == "DynamicQuantizeLSTM"
    names = _value_names(onnx, model.graph)
    values = {role: node.input[i] for role, i in INPUT_ROLES.items() if i < len(node.input) and node.input[i]}
    # An output left empty is not computed by name; naming it makes onnxruntime return it.
    while len(node.output) < len(OUTPUT_ROLES):
        node.output.append("")
    for role, index in OUTPUT_ROLES.items():
        if not node.output[index]:
            node.output[index] = _fresh(names, f"lstm_cli_{role}")
        values[role] = node.output[index]

    notes = list(found.notes)
    # From here on `node` may be a stale copy: the rewrite below replaces the graph's nodes.
    rewritten = _run_layout_1_as_layout_0(onnx, model.graph, names)
    if rewritten:
        notes.append(
            f"onnxruntime's CPU LSTM runs only layout=0: the model's {rewritten} layout=1 LSTM node(s) ran as "
            "layout=0 between Transposes, the same computation"
        )
    if reverse:
        notes.append("direction=reverse: output, h_n and c_n are the backward pass's, which no nn.LSTM computes alone")
    if quantized:
        notes.append(
            "a DynamicQuantizeLSTM node: output, h_n and c_n are onnxruntime's int8 computation (weights int8, "
            "inputs quantized at run time), which an nn.LSTM with the dequantized weights only approximates"
        )
    already = {output.name for output in model.graph.output}
    for name in dict.fromkeys(values.values()):
        if name not in already:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))

    graph_inputs = _graph_inputs(onnx, model.graph)
    feed = _load_inputs(input_file, model_input_path, graph_inputs, model_name)
    results = _run(ort, model.SerializeToString(), feed, f"running {model_name} on {input_name} failed")
    got = {role: results[name] for role, name in values.items()}
    where = f"captured at node {node_name} of {model_name} running {input_name}"
    return _to_captured(got, layout, where, notes)


def _import_onnx() -> tuple[Any, Any]:
    """onnx and onnxruntime, or the one line that says how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise UsageError("capturing from an ONNX model needs onnx and onnxruntime: pip install 'lstm-cli[onnx]'") from None
    return onnx, onnxruntime


def _read_bytes(flag: str, file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise UsageError(f"{flag} {file}: could not read the file: {exc.strerror or exc}") from None


def _parse(onnx: Any, data: bytes, model_path: str) -> Any:
    """The model parsed from its bytes (what onnx.load(load_external_data=False) does)."""
    from google.protobuf.message import DecodeError  # onnx's own dependency

    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RecursionError) as exc:
        raise UsageError(f"--weights {model_path}: not a readable ONNX model: {first_line(exc)}") from None
    if not model.HasField("graph"):
        raise UsageError(f"--weights {model_path}: not a readable ONNX model: it has no graph")
    return model


def _graphs(onnx: Any, graph: Any, depth: int = 0):
    """This graph and every subgraph in it (If/Loop/Scan bodies), at most MAX_DEPTH deep."""
    if depth > MAX_DEPTH:
        raise UsageError(f"the model's subgraphs are nested more than {MAX_DEPTH} levels deep")
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(onnx, attribute.g, depth + 1)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for sub in attribute.graphs:
                    yield from _graphs(onnx, sub, depth + 1)


def _refuse_external_data(onnx: Any, model: Any, model_path: str) -> None:
    """A model whose tensors live in other files is refused: onnxruntime would open them."""
    nodes = [node for graph in _graphs(onnx, model.graph) for node in graph.node]
    nodes += [node for function in model.functions for node in function.node]
    tensors = [t for graph in _graphs(onnx, model.graph) for t in graph.initializer]
    tensors += [s.values for graph in _graphs(onnx, model.graph) for s in graph.sparse_initializer]
    for node in nodes:
        for attribute in node.attribute:
            tensors += ([attribute.t] if attribute.HasField("t") else []) + list(attribute.tensors)
            tensors += ([attribute.sparse_tensor.values] if attribute.HasField("sparse_tensor") else [])
            tensors += [s.values for s in attribute.sparse_tensors]
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            raise UsageError(
                f"--weights {model_path}: tensor '{printable(tensor.name)}' is stored in an external data file; "
                "lstm-cli never opens external data files (save the model with all tensors inside it)"
            )


def _find_node(onnx: Any, model: Any, node_name: str, model_name: str) -> Any:
    """The LSTM node called `node_name` (the names lstm-cli's ONNX reader gives), at the top level."""
    try:
        nodes = list(recurrent_nodes(onnx, model.graph))
    except FormatError as exc:
        raise UsageError(f"--weights {model_name}: {exc}") from None
    found = next((n for n in nodes if n.name == node_name), None)
    if found is None:
        listed = ", ".join(f"'{n.name}'" for n in nodes[:20]) + (", ..." if len(nodes) > 20 else "")
        have = f"its recurrent nodes are {listed}" if nodes else "it has no LSTM node"
        raise UsageError(f"--key {printable(node_name)}: no node of that name in {model_name}; {have}")
    node = found.node
    lstm = (node.op_type == "LSTM" and node.domain in DEFAULT_DOMAINS) or (
        node.op_type == "DynamicQuantizeLSTM" and node.domain == "com.microsoft")
    if not lstm:
        domain = f" of domain '{printable(node.domain)}'" if node.domain not in DEFAULT_DOMAINS else ""
        raise UsageError(f"--key {found.name}: node '{found.name}' is a {printable(node.op_type)} node{domain}, not an LSTM")
    if found.scope.where:
        raise UsageError(
            f"--key {found.name}: node '{found.name}' runs inside {found.scope.where}, and onnxruntime returns only "
            "values of the top-level graph, so what reaches it cannot be captured; export the model with this LSTM "
            "outside the subgraph (for example with the loop unrolled) or capture it from the PyTorch model instead"
        )
    return found


def _value_names(onnx: Any, graph: Any) -> set[str]:
    """Every value name in the model, so that new names collide with none."""
    names: set[str] = set()
    for sub in _graphs(onnx, graph):
        names.update(v.name for v in (*sub.input, *sub.output, *sub.value_info, *sub.initializer))
        for node in sub.node:
            names.update(node.input)
            names.update(node.output)
    return names


def _fresh(names: set[str], base: str) -> str:
    name, k = base, 2
    while name in names:
        name, k = f"{base}_{k}", k + 1
    names.add(name)
    return name


def _run_layout_1_as_layout_0(onnx: Any, graph: Any, names: set[str]) -> int:
    """How many layout=1 LSTM nodes (subgraphs too) became Transpose -> LSTM(layout=0) -> Transpose, names kept."""
    count = 0
    for node in graph.node:
        for attribute in node.attribute:
            subs = [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)
            for sub in subs:
                count += _run_layout_1_as_layout_0(onnx, sub, names)  # depth checked by _graphs
    nodes, here = [], 0
    for node in graph.node:
        layout = next((a for a in node.attribute if a.name == "layout"), None)
        if node.op_type != "LSTM" or node.domain not in DEFAULT_DOMAINS or layout is None or layout.i != 1:
            nodes.append(node)
            continue
        here += 1
        rewritten, before, after = type(node)(), [], []
        rewritten.CopyFrom(node)
        next(a for a in rewritten.attribute if a.name == "layout").i = 0
        # X (N, L, I) -> (L, N, I); initial_h/c (N, D, H) -> (D, N, H).
        for index, perm in ((0, [1, 0, 2]), (5, [1, 0, 2]), (6, [1, 0, 2])):
            if index < len(node.input) and node.input[index]:
                moved = _fresh(names, f"{node.input[index]}_lstm_cli_layout_0")
                before.append(onnx.helper.make_node("Transpose", [node.input[index]], [moved], perm=perm))
                rewritten.input[index] = moved
        # Y (L, D, N, H) -> (N, L, D, H); Y_h/Y_c (D, N, H) -> (N, D, H).
        for index, perm in ((0, [2, 0, 1, 3]), (1, [1, 0, 2]), (2, [1, 0, 2])):
            if index < len(node.output) and node.output[index]:
                moved = _fresh(names, f"{node.output[index]}_lstm_cli_layout_0")
                after.append(onnx.helper.make_node("Transpose", [moved], [node.output[index]], perm=perm))
                rewritten.output[index] = moved
        nodes.extend([*before, rewritten, *after])
    if here:
        copies = [type(n)() for n in nodes]
        for copy, n in zip(copies, nodes):
            copy.CopyFrom(n)
        del graph.node[:]
        graph.node.extend(copies)
    return count + here


def _graph_inputs(onnx: Any, graph: Any) -> dict[str, tuple[Any, list[int | str] | None, bool]]:
    """name -> (numpy dtype or None: not a tensor, dims (int fixed, str symbolic) or None: any shape, required)."""
    defaults = {t.name for t in graph.initializer} | {t.values.name for t in graph.sparse_initializer}
    inputs = {}
    for value in graph.input:
        dtype, dims = None, None
        if value.type.HasField("tensor_type"):
            tensor = value.type.tensor_type
            try:
                dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type))
            except (KeyError, ValueError, TypeError):
                dtype = None
            if tensor.HasField("shape"):
                dims = [d.dim_value if d.HasField("dim_value") else (printable(d.dim_param) or "?") for d in tensor.shape.dim]
        inputs[value.name] = (dtype, dims, value.name not in defaults)
    return inputs


def _describe(inputs: dict[str, tuple[Any, list[int | str] | None, bool]], model_name: str) -> str:
    """'model.onnx takes images float32 (batch, 1, 16, 96)', optional inputs after 'and optionally'."""
    def one(name: str) -> str:
        dtype, dims, _ = inputs[name]
        kind = str(dtype) if dtype is not None else "(not a tensor)"
        shape = "any shape" if dims is None else "(" + ", ".join(map(str, dims)) + ("," if len(dims) == 1 else "") + ")"
        return f"{printable(name)} {kind} {shape}"

    required = [one(n) for n, (_, _, need) in inputs.items() if need]
    optional = [one(n) for n, (_, _, need) in inputs.items() if not need]
    text = f"{model_name} takes " + (", ".join(required) if required else "no required input")
    return text + (f" and optionally {', '.join(optional)}" if optional else "")


def _load_inputs(
    file: Path, shown: str, inputs: dict[str, tuple[Any, list[int | str] | None, bool]], model_name: str
) -> dict[str, np.ndarray]:
    """The .npz's arrays by graph input (a .npy: the one required input), checked against each declared type."""
    expected = _describe(inputs, model_name)

    def refuse(problem: str) -> UsageError:
        return UsageError(f"--model-input {shown}: {problem}; {expected}")

    required = [name for name, (_, _, need) in inputs.items() if need]
    # Chosen by content: numpy takes anything else for a pickle, and its error would say so.
    with open(file, "rb") as handle:
        magic = handle.read(6)
    if not (magic.startswith(b"PK") or magic == b"\x93NUMPY"):
        raise refuse("not a .npy or .npz file (it starts with neither the .npy header nor a zip's)")
    try:
        loaded = np.load(file, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            arrays = {"": loaded}
        else:
            with loaded:
                arrays = {key: loaded[key] for key in loaded.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise refuse("it holds a pickled object array, which lstm-cli never loads") from None
        raise refuse(f"not a readable .npy or .npz file ({first_line(exc)})") from None
    except MemoryError:
        raise refuse("an array in it declares more values than fit in memory") from None
    except Exception as exc:  # noqa: BLE001 - zipfile, zlib and numpy raise many kinds for a damaged file
        raise refuse(f"not a readable .npy or .npz file ({first_line(exc)})") from None

    if "" in arrays:  # a .npy: one array, for the one required input
        if len(required) != 1:
            raise refuse(f"a .npy holds one array but the model has {len(required)} required inputs (give a .npz naming each)")
        arrays = {required[0]: arrays[""]}
    for name in required:
        if name not in arrays:
            raise refuse(f"missing graph input '{printable(name)}'")
    for name in arrays:
        if name not in inputs:
            raise refuse(f"'{printable(name)}' is not a graph input")

    feed = {}
    for name, array in arrays.items():
        dtype, dims, _ = inputs[name]
        label = f"'{printable(name)}'"
        if dtype is None:
            raise refuse(f"graph input {label} is not a tensor, which an array cannot give")
        if array.dtype.hasobject or array.dtype.newbyteorder("=") != dtype:
            raise refuse(f"{label} is {array.dtype}, not {dtype}")
        if dims is not None:
            if array.ndim != len(dims):
                raise refuse(f"{label} is {shape_text(array.shape)}: {array.ndim} dimensions, not {len(dims)}")
            for axis, (size, want) in enumerate(zip(array.shape, dims)):
                if isinstance(want, int) and size != want:
                    raise refuse(f"{label} is {shape_text(array.shape)}: dimension {axis} must be {want}")
        feed[name] = np.ascontiguousarray(array, dtype=dtype)  # native byte order for onnxruntime
    return feed


def _run(ort: Any, model_bytes: bytes, feed: dict[str, np.ndarray], failed: str) -> dict[str, np.ndarray]:
    """Every graph output of one run, by name; any onnxruntime error is one line after `failed`."""
    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: its errors come back as exceptions, worded once below
    try:
        session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        names = [output.name for output in session.get_outputs()]
        results = session.run(None, feed)  # the whole graph, as the model's own run computes it
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors subclass Exception directly
        raise UsageError(f"{failed}: {first_line(exc)}") from None
    return dict(zip(names, results))


def _to_captured(got: dict[str, np.ndarray], layout: int, where: str, notes: list[str]) -> Captured:
    """The node's values in nn.LSTM's layouts (see Captured), zeros past each length."""
    # onnxruntime's outputs are arrays of their own: no copy needed to keep them.
    x, y, y_h, y_c = (np.asarray(got[role]) for role in ("X", "Y", "Y_h", "Y_c"))
    if layout == 0:
        steps, directions, batch, hidden = y.shape  # Y (L, D, N, H)
        output = y.transpose(0, 2, 1, 3).reshape(steps, batch, directions * hidden)
    else:
        batch, steps, directions, hidden = y.shape  # Y (N, L, D, H)
        output = y.reshape(batch, steps, directions * hidden)

    def state(role: str) -> torch.Tensor | None:
        if role not in got:
            return None
        value = np.asarray(got[role])
        return torch.from_numpy(np.ascontiguousarray(value if layout == 0 else value.transpose(1, 0, 2)))

    lengths = None
    if "sequence_lens" in got:
        values = tuple(int(v) for v in np.asarray(got["sequence_lens"]).reshape(-1))
        if any(v != steps for v in values):
            lengths = values
            x, output = np.array(x), np.array(output)  # written below: copies of their own
            time_axis = 0 if layout == 0 else 1
            for n, length in enumerate(values):
                # ONNX ignores steps past a sequence's length; Captured keeps zeros there.
                cut = (slice(length, None), n) if time_axis == 0 else (n, slice(length, None))
                x[cut] = 0
                output[cut] = 0  # onnxruntime writes zeros there already; Captured promises them
            if any(v == 0 for v in values):
                notes.append("sequence_lens holds 0 for some sequences: they never ran (nn.LSTM cannot pack an empty sequence)")
    return Captured(
        x=torch.from_numpy(np.ascontiguousarray(x)), batch_first=layout == 1, lengths=lengths,
        h0=state("initial_h"), c0=state("initial_c"),
        output=torch.from_numpy(np.ascontiguousarray(output)), h_n=state("Y_h"), c_n=state("Y_c"),
        where=where, notes=tuple(notes),
    )
