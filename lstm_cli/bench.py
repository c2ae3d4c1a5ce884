"""`lstm-cli bench`: the three ways this tool runs an LSTM, timed side by side on one device in
one process: the fused nn.LSTM forward, compare-cell's stacked LSTMCell loop, and gates' capture.
Returns a plain result; never prints."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from lstm_cli import cells, timing
from lstm_cli.gates import capture_gates, extra_elements
from lstm_cli.gates.reference import make_reference
from lstm_cli.gates.run import plan_capture
from lstm_cli.gates_options import GatesOptions
from lstm_cli.model import prepare, run_lstm
from lstm_cli.runtime import collect_warnings
from lstm_cli.spec import BENCH_PRESETS, SIZE_FIELDS, LSTMSpec
from lstm_cli.threads import choose_threads, thread_scope
from lstm_cli.timing import Spread, TimedPath, interleaved_seconds, spread

PATHS = {"fused": "nn.LSTM", "cells": "cell loop", "gates": "capture"}


@dataclass
class BenchRow:
    input_size: int
    hidden_size: int
    num_layers: int
    seq_len: int
    batch_size: int  # the --batch-size flag; no batch dimension when `unbatched`
    gates_method: str
    repeat: int
    fused_s: float  # medians of the `repeat` timed runs
    cells_s: float
    gates_s: float
    cells_ratio: float  # cells_s / fused_s
    gates_ratio: float
    gflop: float  # forward FLOPs of one pass, see forward_flops
    fused_gflops: float  # gflop / each median
    cells_gflops: float
    gates_gflops: float
    fused_min_s: float = 0.0  # fastest and slowest timed run of each path
    fused_max_s: float = 0.0
    cells_min_s: float = 0.0
    cells_max_s: float = 0.0
    gates_min_s: float = 0.0
    gates_max_s: float = 0.0
    fused_runs_s: list[float] | None = None  # every timed run, in the order taken
    cells_runs_s: list[float] | None = None
    gates_runs_s: list[float] | None = None
    unbatched: bool = False
    counted_steps: int = 0  # (sequence, step) pairs the FLOPs count: sum of --lengths, else T x batch


@dataclass
class BenchResult:
    command: str
    config: dict
    device: str
    dtype: str
    torch: str
    threads: int  # intra-op threads the timed runs used (torch.get_num_threads() during them)
    rows: list[BenchRow]
    checks: list
    notes: list[str]
    passed: bool | None = None  # null: bench times, it checks nothing (never a vacuous true)
    threads_flag: int | None = None  # --threads N, or None for torch's default
    steady: bool = True  # False when a note says the timings may not be trustworthy


def counted_steps(spec: LSTMSpec) -> int:
    """(sequence, step) pairs a forward pass computes: with --lengths only the valid steps
    (their sum; a packed nn.LSTM skips the rest), else seq_len x batch (batch 1 unbatched)."""
    if spec.lengths is not None:
        return sum(spec.lengths)
    return spec.seq_len * (1 if spec.unbatched else spec.batch_size)


def forward_flops(spec: LSTMSpec) -> int:
    """FLOPs of one forward pass, counting the gate GEMMs (a multiply-add = 2 FLOPs) and the
    projection; activations and element-wise updates are left out. Per direction and valid
    step of each sequence: layer 0 needs 8H(I + H_out), each later layer 8H(D*H_out + H_out),
    and with proj_size P every layer adds 2PH. Without projection or --lengths this is the
    issue's 8*B*T*H*((I+H) + (L-1)*(D*H+H)) per direction; with --lengths, B*T becomes the sum
    of the lengths."""
    D, H, P, h_out = spec.num_directions, spec.hidden_size, spec.proj_size, spec.h_out
    per_step = sum(8 * H * (spec.layer_input_size(k) + h_out) + 2 * P * H for k in range(spec.num_layers))
    return D * counted_steps(spec) * per_step


def bench_specs(base: LSTMSpec, preset: str | None, sweep: tuple[str, list[int]] | None) -> list[LSTMSpec]:
    """One spec per row: the base flags, a preset's sizes over them, then each sweep value."""
    if preset is not None:
        base = replace(base, **dict(zip(SIZE_FIELDS, BENCH_PRESETS[preset])))
    if sweep is None:
        return [base]
    field, values = sweep
    return [replace(base, **{field: value}) for value in values]


def row_label(row: BenchRow) -> str:
    """I, H, L, T, B; "unbatched" in B's place for input without a batch dimension."""
    batch = "unbatched" if row.unbatched else str(row.batch_size)
    return f"{row.input_size}, {row.hidden_size}, {row.num_layers}, {row.seq_len}, {batch}"


def run_bench(
    specs: list[LSTMSpec], repeat: int = 5, method: str = "auto",
    progress: Callable[..., None] | None = None, threads: int | None = None,
    clock: Callable[[], float] | None = None, say: Callable[[str], None] | None = None,
) -> BenchResult:
    """Time every spec's three paths. `threads` sets torch's intra-op threads for the run (and
    puts the previous number back after); `clock` goes to interleaved_seconds (tests fake it);
    `say(line)` hears, for each row, how long its timed rounds should take, measured on its
    warm-up round (a large preset runs for minutes: the user should know before waiting)."""
    with thread_scope(choose_threads(threads, None, small_model_default=False)):
        return _run_bench(specs, repeat, method, progress, threads, clock, say)


def expected_line(row: int, rows: int, spec: LSTMSpec, round_s: float, repeat: int) -> str:
    """What one row's warm-up round says of the rest: its timed rounds take about repeat times as long."""
    batch = "unbatched" if spec.unbatched else f"batch {spec.batch_size}"
    return (f"bench: row {row} of {rows} (seq-len {spec.seq_len}, {batch}, hidden {spec.hidden_size}): "
            f"one round of the three paths took {format_seconds(round_s)}; {repeat} timed round(s) take about "
            f"{format_seconds(round_s * repeat)} more")


def format_seconds(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1e3:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def _run_bench(specs, repeat, method, progress, threads, clock, say=None) -> BenchResult:
    notes: list[str] = []
    rows = []
    ran_threads = torch.get_num_threads()
    with collect_warnings(notes):
        for row_number, spec in enumerate(specs, start=1):
            if progress is not None:
                batch = "unbatched" if spec.unbatched else f"batch {spec.batch_size}"
                progress(0, f"timing seq-len {spec.seq_len}, {batch}, hidden {spec.hidden_size}")
            prepared = prepare(spec, extra_elements=extra_elements(spec, GatesOptions()), command="bench")
            lstm, x, device, initial = prepared.lstm, prepared.x, prepared.placement.device, prepared.initial
            plan = plan_capture(spec, lstm, x, method)
            method_name, shadowed = plan.choice.name, plan.sample.sequences[: plan.shadowed]

            def gates_path():
                """What gates computes for its statistics (its checks aside): the reference
                nn.LSTM run its method needs, then the capture."""
                reference = make_reference(spec, lstm, x, method_name, False, shadowed, initial)
                return capture_gates(lstm, x, spec, reference, plan.method, initial=initial)

            stack = cells.cells_from_lstm(lstm)
            times = interleaved_seconds(
                {
                    "fused": lambda: run_lstm(lstm, x, spec, initial),
                    "cells": lambda: cells.run_cells(stack, x, spec, initial=initial),
                    "gates": gates_path,
                },
                device, repeat=repeat, warmup=1, clock=clock,
                on_warmup=None if say is None else
                lambda s, n=row_number, spec=spec: say(expected_line(n, len(specs), spec, s, repeat)),
            )
            fused, looped, gates = (spread(times[k]) for k in PATHS)
            gflop = forward_flops(spec) / 1e9
            rows.append(BenchRow(
                *(getattr(spec, f) for f in SIZE_FIELDS), method_name, repeat,
                fused.median, looped.median, gates.median,
                _ratio(looped.median, fused.median), _ratio(gates.median, fused.median),
                gflop, _ratio(gflop, fused.median), _ratio(gflop, looped.median), _ratio(gflop, gates.median),
                fused.min, fused.max, looped.min, looped.max, gates.min, gates.max,
                times["fused"], times["cells"], times["gates"],
                spec.unbatched, counted_steps(spec),
            ))
            if progress is not None:
                progress(1)
    timing_notes = [note for note in (spread_note(rows), stall_note(rows, str(device), ran_threads)) if note]
    notes[:0] = timing_notes
    first = specs[0]
    if first.dropout:
        notes.append("dropout acts in train mode only; every path ran in eval mode, so none applied")
    return BenchResult(
        command="bench",
        config=first.config(),
        device=str(prepared.placement.device),
        dtype=prepared.placement.dtype_name,
        torch=torch.__version__,
        threads=ran_threads,
        rows=rows,
        checks=[],
        notes=notes,
        threads_flag=threads,
        steady=not timing_notes,
    )


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("inf")


def row_spreads(row: BenchRow) -> dict[str, Spread]:
    """Each path's fastest, median and slowest run, by PATHS key."""
    return {
        "fused": Spread(row.fused_min_s, row.fused_s, row.fused_max_s),
        "cells": Spread(row.cells_min_s, row.cells_s, row.cells_max_s),
        "gates": Spread(row.gates_min_s, row.gates_s, row.gates_max_s),
    }


def spread_note(rows: list[BenchRow]) -> str | None:
    """timing.spread_note over every row's three paths (each named by its row when several)."""
    several = len(rows) > 1
    return timing.spread_note([
        TimedPath(PATHS[key], s, row_label(row) if several else "")
        for row in rows for key, s in row_spreads(row).items()
    ])


def stall_note(rows: list[BenchRow], device: str, threads: int) -> str | None:
    """timing.stall_note for the cell loop against nn.LSTM, row by row."""
    several = len(rows) > 1
    return timing.stall_note(
        [(row.cells_ratio, row_label(row) if several else "") for row in rows], "the cell loop", device, threads
    )
