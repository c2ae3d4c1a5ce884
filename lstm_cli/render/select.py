"""Rich rendering of `units --select`: a header line (the span, the state, threshold and margin),
the selected units with their means inside and outside the span, and with --match the ranked
runs, each with its context line and the run marked: coloured on a terminal, between [[ and ]]
where there is no colour (a pipe, NO_COLOR). Long lines are cut around the run with an
ellipsis so that every row fits the console's width."""

from __future__ import annotations

from rich.cells import cell_len
from rich.console import Console
from rich.style import Style
from rich.table import Table
from rich.text import Text

from lstm_cli.render.common import config_line, fit_table, print_table, print_unit_states_verdict
from lstm_cli.render.trace import coloured, glyph
from lstm_cli.text.select import CONTINUES, RUN_CLOSE, RUN_OPEN, SelectedUnitsResult, context_parts, shown_span

RUN_STYLE = Style(color="black", bgcolor="#ffd54f", bold=True)
ELLIPSIS = "…"
CONTEXT_MIN = 12  # cells the context column keeps at least
LONG_RUN_BEFORE = 3  # characters shown before a run too long for its column


def cells(text: str) -> str:
    """One terminal cell per character: tabs, control and wide characters made visible."""
    out = []
    for char in text:
        shown = glyph(char)
        out.append(shown if cell_len(shown) == 1 else "·")
    return "".join(out)


def fit_context(before: str, run: str, after: str, continues: bool, width: int, colour_on: bool) -> Text:
    """The context line in at most `width` cells: the run whole when it fits (marked), with as
    much of the line around it as fits, cut with an ellipsis; a run longer than the width is cut
    after its start."""
    markers = 0 if colour_on else len(RUN_OPEN) + len(RUN_CLOSE)
    budget = max(1, width - markers)
    if len(before) + len(run) + len(after) + continues > budget:
        before = before.lstrip(" \t")  # a line that must be cut gives up its indentation first
    before, run, after = cells(before), cells(run) + (CONTINUES if continues else ""), cells(after)
    if len(before) + len(run) + len(after) <= budget:
        left, right = before, after
    elif len(run) + 2 >= budget:  # the run alone fills the column: a little before it, then its start
        keep = min(len(before), LONG_RUN_BEFORE, max(0, budget - 4))
        left = (ELLIPSIS if keep < len(before) else "") + before[len(before) - keep:]
        room = max(1, budget - len(left) - 1 - (1 if after else 0))
        if room < len(run):
            run = run[: max(0, room - 1)] + ELLIPSIS
        right = ELLIPSIS if after else ""
    else:
        free = budget - len(run)
        if len(before) <= free // 2:
            left, right = before, after[: free - len(before) - 1] + ELLIPSIS
        elif len(after) <= free - free // 2:
            keep = free - len(after) - 1
            left, right = ELLIPSIS + before[len(before) - keep:] if keep else ELLIPSIS, after
        else:
            keep_left, keep_right = free // 2 - 1, free - free // 2 - 1
            left = ELLIPSIS + (before[len(before) - keep_left:] if keep_left > 0 else "")
            right = (after[:keep_right] if keep_right > 0 else "") + ELLIPSIS
    line = Text(left)
    if colour_on:
        line.append(run, style=RUN_STYLE)
    else:
        line.append(RUN_OPEN + run + RUN_CLOSE)
    line.append(right)
    return line


def header(result: SelectedUnitsResult) -> str:
    select = result.select
    span = select.span
    return (f"Selection {span['start']}:{span['end']} {shown_span(span['text'])} "
            f"({span['end'] - span['start']} character(s)); state {select.values}; "
            f"threshold {select.threshold:g}; margin {select.margin}"
            + ("; sign both (a unit's low side counts as a unit)" if select.sign == "both" else ""))


def selected_table(result: SelectedUnitsResult, bidirectional: bool) -> Table:
    select = result.select
    table = Table()
    table.add_column("layer", justify="right", no_wrap=True)
    if bidirectional:
        table.add_column("direction", no_wrap=True)
    table.add_column("unit", justify="right", no_wrap=True)
    both = select.sign == "both"
    if both:  # which side of the unit is on: above T or below -T
        table.add_column("on where", justify="right", no_wrap=True)
    table.add_column("mean inside", justify="right", no_wrap=True)
    table.add_column("mean outside", justify="right", no_wrap=True)
    for unit in select.selected:
        outside = "-" if unit.mean_outside is None else f"{unit.mean_outside:.3f}"
        row = [str(unit.layer)] + ([unit.direction] if bidirectional else []) + [str(unit.unit)]
        if both:
            row.append(f"> {select.threshold:g}" if unit.sign > 0 else f"< {-select.threshold:g}".replace("-", "−"))
        table.add_row(*row, f"{unit.mean_inside:.3f}", outside)
    return table


def matches_table(result: SelectedUnitsResult, context_width: int, colour_on: bool) -> Table:
    select = result.select
    table = Table()
    table.add_column("rank", justify="right", no_wrap=True)
    table.add_column("start:end", justify="right", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("matched/ others", justify="right", no_wrap=True)
    table.add_column("context", no_wrap=True)
    text = result.text
    for rank, match in enumerate(select.matches, start=1):
        before, run, after, continues = context_parts(text, match.start, match.end)
        table.add_row(f"{rank}{'*' if match.selection else ''}", f"{match.start}:{match.end}", f"{match.score:.3f}",
                      f"{match.matched}/{match.others}",
                      fit_context(before, run, after, continues, context_width, colour_on))
    return table


def render_select(result: SelectedUnitsResult, console: Console) -> None:
    select = result.select
    console.print(Text(config_line(result.config, "cpu", "float64 (unit states)")))
    console.print(Text(header(result), style="bold"))
    console.print(Text(select.summary))
    if select.selected:
        of = f"{select.units} unit sides" if select.sign == "both" else select.units
        console.print(Text(f"Selected units ({len(select.selected)} of {of}), mean {select.values} inside "
                           "the selection and over the rest of the text:"))
        print_table(console, selected_table(result, result.config.get("bidirectional", False)))
    if select.matches is None:
        return
    console.print()
    if select.matches:
        colour_on = coloured(console)
        width = console.width
        while True:  # narrow the context until the table fits with its headers' words whole
            table = matches_table(result, width, colour_on)
            used = fit_table(table, console.width)
            folded = sum(max(0, max(map(cell_len, str(column.header).split()), default=0) - (column.width or 0))
                         for column in table.columns[:-1])
            over = max(0, used - console.width) + folded
            if not over or width <= CONTEXT_MIN:
                break
            width = max(CONTEXT_MIN, width - over)
        console.print(Text(f"Matches: runs where at least {select.need} of the {len(select.selected)} selected units "
                           f"are on, the best {len(select.matches)}; others = units not selected that are on "
                           "throughout the run, score = matched / (selected + others):"))
        console.print(table)
        if any(match.selection for match in select.matches):
            marked = "highlighted" if colour_on else f"between {RUN_OPEN} and {RUN_CLOSE}"
            console.print(Text(f"* the run that overlaps the selection; each run is {marked} in its line"))
    console.print(Text(select.match_summary))
    print_unit_states_verdict(console, result.checks)
