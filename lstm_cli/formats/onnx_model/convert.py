"""One recurrent node found in an ONNX model turned into a Found, or a Rejected saying why not:
its attributes checked against what nn.LSTM computes, W, R and B read as constants (int8
DynamicQuantizeLSTM weights dequantized), and rearranged into nn.LSTM's names, layout and gate
order, each step written down as a conversion line."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lstm_cli.formats.base import Found, Rejected
from lstm_cli.formats.onnx_model.folding import Folder
from lstm_cli.formats.onnx_model.graph import DEFAULT_DOMAINS, RecurrentNode
from lstm_cli.formats.onnx_model.messages import Refused
from lstm_cli.formats.text import printable
from lstm_cli.shapes import shape_text
from lstm_cli.formats.onnx_model.onnxruntime_runner import build_run_original
from lstm_cli.formats.onnx_model.run_time_inputs import run_time_input_notes

# ONNX gate blocks are i, o, f, c; nn.LSTM's are i, f, g, o. Block k of nn.LSTM's weight is
# block ONNX_BLOCK_FOR_TORCH[k] of ONNX's.
ONNX_BLOCK_FOR_TORCH = (0, 2, 3, 1)
REORDER = "gate blocks reordered i,o,f,c -> i,f,g,o"
DEFAULT_ACTIVATIONS = ("sigmoid", "tanh", "tanh")
FLOAT_TYPES = (np.float16, np.float32, np.float64)


class Converter:
    """Converts or rejects each recurrent node of one model."""

    def __init__(self, onnx: Any, onnxruntime: Any, opset: int) -> None:
        self.onnx = onnx
        self.onnxruntime = onnxruntime
        self.opset = opset

    def outcome(self, found: RecurrentNode) -> Found | Rejected:
        """The node as an nn.LSTM, or the one-sentence reason it cannot be one."""
        op, domain, name = found.node.op_type, found.node.domain, found.name
        if domain in DEFAULT_DOMAINS and op in ("GRU", "RNN"):
            return Rejected(name, f"an ONNX {op} node, not an LSTM")
        if domain == "com.microsoft" and op == "AttnLSTM":
            return Rejected(name, "a com.microsoft AttnLSTM node (an LSTM with attention), which nn.LSTM is not")
        if (op == "LSTM" and domain in DEFAULT_DOMAINS) or (op == "DynamicQuantizeLSTM" and domain == "com.microsoft"):
            try:
                return self.convert(found)
            except Refused as exc:
                return Rejected(name, str(exc))
        return Rejected(name, f"a node {op} of domain '{printable(domain)}', not the ONNX LSTM")

    def constant(self, found: RecurrentNode, index: int, role: str, conversions: list[str]) -> np.ndarray | None:
        """Input `index` of the node as a constant array (None when the input is absent); a
        folded value gets one conversion line saying how it was computed."""
        inputs = found.node.input
        if index >= len(inputs) or not inputs[index]:
            return None
        folder = Folder(self.onnx, role)
        array = folder.value(inputs[index], found.scope)
        if folder.folded:
            ops = ", ".join(dict.fromkeys(folder.folded))
            conversions.append(f"{role} folded to a constant from {len(folder.folded)} node(s): {ops}")
        return array

    def convert(self, found: RecurrentNode) -> Found:
        node, quantized = found.node, found.node.op_type == "DynamicQuantizeLSTM"
        attrs, ignored = self.attributes(node)
        direction = attrs.get("direction", "forward")
        if direction == "reverse":
            raise Refused("direction=reverse: nn.LSTM has no reverse-only layer")
        if direction not in ("forward", "bidirectional"):
            raise Refused(f"direction={direction!r} is not an ONNX LSTM direction")
        directions = 2 if direction == "bidirectional" else 1
        if "clip" in attrs:
            raise Refused(f"clip={attrs['clip']:g}: nn.LSTM does not clip its gate inputs")
        if attrs.get("input_forget", 0):
            raise Refused("input_forget=1 couples the input and forget gates, which nn.LSTM does not do")
        activations = attrs.get("activations", [])
        if activations and (
            len(activations) % 3 or [a.lower() for a in activations] != list(DEFAULT_ACTIVATIONS) * (len(activations) // 3)
        ):
            raise Refused(f"activations {', '.join(activations)}: nn.LSTM computes only Sigmoid, Tanh, Tanh")
        if attrs.get("activation_alpha") or attrs.get("activation_beta"):
            raise Refused("activation_alpha/activation_beta are given: nn.LSTM's activations take no parameters")
        layout = attrs.get("layout", 0)
        if layout not in (0, 1):
            raise Refused(f"layout={layout} is not an ONNX LSTM layout (0 or 1)")

        conversions: list[str] = []
        notes = list(found.notes)
        notes.extend(f"attribute '{name}' is not an ONNX LSTM attribute: ignored" for name in ignored)
        for role, index in (("W", 1), ("R", 2)):
            if index >= len(node.input) or not node.input[index]:
                raise Refused(f"the node has no {role} input")
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
                raise Refused(f"the DynamicQuantizeLSTM node has no {missing[0]} input")
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
        conversions.append(f"W {shape_text(w.shape)} -> {both('weight_ih')}: {split}, {REORDER}")
        conversions.append(f"R {shape_text(r.shape)} -> {both('weight_hh')}: {split}, {REORDER}")
        if b is not None:
            conversions.append(
                f"B {shape_text(b.shape)} split into {both('bias_ih')} (first 4H: Wb) and {both('bias_hh')} (last 4H: Rb), {REORDER}"
            )
        else:
            conversions.append("no B input: nn.LSTM with bias=False (no bias_* tensors), the exact equivalent of ONNX's zero default")
        if layout == 1:
            conversions.append("layout=1 (X is [N, L, I]): batch_first=True")

        peepholes: dict[str, torch.Tensor] = {}
        if p is not None:
            if np.any(p != 0):
                for d, suffix in enumerate(suffixes):
                    # ONNX stacks P as i, o, f; lstm-cli keeps i, f, o (nn.LSTM's order without g).
                    peepholes[f"peephole_l0{suffix}"] = torch.from_numpy(
                        np.ascontiguousarray(p[d].reshape(3, hidden)[ONNX_PEEPHOLE_FOR_TORCH]))
                conversions.append(
                    f"P {shape_text(p.shape)} -> {', '.join(peepholes)} (3, {hidden}): {split}, gate rows i, o, f -> i, f, o; "
                    f"peepholes (largest |P| {float(np.max(np.abs(p))):g}), which nn.LSTM has no place for: "
                    "lstm-cli's own loop runs them")
            else:
                notes.append("peephole weights P are all zero: dropped")
        notes.extend(run_time_input_notes(self.onnx, found))

        if self.onnxruntime is not None and stored["W"].dtype == np.float64:
            notes.append("onnxruntime's CPU LSTM does not run float64: there is no onnxruntime run to compare with")
            run, run_name = None, None
        else:
            run, run_name = build_run_original(self.onnx, self.onnxruntime, self.opset, found, stored, attrs)
        if run is not None and layout == 1:
            notes.append("onnxruntime runs only layout=0: its check runs this node with layout=0 on time-major input, the same computation")
        return Found(
            name=found.name, state=state, conversions=conversions, notes=notes,
            batch_first=layout == 1, run_original=run, run_original_name=run_name, run_original_exact=not quantized,
            peepholes=peepholes,
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
                ignored.append(printable(attribute.name))
                continue
            if attribute.type != expected[attribute.name]:
                got = kind.AttributeType.Name(attribute.type) if attribute.type in kind.AttributeType.values() else attribute.type
                raise Refused(
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
                raise Refused(f"{role} is {q.dtype} {shape_text(q.shape)}; DynamicQuantizeLSTM needs int8 or uint8 [D, in, 4H]")
            scale, zero = scales[f"{role}_scale"], scales[f"{role}_zero_point"]
            columns = q.shape[2]
            if scale.shape == (directions,) and zero.shape == (directions,):
                kind, scale_b, zero_b = "per direction", scale[:, None, None], zero[:, None, None]
            elif scale.shape == (directions, columns) and zero.shape == (directions, columns):
                kind, scale_b, zero_b = "per output column", scale[:, None, :], zero[:, None, :]
            else:
                raise Refused(
                    f"{role}_scale is {shape_text(scale.shape)} and {role}_zero_point {shape_text(zero.shape)}; "
                    f"DynamicQuantizeLSTM needs both ({directions},) or ({directions}, {columns})"
                )
            if zero.dtype != q.dtype:
                raise Refused(f"{role}_zero_point is {zero.dtype} but {role} is {q.dtype}")
            # (q - zero) is an exact small integer in float32; one rounding in the product. An
            # absurd scale overflows to inf quietly: the caller's NaN/Inf check reports it.
            with np.errstate(all="ignore"):
                values = (q.astype(np.float32) - zero_b.astype(np.float32)) * scale_b.astype(np.float32)
            conversions.append(
                f"{role} {q.dtype} {shape_text(q.shape)} dequantized to float32 as ({role} - {role}_zero_point) * {role}_scale, {kind}"
            )
            conversions.append(f"{role} {shape_text(q.shape)} transposed to {shape_text((q.shape[0], q.shape[2], q.shape[1]))}")
            out.append(np.ascontiguousarray(values.transpose(0, 2, 1)))
        return out[0], out[1]

    def check_shapes(
        self, w: np.ndarray, r: np.ndarray, b: np.ndarray | None, p: np.ndarray | None,
        directions: int, hidden_attr: int | None, direction: str,
    ) -> int:
        """hidden_size from R (or the attribute), and every shape checked against it."""
        for role, array in (("W", w), ("R", r), ("B", b), ("P", p)):
            if array is not None and array.dtype.type not in FLOAT_TYPES:
                raise Refused(f"{role} has dtype {array.dtype}; an LSTM's weights are floating point")
        if r.ndim != 3:
            raise Refused(f"R is {shape_text(r.shape)}; an ONNX LSTM's R is [D, 4H, H]")
        hidden = hidden_attr if hidden_attr is not None else r.shape[2]
        if hidden <= 0:
            raise Refused(f"hidden_size is {hidden}")
        if w.ndim != 3 or w.shape[0] != directions or w.shape[1] != 4 * hidden or w.shape[2] <= 0:
            raise Refused(
                f"W is {shape_text(w.shape)} but a {direction} LSTM with hidden_size {hidden} needs "
                f"({directions}, {4 * hidden}, input_size)"
            )
        expected = {"R": (directions, 4 * hidden, hidden), "B": (directions, 8 * hidden), "P": (directions, 3 * hidden)}
        for role, array in (("R", r), ("B", b), ("P", p)):
            if array is not None and array.shape != expected[role]:
                raise Refused(
                    f"{role} is {shape_text(array.shape)} but a {direction} LSTM with hidden_size {hidden} needs {shape_text(expected[role])}"
                )
        return hidden


# P's blocks in ONNX are i, o, f: lstm-cli keeps a peephole's rows i, f, o.
ONNX_PEEPHOLE_FOR_TORCH = [0, 2, 1]


def _torch_order(block: np.ndarray, hidden: int) -> torch.Tensor:
    """Rows stacked in ONNX's gate order i, o, f, c, restacked as nn.LSTM's i, f, g, o."""
    parts = [block[k * hidden : (k + 1) * hidden] for k in ONNX_BLOCK_FOR_TORCH]
    return torch.from_numpy(np.ascontiguousarray(np.concatenate(parts, axis=0)))
