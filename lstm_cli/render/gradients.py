"""Rich rendering of a GradientsResult: one table row of numbers per model, then each model's
norms over time as a log-scale sparkline, all on one shared scale so they compare by eye."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table
from rich.text import Text

from lstm_cli.gradients import GradientsResult, ModelGradients
from lstm_cli.render.common import checks_table, config_line, format_diff, print_table, sparkline

# Longer sequences are drawn one character per bucket of steps; shorter ones get a table of
# every step's norm as well.
SPARK_WIDTH = 100
STEP_TABLE_MAX = 20


def log10_or_nan(value: float) -> float:
    """log10 for the sparkline; 0, negative and non-finite norms become gaps (NaN)."""
    return math.log10(value) if math.isfinite(value) and value > 0 else math.nan


def buckets(values: list[float], width: int) -> tuple[list[float], int]:
    """At most `width` values: the mean of each run of consecutive values, ignoring NaN (NaN if
    all are), and how many steps one value stands for. On log10 values: a geometric mean."""
    size = max(1, math.ceil(len(values) / width))
    out = []
    for start in range(0, len(values), size):
        finite = [v for v in values[start : start + size] if v == v]
        out.append(sum(finite) / len(finite) if finite else math.nan)
    return out, size


def vanishing_text(model: ModelGradients) -> str:
    """Where the norm falls below the fraction of the last step's; a norm of exactly 0 has
    vanished by underflow, and a last step of 0 leaves nothing to compare with."""
    if model.vanishes == "every_step":  # short enough for 80 columns; the note says more
        return "vanished: 0 (underflow)"
    if model.vanishes == "undefined":
        return "undefined: last step is 0 (underflow)" if model.last_step_norm == 0 else "undefined"
    if model.vanishes == "never":
        return "never"
    k = model.vanishes_at_step
    text = f"{k} step{'s' if k > 1 else ''} back (t={model.vanishes_at_t})"
    if model.grad_norms[model.vanishes_at_t] == 0:
        text += ", 0 (underflow)"
    return text


def forget_bias_text(result: GradientsResult) -> str | None:
    """The LSTM's forget-gate bias as it ran: set, loaded or random, with b_if + b_hf's numbers."""
    lstm = next((m for m in result.models if m.cell == "lstm"), None)
    if lstm is None:
        return None
    stats = lstm.forget_bias_stats
    if stats is None:
        return "LSTM forget-gate bias: none (--no-bias)"
    bias, weights = result.config.get("forget_bias"), result.config.get("weights")
    if bias is not None:
        loaded = f"; the other weights loaded from {weights}" if weights is not None else ""
        return (
            f"LSTM forget-gate bias: b_if + b_hf = {bias:g} in every layer (b_if = {bias:g}, b_hf = 0)"
            f"{loaded}"
        )
    source = f"loaded from {weights}" if weights is not None else f"PyTorch's random init (seed {result.config['seed']})"
    sigmoid = 1 / (1 + math.exp(-stats.mean))
    # the numbers on a line of their own, so none is split from its label at 80 columns
    return (
        f"LSTM forget-gate bias b_if + b_hf, {source}:\n"
        f"  mean {stats.mean:.3g}, min {stats.min:.3g}, max {stats.max:.3g}; sigmoid(mean) = {sigmoid:.2g}"
    )


def render_sparklines(result: GradientsResult, titles: list[str], console: Console) -> None:
    """One line per model, all on one log10 scale; long sequences in buckets of steps."""
    logs = [[log10_or_nan(v) for v in m.grad_norms] for m in result.models]
    finite = [v for row in logs for v in row if v == v]
    if not finite:
        return
    low, high = min(finite), max(finite)
    label = max(map(len, titles))
    width = max(10, min(SPARK_WIDTH, console.width - label - 2))
    per_char = buckets(logs[0], width)[1]
    every = "" if per_char == 1 else f", one character = {per_char} steps"
    if any(v != v for row in logs for v in row):
        every += ", blank = 0 (the gradient underflowed)"
    console.print(Text(f"Norm over time, t = 0 on the left, log scale ▁ {10**low:.2g} .. █ {10**high:.2g}{every}"))
    for title, row in zip(titles, logs):
        console.print(Text(f"{title:<{label}}  {sparkline(buckets(row, width)[0], low, high)}"), no_wrap=True, crop=True)


def render_gradients(result: GradientsResult, console: Console) -> None:
    console.print(Text(config_line(result.config, result.device, result.dtype), style="bold"))
    console.print(Text(f"loss = {result.loss}"))
    console.print(Text(f"shown: {result.norm}"))
    bias_line = forget_bias_text(result)
    if bias_line is not None:
        console.print(Text(bias_line))

    steps = len(result.models[0].grad_norms) if result.models else 0
    table = Table(title="Gradient norm ‖d loss / d x_t‖ per model", title_justify="left")
    table.add_column("model")  # a name: may wrap at a space
    table.add_column("t=0", justify="right", no_wrap=True)
    table.add_column(f"t={steps - 1} (last)", justify="right", no_wrap=True)
    table.add_column("first/last", justify="right", no_wrap=True)
    table.add_column(f"< {result.vanish_fraction:g} x last at")  # words: may wrap
    titles = [model.module for model in result.models]  # the forget bias is on the line above
    for model, title in zip(result.models, titles):
        table.add_row(
            Text(title),
            format_diff(model.first_step_norm),
            format_diff(model.last_step_norm),
            format_diff(model.first_to_last_ratio),
            vanishing_text(model),
        )
    print_table(console, table)
    render_sparklines(result, titles, console)

    if 0 < steps <= STEP_TABLE_MAX:
        per_step = Table(title="Norm at each step", title_justify="left")
        per_step.add_column("t", justify="right", no_wrap=True)
        for model in result.models:
            per_step.add_column(model.cell, justify="right", no_wrap=True)
        for t in range(steps):
            per_step.add_row(str(t), *(format_diff(m.grad_norms[t]) for m in result.models))
        print_table(console, per_step)
    if result.plot:
        console.print(Text(f"plotted: {result.plot}"))
    print_table(console, checks_table(result.checks))
