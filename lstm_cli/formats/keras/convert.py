"""One Keras LSTM layer, found in a file, as nn.LSTM's tensors, conversions and notes.

Keras computes z = x @ kernel + h @ recurrent_kernel + bias with kernel (I, 4H), recurrent_kernel
(H, 4H) and the gate blocks in the order i, f, c, o, which is nn.LSTM's i, f, g, o: the matrices
are transposed and nothing is reordered. CuDNNLSTM stores each gate's input block so that its
row-major bytes are cuDNN's (H, I) matrix, its recurrent blocks already as (out, in), and two
biases (8H) where nn.LSTM also has two (Keras' _convert_rnn_weights does the same conversion).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from lstm_cli.shapes import shape_text
from lstm_cli.formats.base import Found
from lstm_cli.formats.keras.config import Refused, Spec, Version, recurrent_activation
from lstm_cli.formats.text import printable

GATE_ORDER = "gate order i,f,c,o = PyTorch i,f,g,o: no reorder"
BATCH_FIRST = "Keras input is (batch, time, features): batch_first=True"
TIME_MAJOR = "time_major=True: Keras input is (time, batch, features): batch_first=False"

WEIGHT_KINDS = ("kernel", "recurrent_kernel", "bias")


@dataclass
class Target:
    """One LSTM-like layer found in a file, before conversion."""

    name: str
    spec: Spec
    sets: list[dict[str, np.ndarray]]  # per direction: kernel, recurrent_kernel, [bias]
    notes: list[str] = field(default_factory=list)


def convert(target: Target, version: Version) -> Found:
    """Keras kernel, recurrent_kernel and bias (per direction) as nn.LSTM's parameters."""
    activation, batch_first, notes = _settings(target, version)
    sets, spec = target.sets, target.spec
    if len(sets) != (2 if spec.bidirectional else 1):
        raise Refused(f"it holds {len(sets)} set(s) of LSTM weights, and its config says {'2' if spec.bidirectional else '1'}")
    shapes = {tuple((kind, weights[kind].shape) for kind in WEIGHT_KINDS if kind in weights) for weights in sets}
    if len(shapes) > 1:
        raise Refused("its forward and backward layers differ in shape or bias, which one nn.LSTM cannot hold")
    state: dict[str, torch.Tensor] = {}
    conversions: list[str] = []
    for weights, direction, suffix in zip(sets, ("forward ", "backward ") if len(sets) == 2 else ("",), ("", "_reverse")):
        state.update(_direction(weights, spec.cudnn, direction, suffix, conversions))
    if "bias_ih_l0" not in state:
        conversions.append("use_bias=False: no bias tensors (nn.LSTM(bias=False))")
    conversions.append(GATE_ORDER)
    conversions.append(BATCH_FIRST if batch_first else TIME_MAJOR)
    return Found(
        name=target.name,
        state=state,
        conversions=conversions,
        notes=target.notes + notes,
        recurrent_activation=activation,
        batch_first=batch_first,
    )


def _settings(target: Target, version: Version) -> tuple[str, bool, list[str]]:
    """(recurrent activation, batch_first, notes) from the config; Refused when nn.LSTM (with
    the recurrent activations base.py knows) cannot compute what Keras computes."""
    spec, notes = target.spec, []
    activation = recurrent_activation(spec.forward, spec.cudnn, version, notes)
    if spec.backward is not None and recurrent_activation(spec.backward, spec.cudnn, version, []) != activation:
        raise Refused("its forward and backward layers use different activations")
    forward = spec.forward
    if forward.get("go_backwards"):
        if spec.bidirectional:
            raise Refused("its forward layer has go_backwards=True, so its directions are the reverse of nn.LSTM's")
        raise Refused("go_backwards=True: it reads the sequence in reverse, and nn.LSTM has no reverse-only layer")
    if forward.get("stateful"):
        notes.append("stateful=True: Keras carried the state from one batch into the next; here each run starts from the given (or zero) state")
    dropout, recurrent_dropout = forward.get("dropout") or 0, forward.get("recurrent_dropout") or 0
    if dropout or recurrent_dropout:
        notes.append(f"dropout={printable(str(dropout))}, recurrent_dropout={printable(str(recurrent_dropout))} act only in training; inference ignores them")
    if spec.bidirectional and spec.merge_mode != "concat":
        notes.append(
            f"merge_mode='{printable(str(spec.merge_mode))}': Keras combines the two directions' outputs that way, nn.LSTM concatenates them "
            "(the weights are the same)"
        )
    return activation, not forward.get("time_major", False), notes


def _direction(weights: dict[str, np.ndarray], cudnn: bool, label: str, suffix: str, conversions: list[str]) -> dict[str, torch.Tensor]:
    kernel, recurrent, bias = weights["kernel"], weights["recurrent_kernel"], weights.get("bias")
    if _gates(kernel.shape, recurrent.shape) != 4:
        raise Refused(
            f"its {label}kernel {shape_text(kernel.shape)} and recurrent_kernel {shape_text(recurrent.shape)} are not "
            "(input, 4*units) and (units, 4*units)"
        )
    hidden, inputs = recurrent.shape[0], kernel.shape[0]
    blocks = range(4)
    if cudnn:
        # Keras' _convert_rnn_weights: a gate's (I, H) input block holds cuDNN's (H, I) matrix in
        # row-major order (reshape, not transpose); its (H, H) recurrent block is already (out, in).
        weight_ih = np.concatenate([kernel[:, g * hidden : (g + 1) * hidden].reshape(hidden, inputs) for g in blocks])
        weight_hh = np.concatenate([recurrent[:, g * hidden : (g + 1) * hidden] for g in blocks])
        conversions.append(
            f"{label}kernel {shape_text(kernel.shape)} in CuDNNLSTM's layout: each gate's ({inputs}, {hidden}) block "
            f"reshaped row-major to ({hidden}, {inputs}), not transposed -> weight_ih_l0{suffix} {shape_text(weight_ih.shape)}"
        )
        conversions.append(
            f"{label}recurrent_kernel {shape_text(recurrent.shape)} in CuDNNLSTM's layout: each gate's ({hidden}, {hidden}) "
            f"block is already (out, in), stacked -> weight_hh_l0{suffix} {shape_text(weight_hh.shape)}"
        )
    else:
        weight_ih, weight_hh = kernel.T, recurrent.T
        conversions.append(f"{label}kernel {shape_text(kernel.shape)} transposed -> weight_ih_l0{suffix} {shape_text(weight_ih.shape)}")
        conversions.append(f"{label}recurrent_kernel {shape_text(recurrent.shape)} transposed -> weight_hh_l0{suffix} {shape_text(weight_hh.shape)}")
    state = {f"weight_ih_l0{suffix}": _tensor(weight_ih), f"weight_hh_l0{suffix}": _tensor(weight_hh)}
    if bias is None:
        return state
    if cudnn:
        if bias.shape != (8 * hidden,):
            raise Refused(f"its {label}bias is {shape_text(bias.shape)}, and a CuDNNLSTM's is (8*units,) = ({8 * hidden},)")
        bias_ih, bias_hh = bias[: 4 * hidden], bias[4 * hidden :]
        conversions.append(
            f"{label}bias {shape_text(bias.shape)} split: [:{4 * hidden}] input biases -> bias_ih_l0{suffix}, "
            f"[{4 * hidden}:] recurrent biases -> bias_hh_l0{suffix}"
        )
    else:
        if bias.shape != (4 * hidden,):
            raise Refused(f"its {label}bias is {shape_text(bias.shape)}, and an LSTM's is (4*units,) = ({4 * hidden},)")
        bias_ih, bias_hh = bias, np.zeros_like(bias)
        conversions.append(
            f"{label}bias {shape_text(bias.shape)} -> bias_ih_l0{suffix}; bias_hh_l0{suffix} = zeros "
            "(Keras has one bias, nn.LSTM adds bias_ih + bias_hh)"
        )
    state[f"bias_ih_l0{suffix}"] = _tensor(bias_ih)
    state[f"bias_hh_l0{suffix}"] = _tensor(bias_hh)
    return state


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))



def spec_from_shapes(sets: list[dict[str, np.ndarray]]) -> Spec:
    """Without a config: an LSTM by its shapes (4 gate blocks), CuDNNLSTM by its 8H bias, as
    Keras' own loader tells them apart; a GRU (3 blocks) or SimpleRNN (1) is refused."""
    kernel, recurrent = sets[0]["kernel"], sets[0]["recurrent_kernel"]
    gates = _gates(kernel.shape, recurrent.shape)
    if gates == 3:
        raise Refused("a Keras GRU layer, not an LSTM (judged by its weight shapes)")
    if gates == 1:
        raise Refused("a Keras SimpleRNN layer, not an LSTM (judged by its weight shapes)")
    if gates != 4:
        raise Refused(f"weights of shapes {shape_text(kernel.shape)} and {shape_text(recurrent.shape)}, which fit no Keras LSTM")
    bias = sets[0].get("bias")
    cudnn = bias is not None and bias.shape == (8 * recurrent.shape[0],)
    return Spec(cudnn=cudnn, forward={}, bidirectional=len(sets) == 2)


def _gates(kernel_shape: tuple[int, ...], recurrent_shape: tuple[int, ...]) -> int | None:
    """How many gate blocks kernel (I, nH) and recurrent_kernel (H, nH) hold; None if no n fits."""
    if len(kernel_shape) != 2 or len(recurrent_shape) != 2:
        return None
    hidden, columns = recurrent_shape
    if hidden == 0 or columns % hidden or kernel_shape[1] != columns:
        return None
    return columns // hidden
