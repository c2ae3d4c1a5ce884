"""Every unit's value at every step of one sequence: the cell state c, the hidden state h and
the four gates of each layer and direction, for the commands that look at single units
(trace, units). Computed by the float64 loop (verify/loop64.py) from the model's own weights,
so a unit's value is the exact one for its activation, not a float32 rounding of it.

Checked step by step (`checks`): PyTorch's own nn.LSTMCell, in float64, run from the loop's state
before every step, must give the loop's c and h within one float64 step's rounding (verify.rule):
a wrong gate order or a lost bias in the loop is off by O(1) at the first step. Models nn.LSTM
cannot run (hard-sigmoid gates, peepholes) are not checked, with a note."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from lstm_cli.checks import Check, within
from lstm_cli.model import DirectionWeights, direction_state, direction_weights, prepare, time_major
from lstm_cli.spec import LSTMSpec
from lstm_cli.verify.loop64 import DirectionRun, run_direction
from lstm_cli.verify.rule import Rule
from lstm_cli.verify.step import Weights64, reference_step

QUANTITIES = ("c", "h", "i", "f", "g", "o")


@dataclass
class UnitStates:
    """values[(layer, direction)][quantity] is a (T, width) float64 array for `sequence`: c and
    the gates are H wide, h is H_out wide (proj_size P when projecting)."""

    spec: LSTMSpec
    sequence: int
    steps: int  # the sequence's valid steps (its length with --lengths)
    values: dict[tuple[int, str], dict[str, np.ndarray]]
    checks: list[Check] = field(default_factory=list)  # the loop against PyTorch's cell, step by step
    notes: list[str] = field(default_factory=list)

    def unit(self, layer: int, unit: int, quantity: str = "c", direction: str = "forward") -> np.ndarray:
        """One unit's values over the sequence's steps."""
        return self.values[(layer, direction)][quantity][:, unit]


@torch.inference_mode()
def unit_states(spec: LSTMSpec, sequence: int = 0) -> UnitStates:
    """Run `spec`'s model (weights and input as every command builds them) on one sequence."""
    prepared = prepare(spec, command="units")  # units and trace: the same float64 loop
    xs = time_major(prepared.x, spec)[:, sequence : sequence + 1]
    steps = spec.seq_len if spec.lengths is None else spec.lengths[sequence]
    xs = xs[:steps].to("cpu")
    lengths = torch.tensor([steps])
    lstm = prepared.lstm.to("cpu")
    initial = None
    if prepared.initial is not None:  # the one sequence's own starting state
        initial = prepared.initial.batched().sequences(torch.tensor([sequence])).to(device="cpu")
    values: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    checks, notes = [], []
    if spec.own_loop_only:
        notes.append(f"unit values not checked against PyTorch's nn.LSTMCell: it cannot compute {spec.own_loop_only}")
    for layer in range(spec.num_layers):
        outputs = []
        for d, direction in enumerate(spec.directions()):
            h0, c0 = direction_state(initial, layer, d, spec.num_directions)
            w = direction_weights(lstm, layer, direction)
            run = run_direction(w, xs, lengths, direction == "backward",
                                spec.recurrent_activation, keep_gates=True, h0=h0, c0=c0)
            gates = run.gates[:, 0].numpy()
            values[(layer, direction)] = {
                "c": run.c[:, 0].numpy(), "h": run.h[:, 0].numpy(),
                **{name: gates[:, k] for k, name in enumerate("ifgo")},
            }
            if not spec.own_loop_only:
                checks.append(check_against_cell(f"layer {layer} {direction}", w, xs[:, 0], run,
                                                 direction == "backward", h0, c0))
            outputs.append(run.output)
        xs = torch.cat(outputs, dim=2)
    return UnitStates(spec, sequence, steps, values, checks, notes)


def check_against_cell(where: str, w: DirectionWeights, xs: torch.Tensor, run: DirectionRun, reverse: bool,
                       h0: torch.Tensor | None, c0: torch.Tensor | None) -> Check:
    """The loop's c and h at every step of one sequence (xs (T, in)) against PyTorch's
    nn.LSTMCell in float64 from the loop's own state before that step, within one float64
    step's rounding."""
    T = xs.shape[0]
    hidden = w.w_hh.shape[0] // 4
    h, c = run.h[:, 0], run.c[:, 0]  # (T, H_out), (T, H): the state after each step
    first_h = torch.zeros_like(h[:1]) if h0 is None else h0.reshape(1, -1).double()
    first_c = torch.zeros_like(c[:1]) if c0 is None else c0.reshape(1, -1).double()
    if reverse:  # step t comes from step t + 1
        h_prev, c_prev = torch.cat([h[1:], first_h]), torch.cat([c[1:], first_c])
    else:
        h_prev, c_prev = torch.cat([first_h, h[:-1]]), torch.cat([first_c, c[:-1]])
    cell = torch.nn.LSTMCell(xs.shape[1], hidden, bias=w.b_ih is not None, dtype=torch.float64)
    with torch.no_grad():
        cell.weight_ih.copy_(w.w_ih)
        # With proj_size the cell sees h_prev through W_hh's P columns: zero-pad h to H instead.
        cell.weight_hh.zero_()
        cell.weight_hh[:, : w.w_hh.shape[1]].copy_(w.w_hh)
        if w.b_ih is not None:
            cell.bias_ih.copy_(w.b_ih)
            cell.bias_hh.copy_(w.b_hh)
    padded = torch.nn.functional.pad(h_prev, (0, hidden - h_prev.shape[1]))
    cell_h, cell_c = cell(xs.double(), (padded, c_prev))
    if w.w_hr is not None:
        cell_h = cell_h @ w.w_hr.double().T
    ref = reference_step(Weights64.of(w, torch.device("cpu")), xs, h_prev, c_prev, Rule("float64"))
    check = within(f"{where}: c, h of each step == PyTorch's nn.LSTMCell (float64) from the same state",
                   torch.cat([c.flatten(), h.flatten()]), torch.cat([cell_c.flatten(), cell_h.flatten()]),
                   torch.cat([ref.bound_c.flatten(), ref.bound_h.flatten()]))
    check.checked = f"every one of the {T:,} steps, each from the loop's own state before it"
    return check
