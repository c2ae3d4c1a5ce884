"""What the example trainers share: their optimiser recipe and the machine their timings name."""

from __future__ import annotations

import math
import platform
from pathlib import Path

import torch
from torch import nn


def remember_first(lstm: nn.LSTM) -> None:
    """Forget-gate bias 1 in every layer: start training by remembering."""
    H = lstm.hidden_size
    with torch.no_grad():
        for layer in range(lstm.num_layers):
            getattr(lstm, f"bias_hh_l{layer}")[H : 2 * H].fill_(1.0)


def adam_cosine(model: nn.Module, lr: float, steps: int, floor: float):
    """Adam whose rate follows a cosine from lr down to floor * lr over `steps`."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))
    )
    return optimizer, schedule


def take_step(loss: torch.Tensor, model: nn.Module, optimizer, schedule) -> None:
    """One update: gradients clipped to norm 1, then the optimiser and its schedule."""
    optimizer.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    schedule.step()


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what the platform module says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
