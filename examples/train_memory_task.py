"""Train a tiny LSTM on a task that needs memory, and save it for lstm-cli to look inside.

The task: each sequence carries a random value in channel 0 at every step and a marker in
channel 1 at one of the first five steps. At the last step the model must output the value
that was marked, so it has to store that value when the marker comes and hold it, untouched
by everything after. Forget gates near 1 and an input gate that opens only at the marker are
what a solution looks like, which `lstm-cli gates` then shows.

    .venv/bin/python examples/train_memory_task.py     # under a minute on 2 CPU cores

writes examples/memory_lstm.pt (a state_dict: the LSTM under the prefix "lstm", plus the
linear read-out "head") and examples/memory_input.npy, a batch of 8 task sequences (20, 8, 2).
"""

from pathlib import Path

import numpy as np
import torch
from torch import nn

SEQ_LEN, HIDDEN, MARK_WITHIN = 20, 16, 5
HERE = Path(__file__).resolve().parent


def make_batch(batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    values = torch.rand(SEQ_LEN, batch, generator=generator) * 2 - 1
    marked = torch.randint(0, MARK_WITHIN, (batch,), generator=generator)
    marker = torch.zeros(SEQ_LEN, batch)
    marker[marked, torch.arange(batch)] = 1.0
    x = torch.stack([values, marker], dim=2)
    return x, values[marked, torch.arange(batch)]


class Recall(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(2, HIDDEN)
        self.head = nn.Linear(HIDDEN, 1)
        with torch.no_grad():  # forget-gate bias 1 (Jozefowicz et al. 2015): start by remembering
            self.lstm.bias_hh_l0[HIDDEN : 2 * HIDDEN].fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[-1]).squeeze(-1)


def main() -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = Recall()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(1, 2501):
        x, target = make_batch(64, generator)
        loss = nn.functional.mse_loss(model(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 500 == 0:
            print(f"step {step}: mse {loss.item():.5f}")
    x, target = make_batch(1000, generator)
    with torch.no_grad():
        mse = nn.functional.mse_loss(model(x), target).item()
    print(f"held-out mse {mse:.5f} (always answering 0 scores {target.pow(2).mean().item():.3f})")
    torch.save(model.state_dict(), HERE / "memory_lstm.pt")
    sample, _ = make_batch(8, torch.Generator().manual_seed(1))
    np.save(HERE / "memory_input.npy", sample.numpy())


if __name__ == "__main__":
    main()
