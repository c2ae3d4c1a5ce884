"""Wall-clock timing shared by every command that reports speed: warm-up rounds first, then
repeated rounds, with CUDA synchronised around each run so GPU time is counted; and how far
apart the runs of one callable landed, to say when a machine was too busy to trust them."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

# When the slowest run of a path took more than this many times its fastest, the machine was
# busy during the timing and the median may not be trustworthy. Why max/min and why 1.5:
# - Repeated runs of one deterministic forward pass on the same input, on an idle machine, land
#   within a few percent to ~20% of each other (caches, clocks, the allocator). A run that takes
#   1.5x the fastest had something else on the CPU or GPU during it: another process holding a
#   core, which is how nn.LSTM went from 0.3 ms to 708 ms between identical runs.
# - The alternative, IQR/median, rests on two or three values at the default --repeat 5 and is
#   blind to a single stalled run (its quartiles skip it), yet a stalled run is exactly the
#   evidence of a busy machine the user needs to hear about; max/min sees it at any --repeat >= 2.
# - The median of 5 often survives one stalled run, which is why the warning says "may".
SPREAD_LIMIT = 1.5
# A step-by-step loop (LSTMCells from Python) does a fused nn.LSTM's arithmetic with more
# overhead, so it is never meaningfully faster; below this ratio of medians nn.LSTM was held up
# (its threads waiting on a core another process had), consistently enough that its own runs
# agree and the spread cannot see it.
STALL_RATIO = 0.5


@dataclass(frozen=True)
class Spread:
    """The fastest, median and slowest of one callable's timed runs, in seconds."""

    min: float
    median: float
    max: float

    @property
    def ratio(self) -> float:
        """Slowest over fastest; 1.0 for a single run (no spread to see)."""
        return self.max / self.min if self.min > 0 else (1.0 if self.max == 0 else float("inf"))

    @property
    def wide(self) -> bool:
        return self.ratio > SPREAD_LIMIT


def spread(seconds: Sequence[float]) -> Spread:
    return Spread(min(seconds), statistics.median(seconds), max(seconds))


# The busy-machine notes, one piece of code for every command that times (bench, compare-cell).


@dataclass(frozen=True)
class TimedPath:
    """One path's runs as a note names them: its name ("nn.LSTM"), its spread, and where it was
    timed when a command times several configurations (a row label; "" for one)."""

    name: str
    spread: Spread
    where: str = ""


def spread_note(paths: Sequence[TimedPath]) -> str | None:
    """One line when some path's slowest run took more than SPREAD_LIMIT x its fastest (see
    SPREAD_LIMIT for why that rule), naming each such path's worst ratio and where it was."""
    worst: dict[str, TimedPath] = {}
    for path in paths:
        if path.spread.wide and (path.name not in worst or path.spread.ratio > worst[path.name].spread.ratio):
            worst[path.name] = path
    if not worst:
        return None
    spans = ", ".join(
        f"{p.name} {p.spread.ratio:.1f}x" + (f" at {p.where}" if p.where else "") for p in worst.values()
    )
    return (
        f"timings spread widely (slowest run / fastest: {spans}; steady is under {SPREAD_LIMIT:g}x): "
        "the machine looks busy and the medians may not be trustworthy; rerun when it is idle"
    )


def stall_note(loop_ratios: Sequence[tuple[float, str]], loop: str, device: str, threads: int) -> str | None:
    """One line when a step-by-step loop beat the fused nn.LSTM by more than 1/STALL_RATIO:
    `loop_ratios` holds (loop median / nn.LSTM median, where) per configuration timed ("" for
    one); `loop` names the loop ("the cell loop"). On CPU with several threads it suggests one."""
    stalled = [(ratio, where) for ratio, where in loop_ratios if ratio < STALL_RATIO]
    if not stalled:
        return None
    ratio, where = min(stalled)
    advice = (
        f"; on CPU its {threads} threads wait for each other when another process holds a core: "
        "try --threads 1" if device.startswith("cpu") and threads > 1 else ""
    )
    return (
        f"{loop} took {ratio:.3g}x nn.LSTM's time{f' at {where}' if where else ''}, though it does the same "
        f"arithmetic one step at a time: nn.LSTM was held up, the machine looks busy and the "
        f"medians may not be trustworthy{advice}"
    )


def synchronizer(device: torch.device) -> Callable[[], None]:
    """What waits for the device's queued work to finish, so that a clock read after it counts
    that work (GPUs run asynchronously; the CPU needs nothing)."""
    if device.type == "cuda":
        return torch.cuda.synchronize
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


def interleaved_seconds(
    runs: Mapping[str, Callable[[], object]], device: torch.device, repeat: int = 5, warmup: int = 1,
    clock: Callable[[], float] | None = None, on_warmup: Callable[[float], None] | None = None,
) -> dict[str, list[float]]:
    """Every timed run of several callables, taken round-robin (a, b, a, b, ...) after `warmup`
    untimed rounds, so that load from other processes on a shared machine lands on all of them
    alike. Returns the seconds of each run per name; take the median of each (or `spread`), or
    of per-round ratios. `clock` (default time.perf_counter) is read once before and once after
    each timed run; tests pass a fake one. `on_warmup(seconds)` hears how long one warm-up
    round took (wall time), before the timed rounds start: what a long run can announce."""
    clock = clock or time.perf_counter
    synchronize = synchronizer(device)
    started = time.perf_counter()
    for _ in range(warmup):
        for run in runs.values():
            run()
    synchronize()
    if on_warmup is not None and warmup:
        on_warmup((time.perf_counter() - started) / warmup)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            start = clock()
            run()
            synchronize()
            times[name].append(clock() - start)
    return times


# A quick measurement to choose between kernels at start (gates' step GEMM and capture method):
# each candidate runs once to warm up (oneDNN builds its primitive then), then TIMED_RUNS times;
# a call above LARGE_CALL_S is timed once only (the budget is tens of ms for all candidates),
# one above HUGE_CALL_S not again at all (a first call's extra costs are small beside it), and
# below SMALL_CALL_S the best of SMALL_CALL_RUNS is taken, being steadier.
TIMED_RUNS = 3
SMALL_CALL_S = 2e-4
SMALL_CALL_RUNS = 5
LARGE_CALL_S = 2e-3
HUGE_CALL_S = 5e-2


def best_seconds(run: Callable[[], object], device: torch.device) -> float:
    """The fastest of a few calls of `run` after one warm-up call, in seconds."""
    synchronize = synchronizer(device)
    start = time.perf_counter()
    run()
    synchronize()
    first = time.perf_counter() - start
    if first > HUGE_CALL_S:
        return first
    runs = 1 if first > LARGE_CALL_S else TIMED_RUNS
    best = float("inf")
    k = 0
    while k < runs:
        start = time.perf_counter()
        run()
        synchronize()
        best = min(best, time.perf_counter() - start)
        if best < SMALL_CALL_S:
            runs = SMALL_CALL_RUNS
        k += 1
    return best
