"""Every unit's value at every step of one sequence: the cell state c, the hidden state h and
the four gates of each layer and direction, for the commands that look at single units
(trace, units). Computed by the float64 loop (verify/loop64.py) from the model's own weights,
so a unit's value is the exact one for its activation, not a float32 rounding of it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lstm_cli.model import direction_state, direction_weights, prepare, time_major
from lstm_cli.spec import LSTMSpec
from lstm_cli.verify.loop64 import run_direction

QUANTITIES = ("c", "h", "i", "f", "g", "o")


@dataclass
class UnitStates:
    """values[(layer, direction)][quantity] is a (T, width) float64 array for `sequence`: c and
    the gates are H wide, h is H_out wide (proj_size P when projecting)."""

    spec: LSTMSpec
    sequence: int
    steps: int  # the sequence's valid steps (its length with --lengths)
    values: dict[tuple[int, str], dict[str, np.ndarray]]

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
    for layer in range(spec.num_layers):
        outputs = []
        for d, direction in enumerate(spec.directions()):
            h0, c0 = direction_state(initial, layer, d, spec.num_directions)
            run = run_direction(direction_weights(lstm, layer, direction), xs, lengths, direction == "backward",
                                spec.recurrent_activation, keep_gates=True, h0=h0, c0=c0)
            gates = run.gates[:, 0].numpy()
            values[(layer, direction)] = {
                "c": run.c[:, 0].numpy(), "h": run.h[:, 0].numpy(),
                **{name: gates[:, k] for k, name in enumerate("ifgo")},
            }
            outputs.append(run.output)
        xs = torch.cat(outputs, dim=2)
    return UnitStates(spec, sequence, steps, values)
