"""run_original for a converted node: the node alone, rebuilt with its stored weights and run by
onnxruntime on the CPU, so lstm-cli can compare nn.LSTM with what the file itself computes."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lstm_cli.formats.base import FormatError
from lstm_cli.formats.onnx_model.graph import RecurrentNode
from lstm_cli.formats.text import first_line


def build_run_original(
    onnx: Any, ort: Any, opset: int, found: RecurrentNode, stored: dict[str, np.ndarray | None], attrs: dict[str, Any]
) -> tuple[Any, str | None]:
    """The node alone, rebuilt with its constant inputs as initializers exactly as stored,
    run by onnxruntime: (run_original, run_original_name), or (None, None) without it.

    The rebuilt node always has layout=0: onnxruntime's CPU LSTM refuses layout=1, and
    layout only says which axis of X and Y is the batch, so layout=0 on time-major input is
    the same computation."""
    if ort is None:
        return None, None
    node = found.node
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
    opsets = [onnx.helper.make_opsetid("", max(opset, 7))]
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
                raise FormatError(f"onnxruntime cannot run node '{found.name}': {first_line(exc)}") from None
        def array(t: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(t.detach().cpu().numpy().astype(np_type))

        zeros = torch.zeros(directions, x.shape[1], hidden)
        feed = {"X": array(x), "initial_h": array(zeros if h0 is None else h0),
                "initial_c": array(zeros if c0 is None else c0)}
        try:
            y, y_h, y_c = session[0].run(None, feed)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's errors subclass Exception directly
            raise FormatError(f"onnxruntime failed running node '{found.name}': {first_line(exc)}") from None
        steps, y_directions, batch, y_hidden = y.shape  # Y [L, D, N, H]
        # nn.LSTM's output puts the directions side by side: [forward H | backward H].
        output = y.transpose(0, 2, 1, 3).reshape(steps, batch, y_directions * y_hidden)
        return tuple(torch.from_numpy(np.ascontiguousarray(t)) for t in (output, y_h, y_c))

    return run_original, f"onnxruntime {ort.__version__} running node '{found.name}'"
