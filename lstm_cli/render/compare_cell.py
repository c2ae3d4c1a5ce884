"""Rich rendering of a CompareResult."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from lstm_cli.compare_cell import FUSED_NAME, LOOP_NAME, CompareResult, Timing
from lstm_cli.shapes import shape_text
from lstm_cli.render.common import (
    STEP_ROWS,
    bin_values,
    bins_sentence,
    config_line,
    format_diff,
    log_sparkline,
    print_table,
    print_verdict,
    running_counts,
    shadow_lines,
    step_bins,
    step_label,
)
from lstm_cli.render.units import format_duration


def precision_sentence(result: CompareResult) -> str:
    """TF32 exists only on CUDA: say which matmuls ran there, nothing elsewhere."""
    if not result.device.startswith("cuda"):
        return ""
    return "; TF32 allowed" if result.tf32 else "; TF32 off (full-precision matmuls)"


def layer_label(layer: int, direction: str, bidirectional: bool) -> str:
    """0, or 0 fwd / 0 bwd when there are two directions (as gates labels them)."""
    return f"{layer} {'bwd' if direction == 'backward' else 'fwd'}" if bidirectional else str(layer)


def render_compare_cell(result: CompareResult, console: Console, all_steps: bool = False) -> None:
    console.print(Text(config_line(result.config, result.device, result.dtype), style="bold"))
    console.print(Text(f"{len(result.stack)} nn.LSTMCell loop(s) vs {result.reference}{precision_sentence(result)}"))

    both = any(row.direction == "backward" for row in result.stack)
    stack = Table(title=f"The loop ({result.mode})", title_justify="left")
    stack.add_column("layer", no_wrap=True)
    for column in ("input", "hidden"):
        stack.add_column(column, justify="right", no_wrap=True)
    for column in ("x_t", "h", "c"):  # shapes: may break after a comma, never inside a number
        stack.add_column(column)
    stack.add_column("params", justify="right", no_wrap=True)
    for row in result.stack:
        stack.add_row(
            layer_label(row.layer, row.direction, both), str(row.input_size), str(row.hidden_size),
            shape_text(row.x_shape), shape_text(row.h_shape), shape_text(row.c_shape), f"{row.parameters:,}",
        )
    print_table(console, stack)
    console.print(Text(f"output {shape_text(result.output_shape)}; each step feeds x_t and (h, c) to the cell"))

    print_verdict(console, result.checks, "LSTMCell loop", "the state the loop started it from",
                  result.checked, result.rule)

    ends = Table(title="End to end, loop vs reference (reported, not judged)", title_justify="left")
    ends.add_column("layer", no_wrap=True)
    ends.add_column("h_n |diff|", justify="right", no_wrap=True)
    ends.add_column("c_n |diff|", justify="right", no_wrap=True)
    for d in result.layers:
        ends.add_row(layer_label(d.layer, d.direction, both), format_diff(d.h_n_max_abs_diff), format_diff(d.c_n_max_abs_diff))
    print_table(console, ends)
    console.print(
        Text(f"output: max |diff| {format_diff(result.output_max_abs_diff)}, "
             f"{format_diff(result.output_max_rel_diff)} of max |output| (max |diff| / max |output|)")
    )
    for line in shadow_lines(result.shadow, result.shadow_note):
        console.print(Text(line))
    if result.step_max_abs_diff is not None:
        render_steps(result, console, all_steps)
    if result.timing is not None:
        for line in timing_lines(result.timing):
            console.print(Text(line))


def timing_lines(t: Timing) -> list[str]:
    """Fastest / median / slowest of each path, the ratio of medians, and a pointer to the note
    when the spread says the machine was busy."""
    threads = f", {t.threads} thread{'s' if t.threads != 1 else ''}"
    runs = f"{t.repeat} interleaved run{'s' if t.repeat != 1 else ''}"
    lines = [f"time, fastest / median / slowest of {runs}{threads}:"]
    for name, s in ((FUSED_NAME, t.fused), (LOOP_NAME, t.cells)):
        lines.append(f"  {name}: {format_duration(s.min)} / {format_duration(s.median)} / {format_duration(s.max)}")
    ratio = f"  ratio of medians {t.ratio:.2f}x"
    if not t.steady:
        ratio += " (the machine looked busy: see the note)"
    return lines + [ratio]


def render_steps(result: CompareResult, console: Console, all_steps: bool = False) -> None:
    """--steps: how the end-to-end difference grows, beside each path's distance from float64
    and the growth of a 1e-7 change of the input (the model's own sensitivity). Long sequences
    are binned (each row the largest of its steps) unless --all-steps."""
    shadow = result.shadow
    values = result.step_max_abs_diff
    bins, k = step_bins(len(values), len(values) if all_steps else STEP_ROWS)
    title = "Output difference at every step"
    if k > 1:
        title += f" ({bins_sentence(k, 'max')})"
    table = Table(title=title, title_justify="left")
    table.add_column("t", justify="right", no_wrap=True)
    running = running_counts(result.config.get("lengths"), bins)
    if running is not None:
        table.add_column("running", justify="right", no_wrap=True)
    table.add_column("loop - ref", justify="right", no_wrap=True)
    columns = []
    if shadow is not None:
        shadowed = len(shadow.growth)
        for error in shadow.errors:
            table.add_column(f"{error.path} - f64", justify="right", no_wrap=True)
            columns.append(error.per_step)
        table.add_column("1e-7 grows to", justify="right", no_wrap=True)
        columns.append(shadow.growth)
        # steps past the shadowed ones have no value: None, shown as "-"
        columns = [bin_values(list(c[:shadowed]) + [None] * (len(values) - shadowed), bins, "max") for c in columns]
    loop = bin_values(values, bins, "max")
    for row, (start, stop) in enumerate(bins):
        cells = [step_label(start, stop)] + ([running[row]] if running is not None else [])
        cells.append(format_diff(loop[row]))
        cells += [format_diff(column[row]) for column in columns]
        table.add_row(*cells)
    print_table(console, table)

    # one character per step after the label when they fit; otherwise bins of steps on a line
    # of their own, as wide as the console
    every = ""
    if len(values) > console.width:
        line_bins, per_char = step_bins(len(values), console.width)
        values = bin_values(values, line_bins, "max")
        every = f", 1 char = {per_char} steps, the largest"
    line, scale = log_sparkline(values)
    console.print(Text(f"loop - ref along the sequence ({scale}{every}):"))
    console.print(Text(line), no_wrap=True)
