"""Rich rendering of a CompareResult."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from lstm_cli.compare_cell import CompareResult
from lstm_cli.render.common import checks_table, config_line, format_diff, format_shape, sparkline


def render_compare_cell(result: CompareResult, console: Console) -> None:
    console.print(Text(config_line(result.config, result.device, result.dtype), style="bold"))
    precision = "TF32 allowed" if result.tf32 else "full-precision matmuls (TF32 off)"
    console.print(Text(f"{len(result.stack)} nn.LSTMCell loop(s) vs {result.reference}; {precision}"))

    stack = Table(title=f"The loop ({result.mode})", title_justify="left")
    for column in ("layer", "direction", "input", "hidden", "x_t", "h", "c"):
        stack.add_column(column)
    stack.add_column("params", justify="right")
    for row in result.stack:
        stack.add_row(
            str(row.layer), row.direction, str(row.input_size), str(row.hidden_size),
            format_shape(row.x_shape), format_shape(row.h_shape), format_shape(row.c_shape), f"{row.parameters:,}",
        )
    console.print(stack)
    console.print(Text(f"output {format_shape(result.output_shape)}; each step feeds x_t and (h, c) to the cell"))

    console.print(checks_table(result.checks, title="LSTMCell loop vs reference, max |difference|"))
    console.print(
        Text(f"output: max |diff| {format_diff(result.output_max_abs_diff)}, "
             f"relative to max |output| {format_diff(result.output_max_rel_diff)}")
    )
    if result.step_max_abs_diff is not None:
        steps = Table(title="Output difference at every step", title_justify="left")
        steps.add_column("t", justify="right")
        steps.add_column("max |diff|", justify="right")
        for t, value in enumerate(result.step_max_abs_diff):
            steps.add_row(str(t), format_diff(value))
        console.print(steps)
        console.print(Text("along the sequence: " + sparkline(result.step_max_abs_diff, low=0.0)))
    if result.timing is not None:
        t = result.timing
        console.print(
            Text(f"time (median of {t.repeat}): nn.LSTM {t.fused_s * 1e3:.3g} ms, "
                 f"LSTMCell loop {t.cells_s * 1e3:.3g} ms, ratio {t.ratio:.2f}x")
        )
