"""What `gates` compares its capture with, and what that costs.

- `recompute` needs nn.LSTM's own h at every step of every layer: nn.LSTM runs one layer at a
  time (`layerwise_forward`), and those runs are also the whole batch's reference, so no layer
  runs twice.
- The `loop` is itself a forward pass, verified step by step against float64: paying a second
  full forward only to report the end-to-end difference would double the command's cost. nn.LSTM
  runs on the shadowed sequences instead (`subset_forward`), a few rows of the batch, and the
  end-to-end difference is reported over those. With --export (which writes nn.LSTM's own output
  and final states) it runs on the whole batch.
- A model nn.LSTM cannot run (hard-sigmoid gates) is compared with a float64 loop.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from lstm_cli.gates.batch import WorkingBatch
from lstm_cli.model import (
    Forward,
    InitialState,
    direction_weights,
    from_time_major,
    run_lstm,
    time_major,
)
from lstm_cli.spec import LSTMSpec
from lstm_cli.verify.loop64 import loop_forward


@dataclass
class Reference:
    """The forward pass the capture is compared with."""

    forward: Forward  # in the spec's layout; its batch holds `sequences` of the user's batch
    name: str  # said in the end-to-end line: "nn.LSTM", or what ran instead
    sequences: list[int] | None = None  # the user's sequences it ran, in order; None: all
    # recompute: each layer's output (T, B, D * H_out), time-major, in the working batch order
    layer_outputs: list[torch.Tensor] | None = None

    def batched_states(self, spec: LSTMSpec) -> tuple[torch.Tensor, torch.Tensor]:
        """h_n and c_n with a batch dimension, also for unbatched input: (D * layers, n, ...)."""
        h_n, c_n = self.forward.h_n, self.forward.c_n
        return (h_n.unsqueeze(1), c_n.unsqueeze(1)) if spec.unbatched else (h_n, c_n)

    def rows(self, sequences: list[int]) -> list[int]:
        """Where each of the user's `sequences` sits in this reference's batch."""
        return list(sequences) if self.sequences is None else [self.sequences.index(n) for n in sequences]


def single_layer_lstm(lstm: torch.nn.LSTM, layer: int, input_size: int, spec: LSTMSpec) -> torch.nn.LSTM:
    """Layer `layer` of `lstm` (both directions) as a one-layer nn.LSTM of its own."""
    weight = lstm.weight_ih_l0
    single = torch.nn.LSTM(
        input_size, spec.hidden_size, 1, bias=spec.bias, bidirectional=spec.bidirectional,
        proj_size=spec.proj_size, device=weight.device, dtype=weight.dtype,
    ).eval()
    with torch.no_grad():
        for direction, suffix in zip(spec.directions(), ("", "_reverse")):
            w = direction_weights(lstm, layer, direction)
            for name, value in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"),
                                   (w.w_ih, w.w_hh, w.b_ih, w.b_hh, w.w_hr)):
                if value is not None:
                    getattr(single, f"{name}_l0{suffix}").copy_(value)
    single.flatten_parameters()  # cuDNN wants one weight buffer (a no-op elsewhere)
    return single


def run_single_layer(single: torch.nn.LSTM, x: torch.Tensor, spec: LSTMSpec, batch: WorkingBatch,
                     initial: InitialState | None = None) -> Forward:
    """A one-layer nn.LSTM on a time-major (T, B, in) input in working order from `initial`
    (this layer's, batched, working order): its (T, B, D * H_out) output (padded steps zero)
    and final states, in working order."""
    single_spec = replace(
        spec, input_size=x.shape[-1], num_layers=1, batch_first=False, unbatched=False,
        batch_size=x.shape[1], dropout=0.0, seq_len=x.shape[0],
        lengths=tuple(min(n, x.shape[0]) for n in batch.lengths) if batch.packed else None,
    )
    return run_lstm(single, x, single_spec, initial)


def working_initial(initial: InitialState | None, batch: WorkingBatch) -> InitialState | None:
    """The batched initial state with its sequences in the working batch's order."""
    if initial is None:
        return None
    batched = initial.batched()
    return batched if batch.order is None else batched.sequences(batch.order)


@torch.inference_mode()
def layerwise_forward(lstm: torch.nn.LSTM, x: torch.Tensor, spec: LSTMSpec,
                      initial: InitialState | None = None) -> Reference:
    """nn.LSTM one layer at a time on the whole batch: every layer's output (for recompute) and
    the whole model's output and final states, as nn.LSTM computes them layer by layer."""
    x_tm = time_major(x, spec)
    batch = WorkingBatch(x_tm.shape[0], x_tm.shape[1], spec.lengths, x.device)
    inp = batch.to_working(x_tm, 1)
    start = working_initial(initial, batch)
    D = spec.num_directions
    outputs, h_n, c_n = [], [], []
    for layer in range(spec.num_layers):
        layer_start = None if start is None else start.layers(layer * D, layer * D + D)
        run = run_single_layer(single_layer_lstm(lstm, layer, inp.shape[-1], spec), inp, spec, batch, layer_start)
        outputs.append(run.output)
        h_n.append(run.h_n)
        c_n.append(run.c_n)
        inp = run.output
    h_n = batch.to_original(torch.cat(h_n), 1)
    c_n = batch.to_original(torch.cat(c_n), 1)
    output = from_time_major(batch.to_original(outputs[-1], 1), spec)
    if spec.unbatched:
        h_n, c_n = h_n.squeeze(1), c_n.squeeze(1)
    return Reference(Forward(output, h_n, c_n), "nn.LSTM, one layer at a time", None, outputs)


def subset_forward(lstm: torch.nn.LSTM, x: torch.Tensor, spec: LSTMSpec, sequences: list[int],
                   initial: InitialState | None = None) -> Reference:
    """nn.LSTM (the whole model, as the user would call it) on `sequences` of the batch only."""
    if spec.unbatched:
        return Reference(run_lstm(lstm, x, spec, initial), "nn.LSTM", [0])
    dim = 0 if spec.batch_first else 1
    index = torch.tensor(sequences, device=x.device)
    lengths = None if spec.lengths is None else tuple(spec.lengths[n] for n in sequences)
    subset = replace(spec, batch_size=len(sequences), lengths=lengths)
    start = None if initial is None else initial.sequences(index)
    return Reference(run_lstm(lstm, x.index_select(dim, index), subset, start), "nn.LSTM", list(sequences))


def make_reference(spec: LSTMSpec, lstm: torch.nn.LSTM, x: torch.Tensor, method: str, whole_batch: bool,
                   sequences: list[int], initial: InitialState | None = None) -> Reference:
    """What the capture is compared with (the module docstring says why): a float64 loop for gates
    nn.LSTM cannot run; nn.LSTM one layer at a time for recompute; nn.LSTM on the whole batch
    when `whole_batch` (--export writes its output); else nn.LSTM on `sequences` only."""
    if spec.own_loop_only:
        return Reference(loop_forward(lstm, x, spec, spec.recurrent_activation, initial),
                         f"a float64 loop with {spec.own_loop_only}")
    if method == "recompute":
        return layerwise_forward(lstm, x, spec, initial)
    if whole_batch:
        return Reference(run_lstm(lstm, x, spec, initial), "nn.LSTM")
    return subset_forward(lstm, x, spec, sequences, initial)
