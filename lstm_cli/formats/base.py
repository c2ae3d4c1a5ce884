"""What every format reader returns: the LSTMs it found, in PyTorch's own terms, and how each
was turned into them.

A reader (one module per format, listed in formats/__init__.py's REGISTRY) has one function,
`read(file: Path) -> Contents`. It raises FormatError with one sentence when the file is not
usable; the caller prefixes the flag and path. Readers never print and never guess silently:
every change they make to a weight (gate reorder, transpose, bias split, dequantization) is one
line in `conversions`, every assumption one line in `notes`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from lstm_cli.spec import RECURRENT_ACTIVATIONS  # noqa: F401  (readers report one of its keys)


class FormatError(Exception):
    """The file is not a usable LSTM; the message is one sentence without the flag or path."""


@dataclass
class Found:
    """One LSTM in a file.

    `state` uses nn.LSTM's parameter names and layout exactly (weight_ih_l0 (4H, in) with gates
    stacked i, f, g, o; bias_ih_l0 and bias_hh_l0 (4H,); `_reverse` for the backward direction;
    weight_hr_lK with proj_size). A stack of cells whose widths differ keeps the same names per
    layer (weight_ih_lK, weight_hh_lK, ...) with each layer's own width.
    """

    name: str  # what --key selects: a state_dict prefix, an ONNX node name, a Keras layer name
    state: dict[str, torch.Tensor]
    conversions: list[str] = field(default_factory=list)  # each transformation applied, in order
    notes: list[str] = field(default_factory=list)  # assumptions and approximations, in words
    recurrent_activation: str = "sigmoid"  # a key of RECURRENT_ACTIVATIONS
    batch_first: bool | None = None  # None: the file does not record the input layout
    cell_stack: bool = False  # one nn.LSTMCell per layer (widths may differ), not an nn.LSTM
    # Peephole weights (ONNX P), which nn.LSTM has no place for: name -> (3, H), rows i, f, o,
    # named like the layer's other weights ("peephole_l0", "peephole_l0_reverse"). i and f add
    # P_i c_(t-1) and P_f c_(t-1) to their pre-activations, o adds P_o c_t. Empty: none.
    peepholes: dict[str, torch.Tensor] = field(default_factory=dict)
    # The LSTM as stored, run by its own runtime (onnxruntime for ONNX): takes time-major input
    # (L, N, input_size) float32 on the CPU and optional initial states h0, c0 (D, N, H), and
    # returns (output (L, N, D*H), h_n (D, N, H), c_n (D, N, H)) in PyTorch's layout. inspect
    # checks nn.LSTM's weights against it step by step. None: no runtime here.
    run_original: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None
    run_original_name: str | None = None  # e.g. "onnxruntime 1.32.0 running node 'lstm_1'"
    # False when the original computes something else on purpose (int8 arithmetic): its
    # difference from nn.LSTM is then reported, not judged.
    run_original_exact: bool = True


@dataclass
class Rejected:
    """Something in the file that looks recurrent but cannot run as an LSTM, and why
    (a GRU, an ONNX node with peepholes, ...). Reported when nothing usable is found, and
    when --key names it."""

    name: str
    reason: str


@dataclass
class Contents:
    """What a reader found: the format in words, every LSTM, everything rejected."""

    format: str  # e.g. "PyTorch state_dict (torch zip)", "ONNX model", "Keras HDF5 (full model)"
    found: list[Found] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # about the file as a whole
