"""`trace` for people: the text with each character's background coloured by one unit's value,
wrapped at the console's width, with a legend; without colour (a pipe, NO_COLOR) a row of
one-digit value codes under every text row. And --plot: the same as a figure.

Characters are shown one terminal cell each so that the code rows line up: a newline is a
coloured `⏎` that ends the row, a tab `→`, any other control or zero-width character `·`, a
double-width character keeps its two cells (its code is followed by a space)."""

from __future__ import annotations

import unicodedata

from rich.cells import cell_len
from rich.style import Style
from rich.table import Table
from rich.text import Text

from lstm_cli.render.common import config_line, print_table, print_unit_states_verdict
from lstm_cli.text.trace import DIVERGING, QUANTITY_MEANING, TraceResult, TracedUnit, code, codes_sentence, colour, ink

NEWLINE = "⏎"
TAB = "→"
HIDDEN = "·"
LEGEND_STEPS = 11


def glyph(char: str) -> str:
    """What a character looks like in the trace: always one or two terminal cells."""
    if char == "\n":
        return NEWLINE
    if char == "\t":
        return TAB
    if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") or cell_len(char) == 0:
        return HIDDEN
    return char if cell_len(char) in (1, 2) else HIDDEN


def rows(text: str, width: int) -> list[list[int]]:
    """The character indices of each printed row: a newline ends its row (after its marker),
    and a row holds at most `width` cells."""
    out: list[list[int]] = []
    row: list[int] = []
    used = 0
    for k, char in enumerate(text):
        w = cell_len(glyph(char))
        if row and used + w > width:
            out.append(row)
            row, used = [], 0
        row.append(k)
        used += w
        if char == "\n":
            out.append(row)
            row, used = [], 0
    if row:
        out.append(row)
    return out


def _rgb(triple: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*triple)


def style_of(value: float, quantity: str, scale) -> Style:
    background = colour(value, quantity, tuple(scale))
    return Style(color=_rgb(ink(background)), bgcolor=_rgb(background))


def coloured(console) -> bool:
    return console.color_system is not None and not console.no_color


def heading(traced: TracedUnit, ranked_units: int | None) -> str:
    rank = f"; rank {traced.rank} of {ranked_units} by std" if traced.rank is not None and ranked_units else ""
    return (f"{traced.direction} layer {traced.layer}, unit {traced.unit}, {traced.quantity} "
            f"({QUANTITY_MEANING[traced.quantity]}): min {traced.min:.3g}, max {traced.max:.3g}, "
            f"mean {traced.mean:.3g}, std {traced.std:.3g}{rank}")


def legend(traced: TracedUnit, colour_on: bool, codes: str) -> Text:
    low, high = traced.scale
    if not colour_on:
        return Text(f"codes: {codes}")
    line = Text("colour: ")
    line.append(f"{low:.3g} ")
    for k in range(LEGEND_STEPS):
        value = low + (high - low) * k / (LEGEND_STEPS - 1)
        line.append(" ", style=style_of(value, traced.quantity, traced.scale))
    line.append(f" {high:.3g}")
    if traced.quantity in DIVERGING:
        line.append(f"  (blue below 0, white 0, red above; +-max |{traced.quantity}| over the text)")
    else:
        line.append("  (white 0, dark green 1)")
    return line


def trace_lines(text: str, traced: TracedUnit, width: int, colour_on: bool) -> list[Text]:
    """The text rows (and without colour a code row under each)."""
    out = []
    for row in rows(text, max(1, width)):
        line = Text()
        codes = []
        for k in row:
            shown = glyph(text[k])
            value = traced.values[k]
            line.append(shown, style=style_of(value, traced.quantity, traced.scale) if colour_on else None)
            codes.append(code(value, traced.scale) + " " * (cell_len(shown) - 1))
        out.append(line)
        if not colour_on:
            out.append(Text("".join(codes)))
    return out


def render_trace(result: TraceResult, console) -> None:
    config = result.config
    # The model's dtype as loaded; the values shown are unit_states' float64 loop, on the CPU.
    console.print(Text(config_line(config, result.device, f"{config['dtype']} weights, values in {result.dtype}")))
    colour_on = coloured(console)
    ranked = result.ranked_in
    if result.top:
        table = Table(title=(f"Units of {ranked['direction']} layer {ranked['layer']} whose "
                             f"{ranked['quantity']} varies most over the text (std over "
                             f"{len(result.text):,} characters, of {ranked['units']} units)"),
                      title_justify="left")
        for name in ("rank", "unit", "std", "mean", "min", "max"):
            table.add_column(name, justify="right", no_wrap=True)
        for item in result.top:
            table.add_row(str(item.rank), str(item.unit), *(f"{v:.3g}" for v in (item.std, item.mean, item.min, item.max)))
        print_table(console, table)
    for traced in result.shown:
        console.print()
        console.print(Text(heading(traced, ranked["units"] if ranked else None), style="bold"))
        console.print(legend(traced, colour_on, codes_sentence(traced.quantity, tuple(traced.scale))))
        for line in trace_lines(result.text, traced, console.width, colour_on):
            console.print(line, soft_wrap=True)
    if result.plot:
        drawn = (f" (the first {result.plot_truncated:,} of {len(result.text):,} characters)"
                 if result.plot_truncated else "")
        console.print()
        console.print(Text(f"plotted: {result.plot}{drawn}"))
    print_unit_states_verdict(console, result.checks)


# -- --plot ---------------------------------------------------------------------------------------

PLOT_MAX_CHARS = 3000  # characters per figure; a longer text is cut (and the title says so)
PLOT_COLUMNS = 100  # cells per row of the grid


def trace_title(result: TraceResult, drawn: int, width: int = 150) -> str:
    from lstm_cli.plot import figure_title

    config = result.config
    what = "Characters coloured by LSTM unit values: " + "; ".join(
        f"{t.direction} layer {t.layer} unit {t.unit} {t.quantity}" for t in result.shown)
    cut = [f"the first {drawn:,} of {len(result.text):,} characters"] if drawn < len(result.text) else []
    return figure_title(what, config, config["dtype"], None, cut, width)


# A panel's grid of rows is laid out in side-by-side blocks (like newspaper columns) so that a
# panel is about this many times as wide as it is tall: 3,000 characters of code (100 short
# lines) were one 30-inch-tall column before.
PANEL_ASPECT = 3.0
BLOCK_GAP = 2  # empty cells between two blocks
MAX_BLOCKS = 4
CELL_W, CELL_H = 0.105, 0.2  # inches per cell


def blocks_for(grid_rows: int, columns: int) -> int:
    """How many side-by-side blocks bring a panel closest to PANEL_ASPECT (width / height)."""
    def aspect(b: int) -> float:
        per = -(-grid_rows // b)
        return (b * columns + (b - 1) * BLOCK_GAP) * CELL_W / max(per * CELL_H, 1e-9)
    return min(range(1, MAX_BLOCKS + 1), key=lambda b: abs(aspect(b) - PANEL_ASPECT))


def trace_figure(result: TraceResult):
    """One panel per shown unit: the text in a monospace grid (its rows in side-by-side blocks
    for a sane aspect ratio), each cell's background the character's colour (the terminal's
    scale), a colour bar per panel. The characters of a panel are one collection of glyph
    outlines, drawn in one pass (a text artist per character took seconds a panel)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.collections import PathCollection
    from matplotlib.colors import LinearSegmentedColormap, Normalize
    from matplotlib.figure import Figure

    from lstm_cli.text.trace import BLUE, RED, SEQ_HIGH, SEQ_LOW, WHITE

    text = result.text[:PLOT_MAX_CHARS]
    grid = rows(text, PLOT_COLUMNS)
    columns = min(PLOT_COLUMNS, max((sum(cell_len(glyph(text[k])) for k in row) for row in grid), default=1))
    blocks = blocks_for(len(grid), columns)
    per_block = -(-len(grid) // blocks)
    width_cells = blocks * columns + (blocks - 1) * BLOCK_GAP
    # Where each character sits: (image row, first cell, cells wide), computed once for all panels.
    places = []
    for r, row in enumerate(grid):
        x = (r // per_block) * (columns + BLOCK_GAP)
        for k in row:
            w = cell_len(glyph(text[k]))
            places.append((k, r % per_block, x, w))
            x += w
    n = max(1, len(result.shown))
    panel_h = max(0.6, per_block * CELL_H)
    figure_width = max(7.0, width_cells * CELL_W + 1.6)
    figure = Figure(figsize=(figure_width, n * (panel_h + 0.6) + 1.2), layout="constrained")
    FigureCanvasAgg(figure)
    glyphs = _GlyphPaths()
    paths = [glyphs(glyph(text[k])) for k, _, _, _ in places]
    offsets = np.array([(x + (w - 1) / 2, r) for _, r, x, w in places], dtype=float).reshape(-1, 2)
    for p, traced in enumerate(result.shown):
        ax = figure.add_subplot(n, 1, p + 1)
        ax.set_label(f"trace layer {traced.layer} unit {traced.unit} {traced.quantity} {traced.direction}")
        image = np.ones((per_block, width_cells, 3))
        inks = []
        for k, r, x, w in places:
            background = colour(traced.values[k], traced.quantity, tuple(traced.scale))
            image[r, x : x + w] = [v / 255 for v in background]
            inks.append([v / 255 for v in ink(background)])
        ax.imshow(image, aspect="auto", interpolation="nearest",
                  extent=(-0.5, width_cells - 0.5, per_block - 0.5, -0.5))
        ax.add_collection(PathCollection(paths, offsets=offsets, offset_transform=ax.transData,
                                         transform=glyphs.transform(figure), facecolors=inks, edgecolors="none",
                                         clip_on=True))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{traced.direction} layer {traced.layer}, unit {traced.unit}, {traced.quantity} "
                     f"({QUANTITY_MEANING[traced.quantity]})", fontsize=9)
        ends = [BLUE, WHITE, RED] if traced.quantity in DIVERGING else [SEQ_LOW, SEQ_HIGH]
        cmap = LinearSegmentedColormap.from_list("trace", [[v / 255 for v in c] for c in ends])
        bar = figure.colorbar(ScalarMappable(Normalize(*traced.scale), cmap), ax=ax, fraction=0.03, pad=0.01)
        bar.ax.tick_params(labelsize=7)
    figure.suptitle(trace_title(result, len(text), int(figure_width * 12)), fontsize=9)
    return figure


class _GlyphPaths:
    """Outlines of characters in a 7-point monospace font, centred on (0, 0), made once each."""

    SIZE = 7.0  # points

    def __init__(self) -> None:
        from matplotlib.font_manager import FontProperties

        self.font = FontProperties(family="monospace")
        self.cache: dict = {}

    def __call__(self, shown: str):
        from matplotlib.textpath import TextPath
        from matplotlib.transforms import Affine2D

        if shown not in self.cache and not shown.strip():  # blank: nothing to draw (TextPath fails on it)
            from matplotlib.path import Path

            self.cache[shown] = Path([(0.0, 0.0)], [Path.MOVETO])
        if shown not in self.cache:
            path = TextPath((0, 0), shown, size=self.SIZE, prop=self.font)
            extents = path.get_extents()
            # centred across by its box, and vertically on the font's x-height band, so that
            # every baseline lines up
            width = extents.x1 + extents.x0 if extents.width > 0 else 0.0
            self.cache[shown] = path.transformed(Affine2D().translate(-width / 2, -0.3 * self.SIZE))
        return self.cache[shown]

    @staticmethod
    def transform(figure):
        """Points to display pixels (the glyphs keep their size whatever the data scale)."""
        from matplotlib.transforms import Affine2D

        return Affine2D().scale(1 / 72) + figure.dpi_scale_trans


def plot_trace(result: TraceResult, path) -> None:
    from lstm_cli.plot import save_figure

    save_figure(trace_figure(result), path)
    result.plot = str(path)
    if len(result.text) > PLOT_MAX_CHARS:
        result.plot_truncated = PLOT_MAX_CHARS
        result.notes.append(f"--plot drew the first {PLOT_MAX_CHARS:,} of {len(result.text):,} characters")
