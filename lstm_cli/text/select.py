"""Select and match (LSTMVis, Strobelt et al. 2017): pick a span of the text, find the units
that are on throughout it and off just around it, then find the other places in the text where
those units are on together.

THE DEFINITION (the HTML report implements the same in JavaScript and a browser test compares
the two; change neither alone):

Units are every (layer, direction, unit) in order: layer-major, then forward before backward,
then unit index. State: `--state c` uses tanh(c) as LSTMVis does, `--state h` uses h (values in
[-1, 1]).

Quantisation (shared so that browser and CLI decide identically): every value v becomes
q = ceil(100 * v) - 1 computed in float64 (numpy: np.ceil(100.0 * v) - 1), clipped to
[-101, 99], as int8. A threshold t (two decimals at most, in [-0.99, 0.99]) gives
k = round(100 * t). A unit is ON at step s iff q >= k (equal to v > t except within 1e-15 of
the grid). All on/off decisions use q and k only.

Selection of a span [a, b) (0 <= a < b <= T): a unit is SELECTED iff it is ON at every step of
[a, b) and OFF at every step of [a - margin, a) and [b, b + margin) that exists (clipped to
[0, T)); margin 0 = no off-constraint. For each selected unit: mean_inside = mean of v (raw
float64) over [a, b), mean_outside = mean of v over all other steps (None when there are none).

Matching, given the selected set S (|S| >= 1): need = ceil(|S| / 2); hits(s) = number of units
of S ON at step s; candidate runs = maximal intervals [c, d) with hits(s) >= need at every step
and length d - c >= min_length. For a run: R = the set of ALL units (selected or not) ON at
every step of [c, d); matched = |S ∩ R|; others = |R \\ S|; score = |S ∩ R| / |S ∪ R|
(Jaccard; 0 when empty). Rank: matched desc, others asc, length desc, start asc. Keep the first
`top`. The run overlapping [a, b) is listed like any other, flagged selection: true.

Sign (`--sign`): the sign of a unit is a convention of training, not a property of the model:
negating unit u's g rows (its c and h follow) and every weight that reads its h gives the same
network with u's values negated. So a detector may be on where its value is low. `--sign
positive` (default, as LSTMVis) considers each unit as above; `--sign both` also considers each
unit's negative side, ON at step s iff q <= -k - 1 (equal to v <= -t except within 1e-15 of the
grid), for a threshold t >= 0 so that the two sides never overlap. The units are then every
unit's positive side in the order above, followed by every unit's negative side in the same
order; selection and matching treat the two sides as separate units. mean_inside and
mean_outside are of v itself (negative for a negative side).

Beyond the definition: a NaN value quantises to -101 (never on). Offsets are character offsets
into the text, end exclusive; one step per character.

This module is numpy only: `run_select` gets the unit values from text/unit_states.py (float64,
the model's own weights), everything else works on arrays, so tests can plant states directly.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields

import numpy as np

from lstm_cli.errors import UsageError
from lstm_cli.text.units import UnitsResult

STATES = {"c": "tanh(c)", "h": "h"}
DEFAULT_STATE = "c"
DEFAULT_THRESHOLD = 0.3
DEFAULT_MARGIN = 1
DEFAULT_MIN_LENGTH = 1
SIGNS = ("positive", "both")  # both: each unit's low side is a unit too
DEFAULT_SIGN = "positive"
DEFAULT_TOP = 10  # matches listed (with --select; without it --top counts units per feature)
MIN_Q, MAX_Q = -101, 99
RUN_OPEN, RUN_CLOSE = "[[", "]]"  # how a run is marked where there is no colour
CONTINUES = "↵"  # the run goes on past the end of the context line
SELECTION_FLAGS = ("--select", "--select-text", "--select-regex")


# -- the definition ---------------------------------------------------------------------------


def quantize(values) -> np.ndarray:
    """q = ceil(100 v) - 1 in float64, clipped to [-101, 99], as int8 (NaN: -101)."""
    v = np.asarray(values, dtype=np.float64)
    q = np.ceil(100.0 * v) - 1
    q = np.where(np.isnan(q), MIN_Q, q)
    return np.clip(q, MIN_Q, MAX_Q).astype(np.int8)


def threshold_steps(t: float) -> int:
    """k = round(100 t) for a threshold of two decimals at most in [-0.99, 0.99]; else UsageError."""
    if not isinstance(t, (int, float)) or not math.isfinite(t):
        raise UsageError(f"--threshold must be between -0.99 and 0.99 (got {t!r})")
    k = round(100 * t)
    if abs(100 * t - k) > 1e-6:
        raise UsageError(f"--threshold takes two decimals at most, like 0.3 or 0.25 (got {t!r})")
    if not -99 <= k <= 99:
        raise UsageError(f"--threshold must be between -0.99 and 0.99 (got {t:g})")
    return int(k)


def on_steps(q: np.ndarray, k: int, sign: str = DEFAULT_SIGN) -> np.ndarray:
    """ON (T, units) booleans: q >= k; with sign "both" (T, 2 units): q >= k, then q <= -k - 1."""
    q = np.asarray(q)
    if sign == "positive":
        return q >= k
    if k < 0:
        raise ValueError(f"sign both needs k >= 0 (got {k})")
    return np.concatenate([q >= k, q <= -k - 1], axis=1)


def select_units(on: np.ndarray, a: int, b: int, margin: int) -> np.ndarray:
    """Indices of the units ON at every step of [a, b) and OFF at every existing step of
    [a - margin, a) and [b, b + margin)."""
    steps = on.shape[0]
    if not 0 <= a < b <= steps:
        raise ValueError(f"span [{a}, {b}) outside [0, {steps})")
    chosen = on[a:b].all(axis=0)
    if margin > 0:
        around = np.concatenate([on[max(0, a - margin) : a], on[b : min(steps, b + margin)]], axis=0)
        chosen &= ~around.any(axis=0)
    return np.flatnonzero(chosen)


def span_means(values: np.ndarray, a: int, b: int, units: np.ndarray) -> list[tuple[float, float | None]]:
    """(mean over [a, b), mean over every other step or None) of v for each unit."""
    inside = values[a:b, units].mean(axis=0)
    rest = np.concatenate([values[:a, units], values[b:, units]], axis=0)
    outside = rest.mean(axis=0) if rest.shape[0] else [None] * len(units)
    return [(float(i), None if o is None else float(o)) for i, o in zip(inside, outside)]


@dataclass
class Run:
    start: int
    end: int  # exclusive
    length: int
    matched: int  # |S ∩ R|
    others: int  # |R \ S|
    score: float  # |S ∩ R| / |S ∪ R|
    selection: bool  # overlaps the selected span


def candidate_runs(on: np.ndarray, selected, min_length: int = 1) -> list[tuple[int, int]]:
    """Maximal [c, d) where at least ceil(|S| / 2) units of S are ON at every step, d - c >= min_length."""
    selected = np.asarray(selected, dtype=np.intp)
    if selected.size == 0:
        return []
    need = -(-selected.size // 2)
    good = on[:, selected].sum(axis=1) >= need
    edges = np.diff(np.concatenate([[0], good.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(c), int(d)) for c, d in zip(starts, ends) if d - c >= min_length]


def match_runs(on: np.ndarray, selected, span: tuple[int, int], min_length: int = 1,
               top: int | None = None) -> tuple[list[Run], int]:
    """The ranked runs (the first `top`) and how many there were in all."""
    selected = np.asarray(selected, dtype=np.intp)
    in_s = np.zeros(on.shape[1], dtype=bool)
    in_s[selected] = True
    a, b = span
    runs = []
    for c, d in candidate_runs(on, selected, min_length):
        r = on[c:d].all(axis=0)
        matched = int((r & in_s).sum())
        others = int((r & ~in_s).sum())
        union = int(selected.size) + others
        runs.append(Run(c, d, d - c, matched, others, matched / union if union else 0.0, c < b and d > a))
    runs.sort(key=lambda run: (-run.matched, run.others, -run.length, run.start))
    return (runs if top is None else runs[:top]), len(runs)


# -- spans of the text ------------------------------------------------------------------------


def parse_select(value: str) -> tuple[int, int]:
    """'START:END' -> (START, END): character offsets, END exclusive, END > START."""
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", value)
    if match is None:
        raise UsageError(f"--select takes START:END, character offsets with END exclusive, like 10:25 (got {value!r})")
    a, b = int(match.group(1)), int(match.group(2))
    if b <= a:
        raise UsageError(f"--select {a}:{b} is an empty selection: END must be greater than START")
    return a, b


def _nth(found: list[tuple[int, int]], occurrence: int | None, what: str) -> tuple[int, int]:
    n = occurrence or 1
    if n > len(found):
        times = "once" if len(found) == 1 else f"{len(found)} times"
        raise UsageError(f"{what} occurs {times} in the text: --occurrence {n} is beyond that")
    return found[n - 1]


def resolve_span(text: str, select: str | None = None, select_text: str | None = None,
                 occurrence: int | None = None, select_regex: str | None = None) -> tuple[int, int]:
    """The selected [a, b) of the text from exactly one of the three ways to give it."""
    given = [flag for flag, value in zip(SELECTION_FLAGS, (select, select_text, select_regex)) if value is not None]
    if len(given) != 1:
        raise UsageError(f"give one of {', '.join(SELECTION_FLAGS)} (got {' and '.join(given) or 'none'})")
    if occurrence is not None and select is not None:
        raise UsageError("--occurrence counts matches of --select-text or --select-regex; --select takes offsets")
    if occurrence is not None and occurrence < 1:
        raise UsageError(f"--occurrence counts from 1 (got {occurrence})")
    steps = len(text)
    if select is not None:
        a, b = parse_select(select)
        if b > steps:
            raise UsageError(f"--select {a}:{b} goes past the end of the text: it has {steps:,} characters "
                             f"(offsets 0 to {steps:,})")
        return a, b
    if select_text is not None:
        if not select_text:
            raise UsageError("--select-text is empty: a selection needs at least one character")
        found, start = [], text.find(select_text)
        while start >= 0:
            found.append((start, start + len(select_text)))
            start = text.find(select_text, start + len(select_text))
        if not found:
            raise UsageError(f"--select-text {select_text!r} is not in the text")
        return _nth(found, occurrence, f"--select-text {select_text!r}")
    try:
        pattern = re.compile(select_regex)
    except re.error as exc:
        raise UsageError(f"--select-regex {select_regex!r} is not a valid regular expression: {exc}") from None
    found = [m.span() for m in pattern.finditer(text)]
    if not found:
        raise UsageError(f"--select-regex {select_regex!r} has no match in the text")
    a, b = _nth(found, occurrence, f"--select-regex {select_regex!r}")
    if b == a:
        raise UsageError(f"--select-regex {select_regex!r} matches the empty string at offset {a}: "
                         "a selection needs at least one character")
    return a, b


def check_sign(sign: str | None, threshold: float | None) -> None:
    """--sign is positive or both; both needs a threshold of 0 or more (UsageError, one line)."""
    if sign is not None and sign not in SIGNS:
        raise UsageError(f"--sign must be positive (units on above the threshold, as LSTMVis) or both (also units "
                         f"on below minus the threshold) (got {sign!r})")
    if sign == "both" and threshold is not None and threshold < 0:
        raise UsageError(f"--sign both needs a --threshold of 0 or more, so that a unit's two sides never overlap "
                         f"(got {threshold:g})")


def check_select_flags(*, selection: bool, occurrence: int | None, state: str | None, threshold: float | None,
                       margin: int | None, match: bool, min_length: int | None, proj_size: int = 0,
                       sign: str | None = None) -> None:
    """The flag rules that need no text (UsageError, one line)."""
    if not selection:
        given = [name for name, value in (("--occurrence", occurrence), ("--state", state),
                                          ("--threshold", threshold), ("--margin", margin),
                                          ("--min-length", min_length), ("--sign", sign)) if value is not None]
        given += ["--match"] if match else []
        if given:
            raise UsageError(f"{given[0]} works on a selection: give --select START:END, --select-text STRING "
                             "or --select-regex PATTERN too")
        return
    if state is not None and state not in STATES:
        raise UsageError(f"--state must be c (tanh of the cell state) or h (the hidden state) (got {state!r})")
    if state == "h" and proj_size:
        raise UsageError(f"--state h: this model projects h to {proj_size} values (--proj-size), which are not "
                         "units of the cell; use --state c")
    if threshold is not None:
        threshold_steps(threshold)
    check_sign(sign, threshold)
    if margin is not None and margin < 0:
        raise UsageError(f"--margin must be 0 or more (got {margin})")
    if min_length is not None and min_length < 1:
        raise UsageError(f"--min-length must be 1 or more (got {min_length})")
    if min_length is not None and not match:
        raise UsageError("--min-length sets the shortest run --match lists: give --match too")
    if occurrence is not None and occurrence < 1:
        raise UsageError(f"--occurrence counts from 1 (got {occurrence})")


# -- the result ---------------------------------------------------------------------------------


@dataclass
class SelectedUnit:
    layer: int
    direction: str
    unit: int
    sign: int  # 1: on above the threshold; -1: on below minus the threshold (--sign both)
    mean_inside: float
    mean_outside: float | None


@dataclass
class Match:
    start: int
    end: int  # exclusive
    length: int
    matched: int
    others: int
    score: float
    selection: bool
    context: str  # the line holding the run's start, the run marked [[...]] (↵: it goes on past the line)
    line: int  # that line's number, from 1


@dataclass
class SelectResult:
    span: dict  # {start, end, text}
    state: str  # c or h
    values: str  # tanh(c) or h
    threshold: float
    threshold_steps: int  # k
    margin: int
    sign: str  # positive, or both: each unit's negative side is a unit too
    units: int  # units considered (every layer and direction; twice that with sign both)
    selected: list[SelectedUnit]
    need: int | None  # ceil(|S| / 2): selected units on together that make a run; None with none selected
    min_length: int | None  # with --match
    top: int | None  # matches listed at most, with --match
    runs: int | None  # candidate runs in all, with --match
    matches: list[Match] | None  # null without --match
    summary: str  # one sentence: what was selected, or that nothing was and what to try
    match_summary: str | None  # one sentence about the matches; null without --match


def line_of(text: str, start: int) -> tuple[int, int, int]:
    """(line start, line end without its newline, line number from 1) of the line holding `start`."""
    first = text.rfind("\n", 0, start) + 1
    last = text.find("\n", start)
    return first, (len(text) if last < 0 else last), text.count("\n", 0, first) + 1


def context_parts(text: str, start: int, end: int) -> tuple[str, str, str, bool]:
    """(before, run, after, continues) on the line holding `start`: the run cut at the line's end,
    `continues` when it goes on past it."""
    first, last, _ = line_of(text, start)
    stop = min(end, last)
    return text[first:start], text[start:stop], text[stop:last], end > last


def marked_context(text: str, start: int, end: int) -> str:
    before, run, after, continues = context_parts(text, start, end)
    return f"{before}{RUN_OPEN}{run}{CONTINUES if continues else ''}{RUN_CLOSE}{after}"


def unit_labels(spec) -> list[tuple[int, str, int]]:
    """(layer, direction, unit) in the definition's order."""
    return [(layer, direction, unit) for layer in range(spec.num_layers) for direction in spec.directions()
            for unit in range(spec.hidden_size)]


def state_matrix(values: dict, spec, state: str) -> np.ndarray:
    """(T, units) float64: tanh(c) or h of every unit, in unit_labels' order."""
    blocks = []
    for layer in range(spec.num_layers):
        for direction in spec.directions():
            block = values[(layer, direction)][state]
            blocks.append(np.tanh(block) if state == "c" else block)
    return np.concatenate(blocks, axis=1).astype(np.float64, copy=False)


def shown_span(text: str, limit: int = 40) -> str:
    part = text if len(text) <= limit else text[: limit - 1] + "…"
    return repr(part)


def analyse(values: np.ndarray, labels: list[tuple[int, str, int]], text: str, span: tuple[int, int], *,
            state: str = DEFAULT_STATE, threshold: float = DEFAULT_THRESHOLD, margin: int = DEFAULT_MARGIN,
            match: bool = False, top: int = DEFAULT_TOP, min_length: int = DEFAULT_MIN_LENGTH,
            sign: str = DEFAULT_SIGN) -> SelectResult:
    """The definition applied to `values` (T, units) float64, one row per character of `text`."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (len(text), len(labels)):
        raise ValueError(f"values {values.shape} for {len(text)} characters and {len(labels)} units")
    check_sign(sign, threshold)
    k = threshold_steps(threshold)
    a, b = span
    on = on_steps(quantize(values), k, sign)
    chosen = select_units(on, a, b, margin)
    n = len(labels)  # with sign both, index n + u is unit u's negative side
    means = span_means(values, a, b, chosen % n)
    selected = [SelectedUnit(*labels[u % n], sign=1 if u < n else -1, mean_inside=i, mean_outside=o)
                for u, (i, o) in zip(chosen, means)]
    what = STATES[state]
    condition = f"{what} > {threshold:g}" + (f" (or < {-threshold:g})" if sign == "both" else "")
    condition += " at every character of the selection"
    if selected:
        around = (f" and are off on the {margin} character(s) either side" if margin
                  else " (--margin 0: no condition around it)")
        considered = f"{on.shape[1]} unit sides" if sign == "both" else f"{len(labels)} units"
        summary = f"{len(selected)} of {considered} have {condition}{around}."
    else:
        around = f" and is off on the {margin} character(s) either side" if margin else ""
        tries = (["a lower --threshold"] + (["--margin 0"] if margin else [])
                 + (["--sign both"] if sign == "positive" and threshold >= 0 else []) + ["a shorter selection"])
        summary = f"No unit has {condition}{around}: try {', '.join(tries[:-1])} or {tries[-1]}."
    matches = runs = match_summary = None
    if match and not selected:
        matches, runs = [], 0
        match_summary = "--match: no unit is selected, so there is nothing to match."
    elif match:
        found, runs = match_runs(on, chosen, span, min_length, top)
        matches = [Match(**{f.name: getattr(run, f.name) for f in fields(run)},
                         context=marked_context(text, run.start, run.end), line=line_of(text, run.start)[2])
                   for run in found]
        need = -(-len(selected) // 2)
        longest = f" of {min_length}+ characters" if min_length > 1 else ""
        if not runs:
            match_summary = (f"No run{longest} has {need} or more of the {len(selected)} selected units on together: "
                             "try a lower --min-length.")
        else:
            others = sum(not m.selection for m in matches)
            match_summary = (f"{runs} run(s){longest} where at least {need} of the {len(selected)} selected units "
                             f"are on together; {len(matches)} listed, {others} of them away from the selection.")
    return SelectResult(
        span={"start": a, "end": b, "text": text[a:b]}, state=state, values=what, threshold=float(threshold),
        threshold_steps=k, margin=margin, sign=sign, units=int(on.shape[1]), selected=selected,
        need=-(-len(selected) // 2) if selected else None, min_length=min_length if match else None,
        top=top if match else None, runs=runs, matches=matches, summary=summary, match_summary=match_summary,
    )


def run_select(spec, text: str, span: tuple[int, int], *, state: str = DEFAULT_STATE,
               threshold: float = DEFAULT_THRESHOLD, margin: int = DEFAULT_MARGIN, match: bool = False,
               top: int = DEFAULT_TOP, min_length: int = DEFAULT_MIN_LENGTH, sign: str = DEFAULT_SIGN,
               states=None) -> SelectResult:
    """Select and match on `spec`'s model reading `text` (`states`: unit_states already computed)."""
    if states is None:
        from lstm_cli.text.unit_states import unit_states

        states = unit_states(spec, sequence=0)
    if states.steps != len(text):
        raise ValueError(f"{states.steps} steps for a text of {len(text)} characters")
    return analyse(state_matrix(states.values, spec, state), unit_labels(spec), text, span, state=state,
                   threshold=threshold, margin=margin, match=match, top=top, min_length=min_length, sign=sign)


@dataclass
class SelectedUnitsResult(UnitsResult):
    """`units` with a selection: every key of UnitsResult, and `select`."""

    select: SelectResult | None = None


def with_selection(units: UnitsResult, select: SelectResult) -> SelectedUnitsResult:
    result = SelectedUnitsResult(**{f.name: getattr(units, f.name) for f in fields(units)}, select=select)
    result.text, result.traces = units.text, units.traces
    return result
