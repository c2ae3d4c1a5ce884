"""gates --compare-weights: the same statistics for a second set of weights of the same
architecture, on the same input, so a user sees what training changed (a checkpoint against an
earlier one, or against an untrained copy: `random`, PyTorch's init from --seed)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from lstm_cli.errors import UsageError
from lstm_cli.gates.run import GatesResult, run_gates
from lstm_cli.gates_options import GatesOptions
from lstm_cli.model import make_input, place
from lstm_cli.sources import ARCHITECTURE_FIELDS, describe_source, find_lstm
from lstm_cli.spec import LSTMSpec

RANDOM = "random"


def compare_spec(spec: LSTMSpec, weights: str, key: str | None) -> LSTMSpec:
    """The spec of the other weights: the same architecture, activation, dtype and input."""
    if weights == RANDOM:
        if key is not None:
            raise UsageError("--compare-key picks an LSTM inside a --compare-weights file, not in 'random'")
        return replace(spec, weights=None, key=None, source=None, trust_checkpoint=False, save_weights=None)
    group = find_lstm(weights, key, spec.trust_checkpoint)
    for field in ARCHITECTURE_FIELDS:
        mine, theirs = getattr(spec, field), getattr(group, field)
        if mine != theirs:
            raise UsageError(
                f"--compare-weights {weights} has {field.replace('_', ' ')} {theirs} where the model has {mine}: "
                "only weights of the same architecture compare"
            )
    source = describe_source(weights, group)
    activation = source["recurrent_activation"]
    if activation != spec.recurrent_activation:
        raise UsageError(
            f"--compare-weights {weights} has {activation} gates where the model has {spec.recurrent_activation}"
        )
    return replace(spec, weights=weights, key=group.prefix, source=source, save_weights=None)


def run_compared(spec: LSTMSpec, other: LSTMSpec, options: GatesOptions,
                 progress: Callable[..., None] | None = None) -> GatesResult:
    """Both runs on spec's input; the first result carries the second under `compare`. The
    files --export, --plot and --heatmap draw are the first model's only."""
    x = make_input(spec, place(spec))
    first = run_gates(spec, options, progress=progress, x=x)
    second = run_gates(other, replace(options, export=None, plot=None, heatmap=None), x=x)
    first.compare = second
    first.passed = first.passed and second.passed
    first.checks = first.checks + [replace(check, name=f"compared weights: {check.name}") for check in second.checks]
    return first
