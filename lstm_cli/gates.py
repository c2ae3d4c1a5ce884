"""`lstm-cli gates`: every gate of an nn.LSTM at every step, captured, verified and summarised.

nn.LSTM computes i, f, g, o inside a fused kernel and returns none of them. This module
recomputes them in one of two ways (both yield the same chunks of steps to one shared driver):

- `loop`: step by step like the fused kernel itself. The input projection x W_ih^T + b of a
  chunk of steps is one GEMM; each step adds h W_hh^T into that buffer in place (with W_hh
  packed once by MKL where available), applies the activations in place, and updates c and h.
  Its own h feeds the next step and the next layer, so it is an independent forward pass.
- `recompute`: nn.LSTM runs (one layer at a time, for every layer but the last, whose output the
  reference pass already has); then all gates of a chunk come from two large GEMMs on its input
  and its shifted output, and only the c-scan c_t = f_t c_(t-1) + i_t g_t walks the steps.

Either way the h_t rebuilt from the captured gates, o_t * tanh(c_t) (times W_hr with proj_size),
is compared with nn.LSTM's own output, h_n and c_n: that is the verification.

Statistics accumulate chunk by chunk (a chunk is a few MiB of gates), so memory does not grow
with the sequence length unless --export, --plot or --heatmap asks to keep tensors. Packed
batches (--lengths) are processed longest first, as PyTorch's packed kernels do: at step t only
the sequences still running take part, padding never enters a statistic, and the backward
direction starts each sequence at its own last step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from lstm_cli.checks import Check, max_abs_diff
from lstm_cli.gates_options import GatesOptions, HeatmapSpec, Thresholds
from lstm_cli.model import (
    DirectionWeights,
    Forward,
    direction_weights,
    from_time_major,
    prepare,
    run_lstm,
    time_major,
)
from lstm_cli.runtime import collect_warnings
from lstm_cli.spec import GATES, HARD_SIGMOID_SLOPES, LSTMSpec
from lstm_cli.verify.loop64 import loop_forward
from lstm_cli.verify.rule import Rule
from lstm_cli.verify.shadow import SHADOW_SEQUENCES, Shadow, run_shadow, shadow_step_macs
from lstm_cli.verify.step import PathRecord, Sample, check_direction, choose_sample, kept_steps

# Gate values computed at once: a chunk of steps holds about this many (x 4 bytes in float32),
# so the working set is a few chunks whatever the sequence length.
CHUNK_ELEMENTS = 1 << 22
MAX_CHUNK_STEPS = 256  # and at most this many steps, so that progress moves on long runs
# CPU: from this many multiply-adds in one step's recurrent GEMM (batch x H_out x 4H) on, the
# step loop beats recompute; below it, per-step overhead dominates and recompute's few large
# GEMMs win. On the 2-core development machine (benchmarks/gates_bench.py, README) the loop was
# 1.7x vs recompute 2.0x the fused forward at 67M multiply-adds a step, about even at 8-17M,
# and it loses far more than recompute when another process takes a core (each of its ~10
# small ops a step waits for both threads), hence the margin.
LOOP_MIN_STEP_MACS = 1 << 25
HEATMAP_MAX_STEPS = 64
HEATMAP_MAX_UNITS = 64


# -- the result ----------------------------------------------------------------------------------


@dataclass
class GateStats:
    mean: float
    std: float
    min: float
    max: float
    left_saturated: float  # fraction of values below the low threshold
    right_saturated: float  # fraction above the high threshold


@dataclass
class CellStats:
    mean_abs: float
    max_abs: float


@dataclass
class LayerGates:
    layer: int
    direction: str
    gates: dict[str, GateStats]
    cell: CellStats
    # gate -> mean over units and valid sequences at every step (None where no sequence runs)
    per_step: dict[str, list[float | None]]


@dataclass
class Heatmap:
    """One gate of one layer x direction for one sequence: rows are (groups of) units, columns
    (bins of) time steps, values the mean over each cell (None: padding only)."""

    layer: int
    direction: str
    gate: str
    sequence: int
    value_range: list[float]
    units: list[list[int]]  # [start, stop) of each row
    steps: list[list[int]]  # [start, stop) of each column
    values: list[list[float | None]]


@dataclass
class GatesResult:
    command: str
    config: dict
    device: str
    dtype: str
    method: str
    method_reason: str
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


@dataclass
class EndToEnd:
    """The capture's own trajectory against nn.LSTM's: max |difference| of the last layer's
    output (valid steps) and of the final states. Rounding makes them differ by more than one
    step's rounding over long or chaotic runs; the step-local checks decide."""

    output_max_abs_diff: float
    h_n_max_abs_diff: float
    c_n_max_abs_diff: float
    # What the capture was compared with: nn.LSTM's forward, or (gates nn.LSTM cannot run) a
    # float64 loop with the model's own activation.
    reference: str = "nn.LSTM"


# -- the batch in working order -------------------------------------------------------------------


class WorkingBatch:
    """The batch as the capture walks it: sorted longest first when packed (so the sequences
    still running at step t are rows [0, batch_sizes[t]) ), else as given."""

    def __init__(self, seq_len: int, batch: int, lengths: tuple[int, ...] | None, device: torch.device):
        self.T, self.B = seq_len, batch
        self.packed = lengths is not None
        if lengths is None:
            self.order = None
            self.lengths = [seq_len] * batch
        else:
            ordered = sorted(range(batch), key=lambda n: -lengths[n])  # stable: ties keep order
            self.order = torch.tensor(ordered, device=device)
            self.inverse = torch.argsort(self.order)
            self.lengths = [lengths[n] for n in ordered]
        self.valid = None
        self.batch_sizes = [batch] * seq_len
        if self.packed:
            running = torch.arange(seq_len).unsqueeze(1) < torch.tensor(self.lengths)  # (T, B)
            self.batch_sizes = running.sum(1).tolist()
            self.valid = running.to(device)

    def size_at(self, t: int) -> int:
        return self.batch_sizes[t]

    def valid_rows(self, t0: int, t1: int) -> torch.Tensor | None:
        """(steps, batch) mask of running sequences in [t0, t1), or None when all run."""
        if not self.packed or self.batch_sizes[t1 - 1] == self.B:  # sizes never grow with t
            return None
        return self.valid[t0:t1]

    def final_steps(self, reverse: bool) -> list[int]:
        """The step at which each row's state becomes its h_n / c_n."""
        return [0] * self.B if reverse else [length - 1 for length in self.lengths]

    def to_working(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        return x if self.order is None else x.index_select(dim, self.order)

    def to_original(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        return x if self.order is None else x.index_select(dim, self.inverse)


def working_row(batch: WorkingBatch, n: int) -> int:
    """The row of the working batch that holds sequence n of the user's batch."""
    return int(batch.inverse[n]) if batch.order is not None else n


# -- the two capture methods ----------------------------------------------------------------------


@dataclass
class Chunk:
    """Steps [t0, t1) of one layer x direction, time-major, batch in working order. Rows of
    sequences that are not running at a step hold unspecified values."""

    t0: int
    t1: int
    gates: torch.Tensor  # (steps, B, 4, H), after the activations
    c: torch.Tensor  # (steps, B, H)
    h: torch.Tensor  # (steps, B, H_out), rebuilt from the gates


def chunk_bounds(seq_len: int, steps: int, reverse: bool) -> list[tuple[int, int]]:
    bounds = [(t0, min(t0 + steps, seq_len)) for t0 in range(0, seq_len, steps)]
    return bounds[::-1] if reverse else bounds


def _step_order(t0: int, t1: int, reverse: bool) -> range:
    return range(t1 - 1, t0 - 1, -1) if reverse else range(t0, t1)


def activate(gates: torch.Tensor, activation: str = "sigmoid") -> None:
    """In place on (..., 4, H) pre-activations: sigmoid (or a loaded model's hard sigmoid,
    clip(a z + 0.5, 0, 1)) on i, f, o; tanh on g."""
    if activation == "sigmoid":
        gates[..., 0:2, :].sigmoid_()
        gates[..., 3, :].sigmoid_()
    else:
        slope = HARD_SIGMOID_SLOPES[activation]
        for block in (gates[..., 0:2, :], gates[..., 3, :]):
            block.mul_(slope).add_(0.5).clamp_(0.0, 1.0)
    gates[..., 2, :].tanh_()


def input_projection(x: torch.Tensor, w: DirectionWeights, out: torch.Tensor) -> torch.Tensor:
    """x W_ih^T + b_ih + b_hh for a (steps, B, in) block, into `out` (steps * B, 4H)."""
    flat = x.reshape(-1, x.shape[-1])
    if w.b_ih is None:
        return torch.mm(flat, w.w_ih.t(), out=out)
    return torch.addmm(w.b_ih + w.b_hh, flat, w.w_ih.t(), out=out)


def rebuild_h(c: torch.Tensor, o: torch.Tensor, w: DirectionWeights, out: torch.Tensor,
              raw: torch.Tensor | None = None) -> torch.Tensor:
    """h = o * tanh(c) into `out`; with proj_size, o * tanh(c) goes to `raw` (shaped like c)
    first and `out` gets it times W_hr^T."""
    if w.w_hr is None:
        return torch.tanh(c, out=out).mul_(o)
    torch.tanh(c, out=raw).mul_(o)
    return torch.matmul(raw, w.w_hr.t(), out=out)


class ChunkBuffers:
    """Work tensors of one chunk, allocated once per layer x direction and reused by every
    chunk (a chunk's tensors are valid until the next one is made): a fresh multi-MiB
    allocation per chunk costs page faults about as slow as the arithmetic itself."""

    def __init__(self, like: torch.Tensor, steps: int, batch: int, **widths: int):
        self.tensors = {name: like.new_empty(steps, batch, width) for name, width in widths.items()}

    def __call__(self, name: str, steps: int) -> torch.Tensor:
        return self.tensors[name][:steps]


def mkl_packing_supported(w: torch.Tensor) -> bool:
    return (
        w.device.type == "cpu"
        and w.dtype == torch.float32
        and torch.backends.mkl.is_available()
        and hasattr(torch.ops.mkl, "_mkl_linear")
    )


class StepGemm:
    """gates += h W_hh^T for one step. On CPU in float32, W_hh can be packed once by MKL for the
    full batch (torch.ops.mkl._mkl_reorder_linear_weight + _mkl_linear: a private API, so it is
    probed once and any failure falls back to addmm_, as do steps with fewer sequences).

    use_mkl: True packs whenever supported, False never, None (the default) only when a step's
    GEMM is large enough for packing to pay (the sizes where `auto` picks the loop)."""

    def __init__(self, w_hh: torch.Tensor, batch: int, use_mkl: bool | None = None):
        self.w_hh, self.w_hh_t, self.batch = w_hh, w_hh.t(), batch
        self.packed = None
        if use_mkl is None:
            use_mkl = batch * w_hh.numel() >= LOOP_MIN_STEP_MACS
        if use_mkl and mkl_packing_supported(w_hh):
            try:
                packed = torch.ops.mkl._mkl_reorder_linear_weight(w_hh, batch)
                probe = w_hh.new_ones(batch, w_hh.shape[1])
                got = torch.ops.mkl._mkl_linear(probe, packed, w_hh, None, batch)
                if got.shape == (batch, w_hh.shape[0]) and torch.allclose(
                    got, probe @ self.w_hh_t, rtol=1e-4, atol=1e-4
                ):
                    self.packed = packed
            except (RuntimeError, AttributeError, TypeError):
                self.packed = None

    def __call__(self, gates: torch.Tensor, h: torch.Tensor) -> None:
        if self.packed is not None and h.shape[0] == self.batch:
            gates.add_(torch.ops.mkl._mkl_linear(h, self.packed, self.w_hh, None, self.batch))
        else:
            gates.addmm_(h, self.w_hh_t)


class LoopCapture:
    """Step by step, gates written in place into the chunk's input projection."""

    name = "loop"
    needs_layer_output = False

    def __init__(self, use_mkl: bool | None = None, activation: str = "sigmoid"):
        self.use_mkl = use_mkl  # see StepGemm
        self.activation = activation  # of i, f, o

    def run(self, x: torch.Tensor, h_seq: torch.Tensor | None, w: DirectionWeights, reverse: bool,
            batch: WorkingBatch, chunk_steps: int) -> Iterator[Chunk]:
        T, B, _ = x.shape
        H, H_out = w.w_hh.shape[0] // 4, w.w_hh.shape[1]
        gemm = StepGemm(w.w_hh, B, self.use_mkl)
        work = ChunkBuffers(x, chunk_steps, B, gates=4 * H, c=H, h=H_out, raw=H if w.w_hr is not None else 0)
        h_prev, c_prev = x.new_zeros(B, H_out), x.new_zeros(B, H)  # carried from chunk to chunk
        for t0, t1 in chunk_bounds(T, chunk_steps, reverse):
            n = t1 - t0
            gates = input_projection(x[t0:t1], w, work("gates", n).view(n * B, 4 * H)).view(n, B, 4, H)
            cs, hs, raw = work("c", n), work("h", n), work("raw", 1)[0]
            if batch.packed:
                # A sequence that has not started yet (backward direction) reads a zero state
                # at its first step, which is its own last one.
                cs.zero_()
                hs.zero_()
            h_step, c_step = h_prev, c_prev
            for t in _step_order(t0, t1, reverse):
                s, bs = t - t0, batch.size_at(t)
                g = gates[s, :bs]
                gemm(g.view(bs, 4 * H), h_step[:bs])
                activate(g, self.activation)
                c = torch.mul(g[:, 1], c_step[:bs], out=cs[s, :bs]).addcmul_(g[:, 0], g[:, 2])
                rebuild_h(c, g[:, 3], w, out=hs[s, :bs], raw=raw[:bs] if raw.numel() else None)
                h_step, c_step = hs[s], cs[s]
            h_prev.copy_(h_step)
            c_prev.copy_(c_step)
            yield Chunk(t0, t1, gates, cs, hs)


class RecomputeCapture:
    """From nn.LSTM's own per-layer output: two GEMMs per chunk and a c-scan."""

    name = "recompute"
    needs_layer_output = True

    def run(self, x: torch.Tensor, h_seq: torch.Tensor | None, w: DirectionWeights, reverse: bool,
            batch: WorkingBatch, chunk_steps: int) -> Iterator[Chunk]:
        T, B, _ = x.shape
        H, H_out = w.w_hh.shape[0] // 4, w.w_hh.shape[1]
        work = ChunkBuffers(x, chunk_steps, B, gates=4 * H, c=H, h=H_out, ig=H, f=H,
                            raw=H if w.w_hr is not None else 0)
        c_prev = x.new_zeros(B, H)
        for t0, t1 in chunk_bounds(T, chunk_steps, reverse):
            n = t1 - t0
            gates = input_projection(x[t0:t1], w, work("gates", n).view(n * B, 4 * H))
            gates.addmm_(previous_h(h_seq, t0, t1, reverse).reshape(n * B, H_out), w.w_hh.t())
            gates = gates.view(n, B, 4, H)
            activate(gates)
            i, f, g, o = gates.unbind(2)
            ig = torch.mul(i, g, out=work("ig", n))
            valid = batch.valid_rows(t0, t1)
            if valid is not None:  # a state is zero until its sequence's first step
                mask = valid.unsqueeze(-1).to(ig.dtype)
                ig.mul_(mask)
                f = torch.mul(f, mask, out=work("f", n))
            cs = work("c", n)
            for t in _step_order(t0, t1, reverse):
                s = t - t0
                c_prev = torch.addcmul(ig[s], f[s], c_prev, out=cs[s])
            c_prev = c_prev.clone()  # cs is reused by the next chunk
            hs = rebuild_h(cs, o, w, out=work("h", n), raw=work("raw", n) if w.w_hr is not None else None)
            yield Chunk(t0, t1, gates, cs, hs)


def previous_h(h_seq: torch.Tensor, t0: int, t1: int, reverse: bool) -> torch.Tensor:
    """h_(t-1) for t in [t0, t1) (h_(t+1) backward), zero before the first step. Padded steps of
    nn.LSTM's output are zero, so a packed sequence's backward pass also starts from zero."""
    T = h_seq.shape[0]
    if not reverse:
        if t0 > 0:
            return h_seq[t0 - 1 : t1 - 1]
        return torch.cat([torch.zeros_like(h_seq[:1]), h_seq[: t1 - 1]])
    if t1 < T:
        return h_seq[t0 + 1 : t1 + 1]
    return torch.cat([h_seq[t0 + 1 :], torch.zeros_like(h_seq[:1])])


METHOD_CLASSES = {"loop": LoopCapture, "recompute": RecomputeCapture}


def choose_method(spec: LSTMSpec, device: torch.device, requested: str = "auto") -> tuple[str, str]:
    """The capture method and why. On CUDA recompute (one launch per step instead of about
    ten); on CPU the loop once a step's GEMM is large enough to hide the per-step overhead."""
    if spec.recurrent_activation != "sigmoid":
        return "loop", f"the model's gates are {spec.recurrent_activation}: only the loop computes them"
    if requested != "auto":
        return requested, "chosen with --method"
    if device.type != "cpu":
        return "recompute", f"auto: on {device.type} the step loop is launch-bound"
    batch = 1 if spec.unbatched else spec.batch_size
    macs = batch * spec.h_out * 4 * spec.hidden_size
    if macs >= LOOP_MIN_STEP_MACS:
        return "loop", f"auto: each step's GEMM has {macs:,} multiply-adds (>= {LOOP_MIN_STEP_MACS:,})"
    return "recompute", f"auto: each step's GEMM has {macs:,} multiply-adds (< {LOOP_MIN_STEP_MACS:,})"


def chunk_steps_for(spec: LSTMSpec) -> int:
    batch = 1 if spec.unbatched else spec.batch_size
    return max(1, min(spec.seq_len, MAX_CHUNK_STEPS, CHUNK_ELEMENTS // (batch * 4 * spec.hidden_size)))


# -- statistics -----------------------------------------------------------------------------------


class GateAccumulator:
    """Statistics of one layer x direction, updated chunk by chunk; per-step sums and squared
    deviations are combined at the end (Chan et al.), so std stays exact for gates near 0 or 1."""

    def __init__(self, seq_len: int, hidden: int, thresholds: Thresholds, device: torch.device):
        self.H = hidden
        acc = torch.float64 if device.type != "mps" else torch.float32
        self.step_sum = torch.zeros(seq_len, 4, dtype=acc, device=device)
        self.step_m2 = torch.zeros(seq_len, 4, dtype=acc, device=device)
        self.step_count = torch.zeros(seq_len, dtype=acc, device=device)
        self.min = torch.full((4,), math.inf, dtype=acc, device=device)
        self.max = torch.full((4,), -math.inf, dtype=acc, device=device)
        self.left = torch.zeros(4, dtype=acc, device=device)  # counts, exact below 2**53
        self.right = torch.zeros(4, dtype=acc, device=device)
        self.cell_abs_sum = torch.zeros((), dtype=acc, device=device)
        self.cell_abs_max = torch.zeros((), dtype=acc, device=device)
        low_high = [thresholds.for_gate(g) for g in GATES]
        self.thresholds = torch.tensor(low_high, dtype=torch.float64)  # (4, 2)
        self.low = self.high = None  # in the gates' dtype, made at the first chunk
        self.scratch: torch.Tensor | None = None

    def _scratch(self, like: torch.Tensor) -> torch.Tensor:
        """A work tensor shaped like `like`, reused from chunk to chunk (see ChunkBuffers)."""
        if self.scratch is None or self.scratch.numel() < like.numel() or self.scratch.dtype != like.dtype:
            self.scratch = torch.empty(like.numel(), dtype=like.dtype, device=like.device)
        return self.scratch[: like.numel()].view(like.shape)

    def add(self, t0: int, t1: int, gates: torch.Tensor, c: torch.Tensor, valid: torch.Tensor | None) -> None:
        """Steps [t0, t1): gates (steps, B, 4, H), c (steps, B, H); `valid` (steps, B) marks the
        sequences running at each step (None: all)."""
        if gates.dtype in (torch.float16, torch.bfloat16):
            gates, c = gates.float(), c.float()
        acc = self.step_sum.dtype
        centred = self._scratch(gates)
        if valid is None:
            count = torch.full((gates.shape[0],), gates.shape[1] * self.H, dtype=acc, device=gates.device)
            sums = gates.sum((1, 3))
            torch.sub(gates, (sums / (gates.shape[1] * self.H))[:, None, :, None], out=centred)
            rows, cells = gates.reshape(-1, 4, self.H), c.reshape(-1, self.H)
        else:
            weight = valid.to(gates.dtype)[:, :, None, None]
            count = valid.sum(1).to(acc) * self.H
            sums = torch.mul(gates, weight, out=centred).sum((1, 3))
            mean = sums / count.clamp(min=1).to(gates.dtype).unsqueeze(1)
            torch.sub(gates, mean[:, None, :, None], out=centred).mul_(weight)
            rows, cells = gates[valid], c[valid]
        # Two passes per step (sum, then squared deviations from the step's mean): exact even
        # for gates pinned near 0 or 1, where sum-of-squares minus squared sum cancels.
        self.step_sum[t0:t1] = sums.to(acc)
        self.step_m2[t0:t1] = centred.square_().sum((1, 3)).to(acc)
        self.step_count[t0:t1] = count
        if rows.shape[0] == 0:
            return
        if self.low is None or self.low.dtype != rows.dtype:
            self.low = self.thresholds[:, 0].to(rows.device, rows.dtype).view(1, 4, 1)
            self.high = self.thresholds[:, 1].to(rows.device, rows.dtype).view(1, 4, 1)
        self.min = torch.minimum(self.min, rows.amin((0, 2)).to(acc))
        self.max = torch.maximum(self.max, rows.amax((0, 2)).to(acc))
        # [x < low] as clamp(low - x, min=0).sign(): exact (low - x > 0 exactly when x < low in
        # IEEE arithmetic), and about 3x faster on CPU than comparing into bools and summing
        # them. A float32 sum of 0/1 values is exact below 2**24 of them; beyond, use float64.
        exact = acc if rows.shape[0] * self.H >= 2**24 else None
        work = self._scratch(rows)
        self.left += torch.sub(self.low, rows, out=work).clamp_(min=0).sign_().sum((0, 2), dtype=exact).to(acc)
        self.right += torch.sub(rows, self.high, out=work).clamp_(min=0).sign_().sum((0, 2), dtype=exact).to(acc)
        magnitude = torch.abs(cells, out=self._scratch(cells))
        self.cell_abs_sum += magnitude.sum().to(acc)
        self.cell_abs_max = torch.maximum(self.cell_abs_max, magnitude.max().to(acc))

    def release(self) -> None:
        """Drop the work tensor once this layer x direction is done."""
        self.scratch = None

    def summary(self) -> tuple[dict[str, GateStats], CellStats, dict[str, list[float | None]]]:
        count = self.step_count.sum()
        mean = self.step_sum.sum(0) / count
        step_mean = self.step_sum / self.step_count.clamp(min=1).unsqueeze(1)
        running = self.step_count > 0
        m2 = self.step_m2.sum(0) + (self.step_count.unsqueeze(1) * (step_mean - mean) ** 2)[running].sum(0)
        std = (m2 / count).sqrt()
        values = count.item()
        stats = {
            gate: GateStats(
                mean=mean[k].item(),
                std=std[k].item(),
                min=self.min[k].item(),
                max=self.max[k].item(),
                left_saturated=self.left[k].item() / values,
                right_saturated=self.right[k].item() / values,
            )
            for k, gate in enumerate(GATES)
        }
        cell = CellStats(mean_abs=(self.cell_abs_sum / count).item(), max_abs=self.cell_abs_max.item())
        per_step_values = step_mean.cpu().tolist()
        ran = running.cpu().tolist()
        per_step = {
            gate: [row[k] if ok else None for row, ok in zip(per_step_values, ran)]
            for k, gate in enumerate(GATES)
        }
        return stats, cell, per_step


class DirectionRecorder:
    """Everything kept about one layer x direction: statistics, final states and, on request,
    full tensors (--export) or one sequence's gates (--plot, --heatmap)."""

    def __init__(self, spec: LSTMSpec, batch: WorkingBatch, reverse: bool, thresholds: Thresholds,
                 like: torch.Tensor, keep_all: bool, keep_sequence: int | None):
        T, B, H, H_out = spec.seq_len, batch.B, spec.hidden_size, spec.h_out
        self.batch = batch
        self.stats = GateAccumulator(T, H, thresholds, like.device)
        self.h_last, self.c_last = like.new_zeros(B, H_out), like.new_zeros(B, H)
        self.final = torch.tensor(batch.final_steps(reverse))
        nan = math.nan
        self.all = None
        if keep_all:
            self.all = {
                "gates": like.new_full((T, B, 4, H), nan),
                "c": like.new_full((T, B, H), nan),
                "h": like.new_full((T, B, H_out), nan),
            }
        self.row = None if keep_sequence is None else working_row(batch, keep_sequence)
        self.sequence = None
        if keep_sequence is not None:
            self.sequence = {"gates": like.new_full((T, 4, H), nan), "c": like.new_full((T, H), nan)}

    def add(self, chunk: Chunk) -> None:
        t0, t1 = chunk.t0, chunk.t1
        valid = self.batch.valid_rows(t0, t1)
        self.stats.add(t0, t1, chunk.gates, chunk.c, valid)
        ends = torch.nonzero((self.final >= t0) & (self.final < t1)).flatten()
        if ends.numel():
            steps = (self.final[ends] - t0).to(chunk.h.device)
            rows = ends.to(chunk.h.device)
            self.h_last[rows] = chunk.h[steps, rows]
            self.c_last[rows] = chunk.c[steps, rows]
        for store, values in (
            (self.all, {"gates": chunk.gates, "c": chunk.c, "h": chunk.h}),
            (self.sequence, None if self.row is None else {"gates": chunk.gates[:, self.row], "c": chunk.c[:, self.row]}),
        ):
            if store is None:
                continue
            for name, value in values.items():
                store[name][t0:t1] = value
                if valid is not None:
                    mask = valid if store is self.all else valid[:, self.row]
                    store[name][t0:t1][~mask] = math.nan


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


# -- the driver -----------------------------------------------------------------------------------


@dataclass
class Capture:
    batch: WorkingBatch
    recorders: dict[tuple[int, str], DirectionRecorder]
    output_diff: float  # max |rebuilt h - nn.LSTM output| over the last layer's valid steps
    h_n: torch.Tensor  # (D * layers, B, H_out), working order
    c_n: torch.Tensor
    sampled: dict[tuple[int, str], SampleRecorder]  # for the step-local check and the shadow


def fused_layer_output(lstm: torch.nn.LSTM, layer: int, x: torch.Tensor, spec: LSTMSpec,
                       batch: WorkingBatch) -> torch.Tensor:
    """One layer of `lstm` run by nn.LSTM itself on a time-major (T, B, in) input in working
    order: its (T, B, D * H_out) output, padded steps zero."""
    single_spec = replace(
        spec, input_size=x.shape[-1], num_layers=1, batch_first=False, unbatched=False,
        batch_size=batch.B, dropout=0.0, lengths=tuple(batch.lengths) if batch.packed else None,
    )
    single = torch.nn.LSTM(
        x.shape[-1], spec.hidden_size, 1, bias=spec.bias, bidirectional=spec.bidirectional,
        proj_size=spec.proj_size, device=x.device, dtype=x.dtype,
    ).eval()
    with torch.no_grad():
        for direction, suffix in zip(spec.directions(), ("", "_reverse")):
            w = direction_weights(lstm, layer, direction)
            for name, value in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"),
                                   (w.w_ih, w.w_hh, w.b_ih, w.b_hh, w.w_hr)):
                if value is not None:
                    getattr(single, f"{name}_l0{suffix}").copy_(value)
    single.flatten_parameters()  # cuDNN wants one weight buffer (a no-op elsewhere)
    return run_lstm(single, x, single_spec).output


@torch.inference_mode()
def capture_gates(
    lstm: torch.nn.LSTM,
    x: torch.Tensor,
    spec: LSTMSpec,
    reference: Forward,
    method: LoopCapture | RecomputeCapture,
    thresholds: Thresholds = Thresholds(),
    keep_all: bool = False,
    keep_sequence: dict[tuple[int, str], int] | None = None,
    progress: Callable[..., None] | None = None,
    sample: Sample | None = None,
    shadowed: int = 0,
) -> Capture:
    """Run `method` over every layer and direction of `lstm` on input `x` (the spec's layout),
    recording statistics; compare what it rebuilds with `reference` (nn.LSTM's own forward).
    With a `sample`, keep what the step-local check and the shadow (its first `shadowed`
    sequences) need."""
    x_tm = time_major(x, spec)
    T, B = x_tm.shape[:2]
    batch = WorkingBatch(T, B, spec.lengths, x.device)
    x_tm = batch.to_working(x_tm, 1)
    ref_out = batch.to_working(time_major(reference.output, spec), 1)
    ref_out = ref_out.contiguous() if method.needs_layer_output else ref_out
    D, H_out, steps = spec.num_directions, spec.h_out, chunk_steps_for(spec)
    keep_sequence = keep_sequence or {}
    recorders: dict[tuple[int, str], DirectionRecorder] = {}
    sampled: dict[tuple[int, str], SampleRecorder] = {}
    output_diff = 0.0
    inp = x_tm
    for layer in range(spec.num_layers):
        last = layer == spec.num_layers - 1
        if method.needs_layer_output:
            layer_out = ref_out if last else fused_layer_output(lstm, layer, inp, spec, batch)
            next_inp = layer_out
        else:
            layer_out = None
            next_inp = None if last else inp.new_empty(T, B, D * H_out)
        for d, direction in enumerate(spec.directions()):
            cols = slice(d * H_out, (d + 1) * H_out)
            recorder = DirectionRecorder(
                spec, batch, d == 1, thresholds, inp, keep_all, keep_sequence.get((layer, direction))
            )
            recorders[(layer, direction)] = recorder
            keeper = None
            if sample is not None:
                keeper = SampleRecorder(sample, batch, d == 1, shadowed, last)
                sampled[(layer, direction)] = keeper
            w = direction_weights(lstm, layer, direction)
            h_seq = None if layer_out is None else layer_out[:, :, cols]
            for chunk in method.run(inp, h_seq, w, d == 1, batch, steps):
                recorder.add(chunk)
                if keeper is not None:
                    keeper.add(chunk, inp, h_seq)
                if next_inp is not None and not method.needs_layer_output:
                    next_inp[chunk.t0 : chunk.t1, :, cols] = chunk.h
                if last:
                    output_diff = _max_diff(output_diff, chunk.h, ref_out[chunk.t0 : chunk.t1, :, cols],
                                            batch.valid_rows(chunk.t0, chunk.t1))
                if progress is not None:
                    progress(chunk.t1 - chunk.t0)
            recorder.stats.release()
        inp = next_inp
    order = [(layer, direction) for layer in range(spec.num_layers) for direction in spec.directions()]
    h_n = torch.stack([recorders[k].h_last for k in order])
    c_n = torch.stack([recorders[k].c_last for k in order])
    return Capture(batch, recorders, output_diff, h_n, c_n, sampled)


def _max_diff(so_far: float, a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor | None) -> float:
    diff = max_abs_diff(a, b) if valid is None else max_abs_diff(a[valid], b[valid])
    if math.isnan(so_far) or math.isnan(diff):
        return math.nan
    return max(so_far, diff)


def end_to_end(spec: LSTMSpec, capture: Capture, reference: Forward, name: str) -> EndToEnd:
    """The capture's trajectory against the reference's: last layer's output and every final state."""
    h_n = reference.h_n.unsqueeze(1) if spec.unbatched else reference.h_n
    c_n = reference.c_n.unsqueeze(1) if spec.unbatched else reference.c_n
    h_n, c_n = capture.batch.to_working(h_n, 1), capture.batch.to_working(c_n, 1)
    return EndToEnd(capture.output_diff, max_abs_diff(capture.h_n, h_n), max_abs_diff(capture.c_n, c_n), name)


def step_checks(spec: LSTMSpec, lstm: torch.nn.LSTM, capture: Capture, sample: Sample, method: str,
                rule: Rule) -> list[Check]:
    """Every sampled step of every layer x direction against the float64 step from the state
    the capture started it from."""
    state = "nn.LSTM's h and its own c" if method == "recompute" else "its own state"
    checks = []
    for (layer, direction), keeper in capture.sampled.items():
        checks.append(check_direction(
            f"layer {layer} {direction}: gates, c, h of each step from {state}",
            lstm, layer, direction, keeper.record(), sample, rule, spec.recurrent_activation,
        ))
    return checks


def run_shadow_for(spec: LSTMSpec, lstm: torch.nn.LSTM, x: torch.Tensor, reference: Forward, capture: Capture,
                   sample: Sample, step_macs: int) -> tuple[Shadow | None, str | None]:
    """The float64 shadow of the first SHADOW_SEQUENCES sampled sequences, and each path's
    distance from it: nn.LSTM's forward and the capture's rebuilt h."""
    shadowed = sample.sequences[:SHADOW_SEQUENCES]
    batch = 1 if spec.unbatched else spec.batch_size
    run = run_shadow(lstm, time_major(x, spec), spec.lengths, shadowed, batch * spec.seq_len * step_macs)
    if isinstance(run, str):
        return None, run
    last = [capture.sampled[(spec.num_layers - 1, d)].output for d in spec.directions()]
    rows = torch.tensor([working_row(capture.batch, n) for n in shadowed], device=capture.h_n.device)
    h_n = reference.h_n.unsqueeze(1) if spec.unbatched else reference.h_n
    c_n = reference.c_n.unsqueeze(1) if spec.unbatched else reference.c_n
    users = torch.tensor(shadowed, device=h_n.device)
    errors = [
        run.error("nn.LSTM", time_major(reference.output, spec)[:, users], h_n[:, users], c_n[:, users]),
        run.error("gate capture", torch.cat(last, dim=-1), capture.h_n[:, rows], capture.c_n[:, rows]),
    ]
    return run.summary(errors), None


# -- the command ----------------------------------------------------------------------------------


def extra_elements(spec: LSTMSpec, options: GatesOptions) -> int:
    """What gates holds beyond one forward pass, in elements, for the memory guard."""
    T, B, H, D, L = spec.seq_len, 1 if spec.unbatched else spec.batch_size, spec.hidden_size, spec.num_directions, spec.num_layers
    H_out = spec.h_out
    layer_buffers = 2 * T * B * D * H_out  # one layer's input and output
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
    return layer_buffers + working + per_step + kept


def run_gates(spec: LSTMSpec, options: GatesOptions = GatesOptions(),
              progress: Callable[..., None] | None = None) -> GatesResult:
    """The whole command: build, run nn.LSTM, capture, verify, summarise, and write --export
    and --plot files. `progress(steps, description=None)` hears of every chunk of steps."""
    notes: list[str] = []
    with collect_warnings(notes):
        prepared = prepare(spec, extra_elements(spec, options))
        placement, lstm, x = prepared.placement, prepared.lstm, prepared.x
        exact = spec.recurrent_activation == "sigmoid"  # else nn.LSTM cannot run the model
        if progress is not None:
            progress(0, "nn.LSTM forward" if exact else "float64 reference loop")
        if exact:
            reference, reference_name = run_lstm(lstm, x, spec), "nn.LSTM"
        else:
            reference = loop_forward(lstm, x, spec, spec.recurrent_activation)
            reference_name = f"a float64 loop with {spec.recurrent_activation} gates"
        if progress is not None:
            progress(0, "capturing gates")
        method_name, reason = choose_method(spec, placement.device, options.method)
        method = (LoopCapture(options.use_mkl, spec.recurrent_activation) if method_name == "loop"
                  else RecomputeCapture())
        keep_sequence = {}  # what --plot (its --layers only) and --heatmap draw
        if options.plot is not None:
            drawn = options.plot_layers if options.plot_layers is not None else range(spec.num_layers)
            keep_sequence = {(layer, d): options.sequence for layer in drawn for d in spec.directions()}
        if options.heatmap is not None:
            keep_sequence[(options.heatmap.layer, options.heatmap.direction)] = options.sequence
        step_macs = shadow_step_macs(lstm)
        sample = choose_sample(1 if spec.unbatched else spec.batch_size, spec.seq_len, step_macs, spec.lengths)
        capture = capture_gates(
            lstm, x, spec, reference, method, options.thresholds,
            keep_all=options.export is not None, keep_sequence=keep_sequence, progress=progress,
            sample=sample, shadowed=min(SHADOW_SEQUENCES, len(sample.sequences)),
        )
        if progress is not None:
            progress(0, "checking")
        # The capture's own GEMMs run in full float32 (TF32 is off for plain matmuls by default).
        rule = Rule(spec.dtype, tf32=False, atol=options.atol, rtol=options.rtol)
        checks = step_checks(spec, lstm, capture, sample, method_name, rule)
        if exact:
            shadow, shadow_note = run_shadow_for(spec, lstm, x, reference, capture, sample, step_macs)
        else:
            shadow, shadow_note = None, f"not shadowed: end to end is already against {reference_name}"
    if spec.dropout and spec.num_layers > 1:
        notes.append("dropout acts in train mode only; gates runs in eval mode, so none applied")
    if options.sequence != 0 and options.heatmap is None and options.plot is None:
        notes.append(f"--sequence {options.sequence} picks what --heatmap and --plot draw; without either it changes nothing")
    layers = []
    for (layer, direction), recorder in capture.recorders.items():
        stats, cell, per_step = recorder.stats.summary()
        layers.append(LayerGates(layer, direction, stats, cell, per_step))
    heatmap = None
    if options.heatmap is not None:
        recorder = capture.recorders[(options.heatmap.layer, options.heatmap.direction)]
        heatmap = build_heatmap(options.heatmap, options.sequence, recorder.sequence)
    with collect_warnings(notes):
        if options.export is not None:
            export_tensors(options.export, spec, capture, x, reference)
        if options.plot is not None:
            from lstm_cli.plot import plot_gates

            plot_gates(options.plot, spec, {k: r.sequence for k, r in capture.recorders.items()}, options.sequence,
                       layers=options.plot_layers, color_range=options.plot_range, device=str(placement.device))
    return GatesResult(
        command="gates",
        config=spec.config(),
        device=str(placement.device),
        dtype=placement.dtype_name,
        method=method_name,
        method_reason=reason,
        thresholds={"low": options.thresholds.low, "high": options.thresholds.high,
                    "tanh_low": options.thresholds.tanh_low, "tanh_high": options.thresholds.tanh_high},
        layers=layers,
        rule=rule.as_dict(),
        checked=sample.describe(),
        checks=checks,
        passed=all(check.passed for check in checks),
        end_to_end=end_to_end(spec, capture, reference, reference_name),
        shadow=shadow,
        shadow_note=shadow_note,
        notes=notes,
        heatmap=heatmap,
        export=None if options.export is None else str(options.export),
        plot=None if options.plot is None else str(options.plot),
    )


def _bins(total: int, most: int) -> list[list[int]]:
    """[start, stop) of at most `most` groups of equal size (the last may be shorter)."""
    size = -(-total // most)
    return [[start, min(start + size, total)] for start in range(0, total, size)]


def build_heatmap(which: HeatmapSpec, sequence: int, kept: dict[str, torch.Tensor]) -> Heatmap:
    """Units x time for one sequence, averaged into at most 64 x 64 cells (padding ignored)."""
    if which.gate == "c":
        values = kept["c"]
    else:
        values = kept["gates"][:, GATES.index(which.gate)]
    values = values.double().cpu().t()  # (H, T)
    units, steps = _bins(values.shape[0], HEATMAP_MAX_UNITS), _bins(values.shape[1], HEATMAP_MAX_STEPS)
    grid = []
    for u0, u1 in units:
        row = []
        for s0, s1 in steps:
            cell = values[u0:u1, s0:s1]
            mean = cell.nanmean().item()
            row.append(None if math.isnan(mean) else mean)
        grid.append(row)
    if which.gate == "c":
        finite = values[~values.isnan()]
        bound = finite.abs().max().item() if finite.numel() else 1.0
        value_range = [-bound, bound]
    else:
        value_range = [-1.0, 1.0] if which.gate == "g" else [0.0, 1.0]
    return Heatmap(which.layer, which.direction, which.gate, sequence, value_range, units, steps, grid)


# -- export ---------------------------------------------------------------------------------------


def export_names(spec: LSTMSpec) -> dict[str, list[int]]:
    """Every name an --export file holds, with its shape (documented in the README)."""
    layout = lambda width: from_time_major_shape(spec, width)  # noqa: E731
    names: dict[str, list[int]] = {}
    for layer in range(spec.num_layers):
        for direction in spec.directions():
            suffix = f"_l{layer}" + ("_reverse" if direction == "backward" else "")
            for gate in GATES:
                names[gate + suffix] = layout(spec.hidden_size)
            names["c" + suffix] = layout(spec.hidden_size)
            names["h" + suffix] = layout(spec.h_out)
    shapes = spec.tensor_shapes()
    names.update({name: shapes[name] for name in ("input", "output", "h_n", "c_n")})
    if spec.lengths is not None:
        names["lengths"] = [spec.batch_size]
    return names


def from_time_major_shape(spec: LSTMSpec, width: int) -> list[int]:
    if spec.unbatched:
        return [spec.seq_len, width]
    if spec.batch_first:
        return [spec.batch_size, spec.seq_len, width]
    return [spec.seq_len, spec.batch_size, width]


def export_tensors(path: Path, spec: LSTMSpec, capture: Capture, x: torch.Tensor, reference: Forward) -> None:
    """Write every captured tensor (in the input's layout and batch order; NaN at padded steps)
    and nn.LSTM's own input, output, h_n and c_n to a .npz or .pt file."""
    tensors: dict[str, torch.Tensor] = {}
    batch = capture.batch
    for (layer, direction), recorder in capture.recorders.items():
        suffix = f"_l{layer}" + ("_reverse" if direction == "backward" else "")
        kept = recorder.all
        gates = batch.to_original(kept["gates"], 1)
        for k, gate in enumerate(GATES):
            tensors[gate + suffix] = from_time_major(gates[:, :, k], spec)
        tensors["c" + suffix] = from_time_major(batch.to_original(kept["c"], 1), spec)
        tensors["h" + suffix] = from_time_major(batch.to_original(kept["h"], 1), spec)
    tensors.update(input=x, output=reference.output, h_n=reference.h_n, c_n=reference.c_n)
    if spec.lengths is not None:
        tensors["lengths"] = torch.tensor(spec.lengths)
    tensors = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    try:
        if path.suffix.lower() == ".pt":
            torch.save(tensors, path)
        else:
            import numpy as np

            arrays = {
                name: (t.float() if t.dtype == torch.bfloat16 else t).numpy() for name, t in tensors.items()
            }
            with open(path, "wb") as handle:
                np.savez(handle, **arrays)
    except OSError as exc:
        from lstm_cli.errors import UsageError

        raise UsageError(f"--export {path}: cannot write: {exc.strerror or exc}") from None
