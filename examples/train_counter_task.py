"""Train a small LSTM whose cell states grow large, as real trained LSTMs' do, and save it.

The task: each sequence is a stream of +1/-1 in channel 0 (plus noise in channels 1-3), drawn
with a slight bias towards +1 or towards -1. At every step the model must say which way the
stream leans. The answer is the sign of a running count, so a solution integrates: a unit whose
forget gate stays near 1 adds +-1 to its cell state at every step. Trained on 100 steps, it keeps
counting on longer streams: on the 1000-step batch saved here |c| reaches several hundred, and
on random N(0, 1) input it still passes 50 within 200 steps. Those are the cell states that make
two correct float32 computations differ by more than any fixed tolerance (README: How a check
decides), which is what lstm-cli's checks are tested against.

    .venv/bin/python examples/train_counter_task.py     # about a minute on 2 CPU cores

writes examples/counter_lstm.pt (a state_dict: the LSTM under "lstm", the read-out "head") and
examples/counter_input.npy, a batch of 4 task streams of 1000 steps, (1000, 4, 4).
"""

from pathlib import Path

import numpy as np
import torch
from torch import nn

INPUT, HIDDEN, LAYERS, TRAIN_STEPS, LEAN = 4, 32, 2, 100, 0.15
HERE = Path(__file__).resolve().parent


def make_batch(steps: int, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    leans_up = torch.randint(0, 2, (batch,), generator=generator).float()
    p_up = 0.5 + LEAN * (2 * leans_up - 1)
    signs = (torch.rand(steps, batch, generator=generator) < p_up).float() * 2 - 1
    x = torch.zeros(steps, batch, INPUT)
    x[:, :, 0] = signs
    x[:, :, 1:] = 0.5 * torch.randn(steps, batch, INPUT - 1, generator=generator)
    return x, leans_up.expand(steps, batch)


class Counter(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(INPUT, HIDDEN, LAYERS)
        self.head = nn.Linear(HIDDEN, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out).squeeze(-1)


def main() -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = Counter()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(1, 801):
        x, target = make_batch(TRAIN_STEPS, 64, generator)
        # The first 20 steps carry too little evidence to be scored.
        loss = nn.functional.binary_cross_entropy_with_logits(model(x)[20:], target[20:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 200 == 0:
            print(f"step {step}: loss {loss.item():.4f}")
    x, target = make_batch(TRAIN_STEPS, 1000, generator)
    with torch.no_grad():
        accuracy = ((model(x)[-1] > 0).float() == target[-1]).float().mean().item()
    print(f"held-out accuracy at step {TRAIN_STEPS}: {accuracy:.3f} (guessing scores 0.5)")
    torch.save(model.state_dict(), HERE / "counter_lstm.pt")
    sample, _ = make_batch(1000, 4, torch.Generator().manual_seed(1))
    np.save(HERE / "counter_input.npy", sample.numpy())


if __name__ == "__main__":
    main()
