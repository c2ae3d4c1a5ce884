"""`lstm-cli trace`: one unit's value at every character of a text (Karpathy, Johnson and
Fei-Fei 2015, Fig. 2; LSTMVis), and which units vary most over it.

This module parses --unit, computes the values (unit_states: float64, from the model's own
weights) and returns a plain result; render/trace.py prints it and draws --plot. The colour
scales and the one-digit value codes live here so that the terminal, the figure and the tests
share one definition."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from lstm_cli.checks import Check
from lstm_cli.errors import UsageError
from lstm_cli.spec import LSTMSpec

QUANTITIES = ("c", "h", "i", "f", "g", "o")
QUANTITY_MEANING = {
    "c": "cell state", "h": "hidden state", "i": "input gate", "f": "forget gate", "g": "cell candidate",
    "o": "output gate",
}
DIVERGING = ("c", "h", "g")  # signed: blue below 0, red above, centred at 0, scaled by max |value|
DEFAULT_TOP = 3
UNIT_USAGE = "--unit takes LAYER:UNIT[:c|h|i|f|g|o][:forward|backward], like 1:37 or 0:5:f"
NEEDS_TEXT = "trace colours the characters of --text or --text-file: give one"

# Colour scales (RGB). Diverging: RdBu's ends and its near-white middle; sequential (the gates,
# in [0, 1]): white to a dark green, which no diverging colour uses.
BLUE = (33, 102, 172)
WHITE = (247, 247, 247)
RED = (178, 24, 43)
SEQ_LOW = (255, 255, 255)
SEQ_HIGH = (0, 90, 50)


@dataclass(frozen=True)
class UnitRef:
    layer: int
    unit: int
    quantity: str = "c"
    direction: str = "forward"

    def label(self) -> str:
        direction = "" if self.direction == "forward" else f" {self.direction}"
        return f"layer {self.layer} unit {self.unit} {self.quantity} ({QUANTITY_MEANING[self.quantity]}){direction}"


@dataclass
class TracedUnit:
    """One unit over the text: which it is, its values (one per character) and their summary."""

    layer: int
    unit: int
    quantity: str
    direction: str
    values: list[float]
    scale: list[float]  # the colour scale's ends [low, high]
    mean: float
    std: float  # population std over the text's characters
    min: float
    max: float
    rank: int | None = None  # 1 = the largest std among its layer's units of this quantity; None unranked


@dataclass
class TraceResult:
    command: str
    config: dict
    device: str
    dtype: str
    unit: dict  # {layer, unit, quantity, direction}: the unit `values` belongs to
    text: str
    values: list[float]
    scale: list[float]
    top: list[TracedUnit]  # the K units of largest std (empty with --unit alone)
    ranked_in: dict | None  # {layer, quantity, direction, units}: where --top ranked
    codes: str  # how a value becomes a digit in the uncoloured output
    plot: str | None = None
    plot_truncated: int | None = None  # characters --plot drew when it drew fewer than the text's
    # The unit values against PyTorch's own cell, step by step (text.unit_states); null when
    # nothing could be checked (a model nn.LSTMCell cannot compute)
    passed: bool | None = None
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # What the terminal and --plot show, in order (the --unit, then the ranked ones): an attribute
    # set by run_trace, not a field, so JSON does not repeat `values` and `top`.
    shown: ClassVar[list[TracedUnit]] = []


# -- parsing --------------------------------------------------------------------------------------


def parse_unit(text: str) -> UnitRef:
    """'1:37' -> UnitRef(1, 37); '0:5:f', '1:2:c:backward'. Ranges are checked by check_unit."""
    parts = [part.strip() for part in text.split(":")]
    if not 2 <= len(parts) <= 4 or not parts[0].isdigit() or not parts[1].isdigit():
        raise UsageError(f"{UNIT_USAGE} (got {text!r})")
    rest = [part.lower() for part in parts[2:]]
    quantity, direction = "c", "forward"
    if rest and rest[0] in QUANTITIES:
        quantity = rest.pop(0)
    if rest and rest[0] in ("forward", "backward"):
        direction = rest.pop(0)
    if rest:
        raise UsageError(f"{UNIT_USAGE}; {rest[0]!r} is neither a quantity nor a direction (got {text!r})")
    return UnitRef(int(parts[0]), int(parts[1]), quantity, direction)


def width_of(spec: LSTMSpec, quantity: str) -> int:
    """Units of a quantity: h is H_out wide (proj_size when projecting), the others H."""
    return spec.h_out if quantity == "h" else spec.hidden_size


def check_unit(ref: UnitRef, spec: LSTMSpec) -> None:
    if ref.layer >= spec.num_layers:
        valid = f"0 to {spec.num_layers - 1}" if spec.num_layers > 1 else "0"
        raise UsageError(f"--unit: layer {ref.layer} does not exist: this model's layers are {valid}")
    units = width_of(spec, ref.quantity)
    if ref.unit >= units:
        raise UsageError(
            f"--unit: unit {ref.unit} does not exist: {ref.quantity} of this model has units 0 to {units - 1}"
        )
    if ref.direction == "backward" and not spec.bidirectional:
        raise UsageError("--unit: this model has no backward direction (it is not bidirectional)")


def check_top(top: int | None, spec: LSTMSpec, quantity: str) -> None:
    if top is None:
        return
    units = width_of(spec, quantity)
    if not 1 <= top <= units:
        raise UsageError(f"--top must be between 1 and {units}, the units of {quantity} in a layer (got {top})")


def check_trace_flags(spec: LSTMSpec) -> None:
    """Before any work: the input must be text."""
    if spec.text is None and spec.text_file is None:
        raise UsageError(NEEDS_TEXT)


# -- colours and codes ----------------------------------------------------------------------------


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    t = min(1.0, max(0.0, t))
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


def scale_for(quantity: str, values) -> tuple[float, float]:
    """The colour scale's ends: +-max|value| over the text for c, h, g; [0, 1] for i, f, o."""
    if quantity in DIVERGING:
        finite = [abs(v) for v in values if math.isfinite(v)]
        bound = max(finite, default=0.0)
        bound = bound if bound > 0 else 1.0
        return -bound, bound
    return 0.0, 1.0


def position(value: float, scale: tuple[float, float]) -> float:
    """Where a value lies on its scale, 0 (low end) to 1 (high end), clipped."""
    low, high = scale
    if not math.isfinite(value):
        return 0.5
    return min(1.0, max(0.0, (value - low) / (high - low)))


def colour(value: float, quantity: str, scale: tuple[float, float]) -> tuple[int, int, int]:
    """The background of a character: diverging blue-white-red through 0 for c, h, g,
    sequential white-green for the gates i, f, o."""
    p = position(value, scale)
    if quantity in DIVERGING:
        return _mix(WHITE, BLUE, 1 - 2 * p) if p < 0.5 else _mix(WHITE, RED, 2 * p - 1)
    return _mix(SEQ_LOW, SEQ_HIGH, p)


def ink(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light backgrounds, white on dark (relative luminance)."""
    r, g, b = background
    return (0, 0, 0) if 0.2126 * r + 0.7152 * g + 0.0722 * b > 140 else (255, 255, 255)


def code(value: float, scale: tuple[float, float]) -> str:
    """The digit of a value: its tenth of the scale, 0 (low end) to 9 (high end); '?' for NaN."""
    if not math.isfinite(value):
        return "?"
    return str(min(9, int(position(value, scale) * 10)))


def codes_sentence(quantity: str, scale: tuple[float, float]) -> str:
    low, high = scale
    if quantity in DIVERGING:
        return (f"digit = the value's tenth of {low:.3g} .. {high:.3g} (+-max |{quantity}| over the text): "
                f"0-4 below 0, 5-9 above, 0 and 9 the ends")
    return "digit = the value's tenth of 0 .. 1: d means d/10 <= value < (d+1)/10, 9 up to 1"


# -- the computation ------------------------------------------------------------------------------


def _traced(ref: UnitRef, values, rank: int | None = None) -> TracedUnit:
    import numpy as np

    array = np.asarray(values, dtype=np.float64)
    scale = scale_for(ref.quantity, array.tolist())
    return TracedUnit(
        ref.layer, ref.unit, ref.quantity, ref.direction, array.tolist(), list(scale),
        float(array.mean()), float(array.std()), float(array.min()), float(array.max()), rank,
    )


def rank_units(values, top: int) -> list[tuple[int, float]]:
    """(unit, std) of the `top` units of largest population std over the steps (T, units);
    ties go to the lower unit number."""
    import numpy as np

    stds = np.asarray(values, dtype=np.float64).std(axis=0)
    order = sorted(range(stds.size), key=lambda k: (-stds[k], k))
    return [(k, float(stds[k])) for k in order[:top]]


def run_trace(spec: LSTMSpec, unit: UnitRef | None, top: int | None) -> TraceResult:
    """Without `unit`: the DEFAULT_TOP (or `top`) units of largest std of c in the last layer.
    With `unit` and `top`: that unit, then the `top` units of its layer, quantity and direction."""
    from lstm_cli.text.input import read_text
    from lstm_cli.text.unit_states import unit_states

    text, _ = read_text(spec.text, spec.text_file)
    states = unit_states(spec)
    notes: list[str] = list(states.notes)
    shown: list[TracedUnit] = []
    ranked: list[TracedUnit] = []
    if unit is not None:
        shown.append(_traced(unit, states.unit(unit.layer, unit.unit, unit.quantity, unit.direction)))
    ranked_in = None
    if unit is None or top is not None:
        base = unit or UnitRef(spec.num_layers - 1, 0, "c", "forward")
        k = top if top is not None else min(DEFAULT_TOP, width_of(spec, base.quantity))
        matrix = states.values[(base.layer, base.direction)][base.quantity]
        for rank, (index, _) in enumerate(rank_units(matrix, k), start=1):
            ranked.append(_traced(UnitRef(base.layer, index, base.quantity, base.direction), matrix[:, index], rank))
        ranked_in = {"layer": base.layer, "quantity": base.quantity, "direction": base.direction,
                     "units": int(matrix.shape[1])}
        if unit is None:
            notes.append(
                f"no --unit: showing the {k} unit(s) of the last layer ({base.layer}) whose cell state c varies most "
                "over the text (largest std); --unit LAYER:UNIT[:QUANTITY] picks one, --top K more"
            )
        else:
            for item in ranked:
                if item.unit == unit.unit:
                    shown[0].rank = item.rank
    shown += [item for item in ranked if unit is None or item.unit != unit.unit]
    first = shown[0]
    result = TraceResult(
        command="trace",
        config=spec.config(),
        device="cpu",  # unit_states' float64 loop runs on the CPU
        dtype="float64",
        unit={"layer": first.layer, "unit": first.unit, "quantity": first.quantity, "direction": first.direction},
        text=text,
        values=first.values,
        scale=first.scale,
        top=ranked,
        ranked_in=ranked_in,
        codes=codes_sentence(first.quantity, tuple(first.scale)),
        notes=notes,
        passed=all(c.passed for c in states.checks) if states.checks else None,
        checks=states.checks,
    )
    result.shown = shown
    return result
