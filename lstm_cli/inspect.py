"""`lstm-cli inspect`: every shape, every parameter and the identities between outputs,
each identity verified on a real forward pass. Returns a plain result; never prints."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from lstm_cli.checks import Check, close, max_abs_diff, within
from lstm_cli.explain import explain_lines
from lstm_cli.model import Forward, prepare, run_lstm, time_major
from lstm_cli.sources import lstm_group_of
from lstm_cli.verify.loop64 import loop_forward
from lstm_cli.verify.original import check_original
from lstm_cli.runtime import collect_warnings
from lstm_cli.spec import GATES, Dim, LSTMSpec
from lstm_cli.verify.rule import Rule

_PARAM_NAME = re.compile(r"(weight|bias)_(ih|hh|hr)_l(\d+)(_reverse)?")
_ROLE = {
    ("weight", "ih"): "W_i*: x_t -> gates",
    ("weight", "hh"): "W_h*: h_(t-1) -> gates",
    ("bias", "ih"): "b_i*",
    ("bias", "hh"): "b_h*",
    ("weight", "hr"): "W_hr: h_t -> proj",
}


@dataclass
class TensorInfo:
    shape: list[int]
    dims: list[Dim]
    dtype: str


@dataclass
class ParamInfo:
    name: str
    shape: list[int]
    numel: int
    layer: int
    direction: str
    role: str
    # gate -> [first row, last row + 1] along dim 0; empty for the projection.
    gate_rows: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class InspectResult:
    command: str
    config: dict
    device: str
    dtype: str
    module: str
    tensors: dict[str, TensorInfo]
    parameters: list[ParamInfo]
    total_parameters: int
    expected_parameters: int
    rule: dict  # how the identities are checked (verify.rule.Rule.as_dict)
    checks: list[Check]
    passed: bool
    notes: list[str]
    explain: list[str] | None
    # With --lengths: the PackedSequence nn.LSTM returned ({data_shape, batch_sizes,
    # sorted_indices}) and how it was unpacked; else None.
    packed: dict | None = None


def captured_output_checks(spec: LSTMSpec, lstm, x, initial, found, atol, rtol) -> tuple[list[Check], list[str]]:
    """The captured run's own outputs against these weights in nn.LSTM's equations
    (verify.captured); an int8 original is reported, not judged."""
    from lstm_cli.insitu.feed import feed_of
    from lstm_cli.verify.captured import check_captured

    feed = feed_of(spec)
    what = (f"module '{feed.key}' as the model ran it" if feed.module is not None
            else f"node '{spec.key}' as the whole graph ran it")
    if found is not None and not found.run_original_exact:
        ours = run_lstm(lstm, x, spec, initial)
        diff = max_abs_diff(ours.output.cpu(), feed.captured.output)
        return [], [f"{what}: output differs from nn.LSTM's on the captured input by at most {diff:.3g} "
                    "(reported, not judged: the original runs in int8)"]
    return check_captured(spec, lstm, x, initial, feed.captured, what, atol, rtol)


def run_inspect(spec: LSTMSpec, explain: bool = False, atol: float | None = None,
                rtol: float | None = None) -> InspectResult:
    notes: list[str] = []
    with collect_warnings(notes):
        prepared = prepare(spec, command="inspect")
        placement, lstm, x = prepared.placement, prepared.lstm, prepared.x
        if spec.own_loop_only is None:
            forward = run_lstm(lstm, x, spec, prepared.initial)
        else:
            forward = loop_forward(lstm, x, spec, spec.recurrent_activation, prepared.initial)
            notes.append(
                f"this model has {spec.own_loop_only}, which nn.LSTM cannot compute: output, h_n and c_n "
                "come from a float64 loop of the model's own equations (the identities hold for any LSTM)"
            )
    if spec.dropout and spec.num_layers > 1:
        notes.append("dropout acts in train mode only; inspect runs in eval mode, so none applied")
    # output and h_n come from one kernel: an identity holds to a few ulps of the value at most.
    rule = Rule(spec.dtype, atol=atol, rtol=rtol)
    actual = {"input": x, "output": forward.output, "h_n": forward.h_n, "c_n": forward.c_n}
    dims = spec.tensor_dims()
    tensors = {
        name: TensorInfo(list(t.shape), dims[name], placement.dtype_name) for name, t in actual.items()
    }
    parameters = [describe_parameter(name, p, spec.hidden_size) for name, p in lstm.named_parameters()]
    total = sum(p.numel for p in parameters)
    expected = spec.parameter_count()
    checks = [
        Check(
            "shapes match PyTorch's documented formulas",
            all(tensors[name].shape == [d.size for d in dims[name]] for name in dims),
            None,
        ),
        Check("total parameters == closed-form count", total == expected, float(abs(total - expected)), 0.0),
        *identity_checks(spec, forward, rule),
    ]
    if spec.weights is not None or spec.captured is not None:
        found = lstm_group_of(spec).found
        if found is not None and found.run_original is not None:
            with collect_warnings(notes):
                original_checks, original_notes = check_original(found, lstm, time_major(x, spec), atol, rtol)
            checks += original_checks
            notes += original_notes
        if spec.captured is not None:
            with collect_warnings(notes):
                captured_checks, captured_notes = captured_output_checks(spec, lstm, x, prepared.initial, found,
                                                                         atol, rtol)
            checks += captured_checks
            notes += captured_notes
    return InspectResult(
        command="inspect",
        config=spec.config(),
        device=str(placement.device),
        dtype=placement.dtype_name,
        module=repr(lstm),
        tensors=tensors,
        parameters=parameters,
        total_parameters=total,
        expected_parameters=expected,
        rule=rule.as_dict(),
        checks=checks,
        passed=all(check.passed for check in checks),
        notes=notes,
        explain=explain_lines(spec) if explain else None,
        packed=None if forward.packed is None else {
            "data_shape": forward.packed.data_shape,
            "batch_sizes": forward.packed.batch_sizes,
            "sorted_indices": forward.packed.sorted_indices,
            "unpacked_with": f"pad_packed_sequence(output, batch_first={spec.batch_first}, "
                             f"total_length={spec.seq_len})",
        },
    )


def describe_parameter(name: str, param: torch.Tensor, hidden_size: int) -> ParamInfo:
    kind, pair, layer, reverse = _PARAM_NAME.fullmatch(name).groups()
    gate_rows = {}
    if pair != "hr":
        gate_rows = {g: [k * hidden_size, (k + 1) * hidden_size] for k, g in enumerate(GATES)}
    return ParamInfo(
        name=name,
        shape=list(param.shape),
        numel=param.numel(),
        layer=int(layer),
        direction="backward" if reverse else "forward",
        role=_ROLE[(kind, pair)],
        gate_rows=gate_rows,
    )


def identity_checks(spec: LSTMSpec, forward: Forward, rule: Rule) -> list[Check]:
    """How output relates to h_n for this configuration, checked numerically.

    Names use the user's own indexing (batch_first puts batch first); the arithmetic works on
    a time-major view (L, N, D*H_out)."""
    out = time_major(forward.output, spec)
    h_n = forward.h_n.unsqueeze(1) if spec.unbatched else forward.h_n
    H = spec.h_out
    bi = spec.bidirectional
    fwd_state = "h_n[-2]" if bi else "h_n[-1]"
    fwd_cols = f":{H}" if bi else ""

    def index(t: str, cols: str = "") -> str:
        if spec.unbatched:
            parts = [t, cols]
        elif spec.batch_first:
            parts = [":", t, cols]
        else:
            parts = [t, ":", cols] if cols else [t]
        return "output[" + ", ".join(p for p in parts if p) + "]"

    checks = []
    if spec.lengths is None:
        name = f"{index('-1', fwd_cols)} == {fwd_state}" + (" (forward, last layer)" if bi else "")
        checks.append(close(name, out[-1, :, :H], h_n[-1 - bi], rule))
    else:
        lengths = torch.tensor(spec.lengths, device=out.device)
        batch = torch.arange(out.shape[1], device=out.device)
        t = "n, lengths[n]-1" if spec.batch_first else "lengths[n]-1, n"
        name = f"output[{t}{', ' + fwd_cols if bi else ''}] == {fwd_state}[n] for every n (packed)"
        checks.append(close(name, out[lengths - 1, batch, :H], h_n[-1 - bi], rule))
        padded = torch.arange(out.shape[0], device=out.device).unsqueeze(1) >= lengths
        pad_values = out[padded]
        checks.append(within("output is 0 at every padded step (packed)", pad_values, torch.zeros_like(pad_values), 0.0))
    if bi:
        name = f"{index('0', f'{H}:')} == h_n[-1] (backward, last layer)"
        checks.append(close(name, out[0, :, H:], h_n[-1], rule))
    return checks
