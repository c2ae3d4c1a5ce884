"""The same network as a loop over stacked nn.LSTMCell modules, exactly as the seed writes it:
`for xt in x: h, c = cell(xt, (h, c))`, one layer after another.

nn.LSTMCell has no direction, projection, packing or dropout; this module supplies each by hand:
- backward direction: the same loop over reversed time, outputs concatenated per layer;
- proj_size P: after every step h = W_hr h (P wide). LSTMCell insists that h is H wide, so the
  cell gets weight_hh padded with zero columns, [W_hh | 0] of shape (4H, H), and h padded with
  zeros: [W_hh | 0] [h_P; 0] == W_hh h_P exactly (the extra terms are exact zeros);
- packed lengths: a sequence's state stops changing after its last valid step and its output
  there is 0, so the backward pass starts at each sequence's own last step;
- dropout: eval mode only (the caller runs both networks in eval mode).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from lstm_cli.model import (
    InitialState,
    direction_state,
    direction_weights,
    from_time_major,
    init_uniform,
    time_major,
    weight_generator,
)
from lstm_cli.spec import LSTMSpec
from lstm_cli.verify.step import PathRecord, Sample, kept_steps


@dataclass
class CellStack:
    """cells[layer][direction], with the projection W_hr (or None) beside each cell."""

    cells: list[list[nn.LSTMCell]]
    projections: list[list[torch.Tensor | None]]

    @property
    def num_directions(self) -> int:
        return len(self.cells[0])


@dataclass
class StackRun:
    """Output in the spec's own layout, and each layer x direction's final (h, c), layer-major
    (the order of h_n: l0 forward, l0 backward, l1 forward, ...); with a sample, what the loop
    computed at the sampled steps, per (layer, direction), for the step-local check."""

    output: torch.Tensor
    finals: list[tuple[torch.Tensor, torch.Tensor]]
    records: dict[tuple[int, str], PathRecord] = field(default_factory=dict)


def cells_from_lstm(lstm: nn.LSTM) -> CellStack:
    """One nn.LSTMCell per layer x direction, with the LSTM's weights copied in."""
    directions = ("forward", "backward")[: 2 if lstm.bidirectional else 1]
    cells, projections = [], []
    for layer in range(lstm.num_layers):
        row, proj_row = [], []
        for direction in directions:
            w = direction_weights(lstm, layer, direction)
            cell = nn.LSTMCell(
                w.w_ih.shape[1], lstm.hidden_size, bias=lstm.bias, device=w.w_ih.device, dtype=w.w_ih.dtype
            )
            with torch.no_grad():
                cell.weight_ih.copy_(w.w_ih)
                cell.weight_hh.zero_()
                cell.weight_hh[:, : w.w_hh.shape[1]].copy_(w.w_hh)  # zero columns past P
                if lstm.bias:
                    cell.bias_ih.copy_(w.b_ih)
                    cell.bias_hh.copy_(w.b_hh)
            row.append(cell.eval())
            proj_row.append(None if w.w_hr is None else w.w_hr.detach())
        cells.append(row)
        projections.append(proj_row)
    return CellStack(cells, projections)


def free_form_cells(spec: LSTMSpec, hidden_sizes: tuple[int, ...], device, dtype) -> CellStack:
    """The seed's hand-made stack (e.g. 100 -> 30 -> 20): cells of different widths, with the
    weights of --weights when it holds such a stack, else each with PyTorch's init
    U(-1/sqrt(H_k), 1/sqrt(H_k)) drawn from the weight generator."""
    loaded = None
    if spec.weights is not None:
        from lstm_cli.sources import find_lstm

        loaded = find_lstm(spec.weights, spec.key, spec.trust_checkpoint).state
    generator = weight_generator(spec)  # one stream across the cells, each with its own bound
    cells, width = [], spec.input_size
    for layer, hidden in enumerate(hidden_sizes):
        cell = nn.LSTMCell(width, hidden, bias=spec.bias, dtype=torch.float32)
        if loaded is None:
            init_uniform(cell, hidden, generator)
        else:
            cell = cell.to(loaded["weight_ih_l0"].dtype)
            cell.load_state_dict({name: loaded[f"{name}_l{layer}"] for name, _ in cell.named_parameters()})
        cells.append([cell.to(device=device, dtype=dtype).eval()])
        width = hidden
    return CellStack(cells, [[None] for _ in cells])


@torch.inference_mode()
def run_cells(
    stack: CellStack, x: torch.Tensor, spec: LSTMSpec, progress: Callable[..., None] | None = None,
    sample: Sample | None = None, initial: InitialState | None = None,
) -> StackRun:
    """Run the stack over x (the spec's layout), layer by layer, each direction a time loop
    from `initial` (nn.LSTM's layout; None: zeros); `progress(seq_len)` hears of each finished
    direction (nothing is added inside the loop). With a `sample`, also keep what the loop
    computed for the step-local check."""
    layer_input = time_major(x, spec)
    valid = None
    if spec.lengths is not None:  # (L, N, 1): True where step t is inside sequence n
        steps = torch.arange(spec.seq_len, device=x.device).unsqueeze(1)
        valid = (steps < torch.tensor(spec.lengths, device=x.device)).unsqueeze(-1)
    finals, records = [], {}
    for layer, (cells, projections) in enumerate(zip(stack.cells, stack.projections)):
        outputs = []
        for direction, (cell, w_hr) in enumerate(zip(cells, projections)):
            recorder = None
            if sample is not None:
                recorder = _Recorder(kept_steps(sample, direction == 1), sample.sequences, layer_input.device)
            h0, c0 = direction_state(initial, layer, direction, len(cells))
            out, h, c = _run_direction(cell, w_hr, layer_input, valid, reverse=direction == 1, recorder=recorder,
                                       h0=h0, c0=c0)
            outputs.append(out)
            finals.append((h, c))
            if recorder is not None:
                records[(layer, ("forward", "backward")[direction])] = recorder.record()
            if progress is not None:
                progress(layer_input.shape[0])
        layer_input = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)
    if spec.unbatched:
        finals = [(h.squeeze(0), c.squeeze(0)) for h, c in finals]
    return StackRun(from_time_major(layer_input, spec), finals, records)


class _Recorder:
    """Keeps x_t and the state (h_t, c_t) of the sampled sequences at the kept steps."""

    def __init__(self, steps: list[int], sequences: list[int], device: torch.device):
        self.steps, self.keep = steps, set(steps)
        self.rows = torch.tensor(sequences, device=device)
        self.x: dict[int, torch.Tensor] = {}
        self.h: dict[int, torch.Tensor] = {}
        self.c: dict[int, torch.Tensor] = {}

    def __call__(self, t: int, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> None:
        if t in self.keep:
            self.x[t], self.h[t], self.c[t] = x[self.rows], h[self.rows], c[self.rows]

    def record(self) -> PathRecord:
        stacked = {name: torch.stack([getattr(self, name)[t] for t in self.steps]) for name in ("x", "h", "c")}
        return PathRecord(self.steps, stacked["x"], stacked["h"], stacked["c"], stacked["h"], None)


def _run_direction(cell, w_hr, xs, valid, reverse: bool, recorder: _Recorder | None = None,
                   h0: torch.Tensor | None = None, c0: torch.Tensor | None = None):
    """One direction of one layer over time-major xs (L, N, in) from (h0, c0) (None: zeros; a
    backward sequence starts from them at its own last step). Returns (outputs, h, c)."""
    steps = range(xs.shape[0] - 1, -1, -1) if reverse else range(xs.shape[0])
    c = xs.new_zeros(xs.shape[1], cell.hidden_size) if c0 is None else c0
    if w_hr is None and valid is None and recorder is None:  # the seed's loop, nothing added per step
        h = xs.new_zeros(xs.shape[1], cell.hidden_size) if h0 is None else h0
        outputs = [None] * xs.shape[0]
        for t in steps:
            h, c = cell(xs[t], (h, c))
            outputs[t] = h
        return torch.stack(outputs), h, c

    hidden = cell.hidden_size
    width = hidden if w_hr is None else w_hr.shape[0]
    h = xs.new_zeros(xs.shape[1], width) if h0 is None else h0  # the direction's real h (P wide with projection)
    h_state = h if w_hr is None else nn.functional.pad(h, (0, hidden - width))  # what the cell sees: h, zero-padded to H
    outputs = [None] * xs.shape[0]
    for t in steps:
        h_new, c_new = cell(xs[t], (h_state, c))
        if w_hr is not None:
            h_new = h_new @ w_hr.T
        if valid is not None:  # finished sequences keep their state; their output is 0
            h_new = torch.where(valid[t], h_new, h)
            c_new = torch.where(valid[t], c_new, c)
            outputs[t] = h_new * valid[t]
        else:
            outputs[t] = h_new
        h, c = h_new, c_new
        if recorder is not None:
            recorder(t, xs[t], h, c)
        h_state = h if w_hr is None else nn.functional.pad(h, (0, hidden - width))
    return torch.stack(outputs), h, c
