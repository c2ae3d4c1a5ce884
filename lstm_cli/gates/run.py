"""Orchestration of `lstm-cli gates`: build and run nn.LSTM, drive a capture method over every
layer and direction, verify, summarise, and write --export and --plot files.

The h_t rebuilt from the captured gates is compared with nn.LSTM's own output, h_n and c_n
(reported as `EndToEnd`); the verdict comes from the step-local checks of sampled steps
(verify.step) and a float64 shadow of a few sequences (verify.shadow).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from lstm_cli.checks import Check, max_abs_diff
from lstm_cli.gates.batch import WorkingBatch, working_row
from lstm_cli.gates.choice import MethodChoice, choose_method
from lstm_cli.gates.export import export_tensors
from lstm_cli.gates.heatmap import Heatmap, build_heatmap
from lstm_cli.gates.kernels import Chunk, LoopCapture, RecomputeCapture, chunk_steps_for
from lstm_cli.gates.reference import Reference, make_reference, working_initial
from lstm_cli.gates.stats import DirectionRecorder, LayerGates
from lstm_cli.gates_options import GatesOptions, Thresholds, units_plot_path
from lstm_cli.model import InitialState, direction_state, direction_weights, prepare, time_major
from lstm_cli.runtime import collect_warnings
from lstm_cli.spec import LSTMSpec
from lstm_cli.verify.rule import Rule
from lstm_cli.verify.shadow import (
    SHADOW_SEQUENCES,
    Shadow,
    run_shadow,
    shadow_step_macs,
)
from lstm_cli.verify.step import (
    PathRecord,
    Sample,
    check_direction,
    choose_sample,
    kept_steps,
)

# -- the result ----------------------------------------------------------------------------------


@dataclass
class GatesResult:
    command: str
    config: dict
    device: str
    dtype: str
    method: str
    method_reason: str
    # auto: each method's measured time on the probe (gates.choice); None when not measured
    method_timings_ms: dict[str, float] | None
    # The loop's step GEMM: {backend, reason, timings_ms} (timings when it was measured); None
    # for recompute, whose GEMMs are plain large matmuls.
    gemm: dict | None
    thresholds: dict[str, float]
    layers: list[LayerGates]
    rule: dict  # how a check decides (verify.rule.Rule.as_dict)
    checked: str  # which sequences and steps the step-local check recomputed
    checks: list[Check]
    passed: bool
    end_to_end: EndToEnd  # reported, not judged
    shadow: Shadow | None
    shadow_note: str | None
    notes: list[str]
    heatmap: Heatmap | None = None
    export: str | None = None
    plot: str | None = None
    # --plot with --units: the per-unit saturation scatter's file (next to --plot's), or None
    units_plot: str | None = None
    # --compare-weights (other weights, same input) or --compare-input (same weights, other
    # input): the same statistics for the other run, or None; compare_what says which
    compare: GatesResult | None = None
    compare_what: str | None = None  # "weights" or "input"


@dataclass
class EndToEnd:
    """The capture's own trajectory against nn.LSTM's: max |difference| of the last layer's
    output (valid steps) and of the final states. Rounding makes them differ by more than one
    step's rounding over long or chaotic runs; the step-local checks decide."""

    output_max_abs_diff: float
    h_n_max_abs_diff: float
    c_n_max_abs_diff: float
    # What the capture was compared with: nn.LSTM's forward (whole, or one layer at a time), or
    # (gates nn.LSTM cannot run) a float64 loop with the model's own activation.
    reference: str = "nn.LSTM"
    # The user's sequences compared (the loop runs nn.LSTM on a few only); None: the whole batch
    sequences: list[int] | None = None


# -- the driver -----------------------------------------------------------------------------------


class SampleRecorder:
    """What the capture computed for the checked sequences at the kept steps of one layer x
    direction (verify.step), and, for the last layer, every step of the shadowed sequences'
    output (verify.shadow)."""

    def __init__(self, sample: Sample, batch: WorkingBatch, reverse: bool, shadowed: int, last: bool):
        self.steps = kept_steps(sample, reverse)
        self.slot = {t: k for k, t in enumerate(self.steps)}
        self.rows = torch.tensor([working_row(batch, n) for n in sample.sequences])
        self.shadow_rows = self.rows[:shadowed] if last else None
        self.store: dict[str, torch.Tensor] = {}
        self.output: torch.Tensor | None = None


    def add(self, chunk: Chunk, x: torch.Tensor, h_fed: torch.Tensor | None) -> None:
        """x: the layer input (T, B, in); h_fed: the h sequence the method's recurrence read
        (nn.LSTM's own for recompute), None when it read its own h (the loop)."""
        if self.shadow_rows is not None:
            if self.output is None:
                self.output = chunk.h.new_zeros(x.shape[0], len(self.shadow_rows), chunk.h.shape[-1])
            self.output[chunk.t0 : chunk.t1] = chunk.h[:, self.shadow_rows.to(chunk.h.device)]
        wanted = [t for t in range(chunk.t0, chunk.t1) if t in self.slot]
        if not wanted:
            return
        rows = self.rows.to(chunk.h.device)
        local = torch.tensor([t - chunk.t0 for t in wanted], device=chunk.h.device)
        steps = torch.tensor(wanted, device=chunk.h.device)
        values = {
            "x": x[steps][:, rows],
            "gates": chunk.gates[local][:, rows],
            "c": chunk.c[local][:, rows],
            "h": chunk.h[local][:, rows],
            "h_fed": (chunk.h[local] if h_fed is None else h_fed[steps])[:, rows],
        }
        slots = torch.tensor([self.slot[t] for t in wanted], device=chunk.h.device)
        for name, value in values.items():
            if name not in self.store:
                self.store[name] = value.new_zeros(len(self.steps), *value.shape[1:])
            self.store[name][slots] = value

    def record(self) -> PathRecord:
        st = self.store
        return PathRecord(self.steps, st["x"], st["h_fed"], st["c"], st["h"], st["gates"])


@dataclass
class Capture:
    batch: WorkingBatch
    recorders: dict[tuple[int, str], DirectionRecorder]
    output_diff: float  # max |rebuilt h - nn.LSTM output| over the last layer's valid steps
    h_n: torch.Tensor  # (D * layers, B, H_out), working order
    c_n: torch.Tensor
    sampled: dict[tuple[int, str], SampleRecorder]  # for the step-local check and the shadow


@torch.inference_mode()
def capture_gates(
    lstm: torch.nn.LSTM,
    x: torch.Tensor,
    spec: LSTMSpec,
    reference: Reference,
    method: LoopCapture | RecomputeCapture,
    thresholds: Thresholds = Thresholds(),
    keep_all: bool = False,
    keep_sequence: dict[tuple[int, str], int] | None = None,
    progress: Callable[..., None] | None = None,
    sample: Sample | None = None,
    shadowed: int = 0,
    units: bool = False,
    initial: InitialState | None = None,
) -> Capture:
    """Run `method` over every layer and direction of `lstm` on input `x` (the spec's layout),
    recording statistics; compare the last layer's rebuilt h with `reference`'s output where it
    covers the whole batch (recompute needs its per-layer outputs). With a `sample`, keep what
    the step-local check and the shadow (its first `shadowed` sequences) need. `units`: also
    count saturation per unit (--units). `initial`: the state the run starts from (None: zeros)."""
    x_tm = time_major(x, spec)
    T, B = x_tm.shape[:2]
    batch = WorkingBatch(T, B, spec.lengths, x.device)
    x_tm = batch.to_working(x_tm, 1)
    start = working_initial(initial, batch)
    if method.needs_layer_output and reference.layer_outputs is None:
        raise ValueError("recompute needs nn.LSTM's output of every layer: see gates.reference.layerwise_forward")
    ref_out = None  # the last layer's reference output, time-major, working order
    if reference.layer_outputs is not None:
        ref_out = reference.layer_outputs[-1]
    elif reference.sequences is None:
        ref_out = batch.to_working(time_major(reference.forward.output, spec), 1)
    D, H_out, steps = spec.num_directions, spec.h_out, chunk_steps_for(spec)
    keep_sequence = keep_sequence or {}
    recorders: dict[tuple[int, str], DirectionRecorder] = {}
    sampled: dict[tuple[int, str], SampleRecorder] = {}
    output_diff = 0.0
    inp = x_tm
    for layer in range(spec.num_layers):
        last = layer == spec.num_layers - 1
        layer_out = reference.layer_outputs[layer] if method.needs_layer_output else None
        next_inp = None if last or layer_out is not None else inp.new_empty(T, B, D * H_out)
        for d, direction in enumerate(spec.directions()):
            cols = slice(d * H_out, (d + 1) * H_out)
            recorder = DirectionRecorder(
                spec, batch, d == 1, thresholds, inp, keep_all, keep_sequence.get((layer, direction)), units=units
            )
            recorders[(layer, direction)] = recorder
            keeper = None
            if sample is not None:
                keeper = SampleRecorder(sample, batch, d == 1, shadowed, last)
                sampled[(layer, direction)] = keeper
            w = direction_weights(lstm, layer, direction)
            h_seq = None if layer_out is None else layer_out[:, :, cols]
            # The method writes h straight into the next layer's input (no copy of it).
            h_out = None if next_inp is None else next_inp[:, :, cols]
            h0, c0 = direction_state(start, layer, d, D)
            for chunk in method.run(inp, h_seq, w, d == 1, batch, steps, h_out=h_out, h0=h0, c0=c0):
                recorder.add(chunk)
                if keeper is not None:
                    keeper.add(chunk, inp, h_seq)
                if last and ref_out is not None:
                    output_diff = _max_diff(output_diff, chunk.h, ref_out[chunk.t0 : chunk.t1, :, cols],
                                            batch.valid_rows(chunk.t0, chunk.t1))
                if progress is not None:
                    progress(chunk.t1 - chunk.t0)
            recorder.stats.release()
        inp = layer_out if layer_out is not None else next_inp
    order = [(layer, direction) for layer in range(spec.num_layers) for direction in spec.directions()]
    h_n = torch.stack([recorders[k].h_last for k in order])
    c_n = torch.stack([recorders[k].c_last for k in order])
    return Capture(batch, recorders, output_diff if ref_out is not None else math.nan, h_n, c_n, sampled)


def _max_diff(so_far: float, a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor | None) -> float:
    diff = max_abs_diff(a, b) if valid is None else max_abs_diff(a[valid], b[valid])
    if math.isnan(so_far) or math.isnan(diff):
        return math.nan
    return max(so_far, diff)


def end_to_end(spec: LSTMSpec, capture: Capture, reference: Reference) -> EndToEnd:
    """The capture's trajectory against the reference's: last layer's output and every final
    state, over the sequences the reference ran."""
    forward = reference.forward
    h_n, c_n = reference.batched_states(spec)
    if reference.sequences is None:
        h_n, c_n = capture.batch.to_working(h_n, 1), capture.batch.to_working(c_n, 1)
        return EndToEnd(capture.output_diff, max_abs_diff(capture.h_n, h_n), max_abs_diff(capture.c_n, c_n),
                        reference.name)
    # A few sequences: the capture's last-layer output of those (kept for the shadow) against
    # nn.LSTM's, valid steps only.
    users = reference.sequences
    rows = torch.tensor([working_row(capture.batch, n) for n in users], device=capture.h_n.device)
    last = [capture.sampled[(spec.num_layers - 1, d)].output for d in spec.directions()]
    ours, theirs = torch.cat(last, dim=-1), time_major(forward.output, spec)
    lengths = [spec.seq_len] * len(users) if spec.lengths is None else [spec.lengths[n] for n in users]
    output_diff = 0.0
    for k, length in enumerate(lengths):
        output_diff = _max_diff(output_diff, ours[:length, k], theirs[:length, k], None)
    return EndToEnd(output_diff, max_abs_diff(capture.h_n[:, rows], h_n), max_abs_diff(capture.c_n[:, rows], c_n),
                    reference.name, list(users))


def step_checks(spec: LSTMSpec, lstm: torch.nn.LSTM, capture: Capture, sample: Sample, method: str,
                rule: Rule, initial: InitialState | None = None) -> list[Check]:
    """Every sampled step of every layer x direction against the float64 step from the state
    the capture started it from (a sequence's first step: `initial`, zeros when None)."""
    state = "nn.LSTM's h and its own c" if method == "recompute" else "its own state"
    checks = []
    sampled = None if initial is None else initial.batched().sequences(torch.tensor(sample.sequences))
    for (layer, direction), keeper in capture.sampled.items():
        d = spec.directions().index(direction)
        checks.append(check_direction(
            f"layer {layer} {direction}: gates, c, h of each step from {state}",
            lstm, layer, direction, keeper.record(), sample, rule, spec.recurrent_activation,
            initial=direction_state(sampled, layer, d, spec.num_directions),
        ))
    return checks


def run_shadow_for(spec: LSTMSpec, lstm: torch.nn.LSTM, x: torch.Tensor, reference: Reference, capture: Capture,
                   sample: Sample, step_macs: int, initial: InitialState | None = None
                   ) -> tuple[Shadow | None, str | None]:
    """The float64 shadow of the first SHADOW_SEQUENCES sampled sequences, and each path's
    distance from it: nn.LSTM's forward and the capture's rebuilt h."""
    shadowed = sample.sequences[:SHADOW_SEQUENCES]
    batch = 1 if spec.unbatched else spec.batch_size
    run = run_shadow(lstm, time_major(x, spec), spec.lengths, shadowed, batch * spec.seq_len * step_macs,
                     None if initial is None else initial.batched())
    if isinstance(run, str):
        return None, run
    last = [capture.sampled[(spec.num_layers - 1, d)].output for d in spec.directions()]
    rows = torch.tensor([working_row(capture.batch, n) for n in shadowed], device=capture.h_n.device)
    forward = reference.forward
    h_n, c_n = reference.batched_states(spec)
    users = torch.tensor(reference.rows(shadowed), device=h_n.device)
    errors = [
        run.error("nn.LSTM", time_major(forward.output, spec)[:, users], h_n[:, users], c_n[:, users]),
        run.error("gate capture", torch.cat(last, dim=-1), capture.h_n[:, rows], capture.c_n[:, rows]),
    ]
    return run.summary(errors), None


@dataclass
class CapturePlan:
    """How gates will capture: the method and why, and the sample the checks recompute (its
    first `shadowed` sequences are shadowed in float64, and run by nn.LSTM for the loop)."""

    choice: MethodChoice
    method: LoopCapture | RecomputeCapture
    sample: Sample
    shadowed: int


def plan_capture(spec: LSTMSpec, lstm: torch.nn.LSTM, x: torch.Tensor, method: str = "auto",
                 gemm: str = "auto") -> CapturePlan:
    choice = choose_method(spec, lstm, x, method, gemm)
    capture = LoopCapture(gemm, spec.recurrent_activation) if choice.name == "loop" else RecomputeCapture()
    sample = choose_sample(1 if spec.unbatched else spec.batch_size, spec.seq_len, shadow_step_macs(lstm), spec.lengths)
    return CapturePlan(choice, capture, sample, min(SHADOW_SEQUENCES, len(sample.sequences)))


# -- the command ----------------------------------------------------------------------------------


def extra_elements(spec: LSTMSpec, options: GatesOptions) -> int:
    """What gates holds beyond one forward pass, in elements, for the memory guard."""
    T, B, H, D, L = spec.seq_len, 1 if spec.unbatched else spec.batch_size, spec.hidden_size, spec.num_directions, spec.num_layers
    H_out = spec.h_out
    # loop: one layer's input and output; recompute: every layer's nn.LSTM output
    layer_buffers = max(2, L) * T * B * D * H_out
    if spec.lengths is not None:
        layer_buffers += T * B * (spec.input_size + D * H_out)  # sorted copies
    working = 4 * chunk_steps_for(spec) * B * (6 * H + H_out)
    per_step = L * D * T * 16
    kept = 0
    if options.export is not None:
        kept += L * D * T * B * (5 * H + H_out) * 2  # captured, then reordered for writing
    if options.plot is not None:
        kept += (L if options.plot_layers is None else len(options.plot_layers)) * D * T * 5 * H
    if options.heatmap is not None:
        kept += T * 5 * H
    if options.units:
        kept += L * D * 8 * H  # left and right counts per gate and unit
    return layer_buffers + working + per_step + kept


def run_gates(spec: LSTMSpec, options: GatesOptions = GatesOptions(),
              progress: Callable[..., None] | None = None, x: torch.Tensor | None = None,
              initial: InitialState | None = None) -> GatesResult:
    """The whole command: build, run nn.LSTM, capture, verify, summarise, and write --export
    and --plot files. `progress(steps, description=None)` hears of every chunk of steps; `x`
    given is the input instead of the spec's own (--compare-weights runs A's input)."""
    notes: list[str] = []
    with collect_warnings(notes):
        prepared = prepare(spec, extra_elements(spec, options), x, command="gates", initial=initial)
        placement, lstm, x, initial = prepared.placement, prepared.lstm, prepared.x, prepared.initial
        exact = spec.own_loop_only is None  # else nn.LSTM cannot run the model
        plan = plan_capture(spec, lstm, x, options.method, options.gemm)
        choice, method, sample, shadowed = plan.choice, plan.method, plan.sample, plan.shadowed
        if progress is not None:
            progress(0, "float64 reference loop" if not exact else
                     "nn.LSTM forward, layer by layer" if choice.name == "recompute" else
                     "nn.LSTM forward" if options.export is not None else "nn.LSTM on the shadowed sequences")
        reference = make_reference(spec, lstm, x, choice.name, options.export is not None,
                                   sample.sequences[:shadowed], initial)
        if progress is not None:
            progress(0, "capturing gates")
        keep_sequence = {}  # what --plot (its --layers only) and --heatmap draw
        if options.plot is not None:
            drawn = options.plot_layers if options.plot_layers is not None else range(spec.num_layers)
            keep_sequence = {(layer, d): options.sequence for layer in drawn for d in spec.directions()}
        if options.heatmap is not None:
            keep_sequence[(options.heatmap.layer, options.heatmap.direction)] = options.sequence
        capture = capture_gates(
            lstm, x, spec, reference, method, options.thresholds,
            keep_all=options.export is not None, keep_sequence=keep_sequence, progress=progress,
            sample=sample, shadowed=shadowed, units=options.units, initial=initial,
        )
        if progress is not None:
            progress(0, "checking")
        # The capture's own GEMMs run in full float32 (TF32 is off for plain matmuls by default).
        rule = Rule(spec.dtype, tf32=False, atol=options.atol, rtol=options.rtol)
        checks = step_checks(spec, lstm, capture, sample, choice.name, rule, initial)
        if exact:
            shadow, shadow_note = run_shadow_for(spec, lstm, x, reference, capture, sample, shadow_step_macs(lstm),
                                                 initial)
        else:
            shadow, shadow_note = None, f"not shadowed: end to end is already against {reference.name}"
    if spec.dropout and spec.num_layers > 1:
        notes.append("dropout acts in train mode only; gates runs in eval mode, so none applied")
    if options.sequence != 0 and options.heatmap is None and options.plot is None:
        notes.append(f"--sequence {options.sequence} picks what --heatmap and --plot draw; without either it changes nothing")
    layers = []
    for (layer, direction), recorder in capture.recorders.items():
        stats, cell, per_step = recorder.stats.summary()
        layers.append(LayerGates(layer, direction, stats, cell, per_step, recorder.stats.unit_summary()))
    heatmap = None
    if options.heatmap is not None:
        recorder = capture.recorders[(options.heatmap.layer, options.heatmap.direction)]
        heatmap = build_heatmap(options.heatmap, options.sequence, recorder.sequence)
    with collect_warnings(notes):
        if options.export is not None:
            export_tensors(options.export, spec, capture, x, reference.forward)
        if options.plot is not None:
            from lstm_cli.plot import plot_gates

            plot_gates(options.plot, spec, {k: r.sequence for k, r in capture.recorders.items()}, options.sequence,
                       layers=options.plot_layers, color_range=options.plot_range, device=str(placement.device))
            if options.units:
                from lstm_cli.plot import plot_units

                plot_units(units_plot_path(options.plot), spec, layers, thresholds=options.thresholds,
                           shown=options.plot_layers, device=str(placement.device))
    return GatesResult(
        command="gates",
        config=spec.config(),
        device=str(placement.device),
        dtype=placement.dtype_name,
        method=choice.name,
        method_reason=choice.reason,
        method_timings_ms={name: t * 1e3 for name, t in choice.timings_s.items()} or None,
        gemm=None if choice.name != "loop" or not method.gemm_choices else {
            "backend": method.gemm_choices[0].backend,
            "reason": method.gemm_choices[0].reason,
            "timings_ms": {name: t * 1e3 for name, t in method.gemm_choices[0].timings_s.items()},
        },
        thresholds={"low": options.thresholds.low, "high": options.thresholds.high,
                    "tanh_low": options.thresholds.tanh_low, "tanh_high": options.thresholds.tanh_high},
        layers=layers,
        rule=rule.as_dict(),
        checked=sample.describe(),
        checks=checks,
        passed=all(check.passed for check in checks),
        end_to_end=end_to_end(spec, capture, reference),
        shadow=shadow,
        shadow_note=shadow_note,
        notes=notes,
        heatmap=heatmap,
        export=None if options.export is None else str(options.export),
        plot=None if options.plot is None else str(options.plot),
        units_plot=None if options.plot is None or not options.units else str(units_plot_path(options.plot)),
    )
