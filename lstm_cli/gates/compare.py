"""gates --compare-weights: the same statistics for a second set of weights of the same
architecture, on the same input, so a user sees what training changed (a checkpoint against an
earlier one, or against an untrained copy: `random`, PyTorch's init from --seed).

gates --compare-input: the same weights on a second input of the same shape, so a user sees
what the model's own input (captured with --model-input, or --input, --text) changes against
random N(0, 1) input (`random`) or another file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from lstm_cli.errors import UsageError
from lstm_cli.gates.run import GatesResult, run_gates
from lstm_cli.gates_options import GatesOptions
from lstm_cli.model import make_initial_state, make_input, place
from lstm_cli.shapes import shape_text
from lstm_cli.sources import ARCHITECTURE_FIELDS, describe_source, find_lstm, load_input
from lstm_cli.spec import LSTMSpec

RANDOM = "random"


def compare_spec(spec: LSTMSpec, weights: str, key: str | None) -> LSTMSpec:
    """The spec of the other weights: the same architecture, activation, dtype and input."""
    if weights == RANDOM:
        if spec.weights is None and spec.captured is None:
            raise UsageError(
                "--compare-weights random compares trained weights with an untrained copy, and without --weights "
                f"the model is that copy (PyTorch's init from seed {spec.seed}): give --weights"
            )
        if key is not None:
            raise UsageError("--compare-key picks an LSTM inside a --compare-weights file, not in 'random'")
        return replace(spec, weights=None, key=None, source=None, trust_checkpoint=False, save_weights=None,
                       captured=None, model=None, model_input=None)
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
    # The other weights run on this spec's input and initial state (run_compared passes both).
    return replace(spec, weights=weights, key=group.prefix, source=source, save_weights=None,
                   captured=None, model=None, model_input=None)


def run_compared_input(spec: LSTMSpec, other_input: str, options: GatesOptions,
                       progress: Callable[..., None] | None = None) -> GatesResult:
    """The model on its own input (A) and on `other_input` (B: `random`, N(0, 1) from --seed,
    zero past each length; or a tensor file of the same shape), B from a zero state; the first
    result carries the second under `compare`."""
    placement = place(spec)
    x, initial = make_input(spec, placement), make_initial_state(spec, placement)
    if other_input == RANDOM:
        plain = replace(spec, captured=None, input=None, text=None, text_file=None, initial_state=None)
        other_x, words = make_input(plain, placement), plain.input_source()
    else:
        other_x = load_input(other_input)
        if tuple(other_x.shape) != tuple(x.shape):
            raise UsageError(
                f"--compare-input {other_input} has shape {shape_text(other_x.shape)}; it must have the shape of "
                f"the model's input, {shape_text(x.shape)}"
            )
        words = f"file {other_input}"
    first = run_gates(spec, options, progress=progress, x=x, initial=initial)
    second = run_gates(replace(spec, save_weights=None), replace(options, export=None, plot=None, heatmap=None),
                       x=other_x)
    second.config["input_source"], second.config["initial_state_source"] = words, "zeros"
    first.compare, first.compare_what = second, "input"
    first.passed = first.passed and second.passed
    first.checks = first.checks + [replace(check, name=f"compared input: {check.name}") for check in second.checks]
    return first


def run_compared(spec: LSTMSpec, other: LSTMSpec, options: GatesOptions,
                 progress: Callable[..., None] | None = None) -> GatesResult:
    """Both runs on spec's input; the first result carries the second under `compare`. The
    files --export, --plot and --heatmap draw are the first model's only."""
    placement = place(spec)
    x, initial = make_input(spec, placement), make_initial_state(spec, placement)
    first = run_gates(spec, options, progress=progress, x=x, initial=initial)
    second = run_gates(other, replace(options, export=None, plot=None, heatmap=None), x=x, initial=initial)
    first.compare, first.compare_what = second, "weights"
    first.passed = first.passed and second.passed
    first.checks = first.checks + [replace(check, name=f"compared weights: {check.name}") for check in second.checks]
    return first
