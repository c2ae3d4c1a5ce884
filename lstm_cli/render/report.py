"""What `lstm-cli report` prints for people: the configuration header, the verification's checks
and where the page went (cli.emit prints the notes on stderr)."""

from __future__ import annotations

from rich.text import Text

from lstm_cli.render.common import checks_table, config_line, print_table


def size_text(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB" if n >= 1e3 else f"{n} bytes"


def summary_lines(result) -> list[str]:
    """The page in two sentences: what it holds, and how to open it."""
    what = "characters" if result.text else "steps"
    shown = (f"{result.shown_steps:,} {what}" if result.shown_steps == result.steps
             else f"the first {result.shown_steps:,} of {result.steps:,} {what}")
    state = "tanh(c)" if result.state == "c" else "h"
    sign = ", sign both: each unit's negative side is a unit too" if result.sign == "both" else ""
    heat = (f"heatmaps of {result.steps:,} steps in {result.heatmap_columns:,} columns ({result.steps_per_column} steps each)"
            if result.steps_per_column > 1 else f"heatmaps of {result.steps:,} steps")
    return [
        f"Wrote {result.html} ({size_text(result.bytes)}): {shown}, {result.units:,} units' {state} for select-and-match "
        f"(threshold {result.threshold:.2f}, margin {result.margin}{sign}), {heat}, the saturation scatter and the checks below.",
        "Open it in any browser (it makes no network request); drag over the input to select, click a match to go to it.",
    ]


def render_report(result, console) -> None:
    console.print(Text(config_line(result.config, result.device, result.dtype), style="bold"))
    print_table(console, checks_table(result.checks, title="Gate capture, step by step (gates --units)"))
    for line in summary_lines(result):
        console.print(Text(line))
