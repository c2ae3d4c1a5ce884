"""--threads: how many intra-op CPU threads torch uses while a command runs, chosen once,
validated once and set only for the command's duration (the previous count is put back after).

No torch at import (cli.py imports this for --help); torch is imported when a scope is entered.

Why a default other than torch's: torch starts one thread per core, and its OpenMP threads wait
for each other at every operation. On a small model each operation is microseconds of work, so
the waiting dominates, and when another process holds a core it becomes a stall. Measured on a
shared AMD EPYC 2-core machine (benchmarks/threads_default.py; numbers in the README's Speed
section): with torch's 2 threads, inspect, gates, gradients and compare-cell ran 1.0x to 34x
slower than with 1 thread at every size from the seed example (28,800 multiply-adds per step
GEMM) to `--preset medium` (16.8 M), with and without a competing busy process, and inspect at
`--preset large` (537 M) 1.7x slower; no size gained from the second thread. So by default a
command runs with one thread when its largest step GEMM is below SMALL_STEP_MACS multiply-adds
(about twice medium's), and with torch's own count above, where GEMMs are big enough to split
across cores that are free (this machine never had one free). An explicit --threads always wins.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from lstm_cli.errors import UsageError
from lstm_cli.spec import LSTMSpec

# A step GEMM of fewer multiply-adds than this runs on one thread by default (see the module
# docstring and benchmarks/threads_default.py for the measurements behind the number).
SMALL_STEP_MACS = 32_000_000

FLAG = "--threads"
CHOSEN_BY_FLAG = "--threads"
CHOSEN_SMALL = "default: 1 for a small model"
CHOSEN_TORCH = "default: torch's"


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def check_threads(threads: int | None) -> int | None:
    """--threads N: None (not given) or 1 .. usable_cpus(); anything else is one UsageError line."""
    if threads is None:
        return None
    cpus = usable_cpus()
    if not 1 <= threads <= cpus:
        raise UsageError(f"{FLAG} must be between 1 and {cpus}, the CPUs this process may use (got {threads})")
    return threads


def step_macs(spec: LSTMSpec) -> int:
    """Multiply-adds of the model's largest single step GEMM: each sequence's (input + h) row
    times the 4 gate blocks of a layer, for the widest layer (a free-form stack of LSTMCells:
    each cell's input is the previous cell's width)."""
    batch = 1 if spec.unbatched else spec.batch_size
    if spec.stack_widths:
        inputs = (spec.input_size, *spec.stack_widths[:-1])
        return max(batch * 4 * h * (i + h) for i, h in zip(inputs, spec.stack_widths))
    return max(batch * 4 * spec.hidden_size * (spec.layer_input_size(k) + spec.h_out) for k in range(spec.num_layers))


@dataclass(frozen=True)
class ThreadChoice:
    """What --threads asked for (None: the default) and the count to set (None: leave torch's)."""

    requested: int | None
    count: int | None
    chosen_by: str


def choose_threads(threads: int | None, spec: LSTMSpec | None, small_model_default: bool = True) -> ThreadChoice:
    """An explicit --threads wins; otherwise one thread for a small model on the CPU (see
    SMALL_STEP_MACS), else torch's own count. `small_model_default=False` (bench, which measures
    torch's behaviour) always keeps torch's count unless --threads is given."""
    threads = check_threads(threads)
    if threads is not None:
        return ThreadChoice(threads, threads, CHOSEN_BY_FLAG)
    if small_model_default and spec is not None and step_macs(spec) < SMALL_STEP_MACS:
        return ThreadChoice(None, 1, CHOSEN_SMALL)
    return ThreadChoice(None, None, CHOSEN_TORCH)


@dataclass(frozen=True)
class ThreadsInEffect:
    """What a running command reports: the count torch used and why."""

    count: int
    chosen_by: str


_active: ContextVar[ThreadsInEffect | None] = ContextVar("lstm_cli_threads", default=None)


def active_threads() -> ThreadsInEffect | None:
    """The threads of the command running now (inside thread_scope), or None outside one."""
    return _active.get()


@contextmanager
def thread_scope(choice: ThreadChoice) -> Iterator[ThreadsInEffect]:
    """Set torch's intra-op threads to choice.count for the block (nothing when None) and put
    the previous count back after, however the block ends."""
    import torch

    previous = torch.get_num_threads()
    if choice.count is not None and choice.count != previous:
        torch.set_num_threads(choice.count)
    effect = ThreadsInEffect(torch.get_num_threads(), choice.chosen_by)
    token = _active.set(effect)
    try:
        yield effect
    finally:
        _active.reset(token)
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
