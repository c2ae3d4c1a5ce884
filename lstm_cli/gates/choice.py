"""Which capture method `gates` runs (`auto`), chosen by measuring both on the real model.

What each costs the command (gates.reference says why):
- loop: its own forward pass, step by step (nn.LSTM then runs only a few rows for the report);
- recompute: nn.LSTM one layer at a time on the whole batch, then the gates of every chunk from
  two large GEMMs and a c-scan.
Which is cheaper depends on the CPU, its threads, what else runs on it and the sizes: on the
2-core development machine the loop won at (512, 1024, 2, 200, 64) on one thread and lost at
(128, 256, 2, 100, 32) on two, where its small per-step ops do not use the second core. So
both run on the first PROBE_STEPS steps of layer 0 (after one warm-up each) and the faster is
kept, once per shape, device and thread count in this process. The statistics cost the same
either way and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from lstm_cli.gates.batch import WorkingBatch
from lstm_cli.gates.kernels import LoopCapture, RecomputeCapture
from lstm_cli.gates.reference import run_single_layer, single_layer_lstm
from lstm_cli.model import direction_weights, time_major
from lstm_cli.spec import LSTMSpec
from lstm_cli.timing import best_seconds

PROBE_STEPS = 8


@dataclass
class MethodChoice:
    name: str  # "loop" or "recompute"
    reason: str
    timings_s: dict[str, float] = field(default_factory=dict)  # measured probe time per method


_CHOICES: dict[tuple, MethodChoice] = {}


def choose_method(spec: LSTMSpec, lstm: torch.nn.LSTM, x: torch.Tensor, requested: str = "auto",
                  gemm: str = "auto") -> MethodChoice:
    """The capture method for this model and input, and why."""
    if spec.recurrent_activation != "sigmoid":
        return MethodChoice("loop", f"the model's gates are {spec.recurrent_activation}: only the loop computes them")
    if requested != "auto":
        return MethodChoice(requested, "chosen with --method")
    x_tm = time_major(x, spec)
    key = (tuple(x_tm.shape), spec.hidden_size, spec.proj_size, spec.num_layers, spec.bidirectional,
           spec.bias, x.dtype, str(x.device), torch.get_num_threads(), gemm)
    if key not in _CHOICES:
        timings = probe(spec, lstm, x_tm, gemm)
        best = min(timings, key=timings.get)
        steps = min(PROBE_STEPS, x_tm.shape[0])
        listed = ", ".join(f"{name} {seconds * 1e3:.3g} ms" for name, seconds in sorted(timings.items(), key=lambda kv: kv[1]))
        _CHOICES[key] = MethodChoice(
            best, f"auto: the faster measured on {steps} step{'s' if steps > 1 else ''} of layer 0: {listed}, "
                  "recompute with the nn.LSTM layer output it needs", timings)
    return _CHOICES[key]


@torch.inference_mode()
def probe(spec: LSTMSpec, lstm: torch.nn.LSTM, x_tm: torch.Tensor, gemm: str) -> dict[str, float]:
    """Seconds each method takes on the first PROBE_STEPS steps of layer 0, forward direction."""
    steps = min(PROBE_STEPS, x_tm.shape[0])
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

    return {"loop": best_seconds(loop, prefix.device), "recompute": best_seconds(recompute, prefix.device)}
