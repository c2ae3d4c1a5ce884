"""ONNX models: every LSTM node, and onnxruntime's int8 DynamicQuantizeLSTM, at the top level and
inside If/Loop/Scan subgraphs, turned into nn.LSTM's parameter names, layout and gate order.

ONNX stores W [D, 4H, I], R [D, 4H, H] and B [D, 8H] = [Wb | Rb] with the gate blocks in the
order i, o, f, c; nn.LSTM wants weight_ih (4H, I), weight_hh (4H, H), bias_ih and bias_hh (4H,)
in the order i, f, g (= c), o, with `_reverse` for the backward direction.

Weights come from initializers, Constant nodes, or a few constant-only nodes folded here with
numpy (Add, Mul, Transpose, Reshape, DequantizeLinear, ...). Everything is bounded: no tensor
over MAX_ELEMENTS values is read or computed (tensors.py), no fold follows more than
MAX_FOLD_NODES nodes (folding.py), no subgraph deeper than MAX_DEPTH is searched (graph.py),
and external data files are never opened.
onnx and onnxruntime are an optional extra, imported only when a file is read.

One module per job: messages (wording), tensors (reading stored tensors), folding (constant
subgraphs), graph (finding nodes, resolving names), convert (node -> Found or Rejected),
run_time_inputs (notes on sequence_lens and initial states), onnxruntime_runner (run_original).
"""

from __future__ import annotations

from pathlib import Path

from lstm_cli.formats.base import Contents, FormatError, Found
from lstm_cli.formats.onnx_model.convert import Converter
from lstm_cli.formats.onnx_model.graph import DEFAULT_DOMAINS, recurrent_nodes
from lstm_cli.formats.text import first_line, printable

__all__ = ["read"]


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
        raise FormatError(f"not a readable ONNX model: {first_line(exc)}") from None
    if not model.HasField("graph"):
        raise FormatError("not a readable ONNX model: it has no graph")

    opset = next((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), 0)
    contents = Contents(format="ONNX model")
    producer = " ".join(printable(p) for p in (model.producer_name, model.producer_version) if p)
    contents.notes.append(f"opset {opset}" + (f", produced by {producer}" if producer else ""))
    if len(model.functions):
        contents.notes.append(
            f"the model's {len(model.functions)} local function(s) were not searched for LSTMs"
        )

    converter = Converter(onnx, onnxruntime, opset)
    for node in recurrent_nodes(onnx, model.graph):
        outcome = converter.outcome(node)
        (contents.found if isinstance(outcome, Found) else contents.rejected).append(outcome)
    if not contents.found and not contents.rejected:
        ops = sorted({printable(node.op_type) for node in model.graph.node})
        listed = ", ".join(ops[:12]) + (", ..." if len(ops) > 12 else "")
        raise FormatError(f"no LSTM node in this ONNX model (its ops: {listed or 'none'})")
    return contents
