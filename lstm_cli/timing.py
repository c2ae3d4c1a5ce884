"""Wall-clock timing shared by every command that reports speed: warm-up runs first, then the
median of repeated runs, with CUDA synchronised around each run so GPU time is counted."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def median_seconds(
    run: Callable[[], object], device: torch.device, repeat: int = 5, warmup: int = 1
) -> float:
    """Median wall time of `run()` over `repeat` runs after `warmup` untimed runs."""
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        run()
    synchronize()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
