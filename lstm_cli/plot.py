"""--plot: figures of `gates` (heatmaps; with --units also the per-unit saturation scatter) and
the helpers `gradients --plot` shares with it.

`gates --plot FILE` draws, for one sequence, a units x time heatmap per layer x direction (rows)
and gate (columns i, f, g, o, c). Every figure's title says what ran: the sizes, seq-len, batch,
dtype and device, and where the weights and the input came from.

No torch and no matplotlib at import time: the checks here run before any work (a bad flag
costs nothing) and matplotlib, an optional extra, is imported only to draw. Figures are built
without pyplot, so no global backend state changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lstm_cli.errors import UsageError
from lstm_cli.paths import writable_file
from lstm_cli.spec import GATE_MEANING, GATES, LSTMSpec

if TYPE_CHECKING:
    import torch

PLOT_SUFFIXES = (".png", ".svg", ".pdf")
PLOT_RANGES = ("fixed", "panel")
PADDING_LABEL = "padding (past this sequence's length)"
NAN_LABEL = "not a number (NaN)"
# A neutral mid grey: viridis holds no grey at all, and RdBu_r's greys are near-white (around 0)
# or tinted; padding is hatched on top, so it never reads as a value.
PADDING_COLOR = "#8c8c8c"
PADDING_HATCH = "///"
MAX_STEP_COLUMNS = 200  # longer sequences are binned: each column the mean of k steps
MAX_UNIT_ROWS = 64  # more units are binned: each row the mean of m units
MAX_PANEL_ROWS = 48  # layers x directions; more would not stay readable (and Agg caps the size)
DPI = 100
COLUMNS = (*GATES, "c")


# -- checks before any work --------------------------------------------------------------------


def check_plot_path(text: str, flag: str = "--plot") -> Path:
    """A .png, .svg or .pdf file in an existing, writable folder; else one UsageError line."""
    if Path(text).expanduser().suffix.lower() not in PLOT_SUFFIXES:
        raise UsageError(f"{flag} file must end in .png, .svg or .pdf (got {text!r})")
    return writable_file(flag, text, PLOT_SUFFIXES)


INSTALL = "pip install 'lstm-cli[plot]'"


def plot_target(text: str | None, flag: str = "--plot") -> Path | None:
    """What every command's --plot needs before any work: a writable .png, .svg or .pdf path
    and matplotlib importable (an optional extra); None when there is no --plot."""
    if text is None:
        return None
    path = check_plot_path(text, flag)
    try:
        import matplotlib  # noqa: F401  (imported only to know it is there)
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except ImportError:
        raise UsageError(f"{flag} needs matplotlib, which is not installed: {INSTALL}") from None
    return path


def check_plot_range(text: str) -> str:
    value = text.strip().lower()
    if value not in PLOT_RANGES:
        raise UsageError(
            f"--plot-range must be fixed (each gate's own range: i, f, o 0..1, g -1..1, c symmetric) "
            f"or panel (each panel its own min..max) (got {text!r})"
        )
    return value


def parse_plot_layers(text: str, num_layers: int) -> tuple[int, ...]:
    """'0,2' -> (0, 2): layers in [0, num_layers), each once, in ascending order."""
    valid = f"0 to {num_layers - 1}" if num_layers > 1 else "0"
    usage = f"--layers takes layer numbers from {valid}, comma-separated, like 0,2 (got {text!r})"
    parts = [part.strip() for part in text.split(",")]
    if not parts or not all(part.isdigit() for part in parts):
        raise UsageError(usage)
    layers = [int(part) for part in parts]
    for layer in layers:
        if layer >= num_layers:
            raise UsageError(f"--layers: layer {layer} does not exist: layers are {valid} (--num-layers {num_layers})")
    repeated = sorted({layer for layer in layers if layers.count(layer) > 1})
    if repeated:
        raise UsageError(f"--layers lists layer {repeated[0]} more than once")
    return tuple(sorted(layers))


def check_panel_rows(spec: LSTMSpec, layers: tuple[int, ...] | None) -> None:
    """Refuse, before any work, a figure too tall to read: one row per layer x direction."""
    count = len(layers) if layers is not None else spec.num_layers
    rows = count * spec.num_directions
    if rows > MAX_PANEL_ROWS:
        most = MAX_PANEL_ROWS // spec.num_directions
        what = f"{count} layers x 2 directions" if spec.num_directions == 2 else f"{count} layers"
        raise UsageError(
            f"--plot draws one row of panels per layer and direction, at most {MAX_PANEL_ROWS} to stay "
            f"readable, and this would be {rows} ({what}): pick at most {most} layers with --layers, "
            f"e.g. --layers 0,{spec.num_layers - 1}"
        )


# -- titles: what ran ----------------------------------------------------------------------------


def describe_configuration(config: dict[str, Any], dtype: str | None = None, device: str | None = None) -> str:
    """'input 100, hidden 20, 4 layers, unidirectional; seq-len 10, batch 3; float32 on cpu'."""
    layers = config["num_layers"]
    sizes = [f"input {config['input_size']}", f"hidden {config['hidden_size']}",
             f"{layers} layer{'s' if layers != 1 else ''}",
             "bidirectional" if config.get("bidirectional") else "unidirectional"]
    if config.get("proj_size"):
        sizes.append(f"proj {config['proj_size']}")
    if not config.get("bias", True):
        sizes.append("no bias")
    run = [f"seq-len {config['seq_len']}",
           "unbatched" if config.get("unbatched") else f"batch {config['batch_size']}"]
    if config.get("lengths"):
        run.append("lengths " + ",".join(map(str, config["lengths"])))
    where = dtype or config.get("dtype", "float32")
    if device:
        where += f" on {device}"
    return "; ".join([", ".join(sizes), ", ".join(run), where])


def describe_weights(config: dict[str, Any]) -> str:
    """'weights FILE (format)' when loaded, else 'random weights, seed S'."""
    source = config.get("source")
    if not source:
        return f"random weights, seed {config['seed']}"
    key = f", key {source['key']!r}" if source.get("key") else ""
    text = f"weights {source['file']} ({source['format']}{key})"
    activation = source.get("recurrent_activation", "sigmoid")
    if activation != "sigmoid":
        text += f", gates i, f, o {activation}"
    return text


def describe_input(config: dict[str, Any]) -> str:
    return f"input {config['input_source']}"


def without_machine_paths(line: str) -> str:
    """An absolute path outside the current folder shown by its file name only (a figure goes
    into documents and papers; /home/someone/.venv/... says nothing there); one inside it,
    relative to it."""
    from pathlib import Path

    here = Path.cwd()

    def shown(word: str) -> str:
        if not word.startswith("/"):
            return word
        path = Path(word.rstrip(",;:)"))
        rest = word[len(str(path)):]
        try:
            return str(path.relative_to(here)) + rest
        except ValueError:
            return path.name + rest
    return " ".join(shown(word) for word in line.split(" "))


def title_lines(lines: list[str], width: int) -> str:
    """Join title lines, each wrapped at `width` characters so none runs off the figure (a long
    file path breaks at its separators)."""
    import textwrap

    wrapped = []
    for line in lines:
        line = without_machine_paths(line)
        wrapped += textwrap.wrap(line.replace("/", "/\u200b"), width, break_on_hyphens=False) or [""]
    return "\n".join(part.replace("\u200b", "") for part in wrapped)


def figure_title(what: str, config: dict, dtype: str, device: str | None, more: list[str], width: int) -> str:
    """What a figure shows, then the configuration, then where the weights and the input came
    from, then `more`: the title every figure of one model carries."""
    return title_lines([
        what,
        describe_configuration(config, dtype, device),
        f"{describe_weights(config)}; {describe_input(config)}",
        *more,
    ], width)


# -- gates --plot ------------------------------------------------------------------------------


def _bins(total: int, most: int) -> list[tuple[int, int]]:
    """[start, stop) of at most `most` groups of equal size (the last may be shorter)."""
    if total <= 0:
        return []
    size = -(-total // most)
    return [(start, min(start + size, total)) for start in range(0, total, size)]


def _binned(data, valid: int, steps: int):
    """data: numpy (T, H) -> (mesh values (unit rows, step columns), step edges, unit edges).
    Steps [0, valid) are averaged in groups of up to MAX_STEP_COLUMNS columns; steps past
    `valid` are padding: one masked column. NaN inside the valid steps stays NaN (masked)."""
    import numpy as np

    units = data.shape[1]
    step_bins = _bins(valid, MAX_STEP_COLUMNS)
    unit_bins = _bins(units, MAX_UNIT_ROWS)
    body = data[:valid].astype(np.float64)
    starts = [start for start, _ in step_bins]
    counts = np.array([stop - start for start, stop in step_bins], dtype=np.float64)
    over_steps = np.add.reduceat(body, starts, axis=0) / counts[:, None]  # (columns, H)
    ustarts = [start for start, _ in unit_bins]
    ucounts = np.array([stop - start for start, stop in unit_bins], dtype=np.float64)
    values = (np.add.reduceat(over_steps, ustarts, axis=1) / ucounts[None, :]).T  # (rows, columns)
    step_edges = [start - 0.5 for start in starts] + [valid - 0.5]
    if valid < steps:
        values = np.concatenate([values, np.full((values.shape[0], 1), np.nan)], axis=1)
        step_edges.append(steps - 0.5)
    unit_edges = [start - 0.5 for start in ustarts] + [units - 0.5]
    return np.ma.masked_invalid(values), np.array(step_edges), np.array(unit_edges)


def _finite_bound(arrays) -> float:
    import numpy as np

    bound = 0.0
    for array in arrays:
        finite = array[np.isfinite(array)]
        if finite.size:
            bound = max(bound, float(np.abs(finite).max()))
    return bound if bound > 0 else 1.0


def gates_title(spec: LSTMSpec, sequence: int, layers: tuple[int, ...] | None, color_range: str,
                device: str | None, step_size: int, unit_size: int) -> str:
    config = spec.config()
    batch = 1 if spec.unbatched else spec.batch_size
    what = f"LSTM gates of sequence {sequence} ({'unbatched' if spec.unbatched else f'of {batch}'})"
    if spec.lengths is not None:
        what += f", its length {spec.lengths[sequence]} of {spec.seq_len} steps"
    if layers is not None:
        what += f"; layer{'s' if len(layers) != 1 else ''} {', '.join(map(str, layers))} of {spec.num_layers}"
    drawing = (
        "colour: fixed range per gate (i, f, o 0..1, g -1..1, c symmetric, +-max|c| of each layer)"
        if color_range == "fixed" else "colour: each panel its own min..max"
    )
    binned = []
    if step_size > 1:
        binned.append(f"each column the mean of {step_size} steps")
    if unit_size > 1:
        binned.append(f"each row the mean of {unit_size} units")
    return figure_title(what, config, spec.dtype, device, [drawing, *([", ".join(binned)] if binned else [])], 170)


def gates_figure(spec: LSTMSpec, kept: dict[tuple[int, str], dict[str, torch.Tensor]], sequence: int, *,
                 layers: tuple[int, ...] | None = None, color_range: str = "fixed", device: str | None = None):
    """The matplotlib Figure. `kept` maps (layer, direction) to {"gates": (T, 4, H), "c": (T, H)}
    for one sequence, NaN at padded steps. Padding (steps past the sequence's length) is a
    hatched grey that no colour map uses, with a legend entry; NaN elsewhere is that grey without
    hatching. `color_range` "fixed": i, f, o on 0..1, g on -1..1, one colour bar per column, and c
    on +-max|c| of its layer (a layer whose |c| reaches 20 next to one reaching 400 is not washed
    out), a colour bar beside each c panel; "panel": each panel its own min..max, a colour bar
    per panel."""
    import matplotlib
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle
    from matplotlib.ticker import MaxNLocator

    order = {"forward": 0, "backward": 1}
    rows = sorted((key for key in kept if layers is None or key[0] in layers), key=lambda k: (k[0], order.get(k[1], 2)))
    steps = spec.seq_len
    valid = spec.lengths[sequence] if spec.lengths is not None else steps
    # numpy (T, H) per row and column, float64 (bfloat16 has no numpy type)
    raw = {
        key: [(kept[key]["c"] if name == "c" else kept[key]["gates"][:, k]).detach().double().cpu().numpy()
              for k, name in enumerate(COLUMNS)]
        for key in rows
    }
    units = raw[rows[0]][0].shape[1] if rows else spec.hidden_size
    step_size = -(-valid // MAX_STEP_COLUMNS)
    unit_size = -(-units // MAX_UNIT_ROWS)
    c_bounds = {layer: _finite_bound(raw[key][4][:valid] for key in rows if key[0] == layer)
                for layer in {key[0] for key in rows}}

    n = max(len(rows), 1)
    panel = color_range == "panel"
    row_height = min(2.0, max(0.85, 16.0 / n))
    header = 1.35
    figure = Figure(figsize=(18.0 if panel else 16.0, header + n * row_height + (0 if panel else 0.75)),
                    layout="constrained")
    FigureCanvasAgg(figure)
    ratios = [row_height] * n + ([] if panel else [0.12])
    grid = figure.add_gridspec(len(ratios), len(COLUMNS), height_ratios=ratios)
    axes = [[None] * len(COLUMNS) for _ in range(n)]
    padded_anywhere = nan_anywhere = False
    meshes = {}
    for r, key in enumerate(rows):
        layer, direction = key
        for k, name in enumerate(COLUMNS):
            ax = figure.add_subplot(grid[r, k], sharex=axes[0][0] if (r or k) else None,
                                    sharey=axes[r][0] if k else None)
            ax.set_label(f"heatmap layer {layer} {direction} {name}")
            axes[r][k] = ax
            values, step_edges, unit_edges = _binned(raw[key][k], valid, steps)
            if panel:
                shown = values.compressed()
                low, high = (float(shown.min()), float(shown.max())) if shown.size else (0.0, 1.0)
                if not high > low:
                    pad = 1e-6 * max(1.0, abs(low))
                    low, high = low - pad, high + pad
                cmap_name = "viridis"
            elif name == "c":
                low, high, cmap_name = -c_bounds[layer], c_bounds[layer], "RdBu_r"
            elif name == "g":
                low, high, cmap_name = -1.0, 1.0, "RdBu_r"
            else:
                low, high, cmap_name = 0.0, 1.0, "viridis"
            cmap = matplotlib.colormaps[cmap_name].with_extremes(bad=PADDING_COLOR)
            mesh = ax.pcolormesh(step_edges, unit_edges, values, cmap=cmap, vmin=low, vmax=high, rasterized=True)
            meshes[(r, k)] = mesh
            if valid < steps:  # the padded steps, hatched over the grey
                ax.add_patch(Rectangle((valid - 0.5, -0.5), steps - valid, units, fill=False, hatch=PADDING_HATCH,
                                       edgecolor="white", linewidth=0, label=PADDING_LABEL))
                padded_anywhere = True
            body = values[:, : len(step_edges) - 1 - (valid < steps)]
            nan_anywhere |= bool(np.ma.getmaskarray(body).any())
            if r == 0:
                title = "c (cell state)" if name == "c" else f"{name} ({GATE_MEANING[name]})"
                ax.set_title(title, fontsize=10)
            if k == 0:
                # horizontal: a rotated label outgrows a short row
                ax.set_ylabel(f"layer {layer}\n{direction}\nunit", fontsize=9, rotation=0,
                              ha="right", va="center", labelpad=4)
            ax.tick_params(labelsize=8, labelbottom=r == n - 1, labelleft=k == 0)
            if r == n - 1:
                ax.set_xlabel("time step", fontsize=9)
            ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(nbins=4 if row_height >= 1.2 else 3, integer=True))
            ax.set_xlim(-0.5, steps - 0.5)
            ax.set_ylim(-0.5, units - 0.5)
            if panel or name == "c":  # c: each layer its own range, so its own bar
                bar = figure.colorbar(mesh, ax=ax, fraction=0.06, pad=0.02)
                bar.ax.tick_params(labelsize=8)
                if panel:
                    bar.ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
                else:  # +-bound (and 0 where the row is tall enough), labelled to 3 digits
                    bound = c_bounds[layer]
                    bar.set_ticks([-bound, 0.0, bound] if row_height >= 1.2 else [-bound, bound],
                                  labels=[f"{v:.3g}" for v in ([-bound, 0.0, bound] if row_height >= 1.2 else [-bound, bound])])
    if rows and not panel:
        for k, name in enumerate(COLUMNS):
            if name == "c":  # its bars are beside its panels (the title says so)
                continue
            cax = figure.add_subplot(grid[n, k], label=f"<colorbar> {name}")
            bar = figure.colorbar(meshes[(0, k)], cax=cax, orientation="horizontal")
            bar.set_ticks([-1.0, -0.5, 0.0, 0.5, 1.0] if name == "g" else [0.0, 0.25, 0.5, 0.75, 1.0])
            bar.ax.tick_params(labelsize=8)
            bar.set_label(f"{name}: {'-1 to 1' if name == 'g' else '0 to 1'}", fontsize=9)
    handles = []
    if padded_anywhere:
        handles.append(Patch(facecolor=PADDING_COLOR, hatch=PADDING_HATCH, edgecolor="white", label=PADDING_LABEL))
    if nan_anywhere:
        handles.append(Patch(facecolor=PADDING_COLOR, label=NAN_LABEL))
    if handles:
        figure.legend(handles=handles, loc="outside upper right", fontsize=9, frameon=False)
    figure.suptitle(gates_title(spec, sequence, layers, color_range, device, step_size, unit_size), fontsize=10)
    return figure


def plot_gates(path: Path, spec: LSTMSpec, kept: dict[tuple[int, str], dict[str, torch.Tensor]], sequence: int, *,
               layers: tuple[int, ...] | None = None, color_range: str = "fixed", device: str | None = None) -> None:
    """Draw the figure and write it as .png, .svg or .pdf (by the path's suffix)."""
    save_figure(gates_figure(spec, kept, sequence, layers=layers, color_range=color_range, device=device), path)


def save_figure(figure, path: Path, dpi: int = DPI, flag: str = "--plot") -> None:
    """Write by the path's suffix (.png, .svg or .pdf); an OSError while writing is a usage
    error with one line. Heatmaps are rasterized inside .svg and .pdf at 150 dpi (text and axes
    stay vector), so those files stay small."""
    suffix = path.suffix.lower().lstrip(".") or "png"
    try:
        figure.savefig(path, format=suffix, dpi=dpi if suffix == "png" else max(dpi, 150))
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot write: {exc.strerror or exc}") from None


# -- gates --units --plot: per-unit saturation ------------------------------------------------

# One marker and colour per gate, told apart without colour too.
UNIT_MARKERS = {"i": "o", "f": "s", "g": "^", "o": "D"}
UNIT_COLORS = {"i": "#1f77b4", "f": "#d62728", "g": "#2ca02c", "o": "#9467bd"}
UNITS_MAX_COLUMNS = 4  # panels per row (a multiple of 2: a layer's two directions stay side by side)


def units_title(spec: LSTMSpec, thresholds, layers: tuple[int, ...] | None, device: str | None) -> str:
    config = spec.config()
    what = ("Per-unit saturation: for every unit of every gate, the fraction of valid steps and sequences "
            "it spends left-saturated (x) and right-saturated (y)")
    if layers is not None:
        what += f"; layer{'s' if len(layers) != 1 else ''} {', '.join(map(str, layers))} of {spec.num_layers}"
    rule = (f"saturated: i, f, o below {thresholds.low:g} / above {thresholds.high:g}; "
            f"g below {thresholds.tanh_low:g} / above {thresholds.tanh_high:g}; "
            "dashed: left + right = 1 (always saturated)")
    return figure_title(what, config, spec.dtype, device, [rule], 110)


def units_figure(spec: LSTMSpec, entries, *, thresholds, layers: tuple[int, ...] | None = None,
                 device: str | None = None):
    """The matplotlib Figure of Karpathy, Johnson and Fei-Fei (2015), Fig. 3: one panel per
    layer x direction (of `layers`, default all), x = fraction of time a unit is left-saturated,
    y = right-saturated, on [0, 1] x [0, 1], one point per unit and gate (a marker per gate),
    the line left + right = 1 as a guide. `entries`: LayerGates with `units` filled."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = [e for e in entries if e.units is not None and (layers is None or e.layer in layers)]
    n = max(len(shown), 1)
    columns = min(n, UNITS_MAX_COLUMNS)
    rows = -(-n // columns)
    side = 3.6
    figure = Figure(figsize=(max(6.5, columns * side + 0.6), rows * side + 2.0), layout="constrained")
    FigureCanvasAgg(figure)
    units = len(shown[0].units["i"].left_saturated) if shown else 0
    size = 28 if units <= 64 else 14 if units <= 512 else 5
    for k, entry in enumerate(shown):
        ax = figure.add_subplot(rows, columns, k + 1)
        ax.set_label(f"units layer {entry.layer} {entry.direction}")
        ax.plot([0, 1], [1, 0], linestyle="--", color="#999999", linewidth=0.8, zorder=1)
        for gate in GATES:
            values = entry.units[gate]
            ax.scatter(values.left_saturated, values.right_saturated, s=size, marker=UNIT_MARKERS[gate],
                       facecolors="none" if gate in ("i", "o") else UNIT_COLORS[gate],
                       edgecolors=UNIT_COLORS[gate], linewidths=0.9, alpha=0.8,
                       label=f"{gate} ({GATE_MEANING[gate]})", zorder=2, clip_on=False)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_title(f"layer {entry.layer} {entry.direction}", fontsize=10)
        ax.set_xlabel("fraction left-saturated", fontsize=9)
        ax.set_ylabel("fraction right-saturated", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1])
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1])
        ax.grid(True, linewidth=0.3, alpha=0.5)
    if shown:
        handles, labels = figure.axes[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", ncols=4, fontsize=9, frameon=False,
                      title=f"one point per unit ({units} units) and gate", title_fontsize=9)
    figure.suptitle(units_title(spec, thresholds, layers, device), fontsize=10)
    return figure


def plot_units(path: Path, spec: LSTMSpec, entries, *, thresholds, shown: tuple[int, ...] | None = None,
               device: str | None = None) -> None:
    """Draw the per-unit saturation scatter and write it as .png, .svg or .pdf."""
    save_figure(units_figure(spec, entries, thresholds=thresholds, layers=shown, device=device), path)
