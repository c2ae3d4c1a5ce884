"""What reached one LSTM in a run of a user's whole model, in nn.LSTM's own layouts."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Captured:
    """One LSTM call (or one nn.LSTMCell's calls in a loop, as one sequence), as nn.LSTM would
    have received and returned it.

    Layouts are nn.LSTM's: `x` is (L, N, H_in), or (N, L, H_in) when `batch_first`, or (L, H_in)
    unbatched; a packed input is stored padded with zeros past each length and `lengths` in
    batch order. `h0`/`h_n` are (D * num_layers, N, H_out) and `c0`/`c_n` (D * num_layers, N, H)
    (no N axis when unbatched); `output` is (L, N, D * H_out) (batch first when `batch_first`),
    zero past each length. `h0`/`c0` None: the model started from zeros (it passed no state).
    """

    x: torch.Tensor
    batch_first: bool
    lengths: tuple[int, ...] | None  # None: every sequence runs all L steps
    h0: torch.Tensor | None
    c0: torch.Tensor | None
    output: torch.Tensor | None  # what the model's LSTM itself returned (None when not known)
    h_n: torch.Tensor | None
    c_n: torch.Tensor | None
    where: str  # the header's words: "captured at node LSTM_79 of model.onnx running sample.npz"
    notes: tuple[str, ...] = ()  # e.g. "first 1,000 of 5,000 calls kept (max_steps)"

    @property
    def unbatched(self) -> bool:
        return self.x.dim() == 2
