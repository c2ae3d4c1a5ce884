"""The data the page carries, as one JSON-ready dict: numbers computed here, drawn by
assets/report.js. Pure functions of numpy arrays and plain results (no torch), so each is
tested on its own.

Large arrays travel as base64 of little-endian bytes:
- `q`: the select-and-match state, int8, unit-major (units x steps). Every value v of tanh(c)
  (state "c", as LSTMVis shows it) or h becomes q = ceil(100 v) - 1 in float64, clipped to
  [-101, 99]; a unit is ON at a step when q >= k = round(100 t) for the threshold t, i.e. when
  v > t; with the sign "both" (t >= 0) each unit's negative side is a unit too, ON when
  q <= -k - 1, i.e. when v <= -t. The browser's selection and matching use q and k only.
- heatmap panels: uint16, row-major (unit rows x time columns), each the bin mean quantised
  linearly between the panel's `low` and `high` (65535 = no value).
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field

import numpy as np

from lstm_cli.text.select import quantize

MAX_COLUMNS = 1000  # heatmap time columns: more steps are binned, each column their mean
MAX_ROWS = 512  # heatmap unit rows per panel: more units are binned likewise
MAX_HEATMAP_CELLS = 2_000_000  # over all panels (uint16: 4 MB, 5.3 MB as base64)
MAX_STATE_CELLS = 5_500_000  # units x steps of the select-and-match state (int8: 7.3 MB as base64)
MAX_STEPS = 50_000  # characters or steps laid out in the page (one element each)
HEATMAP_QUANTITIES = ("i", "f", "g", "o", "c")
NO_VALUE = 65535


@dataclass
class Caps:
    """What was cut or binned to keep the page small and quick, and the notes saying so."""

    steps: int  # the sequence's steps
    shown_steps: int  # those the text/steps view and select-and-match cover (the first ones)
    units: int  # units of the select-and-match (every layer x direction)
    columns: int  # heatmap time columns
    steps_per_column: int
    rows: int  # heatmap rows per panel (the widest layer's)
    units_per_row: int
    notes: list[str] = field(default_factory=list)


def state_values(quantities: dict[str, np.ndarray], state: str) -> np.ndarray:
    """(T, units) float64: tanh(c) for state "c", h for "h" (as text.select.state_matrix)."""
    return np.tanh(quantities["c"]) if state == "c" else np.asarray(quantities["h"], dtype=np.float64)


def unit_order(values: dict[tuple[int, str], dict[str, np.ndarray]]) -> list[tuple[int, str]]:
    """Layer-major, forward before backward."""
    return sorted(values, key=lambda key: (key[0], key[1] != "forward"))


def bins(n: int, most: int) -> tuple[int, int]:
    """k, the smallest count per bin that leaves at most `most` bins of n, and the bins' count;
    bin j is [j k, min((j + 1) k, n))."""
    k = max(1, math.ceil(n / max(1, most)))
    return k, math.ceil(n / k) if n else 0


def bin_means(matrix: np.ndarray, step_k: int, unit_k: int) -> np.ndarray:
    """(units / unit_k, T / step_k) means of a (T, units) matrix, NaN ignored (all-NaN bins stay
    NaN); the last bin of each axis may be shorter."""
    matrix = np.asarray(matrix, dtype=np.float64)
    T, units = matrix.shape
    finite = np.isfinite(matrix)
    total, count = np.where(finite, matrix, 0.0), finite.astype(np.float64)
    for axis, k, n in ((0, step_k, T), (1, unit_k, units)):
        if k > 1:
            starts = np.arange(0, n, k)
            total, count = np.add.reduceat(total, starts, axis=axis), np.add.reduceat(count, starts, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return means.T  # rows x columns


def encode_panel(means: np.ndarray) -> tuple[str, float, float]:
    """Linear uint16 codes 0..65534 between the finite values' min and max (65535: NaN), as
    base64; and those ends."""
    finite = means[np.isfinite(means)]
    low = float(finite.min()) if finite.size else 0.0
    high = float(finite.max()) if finite.size else 0.0
    span = high - low
    scaled = np.zeros_like(means) if span <= 0 else (means - low) / span * (NO_VALUE - 1)
    codes = np.where(np.isfinite(means), np.rint(np.nan_to_num(scaled)), NO_VALUE).astype("<u2")
    return b64(codes), low, high


def colour_scale(quantity: str) -> dict:
    """How a panel's values become colours: i, f, o on [0, 1]; g on [-1, 1]; c through tanh onto
    [-1, 1], the value LSTMVis shows (trained cell states span |c| from 0.01 to hundreds, which
    no linear scale shows at once; hovering shows c itself)."""
    if quantity in ("i", "f", "o"):
        return {"low": 0.0, "high": 1.0, "transform": None}
    return {"low": -1.0, "high": 1.0, "transform": "tanh" if quantity == "c" else None}


def b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def plan_caps(steps: int, layer_units: list[int], widest: int, panels: int) -> Caps:
    """How much of the sequence the page lays out, and how coarse the heatmaps are."""
    units = sum(layer_units)
    shown = min(steps, MAX_STEPS, max(1, MAX_STATE_CELLS // max(1, units)))
    unit_k, rows = bins(widest, MAX_ROWS)
    most_columns = max(100, min(MAX_COLUMNS, MAX_HEATMAP_CELLS // max(1, rows * panels)))
    step_k, columns = bins(steps, most_columns)
    caps = Caps(steps, shown, units, columns, step_k, rows, unit_k)
    if shown < steps:
        caps.notes.append(
            f"The text view and select-and-match cover the first {shown:,} of {steps:,} steps (a cap of "
            f"{MAX_STEPS:,} steps, or {MAX_STATE_CELLS:,} unit values, keeps the page small and quick); "
            "the heatmaps cover every step."
        )
    if step_k > 1:
        caps.notes.append(
            f"Heatmaps: {steps:,} steps drawn as {columns:,} columns, each the mean of {step_k} steps "
            "(the last may hold fewer); hover a cell to see its steps."
        )
    if unit_k > 1:
        caps.notes.append(f"Heatmaps: {widest:,} units drawn as {rows:,} rows, each the mean of {unit_k} units.")
    return caps


def heatmap_data(values: dict[tuple[int, str], dict[str, np.ndarray]], caps: Caps) -> dict:
    panels = []
    for layer, direction in unit_order(values):
        for quantity in HEATMAP_QUANTITIES:
            matrix = np.asarray(values[(layer, direction)][quantity], dtype=np.float64)
            means = bin_means(matrix, caps.steps_per_column, caps.units_per_row)
            data, low, high = encode_panel(means)
            panels.append({
                "layer": layer, "direction": direction, "quantity": quantity,
                "units": int(matrix.shape[1]), "rows": int(means.shape[0]), "columns": int(means.shape[1]),
                "low": low, "high": high, "scale": colour_scale(quantity), "data": data,
            })
    return {
        "steps": caps.steps, "steps_per_column": caps.steps_per_column, "units_per_row": caps.units_per_row,
        "columns": caps.columns, "panels": panels,
    }


def state_data(values: dict[tuple[int, str], dict[str, np.ndarray]], state: str, shown: int) -> tuple[dict, list[dict]]:
    """The quantised state (units x shown steps, unit-major) with each unit's summary over the
    shown steps (float64, from the raw values), and the layer x direction blocks."""
    blocks, layers, offset = [], [], 0
    for layer, direction in unit_order(values):
        matrix = state_values(values[(layer, direction)], state)[:shown]
        blocks.append(matrix)
        layers.append({"layer": layer, "direction": direction, "units": int(matrix.shape[1]), "offset": offset})
        offset += matrix.shape[1]
    matrix = np.concatenate(blocks, axis=1)  # (shown, units)
    q = quantize(matrix).T  # units x steps: the one quantisation units --select decides with
    with np.errstate(invalid="ignore"):
        stats = {
            "mean": matrix.mean(axis=0), "std": matrix.std(axis=0),
            "min": matrix.min(axis=0), "max": matrix.max(axis=0),
        }
    std = np.where(np.isfinite(stats["std"]), stats["std"], -1.0)
    return {
        "q": b64(q),
        "stats": {name: [_finite(v, 10) for v in column.tolist()] for name, column in stats.items()},
        "default_unit": int(np.argmax(std)),
    }, layers


def saturation_data(gate_layers, thresholds: dict) -> dict:
    """gates --units: per layer x direction, each gate's per-unit left- and right-saturated
    fractions (Karpathy et al. 2015, Fig. 3)."""
    layers = []
    for entry in sorted(gate_layers, key=lambda e: (e.layer, e.direction != "forward")):
        if entry.units is None:
            continue
        layers.append({
            "layer": entry.layer, "direction": entry.direction,
            "gates": {gate: {"left": [_finite(v, 6) for v in sat.left_saturated],
                             "right": [_finite(v, 6) for v in sat.right_saturated]}
                      for gate, sat in entry.units.items()},
        })
    return {"thresholds": thresholds, "layers": layers}


def _finite(value: float, digits: int = 17) -> float | None:
    """JSON's number for a value (None for NaN and infinities), to `digits` significant digits:
    the page shows 3 or 4, and fewer digits keep a large model's page small."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")
