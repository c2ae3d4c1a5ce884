"""Numbers in the units people read: durations, percentages. Every renderer uses these, so a
duration or a share reads the same in every table."""

from __future__ import annotations

import math


def format_duration(seconds: float | None) -> str:
    """812 ns, 812 µs, 23.4 ms, 3.16 s, 3 min 22 s, 2 h 05 min: three significant digits
    below a minute (in the largest unit that keeps the value at least 1), whole units above."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds == 0:
        return "0 s"
    if seconds < 59.95:
        for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")):
            value = seconds / scale
            if float(f"{value:.3g}") >= 1 or unit == "ns":  # 0.9997 s is 1.00 s, not 1000 ms
                return f"{_three_digits(value)} {unit}"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _three_digits(value: float) -> str:
    """Three significant digits without an exponent: 812, 23.4, 3.16, 0.5."""
    if value >= 99.95:
        return f"{value:.0f}"
    if value >= 9.995:
        return f"{value:.1f}"
    return f"{value:.2f}" if value >= 0.9995 else f"{value:.3g}"


def format_percent(fraction: float | None) -> str:
    """A share as a percentage with one decimal, the same at 0 and at 100: 0.0%, 10.8%, 100.0%;
    a share that is not 0 never prints as 0.0% (<0.1%), nor one that is not 1 as 100.0% (>99.9%)."""
    if fraction is None or not math.isfinite(fraction):
        return "-"
    text = f"{100 * fraction:.1f}%"
    if text == "0.0%" and fraction > 0:
        return "<0.1%"
    if text == "100.0%" and fraction < 1:
        return ">99.9%"
    return text
