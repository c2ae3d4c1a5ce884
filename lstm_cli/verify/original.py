"""A converted model checked against its original runtime (onnxruntime running the ONNX node):
the conversion (gate reorder, transposes, bias split) is right when the original, started from a
given state, computes the step nn.LSTM's equations compute with the converted weights.

Step-local, like every verdict here: for sampled (step, sequence) rows the state before the step
comes from a float64 run of the converted weights; the original runs one step from that state
(rounded to its precision) and its c and h must agree with the float64 step from the same state
within one step's rounding (verify.rule, with the original's approximate sigmoid and tanh:
ORIGINAL_ACTIVATION_ULPS). A wrong gate order or a lost bias is off by O(1); a
model whose original computes something else on purpose (int8 arithmetic) is compared end to
end and reported, not judged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from lstm_cli.checks import Check, max_abs_diff, within
from lstm_cli.formats.base import Found
from lstm_cli.model import direction_weights
from lstm_cli.verify.loop64 import run_direction
from lstm_cli.verify.rule import ORIGINAL_ACTIVATION_ULPS, Rule
from lstm_cli.verify.step import Weights64, reference_step

# Rows (step, sequence) checked: every one up to this many, else an even sample.
MAX_ROWS = 4096
MAX_STEPS = 1000


@torch.inference_mode()
def check_original(found: Found, lstm: nn.LSTM, x_tm: torch.Tensor, atol: float | None,
                   rtol: float | None) -> tuple[list[Check], list[str]]:
    """x_tm: the run's input, time-major (T, N, in). Returns the checks and notes."""
    name = found.run_original_name
    x = x_tm.detach().to(device="cpu", dtype=torch.float32)
    lstm = copy.deepcopy(lstm).to(device="cpu", dtype=torch.float32)  # the run's module stays as it is
    if not found.run_original_exact:
        output, h_n, c_n = found.run_original(x)
        expected, (h_ref, c_ref) = lstm(x)
        diff = max(max_abs_diff(output, expected), max_abs_diff(h_n, h_ref), max_abs_diff(c_n, c_ref))
        return [], [f"{name}: output, h_n and c_n differ from nn.LSTM's by at most {diff:.3g} "
                    "(reported, not judged: the original runs in int8)"]
    # The check is step-local: the first MAX_STEPS steps give states enough (the backward
    # direction then starts from the end of that stretch), and keep a long input's check short.
    x = x[:MAX_STEPS]
    T, N = x.shape[:2]
    directions = ("forward", "backward")[: 2 if lstm.bidirectional else 1]
    lengths = torch.full((N,), T)
    runs = {d: run_direction(direction_weights(lstm, 0, d), x, lengths, d == "backward") for d in directions}
    rows = torch.arange(T * N)
    if rows.numel() > MAX_ROWS:
        rows = torch.linspace(0, T * N - 1, MAX_ROWS).round().long()
    t, n = rows // N, rows % N
    h0, c0 = [], []
    for d, run in runs.items():
        before = t - 1 if d == "forward" else t + 1  # the step each direction comes from
        inside = ((before >= 0) & (before < T)).unsqueeze(1)
        safe = before.clamp(0, T - 1)
        h0.append(torch.where(inside, run.h[safe, n], 0.0).float())
        c0.append(torch.where(inside, run.c[safe, n], 0.0).float())
    x_rows = x[t, n]
    _, h_got, c_got = found.run_original(x_rows.unsqueeze(0), torch.stack(h0), torch.stack(c0))
    rule = Rule("float32", atol=atol, rtol=rtol)
    checks = []
    for k, d in enumerate(directions):
        ref = reference_step(Weights64.of(direction_weights(lstm, 0, d), torch.device("cpu")),
                             x_rows, h0[k], c0[k], rule, activation_floor=ORIGINAL_ACTIVATION_ULPS)
        check = within(
            f"{name} == these weights in nn.LSTM's equations: c, h of each step ({d})",
            torch.cat([c_got[k].flatten(), h_got[k].flatten()]),
            torch.cat([ref.c.flatten(), ref.h.flatten()]),
            torch.cat([ref.bound_c.flatten(), ref.bound_h.flatten()]),
        )
        stretch = f"of the first {T:,} steps" if x_tm.shape[0] > T else "of every step"
        check.checked = (f"{rows.numel():,} of {T * N:,} (step, sequence) rows {stretch}, each from the float64 "
                         "state before it")
        checks.append(check)
    return checks, []
