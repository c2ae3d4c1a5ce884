"""Rich rendering of a GatesResult: statistics with per-step sparklines, the per-step table,
a units x time heatmap, and the progress bar shown on stderr while gates are captured."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from lstm_cli.gates import GatesResult, Heatmap, LayerGates
from lstm_cli.render.common import config_line, format_diff, print_verdict, shadow_lines, stderr_progress
from lstm_cli.spec import GATE_MEANING, GATES, LSTMSpec

BARS = "▁▂▃▄▅▆▇█"
# Eight steps from dark blue through teal and green to yellow (viridis), one per bar height;
# without colour the bar height alone carries the value.
COLOURS = ("#440154", "#46327e", "#365c8d", "#277f8e", "#1fa187", "#4ac16d", "#a0da39", "#fde725")
HEATMAP_COLUMNS = 64  # at most: with the unit labels the heatmap fits 80 columns
DIRECTION_SHORT = {"forward": "fwd", "backward": "bwd"}


def gate_range(gate: str) -> tuple[float, float]:
    return (-1.0, 1.0) if gate == "g" else (0.0, 1.0)


def level(value: float, low: float, high: float) -> int:
    """0..7: which bar a value maps to on the scale [low, high]."""
    if high <= low:
        return len(BARS) - 1
    position = (value - low) / (high - low)
    return min(len(BARS) - 1, max(0, int(position * len(BARS))))


def binned(values: list[float | None], width: int) -> list[float | None]:
    """At most `width` values: the mean of each run of consecutive steps (None ignored)."""
    if len(values) <= width:
        return list(values)
    out = []
    for k in range(width):
        part = [v for v in values[k * len(values) // width : (k + 1) * len(values) // width] if v is not None]
        out.append(sum(part) / len(part) if part else None)
    return out


def sparkline(values: list[float | None], width: int, low: float, high: float) -> Text:
    text = Text(no_wrap=True, overflow="crop")
    for value in binned(values, width):
        if value is None or math.isnan(value):
            text.append(" ")
        else:
            k = level(value, low, high)
            text.append(BARS[k], style=COLOURS[k])
    return text


def _number(value: float) -> str:
    return "nan" if value != value else f"{value:.3f}"


def _percent(value: float) -> str:
    if value == 0:
        return "0"
    return f"{100 * value:.1f}%" if value >= 0.001 else "<0.1%"


def gates_table(result: GatesResult, width: int) -> Table:
    spark_width = max(8, min(48, width - 58))
    t = result.thresholds
    table = Table(
        title="Gates: every layer, direction and step" + (" (valid steps only)" if result.config["lengths"] else ""),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        caption=(
            f"saturated: i, f, o below {t['low']:g} / above {t['high']:g}; g below {t['tanh_low']:g} / "
            f"above {t['tanh_high']:g}. |c|: mean and max of the cell state's magnitude. "
            "per step: each gate's mean over units and sequences, on its range (i, f, o 0..1, g -1..1)"
        ),
        caption_justify="left",
    )
    table.add_column("layer", no_wrap=True)
    table.add_column("gate", no_wrap=True)
    for name in ("mean", "std", "min", "max"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("left", justify="right", no_wrap=True)
    table.add_column("right", justify="right", no_wrap=True)
    table.add_column("per step", no_wrap=True, overflow="crop", max_width=spark_width)
    for entry in result.layers:
        label = f"{entry.layer} {DIRECTION_SHORT[entry.direction]}"
        for k, gate in enumerate(GATES):
            s = entry.gates[gate]
            table.add_row(
                label if k == 0 else "",
                gate,
                _number(s.mean), _number(s.std), _number(s.min), _number(s.max),
                _percent(s.left_saturated), _percent(s.right_saturated),
                sparkline(entry.per_step[gate], spark_width, *gate_range(gate)),
            )
        table.add_row("", "|c|", _number(entry.cell.mean_abs), "", "", _number(entry.cell.max_abs), "", "", "",
                      end_section=True)
    return table


def per_step_tables(entry: LayerGates) -> Table:
    table = Table(
        title=f"Per-step means, layer {entry.layer} {entry.direction}", title_justify="left",
        box=box.SIMPLE_HEAD, padding=(0, 1),
    )
    table.add_column("t", justify="right")
    for gate in GATES:
        table.add_column(gate, justify="right")
    for t in range(len(entry.per_step["i"])):
        table.add_row(str(t), *("-" if entry.per_step[g][t] is None else f"{entry.per_step[g][t]:.4f}" for g in GATES))
    return table


def heatmap_lines(heatmap: Heatmap) -> Group:
    """Rows = units (or groups of them), columns = steps (or bins of them); bar height and
    colour give the value on the gate's range; blank = padding."""
    low, high = heatmap.value_range
    name = "cell state c" if heatmap.gate == "c" else f"{heatmap.gate} ({GATE_MEANING[heatmap.gate]})"
    title = Text(f"Heatmap: layer {heatmap.layer} {heatmap.direction} {name}, sequence {heatmap.sequence}",
                 style="bold")
    labels = [f"u{u0}" if u1 - u0 == 1 else f"u{u0}-{u1 - 1}" for u0, u1 in heatmap.units]
    pad = max(len(label) for label in labels)
    cell = max(1, min(4, HEATMAP_COLUMNS // len(heatmap.steps)))  # widen short sequences
    lines = [title]
    for label, row in zip(labels, heatmap.values):
        line = Text(label.rjust(pad) + " ", no_wrap=True)
        for value in row:
            if value is None:
                line.append(" " * cell)
            else:
                k = level(value, low, high)
                line.append(BARS[k] * cell, style=COLOURS[k])
        lines.append(line)
    steps, units = heatmap.steps, heatmap.units
    total = steps[-1][1]
    step_size, unit_size = steps[0][1] - steps[0][0], units[0][1] - units[0][0]
    cell_text = f"{step_size} step{'s' if step_size > 1 else ''} x {unit_size} unit{'s' if unit_size > 1 else ''}"
    if step_size > 1 or unit_size > 1:
        cell_text += " (mean)"
    axis = Text(" " * (pad + 1) + f"t = 0..{total - 1}, left to right; a cell: {cell_text}",
                no_wrap=True, overflow="ellipsis")
    legend = Text(" " * (pad + 1) + f"{low:.3g} ", no_wrap=True)
    for k, bar in enumerate(BARS):
        legend.append(bar, style=COLOURS[k])
    legend.append(f" {high:.3g}   (blank: padding)")
    return Group(*lines, axis, legend)


def render_gates(result: GatesResult, console: Console, per_step: bool = False) -> None:
    console.print(Text(config_line(result.config, result.device, result.dtype), style="bold"))
    console.print(Text(f"capture method: {result.method} ({result.method_reason})"))
    console.print(gates_table(result, console.width))
    if per_step:
        for entry in result.layers:
            console.print(per_step_tables(entry))
    if result.heatmap is not None:
        console.print(heatmap_lines(result.heatmap))
    start = "nn.LSTM's h and its own c" if result.method == "recompute" else "its own state"
    print_verdict(console, result.checks, "gate capture", start, result.checked, result.rule)
    ends = result.end_to_end
    console.print(Text(
        f"End to end against {ends.reference} (reported, not judged): output {format_diff(ends.output_max_abs_diff)}, "
        f"h_n {format_diff(ends.h_n_max_abs_diff)}, c_n {format_diff(ends.c_n_max_abs_diff)}"
    ))
    for line in shadow_lines(result.shadow, result.shadow_note):
        console.print(Text(line))
    for label, path in (("exported", result.export), ("plotted", result.plot)):
        if path is not None:
            console.print(Text(f"{label}: {path}"))


# Show a progress bar only when someone watches a terminal and the capture takes a while.
PROGRESS_MIN_STEPS = 2000


@contextlib.contextmanager
def capture_progress(spec: LSTMSpec) -> Iterator[Callable[..., None] | None]:
    """A callback advancing a Rich progress bar on stderr (only when stderr is a terminal and
    the run has many steps); None otherwise. Never writes to stdout."""
    total = spec.num_layers * spec.num_directions * spec.seq_len
    if total < PROGRESS_MIN_STEPS:
        yield None
        return
    with stderr_progress(total, "steps", "nn.LSTM forward") as advance:
        yield advance
