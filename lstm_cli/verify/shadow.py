"""The float64 shadow: the same module and input run again in float64, for a report (never a
verdict) of how far each float32 (or lower) path is from the exact result over the whole
sequence, and of how strongly this model amplifies small differences on this input.

The shadow runs a few sequences, each on its own (so a packed sequence runs exactly its valid
steps, both directions from its own ends), together with a copy whose input is multiplied by
(1 + 1e-7). How far the two copies' outputs drift apart, step by step, is the model's own
sensitivity: rounding differences between two correct implementations grow the same way. A
model that multiplies that change by CHAOTIC_AMPLIFICATION or more is called chaotic on this
input, and the end-to-end difference between two paths is then the dynamics, not a bug.

Long runs are shadowed on their first steps only (one direction) or not at all (bidirectional:
its backward pass needs the whole sequence), so the shadow costs at most about 1/SHADOW_SHARE of
the run; the result says what was shadowed.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from lstm_cli.model import InitialState

PERTURBATION = 1e-7
# Sequences shadowed: the first of those the step-local check samples.
SHADOW_SEQUENCES = 2
# Growth of the perturbation, relative to 1e-7 |x|, from which the model counts as chaotic.
# Measured (README): random PyTorch-init LSTMs 0.01-0.3, the trained counter model (an
# integrator whose |c| grows to 150) 5-40, the chaotic model (W_hh x 8) 1e6 and more.
CHAOTIC_AMPLIFICATION = 1e4
SHADOW_FREE_MACS = 1 << 30
SHADOW_SHARE = 16
# A float64 step of a couple of sequences is memory-bound: it costs about as much as this many
# rows of a batched step.
SEQUENCE_COST_ROWS = 8


@dataclass
class PathError:
    """One path's largest |difference| from the float64 shadow over what was shadowed."""

    path: str
    output_max_abs_diff: float
    h_n_max_abs_diff: float | None  # None unless whole sequences were shadowed
    c_n_max_abs_diff: float | None
    per_step: list[float]  # the output's largest |difference| at each shadowed step


@dataclass
class Shadow:
    sequences: list[int]
    steps: int  # steps shadowed from each sequence's start (all of them when complete)
    complete: bool
    device: str
    description: str
    errors: list[PathError]
    perturbation: float
    growth: list[float]  # per shadowed step: max |output(x (1 + 1e-7)) - output(x)|, float64
    largest_growth: float
    largest_growth_step: int | None
    amplification: float  # largest_growth / (1e-7 max |x|)
    chaotic: bool
    sentence: str | None


@dataclass
class ShadowRun:
    """The float64 outputs of the shadowed sequences, before the paths are compared."""

    sequences: list[int]
    steps: int
    complete: bool
    device: torch.device
    outputs: list[torch.Tensor]  # per sequence (steps_b, D * H_out)
    finals: list[tuple[torch.Tensor, torch.Tensor] | None]  # per sequence (h_n, c_n) when complete
    growth: list[float]
    input_scale: float
    description: str

    def error(self, path: str, outputs: torch.Tensor, h_n: torch.Tensor | None, c_n: torch.Tensor | None) -> PathError:
        """A path's results for the shadowed sequences, in their order: outputs (T, n, D * H_out)
        time-major, h_n/c_n (D * layers, n, ...)."""
        h_diff, c_diff = 0.0, 0.0
        per_step = [0.0] * max(out.shape[0] for out in self.outputs)
        for k in range(len(self.sequences)):
            steps = self.outputs[k].shape[0]
            rows = (outputs[:steps, k].to(device=self.device, dtype=torch.float64) - self.outputs[k]).abs()
            for t, value in enumerate(rows.amax(dim=-1).tolist() if rows.numel() else []):
                per_step[t] = _max(per_step[t], value)
            if self.finals[k] is not None and h_n is not None:
                h_diff = _max(h_diff, _diff(h_n[:, k], self.finals[k][0]))
                c_diff = _max(c_diff, _diff(c_n[:, k], self.finals[k][1]))
        whole = self.complete and h_n is not None
        out_diff = math.nan if any(math.isnan(v) for v in per_step) else max(per_step, default=0.0)
        return PathError(path, out_diff, h_diff if whole else None, c_diff if whole else None, per_step)

    def summary(self, errors: list[PathError]) -> Shadow:
        largest = max(self.growth, default=0.0)
        step = None if not self.growth else max(range(len(self.growth)), key=self.growth.__getitem__)
        amplification = largest / (PERTURBATION * self.input_scale) if self.input_scale > 0 else 0.0
        chaotic = amplification >= CHAOTIC_AMPLIFICATION
        sentence = None
        if chaotic:
            sentence = (
                f"This model is chaotic on this input: a relative change of {PERTURBATION:g} in the input "
                f"grows to {largest:.2g} in the output by step {step} (float64, {self.description}). "
                "Rounding differences between two correct computations grow the same way, so a large "
                "end-to-end difference here is the dynamics, not an implementation error; the step-local "
                "check, which starts both from the same state at every step, decides."
            )
        return Shadow(
            sequences=self.sequences, steps=self.steps, complete=self.complete, device=str(self.device),
            description=self.description, errors=errors, perturbation=PERTURBATION, growth=self.growth,
            largest_growth=largest, largest_growth_step=step, amplification=amplification,
            chaotic=chaotic, sentence=sentence,
        )


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    d = (a.detach().to(device=b.device, dtype=torch.float64) - b).abs()
    if d.numel() == 0:
        return 0.0
    return math.nan if torch.isnan(d).any() else d.max().item()


def _max(a: float, b: float) -> float:
    return math.nan if math.isnan(a) or math.isnan(b) else max(a, b)


def shadow_step_macs(lstm: nn.LSTM) -> int:
    """Multiply-adds of one step of one sequence through every layer and direction."""
    return sum(p.numel() for name, p in lstm.named_parameters() if name.startswith("weight"))


def run_shadow(lstm: nn.LSTM, x_tm: torch.Tensor, lengths: tuple[int, ...] | None, sequences: list[int],
               forward_macs: int, initial: InitialState | None = None) -> ShadowRun | str:
    """Shadow `sequences` of x_tm (T, B, in, user order) through a float64 copy of `lstm`, from
    `initial` (batched, user order; None: zeros); the reason as a string when the run is too
    long to shadow within budget."""
    T = x_tm.shape[0]
    device = x_tm.device if x_tm.device.type != "mps" else torch.device("cpu")
    budget = max(SHADOW_FREE_MACS, forward_macs // SHADOW_SHARE)
    per_step = shadow_step_macs(lstm) * SEQUENCE_COST_ROWS * len(sequences)
    affordable = max(1, budget // max(per_step, 1))
    seq_lengths = [T if lengths is None else lengths[n] for n in sequences]
    if affordable < max(seq_lengths) and lstm.bidirectional:
        return (f"not shadowed: {max(seq_lengths):,} steps in both directions would cost more than "
                f"1/{SHADOW_SHARE} of this run (a backward pass needs whole sequences)")
    steps = min(max(seq_lengths), affordable)
    shadow = copy.deepcopy(lstm).to(device=device, dtype=torch.float64).eval()
    shadow.batch_first = False  # it runs time-major (length, 2, in) pairs, whatever the user's layout
    outputs, finals, growth_rows = [], [], []
    input_scale = 0.0
    with torch.inference_mode():
        for n, length in zip(sequences, seq_lengths):
            xs = x_tm[:length, n].to(device=device, dtype=torch.float64)
            input_scale = max(input_scale, xs.abs().max().item() if xs.numel() else 0.0)
            pair = torch.stack([xs, xs * (1 + PERTURBATION)], dim=1)  # (length, 2, in)
            start = None
            if initial is not None:  # both copies start from the sequence's own state
                start = tuple(s[:, n : n + 1].to(device=device, dtype=torch.float64).expand(-1, 2, -1).contiguous()
                              for s in initial.pair())
            out, state = _run_in_chunks(shadow, pair[:steps], start)
            outputs.append(out[:, 0])
            growth_rows.append((out[:, 1] - out[:, 0]).abs().amax(dim=-1))
            finals.append((state[0][:, 0], state[1][:, 0]) if out.shape[0] == length else None)
    growth = []
    for t in range(max(g.shape[0] for g in growth_rows)):
        growth.append(max(g[t].item() for g in growth_rows if g.shape[0] > t))
    complete = all(f is not None for f in finals)
    which = f"sequence{'s' if len(sequences) > 1 else ''} {', '.join(map(str, sequences))}"
    description = f"{which}, every step" if complete else f"{which}, steps 0-{steps - 1} of {max(seq_lengths)}"
    return ShadowRun(sequences, steps, complete, device, outputs, finals, growth, input_scale, description)


def _run_in_chunks(lstm: nn.LSTM, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None,
                   chunk: int = 256):
    """One direction can run chunk by chunk, passing (h, c) on; a bidirectional run at once."""
    if lstm.bidirectional or x.shape[0] <= chunk:
        out, state = lstm(x, state)
        return out, state
    outs = []
    for t0 in range(0, x.shape[0], chunk):
        out, state = lstm(x[t0 : t0 + chunk], state)
        outs.append(out)
    return torch.cat(outs), state
