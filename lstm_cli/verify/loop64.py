"""A float64 LSTM loop with any recurrent activation: the exact result of a model nn.LSTM
cannot run (Keras' hard_sigmoid gates), for `inspect` and for `gates`' end-to-end report.

Written straight from the equations, one step at a time, every layer and direction, with
projection and per-sequence lengths (a finished sequence keeps its state; its output is 0).
"""

from __future__ import annotations

import torch
from torch import nn

from lstm_cli.model import Forward, direction_weights, from_time_major, time_major
from lstm_cli.spec import HARD_SIGMOID_SLOPES, LSTMSpec


def gate_activation(z: torch.Tensor, activation: str) -> torch.Tensor:
    """The recurrent activation of i, f and o."""
    if activation == "sigmoid":
        return z.sigmoid()
    return (z * HARD_SIGMOID_SLOPES[activation] + 0.5).clamp(0.0, 1.0)


@torch.inference_mode()
def loop_forward(lstm: nn.LSTM, x: torch.Tensor, spec: LSTMSpec, activation: str) -> Forward:
    """`lstm`'s weights run in float64 with `activation` on x (the spec's layout); the result
    in x's dtype, laid out as nn.LSTM would return it."""
    xs = time_major(x, spec).double()
    T, B = xs.shape[:2]
    lengths = torch.tensor(spec.lengths if spec.lengths is not None else [T] * B, device=x.device)
    h_n, c_n = [], []
    for layer in range(spec.num_layers):
        outputs = []
        for direction in spec.directions():
            w = direction_weights(lstm, layer, direction)
            w_ih, w_hh = w.w_ih.double(), w.w_hh.double()
            b = None if w.b_ih is None else w.b_ih.double() + w.b_hh.double()
            w_hr = None if w.w_hr is None else w.w_hr.double()
            H = w_hh.shape[0] // 4
            h = xs.new_zeros(B, w_hh.shape[1])
            c = xs.new_zeros(B, H)
            out = xs.new_zeros(T, B, w_hh.shape[1])
            steps = range(T - 1, -1, -1) if direction == "backward" else range(T)
            for t in steps:
                z = xs[t] @ w_ih.T + h @ w_hh.T
                if b is not None:
                    z = z + b
                i, f, g, o = z.view(B, 4, H).unbind(1)
                c_new = gate_activation(f, activation) * c + gate_activation(i, activation) * g.tanh()
                h_new = gate_activation(o, activation) * c_new.tanh()
                if w_hr is not None:
                    h_new = h_new @ w_hr.T
                valid = (t < lengths).unsqueeze(1)
                h, c = torch.where(valid, h_new, h), torch.where(valid, c_new, c)
                out[t] = h_new * valid
            outputs.append(out)
            h_n.append(h)
            c_n.append(c)
        xs = torch.cat(outputs, dim=2)
    h_stack, c_stack = torch.stack(h_n), torch.stack(c_n)
    if spec.unbatched:
        h_stack, c_stack = h_stack.squeeze(1), c_stack.squeeze(1)
    return Forward(from_time_major(xs, spec).to(x.dtype), h_stack.to(x.dtype), c_stack.to(x.dtype))
