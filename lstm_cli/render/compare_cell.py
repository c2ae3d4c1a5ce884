"""Rich rendering of a CompareResult."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from lstm_cli.compare_cell import CompareResult
from lstm_cli.render.common import config_line, format_diff, format_shape, print_verdict, shadow_lines, sparkline


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

    print_verdict(console, result.checks, "LSTMCell loop", "the state the loop started it from",
                  result.checked, result.rule)

    ends = Table(title="End to end, loop vs reference (reported, not judged)", title_justify="left")
    for column in ("layer", "direction", "h_n |diff|", "c_n |diff|"):
        ends.add_column(column, justify="right" if "|" in column else "left")
    for d in result.layers:
        ends.add_row(str(d.layer), d.direction, format_diff(d.h_n_max_abs_diff), format_diff(d.c_n_max_abs_diff))
    console.print(ends)
    console.print(
        Text(f"output: max |diff| {format_diff(result.output_max_abs_diff)}, "
             f"relative to max |output| {format_diff(result.output_max_rel_diff)}")
    )
    for line in shadow_lines(result.shadow, result.shadow_note):
        console.print(Text(line))
    if result.step_max_abs_diff is not None:
        render_steps(result, console)
    if result.timing is not None:
        t = result.timing
        console.print(
            Text(f"time (median of {t.repeat}): nn.LSTM {t.fused_s * 1e3:.3g} ms, "
                 f"LSTMCell loop {t.cells_s * 1e3:.3g} ms, ratio {t.ratio:.2f}x")
        )


def render_steps(result: CompareResult, console: Console) -> None:
    """--steps: how the end-to-end difference grows, beside each path's distance from float64
    and the growth of a 1e-7 change of the input (the model's own sensitivity)."""
    shadow = result.shadow
    table = Table(title="Output difference at every step", title_justify="left")
    table.add_column("t", justify="right")
    table.add_column("loop - ref", justify="right")
    if shadow is not None:
        for error in shadow.errors:
            table.add_column(f"{error.path} - f64", justify="right")
        table.add_column("1e-7 grows to", justify="right")
    for t, value in enumerate(result.step_max_abs_diff):
        row = [str(t), format_diff(value)]
        if shadow is not None:
            shadowed = t < len(shadow.growth)
            row += [format_diff(e.per_step[t]) if shadowed else "-" for e in shadow.errors]
            row.append(format_diff(shadow.growth[t]) if shadowed else "-")
        table.add_row(*row)
    console.print(table)
    console.print(Text("along the sequence: " + sparkline(result.step_max_abs_diff, low=0.0)))
