"""Which capture method `gates` runs (`auto`), chosen by measuring both on the real model.

What each costs the command (gates.reference says why):
- loop: its own forward pass, step by step (nn.LSTM then runs only a few rows for the report);
- recompute: nn.LSTM one layer at a time on the whole batch, then the gates of every chunk from
  two large GEMMs and a c-scan.
Which is cheaper depends on the CPU, its threads, what else runs on it and the sizes: on the
2-core development machine the loop won at (512, 1024, 2, 200, 64) on one thread and lost at
(128, 256, 2, 100, 32) on two, where its small per-step ops do not use the second core. So
both run on the first steps of layer 0 and the faster is kept, once per shape, device and
thread count in this process. The statistics cost the same either way and are left out.

How many steps: each method first runs PROBE_STEPS steps (a warm-up, then timed). That over-
weights its fixed costs per call (nn.LSTM reorders its weights on every call, a chunk has its
set-up), which the real run pays once per layer or per chunk of up to 256 steps: at (64, 128,
1, 1000, 8) an 8-step probe picked the loop, which then took 130 ms against recompute's 84.
So when that probe was cheap (under SMALL_PROBE_S for both), both also run up to
LONG_PROBE_STEPS steps and the comparison is of the projected whole sequence, t(8) plus the
per-step difference between the two lengths times the remaining steps. On a large model the
8-step probe stands (the fixed costs are small beside 8 large steps) and costs a few % of the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from lstm_cli.gates import step_gemm
from lstm_cli.gates.batch import WorkingBatch
from lstm_cli.gates.kernels import LoopCapture, RecomputeCapture
from lstm_cli.gates.reference import run_single_layer, single_layer_lstm
from lstm_cli.model import direction_weights, time_major
from lstm_cli.spec import LSTMSpec
from lstm_cli.timing import best_seconds

PROBE_STEPS = 8
LONG_PROBE_STEPS = 32
SMALL_PROBE_S = 0.01


@dataclass
class MethodChoice:
    name: str  # "loop" or "recompute"
    reason: str
    timings_s: dict[str, float] = field(default_factory=dict)  # measured probe time per method


_CHOICES: dict[tuple, MethodChoice] = {}


def choose_method(spec: LSTMSpec, lstm: torch.nn.LSTM, x: torch.Tensor, requested: str = "auto",
                  gemm: str = "auto") -> MethodChoice:
    """The capture method for this model and input, and why."""
    if spec.own_loop_only:
        return MethodChoice("loop", f"the model has {spec.own_loop_only}: only the loop computes them")
    if requested != "auto":
        return MethodChoice(requested, "chosen with --method")
    x_tm = time_major(x, spec)
    T = x_tm.shape[0]
    key = (tuple(x_tm.shape), spec.hidden_size, spec.proj_size, spec.num_layers, spec.bidirectional,
           spec.bias, x.dtype, str(x.device), torch.get_num_threads(), gemm)
    if key not in _CHOICES:
        steps, timings = probe(spec, lstm, x_tm, gemm)
        best = min(timings, key=timings.get)
        listed = ", ".join(f"{name} {seconds * 1e3:.3g} ms" for name, seconds in sorted(timings.items(), key=lambda kv: kv[1]))
        what = (f"on {steps} step{'s' if steps > 1 else ''} of layer 0" if steps >= T else
                f"on {steps} steps of layer 0" if steps == min(PROBE_STEPS, T) else
                f"on {PROBE_STEPS} and {steps} steps of layer 0, projected to {T}")
        _CHOICES[key] = MethodChoice(
            best, f"auto: the faster measured {what}: {listed} (recompute with the nn.LSTM layer "
                  "output it needs)", timings)
    return _CHOICES[key]


@torch.inference_mode()
def probe(spec: LSTMSpec, lstm: torch.nn.LSTM, x_tm: torch.Tensor, gemm: str) -> tuple[int, dict[str, float]]:
    """How many steps of layer 0 (forward direction) both methods ran, and the seconds each took
    (or, after a second, longer probe, would take over the whole sequence)."""
    T = x_tm.shape[0]
    steps = min(PROBE_STEPS, T)
    if gemm == "auto":  # the step GEMM's own measurement, once, outside the loop's timing
        step_gemm.choose(lstm.weight_hh_l0, x_tm.shape[1])
    short = {name: best_seconds(run, x_tm.device) for name, run in _probe_runs(spec, lstm, x_tm, gemm, steps).items()}
    longer = min(LONG_PROBE_STEPS, T)
    if longer <= steps or sum(short.values()) >= SMALL_PROBE_S:
        return steps, short
    long = {name: best_seconds(run, x_tm.device) for name, run in _probe_runs(spec, lstm, x_tm, gemm, longer).items()}
    per_step = {name: max(long[name] - short[name], 0.0) / (longer - steps) for name in short}
    return longer, {name: short[name] + (T - steps) * per_step[name] for name in short}


def _probe_runs(spec: LSTMSpec, lstm: torch.nn.LSTM, x_tm: torch.Tensor, gemm: str, steps: int) -> dict:
    prefix = x_tm[:steps].contiguous()
    batch = WorkingBatch(steps, prefix.shape[1], None, prefix.device)
    w = direction_weights(lstm, 0, "forward")
    forward_only = replace(spec, bidirectional=False)  # the loop probe runs one direction too
    single = single_layer_lstm(lstm, 0, prefix.shape[-1], forward_only)
    h_out = w.w_hh.shape[1]

    def loop() -> None:
        for _ in LoopCapture(gemm).run(prefix, None, w, False, batch, steps):
            pass

    def recompute() -> None:
        output = run_single_layer(single, prefix, forward_only, batch).output[:, :, :h_out]
        for _ in RecomputeCapture().run(prefix, output, w, False, batch, steps):
            pass

    return {"loop": loop, "recompute": recompute}
