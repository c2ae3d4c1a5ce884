"""The choices of `lstm-cli report` beyond the shared LSTM flags, validated before any work: the
state the select-and-match reads, its threshold, margin and sign, and where the page goes. No torch
here: a bad value fails in a fraction of a second with one line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lstm_cli.errors import UsageError
from lstm_cli.paths import writable_file

STATES = ("c", "h")
STATE_LABELS = {"c": "tanh(c)", "h": "h"}
HTML_SUFFIXES = (".html", ".htm")
DEFAULT_THRESHOLD = 0.3
DEFAULT_MARGIN = 1
DEFAULT_MIN_LENGTH = 1
DEFAULT_TOP = 10
DEFAULT_SIGN = "positive"  # as text.select.DEFAULT_SIGN (checked there: text.select.check_sign)


@dataclass(frozen=True)
class ReportOptions:
    """What the page starts with (its controls change threshold, margin, sign, minimum length and
    the matches shown in the browser) and what it holds."""

    state: str = "c"  # "c": tanh(c), as LSTMVis shows it; "h": h
    threshold: float = DEFAULT_THRESHOLD
    margin: int = DEFAULT_MARGIN
    min_length: int = DEFAULT_MIN_LENGTH
    top: int = DEFAULT_TOP
    sign: str = DEFAULT_SIGN  # "positive": ON where v > t (LSTMVis); "both": also each unit's negative side


def check_threshold(threshold: float) -> float:
    """A threshold t in [-0.99, 0.99] with two decimals at most (units --select's rule: k = round(100 t)
    is then exact, and the page's control, which moves in steps of 0.01, can show it)."""
    from lstm_cli.text.select import threshold_steps

    return threshold_steps(threshold) / 100


def check_options(state: str = "c", threshold: float = DEFAULT_THRESHOLD, margin: int = DEFAULT_MARGIN,
                  min_length: int = DEFAULT_MIN_LENGTH, top: int = DEFAULT_TOP,
                  sign: str = DEFAULT_SIGN) -> ReportOptions:
    from lstm_cli.text.select import check_sign

    state = str(state).lower()
    if state not in STATES:
        raise UsageError(f"--state must be c (tanh of the cell state, as LSTMVis shows it) or h (got {state!r})")
    if isinstance(margin, bool) or not isinstance(margin, int) or margin < 0:
        raise UsageError(f"--margin must be a whole number of steps, 0 or more (got {margin})")
    if isinstance(min_length, bool) or not isinstance(min_length, int) or min_length < 1:
        raise UsageError(f"--min-length must be a whole number of steps, 1 or more (got {min_length})")
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise UsageError(f"--top must be 1 or more (got {top})")
    threshold = check_threshold(threshold)
    sign = DEFAULT_SIGN if sign is None else str(sign).lower()  # as state above
    check_sign(sign, threshold)  # positive or both; both needs t >= 0 (one line, as units --sign)
    return ReportOptions(state, threshold, margin, min_length, top, sign)


def check_html_path(path: str | Path) -> Path:
    """--html FILE: an .html or .htm file in an existing, writable folder."""
    return writable_file("--html", str(path), HTML_SUFFIXES)
