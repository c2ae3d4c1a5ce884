"""Rich rendering of a BenchResult, and the progress line bench shows while it times."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from lstm_cli.bench import BenchResult
from lstm_cli.render.common import source_lines


def render_bench(result: BenchResult, console: Console) -> None:
    console.print(Text(
        f"{result.device}, {result.dtype}, torch {result.torch}, {result.threads} thread(s); "
        f"median of {result.rows[0].repeat} interleaved runs after a warm-up", style="bold",
    ))
    for line in source_lines(result.config.get("source")):
        console.print(Text(line, style="bold"))
    table = Table(title="Time per forward pass, and ratio to nn.LSTM", title_justify="left")
    table.add_column("I, H, L, T, B")
    table.add_column("nn.LSTM", justify="right")
    table.add_column("cell loop", justify="right")
    table.add_column("x", justify="right")
    table.add_column("capture", justify="right")
    table.add_column("x", justify="right")
    table.add_column("GFLOP/s", justify="right")
    for row in result.rows:
        table.add_row(
            f"{row.input_size}, {row.hidden_size}, {row.num_layers}, {row.seq_len}, {row.batch_size}",
            _ms(row.fused_s), _ms(row.cells_s), f"{row.cells_ratio:.2f}",
            _ms(row.gates_s), f"{row.gates_ratio:.2f}", f"{row.fused_gflops:.3g}",
        )
    console.print(table)
    methods = ", ".join(sorted({row.gates_method for row in result.rows}))
    console.print(Text(
        f"cell loop: compare-cell's LSTMCell loop. capture: gates' capture ({methods}) given "
        "nn.LSTM's output; the gates command runs that forward once more for its checks. "
        "GFLOP/s: nn.LSTM's, by the formula in --help."
    ))


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms"
