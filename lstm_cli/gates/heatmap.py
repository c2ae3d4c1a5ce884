"""The --heatmap: one gate (or c) of one layer x direction for one sequence, as units x time,
averaged into at most HEATMAP_MAX_UNITS x HEATMAP_MAX_STEPS cells."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lstm_cli.gates_options import HeatmapSpec
from lstm_cli.spec import GATES

HEATMAP_MAX_STEPS = 64
HEATMAP_MAX_UNITS = 64


@dataclass
class Heatmap:
    """One gate of one layer x direction for one sequence: rows are (groups of) units, columns
    (bins of) time steps, values the mean over each cell (None: padding only)."""

    layer: int
    direction: str
    gate: str
    sequence: int
    value_range: list[float]
    units: list[list[int]]  # [start, stop) of each row
    steps: list[list[int]]  # [start, stop) of each column
    values: list[list[float | None]]


def _bins(total: int, most: int) -> list[list[int]]:
    """[start, stop) of at most `most` groups of equal size (the last may be shorter)."""
    size = -(-total // most)
    return [[start, min(start + size, total)] for start in range(0, total, size)]


def build_heatmap(which: HeatmapSpec, sequence: int, kept: dict[str, torch.Tensor]) -> Heatmap:
    """Units x time for one sequence, averaged into at most 64 x 64 cells (padding ignored)."""
    if which.gate == "c":
        values = kept["c"]
    else:
        values = kept["gates"][:, GATES.index(which.gate)]
    values = values.double().cpu().t()  # (H, T)
    units, steps = _bins(values.shape[0], HEATMAP_MAX_UNITS), _bins(values.shape[1], HEATMAP_MAX_STEPS)
    grid = []
    for u0, u1 in units:
        row = []
        for s0, s1 in steps:
            cell = values[u0:u1, s0:s1]
            mean = cell.nanmean().item()
            row.append(None if math.isnan(mean) else mean)
        grid.append(row)
    if which.gate == "c":
        finite = values[~values.isnan()]
        bound = finite.abs().max().item() if finite.numel() else 1.0
        value_range = [-bound, bound]
    else:
        value_range = [-1.0, 1.0] if which.gate == "g" else [0.0, 1.0]
    return Heatmap(which.layer, which.direction, which.gate, sequence, value_range, units, steps, grid)
