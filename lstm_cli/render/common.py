"""Pieces every rendering shares: checks table, configuration line, shapes, sparklines,
tables laid out for the console's width, step bins and the progress bar on stderr."""

from __future__ import annotations

import contextlib
import math
import sys
from contextvars import ContextVar
from collections.abc import Callable, Iterator

from rich import box
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

from lstm_cli.checks import Check
from lstm_cli.guard import LIVE_DISPLAYS


def format_diff(value: float | None) -> str:
    if value is None:
        return "-"
    if value != value:  # NaN
        return "NaN"
    return "0" if value == 0 else f"{value:.3g}"


def format_used(ratio: float | None) -> str:
    """How much of its bound the worst element used: 12%, <1%, 340% (failed)."""
    if ratio is None:
        return "-"
    if ratio != ratio or ratio == float("inf"):  # inf: a difference against a bound of 0
        return "NaN" if ratio != ratio else "∞"
    if 0 < ratio < 0.01:
        return "<1%"
    return f"{ratio * 100:.0f}%" if ratio < 100 else f"{ratio:.3g}x"


# -- tables that fit the console ------------------------------------------------------------
#
# Numbers are never cut: a column added with no_wrap=True holds numbers (or other cells that
# must stay whole) and gets its widest cell; the other columns wrap at spaces and are never
# narrower than their longest word. A table whose cells do not all fit on one line drops its
# box for a compact style; only as a last resort do the words of text columns fold.


def _plain(renderable) -> str:
    if isinstance(renderable, Text):
        return renderable.plain
    if isinstance(renderable, str):
        return Text.from_markup(renderable).plain
    return str(renderable)


def _line_width(text: str) -> int:
    return max((cell_len(line) for line in text.split("\n")), default=0)


def _word_width(text: str) -> int:
    return max((cell_len(word) for word in text.split()), default=0)


def _overhead(table: Table) -> int:
    """Characters a table adds to its cells' widths: edges, dividers and padding (as Rich
    itself counts them when it lays a table out)."""
    return table._extra_width + sum(table._get_padding_width(k) for k in range(len(table.columns)))


# One style for every table of one output: when any table of it is drawn compact (its cells do
# not all fit on one line in a box), all are (cli.emit renders twice when that happens). Mixed
# boxed and compact tables in one command's output read as a mistake.
_ALL_COMPACT: ContextVar[bool] = ContextVar("lstm_cli_all_compact", default=False)
_WENT_COMPACT: ContextVar[list | None] = ContextVar("lstm_cli_went_compact", default=None)


@contextlib.contextmanager
def table_style(all_compact: bool) -> Iterator[list]:
    """Within the block every table is compact when `all_compact`; the list it yields gets an
    entry whenever a table had to be compact."""
    went: list = []
    tokens = (_ALL_COMPACT.set(all_compact), _WENT_COMPACT.set(went))
    try:
        yield went
    finally:
        _WENT_COMPACT.reset(tokens[1])
        _ALL_COMPACT.reset(tokens[0])


def compact(table: Table) -> None:
    """No box lines but the header's rule, no outer edge, two spaces between columns (and, in
    cli.emit's dry run, a note that this output has a compact table: then all its tables are)."""
    if (went := _WENT_COMPACT.get()) is not None:
        went.append(table.title)
    table.box = box.SIMPLE_HEAD
    table.show_edge = False
    table.padding = (0, 1, 0, 0)


def render_uniformly(result, console, render: Callable) -> None:
    """Render with one table style for the whole output: a dry run into a buffer finds out
    whether any table of it is compact at this width; if so, every table is."""
    import io

    from rich.console import Console

    probe = Console(file=io.StringIO(), width=console.width, color_system=None, force_terminal=False)
    with table_style(all_compact=False) as went_compact:
        render(result, probe)
    with table_style(all_compact=bool(went_compact)):
        render(result, console)


def fit_table(table: Table, width: int) -> int:
    """Fix every column's width so the table fits `width` characters with every number whole:
    a no_wrap column is as wide as its widest cell (its header may wrap), a text column at
    least as wide as its longest word, and what is left goes to the widest text columns first.
    Returns the table's width."""
    columns = table.columns
    numeric, need, want, relaxed, body = [], [], [], [], []
    for column in columns:
        cells = [_plain(cell) for cell in column.cells]
        header = _plain(column.header)
        widest = max((_line_width(cell) for cell in cells), default=0)
        longest_word = max((_word_width(cell) for cell in cells), default=0)
        is_number = column.no_wrap
        numeric.append(is_number)
        if is_number:
            need.append(max(widest, _word_width(header), 1))
            relaxed.append(max(widest, 1))
            if isinstance(column.header, str):  # the header wraps, its numbers don't
                column.header = Text.from_markup(column.header, overflow="fold")
            column.header.no_wrap = False
        else:
            need.append(max(longest_word, _word_width(header), 1))
            relaxed.append(max(longest_word, 1))
            column.overflow = "fold"
        want.append(max(widest, _line_width(header), need[-1]))
        body.append(max(widest, need[-1]))  # every cell on one line, the header wrapped
        column.min_width = column.max_width = None
        column.ratio = None

    def fits(needs: list[int]) -> bool:
        return sum(needs) + _overhead(table) <= width

    if not fits(want) or _ALL_COMPACT.get():  # boxes only where every cell fits on one line
        compact(table)
    if not fits(need):
        table.padding = (0, 0, 0, 0)  # one space between columns
    if not fits(need):
        need = relaxed  # headers fold
    if not fits(need):
        need = [n if is_number else 1 for n, is_number in zip(need, numeric)]  # words fold

    # Shrink the widest column first: wrapping headers, then text, then numbers' headers.
    widths = list(want)
    excess = sum(widths) + _overhead(table) - width
    while excess > 0:
        shrinkable = (
            [k for k in range(len(columns)) if widths[k] > max(body[k], need[k])]
            or [k for k in range(len(columns)) if widths[k] > need[k] and not numeric[k]]
            or [k for k in range(len(columns)) if widths[k] > need[k]]
        )
        if not shrinkable:
            break  # even the numbers alone are wider: nothing left to give
        k = max(shrinkable, key=lambda k: widths[k])
        widths[k] -= 1
        excess -= 1
    for column, w in zip(columns, widths):
        column.width = w
    title = _plain(table.title) if table.title is not None else ""
    if title and _line_width(title) <= width:  # a title on one line, even over a narrow table
        table.min_width = _line_width(title)
    return sum(widths) + _overhead(table)


def print_table(console, table: Table) -> int:
    """Fit a table to the console and print it; returns its width."""
    used = fit_table(table, console.width)
    console.print(table)
    return used


# -- long sequences: bins of steps --------------------------------------------------------------

STEP_ROWS = 64  # a per-step table shows at most about this many rows unless --all-steps


def step_bins(steps: int, most: int) -> tuple[list[tuple[int, int]], int]:
    """[start, stop) of consecutive runs of k steps, k the smallest that leaves at most `most`
    runs (the last may be shorter), and k."""
    k = max(1, math.ceil(steps / max(1, most)))
    return [(start, min(start + k, steps)) for start in range(0, steps, k)], k


def bin_values(values: list, bins: list[tuple[int, int]], how: str = "mean") -> list:
    """One value per bin: the mean or the largest of its values; None (no value: padding) and
    NaN are skipped, except that a bin of NaN and None only is NaN, and of None only None."""
    out = []
    for start, stop in bins:
        part = [v for v in values[start:stop] if v is not None]
        finite = [v for v in part if v == v]
        if finite:
            out.append(sum(finite) / len(finite) if how == "mean" else max(finite))
        else:
            out.append(math.nan if part else None)
    return out


def step_label(start: int, stop: int) -> str:
    """t of a row of the per-step tables: 7, or 32-63 for a bin (both ends included)."""
    return str(start) if stop - start == 1 else f"{start}-{stop - 1}"


def running_counts(lengths: list[int] | None, bins: list[tuple[int, int]]) -> list[str] | None:
    """With --lengths: how many sequences still run at each step of each bin (2, or 1-3 when
    the count changes within the bin); None without lengths."""
    if not lengths:
        return None
    out = []
    for start, stop in bins:
        low = sum(length > stop - 1 for length in lengths)
        high = sum(length > start for length in lengths)
        out.append(str(low) if low == high else f"{low}-{high}")
    return out


def bins_sentence(k: int, how: str) -> str:
    """What a binned row stands for, or nothing when every row is one step."""
    if k == 1:
        return ""
    what = "their mean" if how == "mean" else "the largest"
    return f"1 row = {k} steps, {what}; --all-steps for every step"


def checks_table(checks: list[Check], title: str = "Checks") -> Table:
    """One row per check: its largest |difference|, the bound at that element, and how much of
    its bound the worst element used (the verdict is element by element)."""
    table = Table(title=title, title_justify="left")
    table.add_column("check", overflow="fold")
    table.add_column("max |diff|", justify="right", no_wrap=True)
    table.add_column("bound", justify="right", no_wrap=True)
    table.add_column("used", justify="right", no_wrap=True)
    table.add_column("result", no_wrap=True)
    for check in checks:
        verdict = "[green]passed[/]" if check.passed else "[bold red]FAILED[/]"
        diff, bound = format_diff_pair(check.max_abs_diff, check.tolerance)
        table.add_row(Text(check.name), diff, bound, format_used(check.worst_ratio), verdict)
    return table


def format_diff_pair(diff: float | None, bound: float | None) -> tuple[str, str]:
    """A difference and its bound, with enough digits that two different numbers never print
    the same (a failed check once showed 5.96e-08 against a bound of 5.96e-08)."""
    if diff is None or bound is None or diff != diff or bound != bound or diff == bound or diff == 0 or bound == 0:
        return format_diff(diff), format_diff(bound)
    for digits in range(3, 18):
        a, b = f"{diff:.{digits}g}", f"{bound:.{digits}g}"
        if a != b:
            return a, b
    return format_diff(diff), format_diff(bound)


def failure_lines(checks: list[Check]) -> list[str]:
    """Where each failed step-local check first went wrong, one sentence each."""
    lines = []
    for check in checks:
        bad = check.first_bad
        if check.passed or bad is None:
            continue
        where = check.name.split(":")[0]
        lines.append(
            f"FAILED {where}: first at step {bad['step']}, sequence {bad['sequence']}: "
            f"{bad['quantity']}[{bad['unit']}] = {bad['value']:.7g}, float64 step gives "
            f"{bad['reference']:.7g} (|diff| {format_diff(abs(bad['value'] - bad['reference']))} > "
            f"bound {format_diff(bad['bound'])})"
        )
    return lines


def print_verdict(console, checks: list[Check], path: str, start: str, checked: str, rule: dict) -> None:
    """The step-local verdict of a checked path: what was recomputed, the checks table, and
    where each failed check first went wrong."""
    console.print(Text(
        f"Verdict: each step of the {path} recomputed in float64 from {start} ({checked}); "
        f"bound: {rule['description']}."
    ))
    print_table(console, checks_table(checks, title=f"{path[0].upper()}{path[1:]}, step by step"))
    for line in failure_lines(checks):
        console.print(Text(line, style="bold red"))


def shadow_lines(shadow, shadow_note: str | None) -> list[str]:
    """The float64 shadow in plain sentences: each path's end-to-end error and the model's
    sensitivity (a report; the verdict is the step-local check)."""
    if shadow is None:
        return [f"float64 shadow: {shadow_note}"] if shadow_note else []
    parts = []
    for error in shadow.errors:
        states = ""
        if error.h_n_max_abs_diff is not None:
            states = f" (h_n {format_diff(error.h_n_max_abs_diff)}, c_n {format_diff(error.c_n_max_abs_diff)})"
        parts.append(f"{error.path} {format_diff(error.output_max_abs_diff)}{states}")
    lines = [f"Distance from float64 ({shadow.description}), output max |diff|: " + "; ".join(parts)]
    values = [e.output_max_abs_diff for e in shadow.errors]
    if len(values) == 2 and all(v == v for v in values):
        low, high = sorted(values)
        if high > 10 * low and high > 0:
            worse = shadow.errors[values.index(high)].path
            lines.append(f"{worse} is {high / low if low else float('inf'):.3g}x further from float64.")
        else:
            lines.append("Both paths are about equally close to float64.")
    if shadow.sentence:
        lines.append(shadow.sentence)
    else:
        lines.append(
            f"Sensitivity: a relative change of {shadow.perturbation:g} in the input moves the output by "
            f"at most {format_diff(shadow.largest_growth)} (x{shadow.amplification:.2g} of 1e-7 |x|): not chaotic."
        )
    return lines


def config_line(config: dict, device: str, dtype: str) -> str:
    """The header: sizes and flags, dtype, device (and its thread count, on CPU) and seed; where
    the input came from; and where the weights came from when they were loaded."""
    batch = "unbatched" if config["unbatched"] else f"batch {config['batch_size']}"
    if config.get("hidden_sizes"):  # a free-form stack has its own widths
        widths = " -> ".join(map(str, [config["input_size"], *config["hidden_sizes"]]))
        flags = f"cells {widths}, seq-len {config['seq_len']}, {batch}"
    else:
        flags = (
            f"input {config['input_size']}, hidden {config['hidden_size']}, "
            f"{config['num_layers']} layer(s), seq-len {config['seq_len']}, {batch}"
        )
    extras = [
        name
        for name, on in (
            ("bidirectional", config["bidirectional"]),
            ("batch_first", config["batch_first"]),
            (f"proj_size {config['proj_size']}", config["proj_size"]),
            (f"dropout {config['dropout']}", config["dropout"]),
            ("no bias", not config["bias"]),
            (f"lengths {config['lengths']}", config["lengths"]),
        )
        if on
    ]
    threads = config.get("threads")  # set by cli.emit: the count torch ran with (CPU work only)
    on_cpu = f", {threads} thread{'s' if threads != 1 else ''}" if threads and device.startswith("cpu") else ""
    line = ", ".join([flags, *extras]) + f"; {dtype} on {device}{on_cpu}, seed {config['seed']}"
    data = [f"input: {config['input_source']}"] if config.get("input_source") else []
    initial = config.get("initial_state_source")
    if initial and initial != "zeros":
        data.append(f"initial state (h_0, c_0): {initial}")
    return "\n".join([line, *data, *source_lines(config.get("source"))])


def source_lines(source: dict | None) -> list[str]:
    """Where the weights came from and every conversion applied to them (nothing for random
    weights, which the seed above already names)."""
    if not source:
        return []
    key = f", key {source['key']!r}" if source["key"] else ""
    lines = [f"weights: {source['file']}: {source['format']}{key}"]
    if source["recurrent_activation"] != "sigmoid":
        lines.append(f"  gates i, f, o: {source['recurrent_activation']}, not nn.LSTM's sigmoid")
    lines += [f"  converted: {line}" for line in source["conversions"]]
    lines += [f"  note: {line}" for line in source["notes"]]
    return lines



SPARK_LEVELS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], low: float | None = None, high: float | None = None) -> str:
    """One character per value, scaled between low and high (default: the values' own range)."""
    finite = [v for v in values if v == v]
    if not finite:
        return ""
    low = min(finite) if low is None else low
    high = max(finite) if high is None else high
    span = high - low
    top = len(SPARK_LEVELS) - 1
    return "".join(
        " " if v != v else SPARK_LEVELS[0 if span <= 0 else min(top, max(0, round((v - low) / span * top)))]
        for v in values
    )


def log_sparkline(values: list[float]) -> tuple[str, str]:
    """One character per value on a log10 scale between the smallest positive value and the
    largest (differences span decades: on a linear scale all but the largest sit at the bottom);
    0 at the bottom, NaN blank. Returns the line and its range in words."""
    positive = [v for v in values if v == v and v > 0]
    if not positive:
        return sparkline(values, low=0.0), "every value 0"
    low, high = math.log10(min(positive)), math.log10(max(positive))
    logs = [math.nan if v != v else (low if v <= 0 else math.log10(v)) for v in values]
    zero = ", 0 at the bottom" if any(v == 0 for v in values) else ""
    return sparkline(logs, low=low, high=high), f"log scale {min(positive):.2g} to {max(positive):.2g}{zero}"


@contextlib.contextmanager
def stderr_progress(total: int, unit: str, description: str) -> Iterator[Callable[..., None] | None]:
    """`advance(n, description=None)` moving a Rich progress bar on stderr, when stderr is a
    terminal; None otherwise. Never writes to stdout, so --json output stays one document."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from lstm_cli.output import make_console

    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn(f"{{task.completed}}/{{task.total}} {unit}"),
        TimeRemainingColumn(), console=make_console(stderr=True), transient=True,
    ) as progress:
        LIVE_DISPLAYS.append(progress)  # Ctrl-C stops it before saying "interrupted"
        task = progress.add_task(description, total=total)

        def advance(steps: int, description: str | None = None) -> None:
            progress.update(task, advance=steps, **({"description": description} if description else {}))

        try:
            yield advance
        finally:
            LIVE_DISPLAYS.remove(progress)


def print_unit_states_verdict(console, checks: list[Check]) -> None:
    """units and trace: one line when the float64 unit values agreed with PyTorch's own cell at
    every step, the checks table when they did not."""
    if not checks:
        return
    if all(check.passed for check in checks):
        worst = max((check.worst_ratio or 0.0) for check in checks)
        console.print(Text(f"Checked: every step's c and h of every layer match PyTorch's nn.LSTMCell (float64) "
                           f"from the same state, worst at {format_used(worst)} of one step's rounding bound."))
        return
    print_table(console, checks_table(checks, "Unit values against PyTorch's nn.LSTMCell"))
