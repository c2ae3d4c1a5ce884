"""`gradients --plot FILE.png|.svg|.pdf`: the norms over time, log scale, one line per model,
titled with the configuration (sizes, seq-len, batch, dtype, device) and the sources (weights
and input).

matplotlib is optional (`pip install 'lstm-cli[plot]'`) and imported only here, only when a plot
is asked for. The path and matplotlib are checked before any work, so a bad --plot costs
nothing; the figure is drawn without pyplot, so no global backend state changes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from lstm_cli.plot import (
    INSTALL,
    check_plot_path,
    describe_configuration,
    describe_input,
    describe_weights,
    save_figure,
    title_lines,
)

if TYPE_CHECKING:
    from lstm_cli.gradients import GradientsResult


__all__ = ["INSTALL", "check_plot_path", "gradients_figure", "gradients_title", "plot_gradients"]


def plot_gradients(result: GradientsResult, path: Path) -> None:
    """Write the figure as .png, .svg or .pdf (by suffix); an OSError while writing is a usage
    error with one line."""
    save_figure(gradients_figure(result), path, dpi=120)


def gradients_title(result: GradientsResult) -> str:
    """What was computed; the configuration; where the weights and the input came from."""
    config = result.config
    weights = describe_weights(config)
    if config.get("source"):
        others = [model.module for model in result.models if model.cell != "lstm"]
        weights = f"nn.LSTM {weights}" + (f"; {', '.join(others)} random weights, seed {config['seed']}" if others else "")
    return title_lines([
        "‖d loss / d x_t‖ at every step t, loss = sum of h_n[-1]",
        describe_configuration(config, result.dtype, result.device),
        weights,
        describe_input(config),
    ], 100)


def gradients_figure(result: GradientsResult):
    """The matplotlib Figure: each model's norms over t = 0 .. L-1 on a log scale. A norm of 0
    (underflow) has no place on a log axis: the line breaks there, and those steps are marked in
    a band below the lowest positive norm, labelled "0 (underflow)". The x-axis spans every step."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    steps = max((len(model.grad_norms) for model in result.models), default=1)
    underflowed = sum(0 in model.grad_norms for model in result.models)
    band = 0.04 * (underflowed + 1)  # axes fraction: one row of ticks per model with a 0
    row = 0
    for model in result.models:
        # NaN breaks the line: a step of 0 is not joined to its neighbours
        values = [v if v > 0 else math.nan for v in model.grad_norms]
        label = model.module + (f", forget bias {model.forget_bias:g}" if model.forget_bias is not None else "")
        (line,) = axes.plot(range(len(values)), values, marker="o" if steps <= 50 else None, markersize=3,
                            label=label)
        zeros = [t for t, v in enumerate(model.grad_norms) if v == 0]
        if zeros:  # x in data units, y in axes units (0 = bottom)
            axes.plot(zeros, [0.04 * (row + 0.75)] * len(zeros), transform=axes.get_xaxis_transform(),
                      linestyle="none", marker="|", markersize=6, color=line.get_color(),
                      label=f"{model.module}: 0 at {len(zeros)} step(s)")
            row += 1
    pad = max(0.5, 0.02 * (steps - 1))
    axes.set_xlim(-pad, steps - 1 + pad)
    axes.set_yscale("log")
    positive = [v for model in result.models for v in model.grad_norms if v > 0 and math.isfinite(v)]
    if underflowed:
        if positive:  # room for the band below the lowest norm, on the log scale
            low, high = math.log10(min(positive)), math.log10(max(positive))
            span = max(high - low, 1.0) / (1 - band - 0.08)
            axes.set_ylim(10 ** (low - (band + 0.03) * span), 10 ** (high + 0.05 * span))
            # no tick below the line that tops the band: a value there would read as a norm
            line = 10 ** (low - 0.03 * span)
            axes.set_yticks([t for t in axes.get_yticks() if line <= t <= axes.get_ylim()[1]])
            axes.set_yticks([], minor=True)
        else:  # every norm is 0: no scale to show
            axes.set_ylim(1, 10)
            axes.set_yticks([])
            axes.set_yticks([], minor=True)
        axes.plot([0, 1], [band, band], transform=axes.transAxes, color="gray", linewidth=0.8, linestyle="--")
        axes.text(0.01, band + 0.01, "0 (underflow) below this line", transform=axes.transAxes,
                  fontsize=8, color="gray", va="bottom")
    axes.set_xlabel("time step t")
    axes.set_ylabel("‖d loss / d x_t‖")
    axes.set_title(gradients_title(result), fontsize=9)
    axes.grid(True, which="major", alpha=0.3)
    axes.legend()
    return figure
