"""Rich rendering of a UnitsResult: per feature its best units, r, and a trace of the best one
(a window of the text with the unit's value as a sparkline under each character), fitted to the
console's width (the trace gets shorter, never a number); then one plain sentence."""

from __future__ import annotations

import numpy as np
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from lstm_cli.render.common import config_line, fit_table, print_unit_states_verdict, sparkline
from lstm_cli.text.features import text_features
from lstm_cli.text.units import UnitsResult, unit_label

TRACE = 60  # characters of text a trace shows at most
TRACE_MIN = 8
SHOWN = {"\n": "↵", "\t": "→", " ": "·"}


def shown_char(char: str) -> str:
    """One terminal cell per character: newline, tab and space made visible, anything wider or
    unprintable a middle dot."""
    char = SHOWN.get(char, char)
    return char if char.isprintable() and cell_len(char) == 1 else "·"


def trace_window(feature: np.ndarray, length: int) -> int:
    """Where a trace starts: 0 when the feature changes within the first `length` characters,
    else a little before its first change, so the trace shows the feature moving."""
    if len(feature) <= length or feature[:length].min() != feature[:length].max():
        return 0
    change = int(np.argmax(feature != feature[0]))
    return max(0, min(change - length // 4, len(feature) - length))


def units_table(result: UnitsResult, length: int) -> Table:
    features = text_features(result.text)
    table = Table(title=f"Best units per feature (of {result.top}), Pearson r over {result.characters:,} characters",
                  title_justify="left")
    table.add_column("feature", no_wrap=True)  # names stay whole; the trace gives way
    table.add_column("unit", no_wrap=True)
    table.add_column("r", justify="right", no_wrap=True)
    table.add_column("trace: text, unit value under it", no_wrap=True)
    for name, entry in result.features.items():
        if entry.constant:
            table.add_row(Text(name), "-", "-", Text("constant over the text"))
            continue
        for k, best in enumerate(entry.best):
            trace = Text("")
            label = Text(name if k == 0 else "")
            if k == 0:
                n = min(length, result.characters)
                start = trace_window(features[name], n)
                values = result.traces[(best.layer, best.direction, best.unit, best.quantity)][start : start + n]
                chars = "".join(shown_char(c) for c in result.text[start : start + n])
                trace = Text(chars + "\n" + sparkline(values))
                if start:
                    label = Text(f"{name}\n(from char {start:,})")
            style = "bold" if abs(best.r) >= result.min_r else ""
            table.add_row(label, Text(unit_label(best.layer, best.unit, best.quantity, best.direction)),
                          Text(f"{best.r:.3f}", style=style), trace)
    return table


def render_units(result: UnitsResult, console: Console) -> None:
    console.print(Text(config_line(result.config, "cpu", "float64 (unit states)")))
    console.print(Text(
        f"Every unit's c and h (every layer and direction) against features of the text; a unit tracks a "
        f"feature at |r| >= {result.min_r:g}."
    ))
    length = TRACE
    while True:  # shorten the trace until the table fits; the numbers stay whole
        table = units_table(result, length)
        used = fit_table(table, console.width)
        if used <= console.width or length <= TRACE_MIN:
            break
        length = max(TRACE_MIN, length - (used - console.width))
    console.print(table)
    console.print(Text(result.summary, style="bold" if result.tracks else ""))
    print_unit_states_verdict(console, result.checks)
