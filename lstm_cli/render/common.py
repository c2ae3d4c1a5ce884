"""Pieces every rendering shares: checks table, configuration line, shapes, sparklines and
the progress bar on stderr."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from rich.table import Table
from rich.text import Text

from lstm_cli.guard import LIVE_DISPLAYS
from lstm_cli.checks import Check


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
    if ratio != ratio or ratio == float("inf"):
        return "NaN" if ratio != ratio else "inf"
    if 0 < ratio < 0.01:
        return "<1%"
    return f"{ratio * 100:.0f}%" if ratio < 100 else f"{ratio:.3g}x"


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
        table.add_row(
            Text(check.name), format_diff(check.max_abs_diff), format_diff(check.tolerance),
            format_used(check.worst_ratio), verdict,
        )
    return table


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
    console.print(checks_table(checks, title=f"{path[0].upper()}{path[1:]}, step by step"))
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
    if config.get("hidden_sizes"):  # a free-form stack has its own widths
        widths = " -> ".join(map(str, [config["input_size"], *config["hidden_sizes"]]))
        flags = f"cells {widths}, seq-len {config['seq_len']}, batch {config['batch_size']}"
    else:
        flags = (
            f"input {config['input_size']}, hidden {config['hidden_size']}, "
            f"{config['num_layers']} layer(s), seq-len {config['seq_len']}, batch {config['batch_size']}"
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
            ("unbatched", config["unbatched"]),
        )
        if on
    ]
    line = ", ".join([flags, *extras]) + f"; {dtype} on {device}, seed {config['seed']}"
    return "\n".join([line, *source_lines(config.get("source"))])


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


def format_shape(shape: list[int]) -> str:
    """(80, 100), and (80,) for one dimension, as Python prints a shape."""
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


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
