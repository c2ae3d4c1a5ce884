"""--plot: one PNG with a units x time heatmap per layer x direction (rows) and gate (columns
i, f, g, o, c) for one sequence. matplotlib is an optional extra, imported only here."""

from __future__ import annotations

from pathlib import Path

import torch

from lstm_cli.errors import UsageError
from lstm_cli.spec import GATE_MEANING, GATES, LSTMSpec


def plot_gates(path: Path, spec: LSTMSpec, kept: dict[tuple[int, str], dict[str, torch.Tensor]], sequence: int) -> None:
    """`kept` maps (layer, direction) to {"gates": (T, 4, H), "c": (T, H)} for one sequence,
    NaN at padded steps (drawn blank)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rows = list(kept)
    columns = [*GATES, "c"]
    figure, axes = plt.subplots(
        len(rows), len(columns), figsize=(3.2 * len(columns), 2.4 * len(rows) + 0.6), squeeze=False,
        constrained_layout=True,
    )
    for r, (layer, direction) in enumerate(rows):
        values = kept[(layer, direction)]
        for k, name in enumerate(columns):
            data = values["c"] if name == "c" else values["gates"][:, k]
            data = data.detach().float().cpu().t().numpy()  # (H, T)
            if name == "c":
                bound = max(float(abs(data[data == data]).max()) if (data == data).any() else 1.0, 1e-12)
                limits, cmap = (-bound, bound), "RdBu_r"
            elif name == "g":
                limits, cmap = (-1.0, 1.0), "RdBu_r"
            else:
                limits, cmap = (0.0, 1.0), "viridis"
            ax = axes[r][k]
            image = ax.imshow(data, aspect="auto", interpolation="nearest", cmap=cmap,
                              vmin=limits[0], vmax=limits[1], origin="lower")
            title = "c (cell state)" if name == "c" else f"{name} ({GATE_MEANING[name]})"
            ax.set_title(f"layer {layer} {direction}: {title}", fontsize=8)
            ax.set_xlabel("time step", fontsize=7)
            ax.set_ylabel("unit", fontsize=7)
            ax.tick_params(labelsize=6)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            figure.colorbar(image, ax=ax, shrink=0.8)
    figure.suptitle(f"LSTM gates, sequence {sequence}", fontsize=10)
    try:
        figure.savefig(path, dpi=100)
    except OSError as exc:
        raise UsageError(f"--plot {path}: cannot write: {exc.strerror or exc}") from None
    finally:
        plt.close(figure)
