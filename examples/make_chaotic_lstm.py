"""Write an LSTM that is chaotic on ordinary input, to see what lstm-cli's checks say about one.

A seeded PyTorch-init nn.LSTM(32, 64, num_layers=2) with every W_hh multiplied by 8. Strong
recurrence makes its dynamics chaotic: in float64, multiplying the input by (1 + 1e-7) changes
the output by about 1e-1 after 100 steps and by O(1) after 150. Two correct float32 computations
of it (nn.LSTM and an LSTMCell loop) then disagree by O(1) at the end of a long sequence, and
only a step-local check can tell that neither is wrong.

    .venv/bin/python examples/make_chaotic_lstm.py    # writes examples/chaotic_lstm.pt
"""

from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
INPUT, HIDDEN, LAYERS, RECURRENT_SCALE = 32, 64, 2, 8.0


def chaotic_lstm(seed: int = 0) -> nn.LSTM:
    torch.manual_seed(seed)
    lstm = nn.LSTM(INPUT, HIDDEN, LAYERS)
    with torch.no_grad():
        for layer in range(LAYERS):
            getattr(lstm, f"weight_hh_l{layer}").mul_(RECURRENT_SCALE)
    return lstm


if __name__ == "__main__":
    torch.save(chaotic_lstm().state_dict(), HERE / "chaotic_lstm.pt")
