"""`lstm-cli bench`: the three ways this tool runs an LSTM, timed side by side on one device in
one process: the fused nn.LSTM forward, compare-cell's stacked LSTMCell loop, and gates' capture.
Returns a plain result; never prints."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from lstm_cli import cells
from lstm_cli.gates import LoopCapture, RecomputeCapture, capture_gates, choose_method, extra_elements
from lstm_cli.gates_options import GatesOptions
from lstm_cli.model import prepare, run_lstm
from lstm_cli.runtime import collect_warnings
from lstm_cli.spec import BENCH_PRESETS, SIZE_FIELDS, LSTMSpec
from lstm_cli.timing import interleaved_seconds


@dataclass
class BenchRow:
    input_size: int
    hidden_size: int
    num_layers: int
    seq_len: int
    batch_size: int
    gates_method: str
    repeat: int
    fused_s: float
    cells_s: float
    gates_s: float
    cells_ratio: float
    gates_ratio: float
    gflop: float  # forward FLOPs of one pass, see forward_flops
    fused_gflops: float
    cells_gflops: float
    gates_gflops: float


@dataclass
class BenchResult:
    command: str
    config: dict
    device: str
    dtype: str
    torch: str
    threads: int
    rows: list[BenchRow]
    checks: list
    notes: list[str]
    passed: bool = True


def forward_flops(spec: LSTMSpec) -> int:
    """FLOPs of one forward pass, counting the gate GEMMs (a multiply-add = 2 FLOPs) and the
    projection; activations and element-wise updates are left out. Per direction and step, for
    each sequence: layer 0 needs 8H(I + H_out), each later layer 8H(D*H_out + H_out), and with
    proj_size P every layer adds 2PH. Without projection this is the issue's
    8*B*T*H*((I+H) + (L-1)*(D*H+H)) per direction."""
    D, H, P, h_out = spec.num_directions, spec.hidden_size, spec.proj_size, spec.h_out
    batch = 1 if spec.unbatched else spec.batch_size
    per_step = sum(8 * H * (spec.layer_input_size(k) + h_out) + 2 * P * H for k in range(spec.num_layers))
    return D * batch * spec.seq_len * per_step


def bench_specs(base: LSTMSpec, preset: str | None, sweep: tuple[str, list[int]] | None) -> list[LSTMSpec]:
    """One spec per row: the base flags, a preset's sizes over them, then each sweep value."""
    if preset is not None:
        base = replace(base, **dict(zip(SIZE_FIELDS, BENCH_PRESETS[preset])))
    if sweep is None:
        return [base]
    field, values = sweep
    return [replace(base, **{field: value}) for value in values]


def run_bench(
    specs: list[LSTMSpec], repeat: int = 5, method: str = "auto",
    progress: Callable[..., None] | None = None,
) -> BenchResult:
    notes: list[str] = []
    rows = []
    with collect_warnings(notes):
        for spec in specs:
            if progress is not None:
                progress(0, f"timing seq-len {spec.seq_len}, batch {spec.batch_size}, hidden {spec.hidden_size}")
            extra = spec.parameter_count() + extra_elements(spec, GatesOptions())
            prepared = prepare(spec, extra_elements=extra)
            lstm, x, device = prepared.lstm, prepared.x, prepared.placement.device
            reference = run_lstm(lstm, x, spec)
            method_name, _ = choose_method(spec, device, method)
            capture = LoopCapture() if method_name == "loop" else RecomputeCapture()
            stack = cells.cells_from_lstm(lstm)
            times = interleaved_seconds(
                {
                    "fused": lambda: run_lstm(lstm, x, spec),
                    "cells": lambda: cells.run_cells(stack, x, spec),
                    "gates": lambda: capture_gates(lstm, x, spec, reference, capture),
                },
                device, repeat=repeat, warmup=1,
            )
            fused, looped, gates = (statistics.median(times[k]) for k in ("fused", "cells", "gates"))
            gflop = forward_flops(spec) / 1e9
            rows.append(BenchRow(
                *(getattr(spec, f) for f in SIZE_FIELDS), method_name, repeat,
                fused, looped, gates, looped / fused, gates / fused,
                gflop, gflop / fused, gflop / looped, gflop / gates,
            ))
            if progress is not None:
                progress(1)
    first = specs[0]
    if first.dropout:
        notes.append("dropout acts in train mode only; every path ran in eval mode, so none applied")
    return BenchResult(
        command="bench",
        config=first.config(),
        device=str(prepared.placement.device),
        dtype=prepared.placement.dtype_name,
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        rows=rows,
        checks=[],
        notes=notes,
    )
