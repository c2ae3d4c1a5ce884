"""A float64 LSTM loop with any recurrent activation: the exact result of a model nn.LSTM
cannot run (Keras' hard_sigmoid gates), for `inspect` and `gates`' end-to-end report, and the
state at every step for checking a converted model against its original runtime.

Written straight from the equations, one step at a time, every layer and direction, with
projection and per-sequence lengths (a finished sequence keeps its state; its output is 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lstm_cli.model import (
    DirectionWeights,
    Forward,
    InitialState,
    direction_state,
    direction_weights,
    from_time_major,
    time_major,
)
from lstm_cli.spec import HARD_SIGMOID_SLOPES, LSTMSpec


def gate_activation(z: torch.Tensor, activation: str) -> torch.Tensor:
    """The recurrent activation of i, f and o."""
    if activation == "sigmoid":
        return z.sigmoid()
    return (z * HARD_SIGMOID_SLOPES[activation] + 0.5).clamp(0.0, 1.0)


@dataclass
class DirectionRun:
    """One layer x direction in float64: output (T, N, H_out), 0 past each length, and the
    state after every step, h (T, N, H_out) and c (T, N, H); the final state (N, ...)."""

    output: torch.Tensor
    h: torch.Tensor
    c: torch.Tensor
    h_final: torch.Tensor
    c_final: torch.Tensor
    gates: torch.Tensor | None = None  # (T, N, 4, H) after the activations, i f g o; when asked


def run_direction(w: DirectionWeights, xs: torch.Tensor, lengths: torch.Tensor, reverse: bool,
                  activation: str = "sigmoid", keep_gates: bool = False, h0: torch.Tensor | None = None,
                  c0: torch.Tensor | None = None) -> DirectionRun:
    """One direction over time-major xs (T, N, in) in float64, from (h0 (N, H_out), c0 (N, H)),
    zeros when None (a backward sequence starts from them at its own last step); with
    `keep_gates`, also every step's activated gates."""
    w_ih, w_hh = w.w_ih.double(), w.w_hh.double()
    b = None if w.b_ih is None else w.b_ih.double() + w.b_hh.double()
    w_hr = None if w.w_hr is None else w.w_hr.double()
    p_i, p_f, p_o = (None, None, None) if w.peephole is None else w.peephole.double().unbind(0)
    xs = xs.double()
    T, N = xs.shape[:2]
    H = w_hh.shape[0] // 4
    h = xs.new_zeros(N, w_hh.shape[1]) if h0 is None else h0.to(xs.device, torch.float64)
    c = xs.new_zeros(N, H) if c0 is None else c0.to(xs.device, torch.float64)
    out, hs, cs = xs.new_zeros(T, N, w_hh.shape[1]), xs.new_zeros(T, N, w_hh.shape[1]), xs.new_zeros(T, N, H)
    kept = xs.new_zeros(T, N, 4, H) if keep_gates else None
    for t in range(T - 1, -1, -1) if reverse else range(T):
        z = xs[t] @ w_ih.T + h @ w_hh.T
        if b is not None:
            z = z + b
        i, f, g, o = z.view(N, 4, H).unbind(1)
        if p_i is not None:  # peepholes: i and f see the previous c, o the new one (ONNX's LSTM)
            i, f = i + p_i * c, f + p_f * c
        i, f, g = gate_activation(i, activation), gate_activation(f, activation), g.tanh()
        c_new = f * c + i * g
        o = gate_activation(o if p_o is None else o + p_o * c_new, activation)
        h_new = o * c_new.tanh()
        if kept is not None:
            kept[t] = torch.stack([i, f, g, o], dim=1)
        if w_hr is not None:
            h_new = h_new @ w_hr.T
        valid = (t < lengths).unsqueeze(1)
        h, c = torch.where(valid, h_new, h), torch.where(valid, c_new, c)
        out[t], hs[t], cs[t] = h_new * valid, h, c
    return DirectionRun(out, hs, cs, h, c, kept)


@torch.inference_mode()
def loop_forward(lstm: nn.LSTM, x: torch.Tensor, spec: LSTMSpec, activation: str,
                 initial: InitialState | None = None) -> Forward:
    """`lstm`'s weights run in float64 with `activation` on x (the spec's layout) from `initial`
    (None: zeros); the result in x's dtype, laid out as nn.LSTM would return it."""
    xs = time_major(x, spec).double()
    T, B = xs.shape[:2]
    lengths = torch.tensor(spec.lengths if spec.lengths is not None else [T] * B, device=x.device)
    h_n, c_n = [], []
    for layer in range(spec.num_layers):
        outputs = []
        for d, direction in enumerate(spec.directions()):
            h0, c0 = direction_state(initial, layer, d, spec.num_directions)
            run = run_direction(direction_weights(lstm, layer, direction), xs, lengths, direction == "backward",
                                activation, h0=h0, c0=c0)
            outputs.append(run.output)
            h_n.append(run.h_final)
            c_n.append(run.c_final)
        xs = torch.cat(outputs, dim=2)
    h_stack, c_stack = torch.stack(h_n), torch.stack(c_n)
    if spec.unbatched:
        h_stack, c_stack = h_stack.squeeze(1), c_stack.squeeze(1)
    return Forward(from_time_major(xs, spec).to(x.dtype), h_stack.to(x.dtype), c_stack.to(x.dtype))
