"""Wall-clock timing shared by every command that reports speed: warm-up rounds first, then
repeated rounds, with CUDA synchronised around each run so GPU time is counted."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import torch


def interleaved_seconds(
    runs: Mapping[str, Callable[[], object]], device: torch.device, repeat: int = 5, warmup: int = 1
) -> dict[str, list[float]]:
    """Every timed run of several callables, taken round-robin (a, b, a, b, ...) after `warmup`
    untimed rounds, so that load from other processes on a shared machine lands on all of them
    alike. Returns the seconds of each run per name; take the median of each, or of per-round
    ratios."""
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        for run in runs.values():
            run()
    synchronize()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            synchronize()
            times[name].append(time.perf_counter() - start)
    return times
