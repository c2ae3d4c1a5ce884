"""Which units track which features of the text: the Pearson correlation r of every unit's cell
state c and hidden state h (every layer and direction) with every feature of text/features.py,
over the text's characters; per feature the units of largest |r|, and those that reach --min-r.

The unit's values come from unit_states (float64, the model's own weights), one per character:
the state after reading that character, next to the feature's value at that character."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lstm_cli.checks import Check
from lstm_cli.spec import LSTMSpec
from lstm_cli.text.features import FEATURES, text_features

QUANTITIES = ("c", "h")

# A unit "tracks" a feature at |r| >= 0.5: the feature then accounts for at least r^2 = 25% of
# the unit's variance over the text, a relation one sees in a trace by eye. It is far above
# chance for texts of the length this is meant for: with N independent characters a unit's r
# with a feature it ignores is about N(0, 1/N), |r| < 4.5/sqrt(N) even for the most extreme of
# thousands of unit/feature pairs, i.e. below 0.1 for N = 2000 (text is autocorrelated, which
# widens this, but not to 0.5). Short texts get a note: their correlations are noisy.
DEFAULT_MIN_R = 0.5
SHORT_TEXT = 200


@dataclass
class UnitCorrelation:
    layer: int
    direction: str
    unit: int
    quantity: str  # c or h
    r: float


@dataclass
class FeatureUnits:
    constant: bool  # the feature has one value over the whole text: no correlation exists
    best: list[UnitCorrelation]  # the units of largest |r|, best first


@dataclass
class Track:
    feature: str
    layer: int
    direction: str
    unit: int
    quantity: str
    r: float


@dataclass
class UnitsResult:
    command: str
    config: dict
    characters: int
    min_r: float
    top: int
    features: dict[str, FeatureUnits]
    tracks: list[Track]  # every listed unit with |r| >= min_r, strongest first
    summary: str  # one plain sentence: what tracks what, or that nothing does
    notes: list[str]
    # The unit values against PyTorch's own cell, step by step (text.unit_states); passed is
    # null when nothing could be checked (a model nn.LSTMCell cannot compute).
    passed: bool | None = None
    checks: list[Check] = field(default_factory=list)
    # Also, for the renderer only and so not fields (JSON has fields only): `text`, and
    # `traces[(layer, direction, unit, quantity)]`, each listed unit's values over the text.


def pearson(values: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """r of each column of values (T, W) with feature (T,); NaN for a constant column."""
    x = values - values.mean(axis=0)
    y = feature - feature.mean()
    norms = np.sqrt((x * x).sum(axis=0)) * np.sqrt((y * y).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (x * y[:, None]).sum(axis=0) / norms
    r[norms == 0] = np.nan
    return np.clip(r, -1.0, 1.0)


def correlate(values: dict[tuple[int, str], dict[str, np.ndarray]], features: dict[str, np.ndarray], top: int,
              min_r: float) -> tuple[dict[str, FeatureUnits], list[Track], int]:
    """Per feature, the `top` units of largest |r| over every layer, direction and quantity;
    the listed ones that reach min_r; and how many (unit, quantity) series were constant."""
    columns: list[tuple[int, str, int, str]] = []
    blocks = []
    for (layer, direction), quantities in sorted(values.items()):
        for quantity in QUANTITIES:
            block = quantities[quantity]
            blocks.append(block)
            columns += [(layer, direction, unit, quantity) for unit in range(block.shape[1])]
    matrix = np.concatenate(blocks, axis=1)
    constant_units = int((matrix.max(axis=0) == matrix.min(axis=0)).sum())
    out: dict[str, FeatureUnits] = {}
    tracks: list[Track] = []
    for name, feature in features.items():
        if feature.max() == feature.min():
            out[name] = FeatureUnits(constant=True, best=[])
            continue
        r = pearson(matrix, feature)
        strength = np.where(np.isnan(r), -1.0, np.abs(r))
        order = np.argsort(-strength, kind="stable")[:top]
        best = [UnitCorrelation(*columns[k], r=float(r[k])) for k in order if not np.isnan(r[k])]
        out[name] = FeatureUnits(constant=False, best=best)
        tracks += [Track(name, b.layer, b.direction, b.unit, b.quantity, b.r) for b in best if abs(b.r) >= min_r]
    tracks.sort(key=lambda t: -abs(t.r))
    return out, tracks, constant_units


def unit_label(layer: int, unit: int, quantity: str, direction: str) -> str:
    """layer:unit:quantity, e.g. 1:37:c; a backward unit 1:37:c:backward."""
    return f"{layer}:{unit}:{quantity}" + (":backward" if direction == "backward" else "")


def summary_sentence(tracks: list[Track], features: dict[str, FeatureUnits], min_r: float) -> str:
    if not tracks:
        best = [(name, b) for name, f in features.items() for b in f.best[:1]]
        if not best:
            return f"No unit tracks any feature: every feature is constant over this text (threshold |r| >= {min_r:g})."
        name, b = max(best, key=lambda item: abs(item[1].r))
        return (
            f"No unit tracks any feature: no |r| reaches {min_r:g}; the strongest is "
            f"{unit_label(b.layer, b.unit, b.quantity, b.direction)} with {name}, r = {b.r:.3f}."
        )
    named = sorted({t.feature for t in tracks}, key=FEATURES.index)
    return (
        f"{len(tracks)} listed unit(s) reach |r| >= {min_r:g}, for {len(named)} feature(s): {', '.join(named)}; "
        f"the strongest is {unit_label(tracks[0].layer, tracks[0].unit, tracks[0].quantity, tracks[0].direction)} "
        f"with {tracks[0].feature}, r = {tracks[0].r:.3f}."
    )


def run_units(spec: LSTMSpec, text: str, top: int = 3, min_r: float = DEFAULT_MIN_R, states=None) -> UnitsResult:
    """`text` is the one --text/--text-file gave (the characters spec's input was built from);
    `states`: its unit_states when already computed (select-and-match reads the same)."""
    from lstm_cli.text.unit_states import unit_states

    if states is None:
        states = unit_states(spec, sequence=0)
    if states.steps != len(text):  # cannot happen for text input; guards a misuse
        raise ValueError(f"{states.steps} steps for a text of {len(text)} characters")
    features = text_features(text)
    table, tracks, constant_units = correlate(states.values, features, top, min_r)
    notes = list(states.notes)
    constant = [name for name, f in table.items() if f.constant]
    if constant:
        notes.append(f"constant over this text, so skipped (no correlation exists): {', '.join(constant)}")
    if constant_units:
        notes.append(f"{constant_units} unit value series (c or h) constant over the text: left out")
    if len(text) < SHORT_TEXT:
        notes.append(f"only {len(text)} characters: correlations over a short text are noisy")
    traces = {}
    for f in table.values():
        for b in f.best:
            key = (b.layer, b.direction, b.unit, b.quantity)
            traces[key] = states.values[(b.layer, b.direction)][b.quantity][:, b.unit].tolist()
    result = UnitsResult(
        command="units", config=spec.config(), characters=len(text), min_r=min_r, top=top, features=table,
        tracks=tracks, summary=summary_sentence(tracks, table, min_r), notes=notes,
        passed=all(c.passed for c in states.checks) if states.checks else None, checks=states.checks,
    )
    result.text, result.traces = text, traces
    return result
