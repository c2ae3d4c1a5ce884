"""Notes on an LSTM node's run-time inputs, sequence_lens, initial_h and initial_c: part of a
run, not of the weights, so each note says how the graph's run compares with lstm-cli's
(full-length sequences from a zero state)."""

from __future__ import annotations

from typing import Any

import numpy as np

from lstm_cli.formats.onnx_model.folding import Folder
from lstm_cli.formats.onnx_model.graph import DEFAULT_DOMAINS, RecurrentNode, Scope
from lstm_cli.formats.onnx_model.messages import Refused
from lstm_cli.formats.text import printable
from lstm_cli.shapes import shape_text
from lstm_cli.formats.onnx_model.tensors import tensor_array


def run_time_input_notes(onnx: Any, found: RecurrentNode) -> list[str]:
    """Notes on sequence_lens, initial_h and initial_c, which are part of a run, not of the
    weights: lstm-cli (and the onnxruntime check) run full-length sequences from zero state."""
    notes = []
    for role, index in (("sequence_lens", 4), ("initial_h", 5), ("initial_c", 6)):
        inputs = found.node.input
        if index >= len(inputs) or not inputs[index]:
            continue
        try:
            value = Folder(onnx, role).value(inputs[index], found.scope)
        except Refused:
            value = None
        if role != "sequence_lens" and value is None and _zeros_of_run_time_shape(onnx, inputs[index], found.scope):
            notes.append(f"{role} is zeros shaped at run time: a zero state, the same as lstm-cli's")
            continue
        if role == "sequence_lens":
            if value is not None and value.size <= 16:
                lengths = ",".join(str(int(v)) for v in value.reshape(-1))
                notes.append(f"sequence_lens is the constant {lengths}: lstm-cli runs full-length sequences unless given --lengths {lengths}")
            else:
                notes.append(f"sequence_lens comes from '{printable(inputs[index])}': lstm-cli runs full-length sequences unless given --lengths")
        elif value is None:
            notes.append(f"{role} comes from '{printable(inputs[index])}' at run time: lstm-cli and the onnxruntime check start from zero state")
        elif np.any(value != 0):
            notes.append(
                f"{role} is a nonzero constant {shape_text(value.shape)}: lstm-cli and the onnxruntime check start from "
                "zero state, so their outputs differ from this graph's"
            )
        else:
            notes.append(f"{role} is a constant zero state, the same as lstm-cli's")
    return notes


def _zeros_of_run_time_shape(onnx: Any, name: str, scope: Scope) -> bool:
    """Whether `name` is Expand(constant zeros, shape) or ConstantOfShape(shape) with a zero
    value: zeros whatever the shape (torch.onnx.export writes the initial state this way,
    sized from the batch)."""
    found = scope.lookup(name)
    if found is None or found[0] != "node" or found[1].domain not in DEFAULT_DOMAINS:
        return False
    node, owner = found[1], found[2]
    try:
        if node.op_type == "Expand" and node.input and node.input[0]:
            data = Folder(onnx, "the state").value(node.input[0], owner)
        elif node.op_type == "ConstantOfShape":
            data = next(
                (tensor_array(onnx, a.t, name) for a in node.attribute if a.name == "value"), np.zeros(1)
            )
        else:
            return False
    except Refused:
        return False
    return bool(np.all(data == 0))
