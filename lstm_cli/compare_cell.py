"""`lstm-cli compare-cell`: the network as stacked nn.LSTMCell loops, matched against nn.LSTM
number by number, and timed. Returns a plain result; never prints."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from lstm_cli import cells, timing
from lstm_cli.checks import Check, close, max_abs_diff, within
from lstm_cli.errors import UsageError
from lstm_cli.model import InitialState, direction_state, make_input, place, prepare, run_lstm, time_major
from lstm_cli.runtime import collect_warnings, tf32_mode
from lstm_cli.spec import LSTMSpec
from lstm_cli.timing import Spread, TimedPath, interleaved_seconds, spread
from lstm_cli.verify.rule import Rule
from lstm_cli.verify.shadow import SHADOW_SEQUENCES, Shadow, run_shadow, shadow_step_macs
from lstm_cli.verify.step import check_direction, choose_sample


@dataclass
class LayerDiff:
    layer: int
    direction: str
    h_n_max_abs_diff: float
    c_n_max_abs_diff: float


@dataclass
class StackLayer:
    """One LSTMCell of the loop: what goes in and what it carries from step to step."""

    layer: int
    direction: str
    input_size: int
    hidden_size: int
    x_shape: list[int]
    h_shape: list[int]
    c_shape: list[int]
    parameters: int


@dataclass
class Timing:
    """--repeat interleaved runs of each path after a warm-up (as bench times them)."""

    fused_s: float  # medians
    cells_s: float
    ratio: float  # cells_s / fused_s
    repeat: int
    fused: Spread  # fastest, median and slowest run of each path
    cells: Spread
    fused_runs_s: list[float]  # every timed run, in the order taken
    cells_runs_s: list[float]
    threads: int  # torch.get_num_threads() during the runs
    steady: bool = True  # False when a note says the timings may not be trustworthy


FUSED_NAME, LOOP_NAME = "nn.LSTM", "LSTMCell loop"


def timing_notes(t: Timing, device: str) -> list[str]:
    """bench's busy-machine notes (timing.spread_note, timing.stall_note) for these runs."""
    notes = [
        timing.spread_note([TimedPath(FUSED_NAME, t.fused), TimedPath(LOOP_NAME, t.cells)]),
        timing.stall_note([(t.ratio, "")], f"the {LOOP_NAME}", device, t.threads),
    ]
    return [note for note in notes if note]


def time_paths(fused: Callable[[], object], loop: Callable[[], object], device: torch.device, repeat: int,
               clock: Callable[[], float] | None = None) -> Timing:
    """Both paths, interleaved after one warm-up round; `clock` for tests (timing.interleaved_seconds)."""
    times = interleaved_seconds({"fused": fused, "cells": loop}, device, repeat=repeat, clock=clock)
    f, c = spread(times["fused"]), spread(times["cells"])
    ratio = c.median / f.median if f.median > 0 else float("inf")
    return Timing(f.median, c.median, ratio, repeat, f, c, times["fused"], times["cells"], torch.get_num_threads())


@dataclass
class CompareResult:
    command: str
    config: dict
    mode: str  # "mirror" (copies of an nn.LSTM) or "free-form" (--hidden-sizes)
    reference: str  # what the cells are matched against
    device: str
    dtype: str
    tf32: bool
    rule: dict  # how a check decides (verify.rule.Rule.as_dict)
    tolerance: float  # the largest bound met at a largest |difference| of the step-local checks
    layers: list[LayerDiff]  # end to end, reported, not judged
    output_max_abs_diff: float
    output_max_rel_diff: float
    step_max_abs_diff: list[float] | None
    passed: bool
    timing: Timing | None
    stack: list[StackLayer]
    output_shape: list[int]
    checked: str  # which sequences and steps the step-local check recomputed
    checks: list[Check]
    shadow: Shadow | None
    shadow_note: str | None
    notes: list[str]


def run_compare(
    spec: LSTMSpec,
    hidden_sizes: tuple[int, ...] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    per_step: bool = False,
    allow_tf32: bool = False,
    repeat: int = 5,
    progress: Callable[..., None] | None = None,
) -> CompareResult:
    notes: list[str] = []
    # The loop keeps every layer's outputs (every copy of the weights: runtime.memory_copies).
    widths = [spec.num_directions * spec.h_out] * spec.num_layers if hidden_sizes is None else list(hidden_sizes)
    extra = spec.seq_len * spec.batch_size * sum(widths)
    with collect_warnings(notes):
        if hidden_sizes is None:
            prepared = prepare(spec, extra_elements=extra, command="compare-cell")
            placement, lstm, x, initial = prepared.placement, prepared.lstm, prepared.x, prepared.initial
        else:
            if spec.initial_state is not None or spec.captured is not None:
                raise UsageError("--hidden-sizes builds a free-form stack; --initial-state and captured runs "
                                 "start nn.LSTM's own layers: leave out --hidden-sizes")
            initial = None
            placement = place(spec, extra_elements=extra, command="compare-cell", widths=hidden_sizes)
            x = make_input(spec, placement)
        with tf32_mode(placement.device, allow_tf32):
            if hidden_sizes is None:
                stack = cells.cells_from_lstm(lstm)
                references = [lstm]
                fused = lambda: _fused_run(lstm, x, spec, initial)  # noqa: E731
                reference = "nn.LSTM (one fused module)"
            else:
                stack = cells.free_form_cells(spec, hidden_sizes, placement.device, placement.dtype)
                references = _single_layer_lstms(stack)
                fused = lambda: _layer_by_layer_run(references, x, spec)  # noqa: E731
                reference = "one single-layer nn.LSTM per cell, same weights"
            batch = 1 if spec.unbatched else spec.batch_size
            step_macs = sum(shadow_step_macs(module) for module in references)
            sample = choose_sample(batch, spec.seq_len, step_macs, spec.lengths)
            expected = fused()
            looped = cells.run_cells(stack, x, spec, progress, sample=sample, initial=initial)
            timed = None
            if repeat:
                timed = time_paths(fused, lambda: cells.run_cells(stack, x, spec, progress, initial=initial),
                                   placement.device, repeat)
                busy = timing_notes(timed, str(placement.device))
                timed.steady = not busy
                notes.extend(busy)

    if spec.dropout and hidden_sizes is None:
        notes.append("dropout acts in train mode only; both networks ran in eval mode, so none applied")
    if allow_tf32 and placement.device.type != "cuda":
        notes.append(f"--allow-tf32 has no effect on {placement.device.type}: TF32 is a CUDA setting")
    tf32 = allow_tf32 and placement.device.type == "cuda" and spec.dtype == "float32"
    rule = Rule(spec.dtype, tf32, atol, rtol)

    directions = ("forward", "backward")[: stack.num_directions]
    checks = []
    sampled = None if initial is None else initial.batched().sequences(torch.tensor(sample.sequences))
    for layer in range(len(stack.cells)):
        module, module_layer = (lstm, layer) if hidden_sizes is None else (references[layer], 0)
        for d, direction in enumerate(directions):
            checks.append(check_direction(
                f"layer {layer} {direction}: each step from the loop's own state",
                module, module_layer, direction, looped.records[(layer, direction)], sample, rule,
                initial=direction_state(sampled, layer, d, len(directions)),
            ))
    if spec.lengths is not None:
        checks += _packing_checks(spec, looped, sample, directions, rule)

    diffs = []
    for k, ((h_ref, c_ref), (h, c)) in enumerate(zip(expected.finals, looped.finals)):
        layer, direction = divmod(k, len(directions))
        diffs.append(LayerDiff(layer, directions[direction], max_abs_diff(h, h_ref), max_abs_diff(c, c_ref)))
    out_diff = max_abs_diff(looped.output, expected.output)
    scale = expected.output.abs().max().item() if expected.output.numel() else 0.0
    out_rel = out_diff / scale if scale > 0 else out_diff
    steps = None
    if per_step:
        delta = (time_major(looped.output, spec).double() - time_major(expected.output, spec).double()).abs()
        steps = delta.flatten(1).amax(dim=1).tolist()

    shadow, shadow_note = None, None
    if hidden_sizes is None:
        with collect_warnings(notes):
            shadowed = sample.sequences[:SHADOW_SEQUENCES]
            run = run_shadow(lstm, time_major(x, spec), spec.lengths, shadowed, batch * spec.seq_len * step_macs,
                             None if initial is None else initial.batched())
        if isinstance(run, str):
            shadow_note = run
        else:
            def of_shadowed(stack_run: cells.StackRun):
                """Output (T, n, ...) and h_n, c_n (D * layers, n, ...) of the shadowed sequences."""
                h = torch.stack([h.reshape(-1, h.shape[-1]) for h, _ in stack_run.finals])[:, shadowed]
                c = torch.stack([c.reshape(-1, c.shape[-1]) for _, c in stack_run.finals])[:, shadowed]
                return time_major(stack_run.output, spec)[:, shadowed], h, c

            shadow = run.summary([
                run.error("nn.LSTM", *of_shadowed(expected)),
                run.error("LSTMCell loop", *of_shadowed(looped)),
            ])
    else:
        shadow_note = "not shadowed: a free-form stack is checked step by step only"

    return CompareResult(
        command="compare-cell",
        config=spec.config() | {"hidden_sizes": list(hidden_sizes) if hidden_sizes else None},
        mode="mirror" if hidden_sizes is None else "free-form",
        reference=reference,
        device=str(placement.device),
        dtype=placement.dtype_name,
        tf32=tf32,
        rule=rule.as_dict(),
        tolerance=max((c.tolerance for c in checks if c.tolerance is not None), default=0.0),
        layers=diffs,
        output_max_abs_diff=out_diff,
        output_max_rel_diff=out_rel,
        step_max_abs_diff=steps,
        passed=all(check.passed for check in checks),
        timing=timed,
        stack=describe_stack(stack, spec),
        output_shape=list(looped.output.shape),
        checked=sample.describe(),
        checks=checks,
        shadow=shadow,
        shadow_note=shadow_note,
        notes=notes,
    )


def _packing_checks(spec: LSTMSpec, looped: cells.StackRun, sample, directions, rule: Rule) -> list[Check]:
    """What packing promises beyond each step: a sequence's final state is its state at its own
    last valid step (nothing after it leaks in), and its output past that step is exactly 0."""
    finals, states = [], []
    rows = torch.arange(len(sample.sequences))
    for k, (h_final, c_final) in enumerate(looped.finals):
        layer, d = divmod(k, len(directions))
        record = looped.records[(layer, directions[d])]
        slots = [record.steps.index(0 if d == 1 else length - 1) for length in sample.lengths]
        for final, state in ((h_final, record.h), (c_final, record.c)):
            finals.append(final.reshape(-1, final.shape[-1])[sample.sequences].flatten())
            states.append(state[slots, rows].flatten())
    out = time_major(looped.output, spec)
    padded = torch.arange(spec.seq_len, device=out.device).unsqueeze(1) >= torch.tensor(spec.lengths, device=out.device)
    pad_values = out[padded]
    return [
        close("h_n, c_n == each sequence's state at its last valid step (packed)", torch.cat(finals), torch.cat(states), rule),
        within("output is 0 at every padded step (packed)", pad_values, torch.zeros_like(pad_values), 0.0),
    ]


def describe_stack(stack: cells.CellStack, spec: LSTMSpec) -> list[StackLayer]:
    batch = [] if spec.unbatched else [spec.batch_size]
    directions = ("forward", "backward")[: stack.num_directions]
    rows = []
    for layer, (row, projections) in enumerate(zip(stack.cells, stack.projections)):
        for direction, cell, w_hr in zip(directions, row, projections):
            h_width = cell.hidden_size if w_hr is None else w_hr.shape[0]
            # weight_hh's zero columns past P (see cells) are padding, not parameters.
            padding = 4 * cell.hidden_size * (cell.hidden_size - h_width)
            count = sum(p.numel() for p in cell.parameters()) - padding + (0 if w_hr is None else w_hr.numel())
            rows.append(
                StackLayer(
                    layer, direction, cell.input_size, cell.hidden_size,
                    batch + [cell.input_size], batch + [h_width], batch + [cell.hidden_size], count,
                )
            )
    return rows


def _fused_run(lstm: nn.LSTM, x: torch.Tensor, spec: LSTMSpec, initial: InitialState | None = None) -> cells.StackRun:
    forward = run_lstm(lstm, x, spec, initial)
    return cells.StackRun(forward.output, list(zip(forward.h_n.unbind(0), forward.c_n.unbind(0))))


def _single_layer_lstms(stack: cells.CellStack) -> list[nn.LSTM]:
    """The reference for a free-form stack: each cell as a one-layer nn.LSTM with its weights."""
    layers = []
    for (cell,) in stack.cells:
        lstm = nn.LSTM(cell.input_size, cell.hidden_size, bias=cell.bias, device=cell.weight_ih.device, dtype=cell.weight_ih.dtype)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")[: 4 if cell.bias else 2]:
                getattr(lstm, f"{name}_l0").copy_(getattr(cell, name))
        layers.append(lstm.eval())
    return layers


def _layer_by_layer_run(layers: list[nn.LSTM], x: torch.Tensor, spec: LSTMSpec) -> cells.StackRun:
    finals = []
    for lstm in layers:
        forward = run_lstm(lstm, x, spec)
        finals.append((forward.h_n[0], forward.c_n[0]))
        x = forward.output
    return cells.StackRun(x, finals)
