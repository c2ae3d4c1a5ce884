"""Packing of variable-length batches (--lengths) for the gate capture.

Packed batches are processed longest first, as PyTorch's packed kernels do: at step t only the
sequences still running take part, padding never enters a statistic, and the backward direction
starts each sequence at its own last step. `WorkingBatch` holds that order and the mask of
running sequences; `working_row` finds a user's sequence in it.
"""

from __future__ import annotations

import torch


class WorkingBatch:
    """The batch as the capture walks it: sorted longest first when packed (so the sequences
    still running at step t are rows [0, batch_sizes[t]) ), else as given."""

    def __init__(self, seq_len: int, batch: int, lengths: tuple[int, ...] | None, device: torch.device):
        self.T, self.B = seq_len, batch
        self.packed = lengths is not None
        if lengths is None:
            self.order = None
            self.lengths = [seq_len] * batch
        else:
            ordered = sorted(range(batch), key=lambda n: -lengths[n])  # stable: ties keep order
            self.order = torch.tensor(ordered, device=device)
            self.inverse = torch.argsort(self.order)
            self.lengths = [lengths[n] for n in ordered]
        self.valid = None
        self.batch_sizes = [batch] * seq_len
        if self.packed:
            running = torch.arange(seq_len).unsqueeze(1) < torch.tensor(self.lengths)  # (T, B)
            self.batch_sizes = running.sum(1).tolist()
            self.valid = running.to(device)

    def size_at(self, t: int) -> int:
        return self.batch_sizes[t]

    def valid_rows(self, t0: int, t1: int) -> torch.Tensor | None:
        """(steps, batch) mask of running sequences in [t0, t1), or None when all run."""
        if not self.packed or self.batch_sizes[t1 - 1] == self.B:  # sizes never grow with t
            return None
        return self.valid[t0:t1]

    def final_steps(self, reverse: bool) -> list[int]:
        """The step at which each row's state becomes its h_n / c_n."""
        return [0] * self.B if reverse else [length - 1 for length in self.lengths]

    def to_working(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        return x if self.order is None else x.index_select(dim, self.order)

    def to_original(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        return x if self.order is None else x.index_select(dim, self.inverse)


def working_row(batch: WorkingBatch, n: int) -> int:
    """The row of the working batch that holds sequence n of the user's batch."""
    return int(batch.inverse[n]) if batch.order is not None else n
