"""The conversion checked on real data: nn.LSTM's equations with the converted weights, on the
input and initial state the user's model really gave its LSTM, against what that LSTM itself
returned there (an ONNX node's Y, Y_h, Y_c; a PyTorch module's output, h_n, c_n).

Teacher-forced in h, so that no chaos can amplify rounding: step t starts from the original's
own h_(t-1) (its output at the step before, h_0 at the first) and from the float64 c chain of
the converted weights. That c differs from the original's c by at most E_t, carried as
E_t = f_t E_(t-1) + e_c(t) (the forget gate can only shrink an earlier difference; e_c is one
step's bound, verify.rule, with the original runtime's approximate activations). Each step's h
must be within one step's bound e_h(t) plus what E_(t-1) can move it: o_t f_t E_(t-1) (tanh's
slope is at most 1; times |W_hr| with a projection). The final c must be within E_T of the
float64 c, h_n within the bound of each sequence's last step.

A wrong gate order, a lost bias or a transposed weight is off by O(1) at the first step. Only
one layer's input is known, so a captured multi-layer nn.LSTM (whose inner layers' inputs the
model never shows) and peephole LSTMs (whose gates read c, which the original does not show)
are compared end to end and reported, not judged.
"""

from __future__ import annotations

import torch
from torch import nn

from lstm_cli.checks import Check, max_abs_diff, within
from lstm_cli.insitu.captured import Captured
from lstm_cli.model import InitialState, direction_state, direction_weights, run_lstm, time_major
from lstm_cli.spec import LSTMSpec
from lstm_cli.verify.rule import ORIGINAL_ACTIVATION_ULPS, Rule
from lstm_cli.verify.step import Weights64, reference_step


@torch.inference_mode()
def check_captured(spec: LSTMSpec, lstm: nn.LSTM, x: torch.Tensor, initial: InitialState | None,
                   captured: Captured, what: str, atol: float | None = None,
                   rtol: float | None = None) -> tuple[list[Check], list[str]]:
    """`what`: the original in words ("node '/lstm/LSTM' as the whole graph ran it").
    Returns the checks and notes."""
    if captured.output is None:
        return [], []
    dtype = str(captured.output.dtype).removeprefix("torch.")
    if spec.num_layers != 1 or spec.peepholes or spec.own_loop_only:
        ours = run_lstm(lstm, x, spec, initial) if spec.own_loop_only is None else None
        if ours is None:
            return [], [f"{what}: not compared with the captured outputs ({spec.own_loop_only})"]
        diff = max(max_abs_diff(ours.output.cpu(), captured.output), max_abs_diff(ours.h_n.cpu(), captured.h_n),
                   max_abs_diff(ours.c_n.cpu(), captured.c_n))
        return [], [f"{what}: output, h_n and c_n differ from nn.LSTM's on the captured input by at most "
                     f"{diff:.3g} (reported, not judged: a {spec.num_layers}-layer LSTM shows only its last "
                     "layer's output, so its steps cannot be checked one by one)"]
    rule = Rule(dtype if dtype in ("float32", "float64", "float16", "bfloat16") else "float32", atol=atol, rtol=rtol)
    cpu = torch.device("cpu")
    xs = time_major(x, spec).to(cpu, torch.float64)
    T, N = xs.shape[:2]
    out = time_major(captured.output, spec).to(cpu, torch.float64)
    h_n = captured.h_n.to(cpu, torch.float64).reshape(spec.num_directions, N, -1)
    c_n = captured.c_n.to(cpu, torch.float64).reshape(spec.num_directions, N, -1)
    lengths = torch.tensor(spec.lengths if spec.lengths is not None else [T] * N)
    start = None if initial is None else initial.to(device=cpu, dtype=torch.float64)
    H_out = spec.h_out
    got: dict[str, list[torch.Tensor]] = {"h": [], "h_n": [], "c_n": []}
    expected: dict[str, list[torch.Tensor]] = {"h": [], "h_n": [], "c_n": []}
    bounds: dict[str, list[torch.Tensor]] = {"h": [], "h_n": [], "c_n": []}
    for d, direction in enumerate(spec.directions()):
        w = Weights64.of(direction_weights(lstm, 0, direction), cpu)
        h0, c0 = direction_state(start, 0, d, spec.num_directions)
        h_prev = torch.zeros(N, H_out, dtype=torch.float64) if h0 is None else h0.clone()
        c = torch.zeros(N, spec.hidden_size, dtype=torch.float64) if c0 is None else c0.clone()
        carried = torch.zeros_like(c)  # E: how far the original's c may be from `c`
        final_h, final_bound = torch.zeros_like(h_prev), torch.zeros_like(h_prev)
        theirs = out[:, :, d * H_out : (d + 1) * H_out]
        for t in range(T - 1, -1, -1) if direction == "backward" else range(T):
            valid = t < lengths
            if not valid.any():
                continue
            ref = reference_step(w, xs[t], h_prev, c, rule, spec.recurrent_activation,
                                 activation_floor=ORIGINAL_ACTIVATION_ULPS)
            f, o = ref.gates[:, 1], ref.gates[:, 3]
            moved = o * f * carried  # what the carried c difference can do to h
            if w.w_hr is not None:
                moved = moved @ w.w_hr.abs().T
            bound_h = ref.bound_h + moved
            rows = valid.nonzero().flatten()
            got["h"].append(theirs[t, rows])
            expected["h"].append(ref.h[rows])
            bounds["h"].append(bound_h[rows])
            keep = valid.unsqueeze(1)
            carried = torch.where(keep, f * carried + ref.bound_c, carried)
            c = torch.where(keep, ref.c, c)
            final_h = torch.where(keep, ref.h, final_h)
            final_bound = torch.where(keep, bound_h, final_bound)
            h_prev = torch.where(keep, theirs[t], h_prev)  # teacher-forced: the original's own h
        for name, value, ours, bound in (("h_n", h_n[d], final_h, final_bound), ("c_n", c_n[d], c, carried)):
            got[name].append(value)
            expected[name].append(ours)
            bounds[name].append(bound)
    checks = []
    for name, words in (("h", "output at every step"), ("h_n", "h_n"), ("c_n", "c_n")):
        check = within(f"{what} == these weights in nn.LSTM's equations: {words}",
                       torch.cat([g.flatten() for g in got[name]]), torch.cat([e.flatten() for e in expected[name]]),
                       torch.cat([b.flatten() for b in bounds[name]]))
        check.checked = (f"{N:,} sequence(s), every valid step, each from the original's own h before it and the "
                         "float64 c chain (the c difference carried, shrunk by f)")
        checks.append(check)
    return checks, []
