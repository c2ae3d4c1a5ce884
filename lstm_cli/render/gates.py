"""Rich rendering of a GatesResult: statistics with per-step sparklines, the per-step table,
a units x time heatmap, and the progress bar shown on stderr while gates are captured."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from lstm_cli.gates import GatesResult, Heatmap, LayerGates
from lstm_cli.render.common import (
    STEP_ROWS,
    bin_values,
    bins_sentence,
    compact,
    config_line,
    fit_table,
    format_diff,
    print_table,
    print_verdict,
    running_counts,
    shadow_lines,
    stderr_progress,
    step_bins,
    step_label,
)
from lstm_cli.render.units import format_percent
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


SPARK_MIN = 8  # narrower than this, the per-step sparklines go under the table
SPARK_MAX = 64


def sparkline(values: list[float | None], low: float, high: float) -> Text:
    """One coloured bar per value on the scale [low, high]; blank where there is none."""
    text = Text(no_wrap=True, overflow="crop")
    for value in values:
        if value is None or math.isnan(value):
            text.append(" ")
        else:
            k = level(value, low, high)
            text.append(BARS[k], style=COLOURS[k])
    return text


def number(value: float) -> str:
    """A gate statistic: three decimals (every gate lies in [-1, 1])."""
    return "nan" if value != value else f"{value:.3f}"


def magnitude(value: float) -> str:
    """|c|: three significant digits (cell states reach the hundreds)."""
    return "nan" if value != value else f"{value:.3g}"


def layer_label(entry: LayerGates) -> str:
    return f"{entry.layer} {DIRECTION_SHORT[entry.direction]}"


def gates_table(result: GatesResult, spark_bins: list[tuple[int, int]] | None) -> Table:
    """Statistics of every gate; with `spark_bins`, a last column drawing each gate's per-step
    mean, one character per bin of steps."""
    t = result.thresholds
    caption = (
        f"saturated: i, f, o below {t['low']:g} / above {t['high']:g}; g below {t['tanh_low']:g} / "
        f"above {t['tanh_high']:g}. |c|: mean and max of the cell state's magnitude."
    )
    if spark_bins is not None:
        caption += " per step: " + spark_sentence(spark_bins)
    table = Table(
        title="Gates: every layer, direction and step" + (" (valid steps only)" if result.config["lengths"] else ""),
        title_justify="left", caption=caption, caption_justify="left",
    )
    compact(table)
    table.add_column("layer", no_wrap=True)
    table.add_column("gate", no_wrap=True)
    for name in ("mean", "std", "min", "max"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("left", justify="right", no_wrap=True)
    table.add_column("right", justify="right", no_wrap=True)
    if spark_bins is not None:
        table.add_column("per step", no_wrap=True)
    for entry in result.layers:
        for k, gate in enumerate(GATES):
            s = entry.gates[gate]
            row = [
                layer_label(entry) if k == 0 else "", gate,
                number(s.mean), number(s.std), number(s.min), number(s.max),
                format_percent(s.left_saturated), format_percent(s.right_saturated),
            ]
            if spark_bins is not None:
                row.append(sparkline(bin_values(entry.per_step[gate], spark_bins), *gate_range(gate)))
            table.add_row(*row)
        cell = ["", "|c|", magnitude(entry.cell.mean_abs), "", "", magnitude(entry.cell.max_abs), "", ""]
        table.add_row(*cell, *([""] if spark_bins is not None else []), end_section=True)
    return table


def spark_sentence(bins: list[tuple[int, int]]) -> str:
    k = bins[0][1] - bins[0][0]
    every = "" if k == 1 else f"; 1 char = {k} steps (their mean)"
    return (
        "each gate's mean over units and sequences at each step, on its range "
        f"(i, f, o 0..1, g -1..1), t = 0 on the left{every}"
    )


def print_gates_table(result: GatesResult, console: Console) -> None:
    """The statistics with a sparkline column when the numbers leave room for one; otherwise
    the sparklines on lines of their own under the table (dropped, with a note, when even
    those would be too narrow). Numbers always get their full width first."""
    steps = len(result.layers[0].per_step["i"]) if result.layers else 0
    plain = gates_table(result, None)
    used = fit_table(plain, console.width)
    room = console.width - used - 2  # a column costs its width, a divider and its padding
    if steps and room >= SPARK_MIN:
        bins, _ = step_bins(steps, min(room, SPARK_MAX))
        table = gates_table(result, bins)
        if fit_table(table, console.width) <= console.width:
            console.print(table)
            return
    console.print(plain)
    if steps:
        sparklines_below(result, steps, console)


def sparklines_below(result: GatesResult, steps: int, console: Console) -> None:
    labels = [layer_label(entry) for entry in result.layers]
    pad = max(map(len, labels))
    room = min(SPARK_MAX, console.width - pad - 3)  # "label gate " before the bars
    if room < SPARK_MIN:
        console.print(Text(f"per-step sparklines left out: {console.width} columns are too few; "
                           "--per-step prints the per-step means"))
        return
    bins, _ = step_bins(steps, room)
    console.print(Text("Per step: " + spark_sentence(bins)))
    for entry, label in zip(result.layers, labels):
        for k, gate in enumerate(GATES):
            line = Text(f"{label if k == 0 else '':<{pad}} {gate} ", no_wrap=True)
            line.append_text(sparkline(bin_values(entry.per_step[gate], bins), *gate_range(gate)))
            console.print(line)


UNIT_SHARES = (0.5, 0.9)  # --units counts units saturated more than these fractions of the time
TOP_UNITS = 5


def unit_counts(values: list[float]) -> list[int]:
    """How many units exceed each of UNIT_SHARES."""
    return [sum(v > share for v in values) for share in UNIT_SHARES]


def top_units(values: list[float], most: int = TOP_UNITS) -> list[tuple[int, float]]:
    """The `most` units with the largest fractions (ties: lower index first), zeros left out."""
    ranked = sorted(range(len(values)), key=lambda u: (-values[u], u))
    return [(u, values[u]) for u in ranked[:most] if values[u] > 0]


def units_table(result: GatesResult) -> Table:
    """--units: per layer x direction x gate, how many units are right- and left-saturated more
    than 50% and 90% of the time, and the most right-saturated units."""
    H = result.config["hidden_size"]
    valid = " and valid steps" if result.config["lengths"] else ""
    table = Table(
        title=f"Units: of the {H} units of each gate, how many are saturated more than 50% / 90% of the time",
        title_justify="left",
        caption=(f"fractions over every sequence{valid}; top: the {TOP_UNITS} most right-saturated units "
                 "as u<unit>:<fraction right-saturated> (- when none ever is)"),
        caption_justify="left",
    )
    compact(table)
    table.add_column("layer", no_wrap=True)
    table.add_column("gate", no_wrap=True)
    for side in ("right", "left"):
        for share in UNIT_SHARES:
            table.add_column(f"{side} >{share:.0%}", justify="right", no_wrap=True)
    table.add_column("top right-saturated units")
    for entry in result.layers:
        if entry.units is None:
            continue
        for k, gate in enumerate(GATES):
            unit = entry.units[gate]
            top = "  ".join(f"u{u}:{format_percent(v)}" for u, v in top_units(unit.right_saturated)) or "-"
            counts = unit_counts(unit.right_saturated) + unit_counts(unit.left_saturated)
            table.add_row(layer_label(entry) if k == 0 else "", gate, *map(str, counts), Text(top),
                          end_section=k == len(GATES) - 1)
    return table


def compare_table(result: GatesResult) -> Table:
    """--compare-weights / --compare-input: each gate's mean and saturated shares and |c| for
    the model (A) and the other weights or input (B); with --units, units right-saturated > 90%."""
    other = result.compare
    with_units = all(entry.units is not None for entry in result.layers + other.layers)
    if result.compare_what == "input":
        title = (f"What changed, same weights: A = {result.config['input_source']}; "
                 f"B = {other.config['input_source']}, from a zero state")
    else:
        title = f"What changed: A = the model, B = {compared_name(other)}, same input"
    table = Table(
        title=title,
        title_justify="left",
        caption="mean; right / left: share of values saturated (thresholds above); |c|: mean and max "
                "of the cell state's magnitude"
                + ("; units >90%: units right-saturated more than 90% of the time" if with_units else ""),
        caption_justify="left",
    )
    compact(table)
    table.add_column("layer", no_wrap=True)
    table.add_column("gate", no_wrap=True)
    for name in ("mean A", "mean B", "right A", "right B", "left A", "left B") + (("units >90% A", "B") if with_units else ()):
        table.add_column(name, justify="right", no_wrap=True)
    for entry, theirs in zip(result.layers, other.layers):
        for k, gate in enumerate(GATES):
            a, b = entry.gates[gate], theirs.gates[gate]
            cells = [number(a.mean), number(b.mean), format_percent(a.right_saturated), format_percent(b.right_saturated),
                     format_percent(a.left_saturated), format_percent(b.left_saturated)]
            if with_units:
                cells += [str(unit_counts(e.units[gate].right_saturated)[1]) for e in (entry, theirs)]
            table.add_row(layer_label(entry) if k == 0 else "", gate, *cells)
        # |c|: mean A, mean B in the mean columns, max A, max B in the next two
        cell = [magnitude(entry.cell.mean_abs), magnitude(theirs.cell.mean_abs),
                f"max {magnitude(entry.cell.max_abs)}", f"max {magnitude(theirs.cell.max_abs)}", "", ""]
        table.add_row("", "|c|", *cell, *(["", ""] if with_units else []), end_section=True)
    return table


def compared_name(other: GatesResult) -> str:
    source = other.config.get("source")
    if source:
        return f"{source['file']}" + (f" (key {source['key']!r})" if source["key"] else "")
    return f"untrained: PyTorch's init from seed {other.config['seed']}"


def per_step_table(entry: LayerGates, lengths: list[int] | None, all_steps: bool) -> Table:
    """Each gate's mean at every step, or over bins of steps so that at most about 64 rows
    show; with --lengths, how many sequences still run there."""
    steps = len(entry.per_step["i"])
    bins, k = step_bins(steps, steps if all_steps else STEP_ROWS)
    title = f"Per-step means, layer {entry.layer} {entry.direction}"
    if k > 1:
        title += f" ({bins_sentence(k, 'mean')})"
    table = Table(title=title, title_justify="left")
    compact(table)
    table.add_column("t", justify="right", no_wrap=True)
    running = running_counts(lengths, bins)
    if running is not None:
        table.add_column("running", justify="right", no_wrap=True)
    for gate in GATES:
        table.add_column(gate, justify="right", no_wrap=True)
    means = {g: bin_values(entry.per_step[g], bins) for g in GATES}
    for row, (start, stop) in enumerate(bins):
        cells = [step_label(start, stop)] + ([running[row]] if running is not None else [])
        cells += ["-" if means[g][row] is None else f"{means[g][row]:.4f}" for g in GATES]
        table.add_row(*cells)
    return table


def merge_columns(heatmap: Heatmap, most: int) -> tuple[list[list[int]], list[list[float | None]]]:
    """The heatmap's columns merged m at a time so that at most `most` remain: each merged
    cell the mean of its cells weighted by their steps (padding skipped)."""
    m = -(-len(heatmap.steps) // max(1, most))
    if m <= 1:
        return heatmap.steps, heatmap.values
    groups = [range(k, min(k + m, len(heatmap.steps))) for k in range(0, len(heatmap.steps), m)]
    steps = [[heatmap.steps[g[0]][0], heatmap.steps[g[-1]][1]] for g in groups]
    values = []
    for row in heatmap.values:
        merged = []
        for g in groups:
            parts = [(row[k], heatmap.steps[k][1] - heatmap.steps[k][0]) for k in g if row[k] is not None]
            weight = sum(w for _, w in parts)
            merged.append(sum(v * w for v, w in parts) / weight if parts else None)
        values.append(merged)
    return steps, values


def heatmap_lines(heatmap: Heatmap, width: int = 80) -> Group:
    """Rows = units (or groups of them), columns = steps (or bins of them); bar height and
    colour give the value on the gate's range; blank = padding. Narrower than its 64 columns
    need, bins are merged so that every step still shows."""
    low, high = heatmap.value_range
    name = "cell state c" if heatmap.gate == "c" else f"{heatmap.gate} ({GATE_MEANING[heatmap.gate]})"
    title = Text(f"Heatmap: layer {heatmap.layer} {heatmap.direction} {name}, sequence {heatmap.sequence}",
                 style="bold")
    labels = [f"u{u0}" if u1 - u0 == 1 else f"u{u0}-{u1 - 1}" for u0, u1 in heatmap.units]
    pad = max(len(label) for label in labels)
    steps, values = merge_columns(heatmap, max(1, min(HEATMAP_COLUMNS, width - pad - 1)))
    cell = max(1, min(4, min(HEATMAP_COLUMNS, width - pad - 1) // len(steps)))  # widen short sequences
    lines = [title]
    for label, row in zip(labels, values):
        line = Text(label.rjust(pad) + " ", no_wrap=True)
        for value in row:
            if value is None:
                line.append(" " * cell)
            else:
                k = level(value, low, high)
                line.append(BARS[k] * cell, style=COLOURS[k])
        lines.append(line)
    units = heatmap.units
    total = steps[-1][1]
    step_size, unit_size = steps[0][1] - steps[0][0], units[0][1] - units[0][0]
    cell_text = f"{step_size} step{'s' if step_size > 1 else ''} x {unit_size} unit{'s' if unit_size > 1 else ''}"
    if step_size > 1 or unit_size > 1:
        cell_text += " (mean)"
    axis = Text(" " * (pad + 1) + f"t = 0..{total - 1}, left to right; a cell: {cell_text}")
    legend = Text(" " * (pad + 1) + f"{low:.3g} ")
    for k, bar in enumerate(BARS):
        legend.append(bar, style=COLOURS[k])
    legend.append(f" {high:.3g}   (blank: padding)")
    return Group(*lines, axis, legend)


def render_gates(
    result: GatesResult, console: Console, per_step: bool = False, all_steps: bool = False, verbose: bool = False,
) -> None:
    console.print(Text(config_line(result.config, result.device, result.dtype), style="bold"))
    if verbose:
        console.print(Text(f"capture method: {result.method} ({result.method_reason})"))
        if result.gemm is not None:
            console.print(Text(f"step GEMM: {result.gemm['backend']} ({result.gemm['reason']})"))
    print_gates_table(result, console)
    if any(entry.units is not None for entry in result.layers):
        print_table(console, units_table(result))
    if result.compare is not None:
        print_table(console, compare_table(result))
    if per_step or all_steps:
        for entry in result.layers:
            print_table(console, per_step_table(entry, result.config["lengths"], all_steps))
    if result.heatmap is not None:
        console.print(heatmap_lines(result.heatmap, console.width))
    start = "nn.LSTM's h and its own c" if result.method == "recompute" else "its own state"
    print_verdict(console, result.checks, "gate capture", start, result.checked, result.rule)
    ends = result.end_to_end
    which = "" if ends.sequences is None else (
        f" on sequence{'s' if len(ends.sequences) > 1 else ''} {', '.join(map(str, ends.sequences))}")
    console.print(Text(
        f"End to end against {ends.reference}{which} (reported, not judged): output {format_diff(ends.output_max_abs_diff)}, "
        f"h_n {format_diff(ends.h_n_max_abs_diff)}, c_n {format_diff(ends.c_n_max_abs_diff)}"
    ))
    for line in shadow_lines(result.shadow, result.shadow_note):
        console.print(Text(line))
    plotted = (("exported", result.export), ("plotted", result.plot), ("plotted units", result.units_plot))
    for label, path in plotted:
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
