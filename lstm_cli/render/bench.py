"""Rich rendering of a BenchResult, and the progress line bench shows while it times."""

from __future__ import annotations

import math

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from lstm_cli.bench import PATHS, BenchResult, row_label, row_spreads
from lstm_cli.render.common import source_lines
from lstm_cli.render.units import format_duration

# Widest realistic cells: "23.4 ms" / "0.0133x" / "GFLOP/s". Numeric columns never wrap or
# shrink below these; the configuration column takes what is left and wraps (60 columns fit).
DURATION_WIDTH = 7
RATIO_WIDTH = 7


def render_bench(result: BenchResult, console: Console) -> None:
    for line in header_lines(result):
        console.print(Text(line, style="bold"))
    for line in source_lines(result.config.get("source")):
        console.print(Text(line, style="bold"))
    console.print(bench_table(result))
    methods = ", ".join(sorted({row.gates_method for row in result.rows}))
    console.print(Text(
        "nn.LSTM: the fused module. cell loop: compare-cell's LSTMCell loop. capture: what gates "
        f"computes for its statistics ({methods}), with the nn.LSTM run it compares against; its "
        "checks come on top. x: median over nn.LSTM's median. GFLOP/s: the forward pass's FLOPs (the "
        "formula in --help) over each path's median"
        + (", valid steps only" if result.config.get("lengths") else "") + "."
    ))


def header_lines(result: BenchResult) -> list[str]:
    """Where it ran, with how many threads and why, how often, and what the input was."""
    threads = f"{result.threads} thread" + ("s" if result.threads != 1 else "")
    source = "--threads" if result.threads_flag is not None else "torch's default; set with --threads"
    repeat = result.rows[0].repeat
    lines = [(
        f"{result.device}, {result.dtype}, torch {result.torch}, {threads} ({source}); "
        f"fastest, median and slowest of {repeat} interleaved run{'s' if repeat != 1 else ''} "
        "per path after a warm-up"
    )]
    if result.config.get("unbatched"):
        lines.append("--unbatched: one sequence, input (L, H_in) without a batch dimension")
    lengths = result.config.get("lengths")
    if lengths:
        row = result.rows[0]
        lines.append(
            f"--lengths {','.join(map(str, lengths))}: packed; FLOPs count the {row.counted_steps} valid "
            f"steps of {row.seq_len * row.batch_size}"
        )
    return lines


def bench_table(result: BenchResult) -> Table:
    table = Table(
        title="Time per forward pass", title_justify="left",
        box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True, show_edge=False, pad_edge=False,
    )
    table.add_column("I, H, L, T, B", ratio=1, min_width=len("  cell loop"))
    for name in ("min", "median", "max"):
        table.add_column(name, justify="right", no_wrap=True, min_width=DURATION_WIDTH,
                         style="bold" if name == "median" else None)
    table.add_column("x", justify="right", no_wrap=True, min_width=RATIO_WIDTH)
    table.add_column("GFLOP/s", justify="right", no_wrap=True)
    for row in result.rows:
        table.add_row(Text(row_label(row), style="bold"))
        ratios = {"fused": None, "cells": row.cells_ratio, "gates": row.gates_ratio}
        gflops = {"fused": row.fused_gflops, "cells": row.cells_gflops, "gates": row.gates_gflops}
        spreads = row_spreads(row)
        for k, (key, name) in enumerate(PATHS.items()):
            s = spreads[key]
            table.add_row(
                f"  {name}", format_duration(s.min), format_duration(s.median), format_duration(s.max),
                format_ratio(ratios[key]), format_rate(gflops[key]), end_section=k == len(PATHS) - 1,
            )
    return table


def format_ratio(ratio: float | None) -> str:
    """Three significant digits and an x, never an exponent and never rounded to 0: 27.3x,
    2.38x, 0.0133x, 1234x; blank for nn.LSTM's own row."""
    if ratio is None:
        return ""
    return f"{_significant(ratio)}x"


def format_rate(gflops: float) -> str:
    """GFLOP/s to three significant digits, without an exponent: 0.00234, 0.473, 286, 45100."""
    return _significant(gflops)


def _significant(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    if value == 0:
        return "0"
    if value >= 99.95:
        return f"{value:.0f}"
    decimals = max(0, 2 - math.floor(math.log10(abs(value))))
    text = f"{value:.{decimals}f}"
    if float(text) >= 10 ** (3 - decimals) and decimals > 0:  # 9.996 -> "10.00": one decimal fewer
        text = f"{value:.{decimals - 1}f}"
    return text
