"""`gradients --plot FILE.png`: the norms over time, log scale, one line per model.

matplotlib is optional (`pip install 'lstm-cli[plot]'`) and imported only here, only when a plot
is asked for. The path and matplotlib are checked before any work, so a bad --plot costs
nothing; the figure is drawn without pyplot, so no global backend state changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lstm_cli.errors import UsageError
from lstm_cli.paths import writable_file

if TYPE_CHECKING:
    from lstm_cli.gradients import GradientsResult

INSTALL = "pip install 'lstm-cli[plot]'"


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except ImportError:
        raise UsageError(f"--plot needs matplotlib, which is not installed: {INSTALL}") from None


def check_png_path(path: str) -> Path:
    """A .png file in an existing, writable directory (an existing file must be writable)."""
    return writable_file("--plot", path, (".png",))


def plot_gradients(result: GradientsResult, path: Path) -> None:
    """Write the figure; an OSError while writing is a usage error with one line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for model in result.models:
        steps = range(len(model.grad_norms))
        # zeros cannot sit on a log axis: leave them out rather than invent a value
        points = [(t, v) for t, v in zip(steps, model.grad_norms) if v > 0]
        label = model.module + (f", forget bias {model.forget_bias:g}" if model.forget_bias is not None else "")
        axes.plot([t for t, _ in points], [v for _, v in points], marker="o" if len(steps) <= 50 else None,
                  markersize=3, label=label)
    axes.set_yscale("log")
    axes.set_xlabel("time step t")
    axes.set_ylabel("‖d loss / d x_t‖")
    config = result.config
    axes.set_title(
        f"loss = sum of h_n[-1]; input {config['input_size']}, hidden {config['hidden_size']}, "
        f"{config['num_layers']} layer(s), batch {config['batch_size']}, seed {config['seed']}",
        fontsize=9,
    )
    axes.grid(True, which="major", alpha=0.3)
    axes.legend()
    try:
        figure.savefig(path, format="png", dpi=120)
    except OSError as exc:
        raise UsageError(f"--plot {path}: cannot write: {exc.strerror or exc}") from None
