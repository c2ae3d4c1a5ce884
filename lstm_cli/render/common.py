"""Pieces every rendering shares: checks table, configuration line, shapes, sparklines and
the progress bar on stderr."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from rich.table import Table
from rich.text import Text

from lstm_cli.checks import Check


def format_diff(value: float | None) -> str:
    if value is None:
        return "-"
    if value != value:  # NaN
        return "NaN"
    return "0" if value == 0 else f"{value:.3g}"


def checks_table(checks: list[Check], title: str = "Checks") -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("check")
    table.add_column("max |diff|", justify="right")
    table.add_column("tolerance", justify="right")
    table.add_column("result")
    for check in checks:
        verdict = "[green]passed[/]" if check.passed else "[bold red]FAILED[/]"
        table.add_row(Text(check.name), format_diff(check.max_abs_diff), format_diff(check.tolerance), verdict)
    return table


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
    return ", ".join([flags, *extras]) + f"; {dtype} on {device}, seed {config['seed']}"


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
        task = progress.add_task(description, total=total)

        def advance(steps: int, description: str | None = None) -> None:
            progress.update(task, advance=steps, **({"description": description} if description else {}))

        yield advance
