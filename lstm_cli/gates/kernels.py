"""Capture kernels: the two ways of recomputing the gates nn.LSTM keeps inside its fused kernel.

Both yield the same chunks of steps (`Chunk`) to one shared driver (gates.run):

- `loop`: step by step like the fused kernel itself. The input projection x W_ih^T + b of a
  chunk of steps is one GEMM; each step adds h W_hh^T into that buffer in place (with W_hh
  packed once by MKL where available), applies the activations in place, and updates c and h.
  Its own h feeds the next step and the next layer, so it is an independent forward pass.
- `recompute`: from nn.LSTM's own output of each layer (gates.reference runs nn.LSTM one layer
  at a time), all gates of a chunk come from two large GEMMs on the layer's input and its
  shifted output, and only the c-scan c_t = f_t c_(t-1) + i_t g_t walks the steps.

Either way the h_t rebuilt from the captured gates, o_t * tanh(c_t) (times W_hr with proj_size),
is what the driver compares with nn.LSTM's own output, h_n and c_n. gates.choice picks the
method and `chunk_steps_for` the chunk size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from lstm_cli.gates.batch import WorkingBatch
from lstm_cli.gates.step_gemm import GemmChoice, StepGemm
from lstm_cli.model import DirectionWeights
from lstm_cli.spec import HARD_SIGMOID_SLOPES, LSTMSpec

# Gate values computed at once: a chunk of steps holds about this many (x 4 bytes in float32),
# so the working set is a few chunks whatever the sequence length.
CHUNK_ELEMENTS = 1 << 20
MAX_CHUNK_STEPS = 256  # and at most this many steps, so that progress moves on long runs

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
    activate_blocks(gates[..., 0:2, :], gates[..., 3, :], gates[..., 2, :], activation)


def activate_blocks(i_f: torch.Tensor, o: torch.Tensor, g: torch.Tensor, activation: str = "sigmoid") -> None:
    """`activate` on views of the i and f gates together, o, and g."""
    recurrent_activation_(i_f, activation)
    recurrent_activation_(o, activation)
    g.tanh_()


def recurrent_activation_(block: torch.Tensor, activation: str) -> None:
    """In place: sigmoid, or a loaded model's hard sigmoid clip(a z + 0.5, 0, 1)."""
    if activation == "sigmoid":
        block.sigmoid_()
    else:
        block.mul_(HARD_SIGMOID_SLOPES[activation]).add_(0.5).clamp_(0.0, 1.0)


def peephole_step(v: StepViews, c_in: torch.Tensor, p: torch.Tensor, c_new: torch.Tensor,
                  activation: str) -> torch.Tensor:
    """One step's activations and c with peepholes (ONNX P, rows i, f, o), in place on the
    step's pre-activations: i and f add P c_prev, o adds P_o times the new c."""
    v.i_f.addcmul_(p[0:2], c_in.unsqueeze(1))
    recurrent_activation_(v.i_f, activation)
    v.g.tanh_()
    c = torch.mul(v.f, c_in, out=c_new).addcmul_(v.i, v.g)
    v.o.addcmul_(p[2], c)  # o waits for the new c
    recurrent_activation_(v.o, activation)
    return c


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


@dataclass
class StepViews:
    """Views of one step's gates, (rows, 4H) in PyTorch's i, f, g, o order. Made once per slot
    of the chunk buffer and reused by every chunk: the dozen views of a step cost about 15 us,
    as much as the step's element-wise arithmetic at a hidden size of 256."""

    flat: torch.Tensor  # (rows, 4H): what the step GEMM adds h W_hh^T into
    i_f: torch.Tensor  # (rows, 2, H)
    i: torch.Tensor  # (rows, H), and so on
    f: torch.Tensor
    g: torch.Tensor
    o: torch.Tensor

    @classmethod
    def of(cls, gates: torch.Tensor) -> StepViews:
        """gates: one step's (rows, 4, H)."""
        rows, _, H = gates.shape
        return cls(gates.view(rows, 4 * H), gates[:, 0:2], gates[:, 0], gates[:, 1], gates[:, 2], gates[:, 3])


class LoopCapture:
    """Step by step, gates written in place into the chunk's input projection."""

    name = "loop"
    needs_layer_output = False

    def __init__(self, gemm: str = "auto", activation: str = "sigmoid"):
        self.gemm = gemm  # the step GEMM's backend: "auto" (measured) or one of step_gemm.BACKENDS
        self.gemm_choices: list[GemmChoice] = []  # what each layer x direction used, and why
        self.activation = activation  # of i, f, o

    def run(self, x: torch.Tensor, h_seq: torch.Tensor | None, w: DirectionWeights, reverse: bool,
            batch: WorkingBatch, chunk_steps: int, h_out: torch.Tensor | None = None,
            h0: torch.Tensor | None = None, c0: torch.Tensor | None = None) -> Iterator[Chunk]:
        """h_out: a (T, B, H_out) view to write h into (the next layer's input), or None for a
        work buffer; each chunk's h is a view of it. h0 (B, H_out), c0 (B, H): the state each
        sequence starts from, in working order (None: zeros)."""
        T, B, _ = x.shape
        H, H_out = w.w_hh.shape[0] // 4, w.w_hh.shape[1]
        gemm = StepGemm(w.w_hh, B, self.gemm)
        self.gemm_choices.append(gemm.choice)
        work = ChunkBuffers(x, chunk_steps, B, gates=4 * H, c=H, h=H_out if h_out is None else 0,
                            raw=H if w.w_hr is not None else 0)
        buffer = work("gates", chunk_steps).view(chunk_steps, B, 4, H)
        full_steps = [StepViews.of(buffer[s]) for s in range(chunk_steps)]  # every row runs
        # carried from chunk to chunk
        h_prev = x.new_zeros(B, H_out) if h0 is None else h0.clone()
        c_prev = x.new_zeros(B, H) if c0 is None else c0.clone()
        for t0, t1 in chunk_bounds(T, chunk_steps, reverse):
            n = t1 - t0
            gates = input_projection(x[t0:t1], w, work("gates", n).view(n * B, 4 * H)).view(n, B, 4, H)
            cs, raw = work("c", n), work("raw", 1)[0]
            hs = work("h", n) if h_out is None else h_out[t0:t1]
            if batch.packed:
                # A sequence that has not started yet (backward direction) reads the initial
                # state at its first step, which is its own last one.
                fill_initial(cs, c0)
                fill_initial(hs, h0)
            h_step, c_step = h_prev, c_prev
            for t in _step_order(t0, t1, reverse):
                s, bs = t - t0, batch.size_at(t)
                if bs == B:
                    v, h_in, c_in, c_new, h_new = full_steps[s], h_step, c_step, cs[s], hs[s]
                else:  # a packed batch's shorter sequences have ended
                    v, h_in, c_in, c_new, h_new = StepViews.of(gates[s, :bs]), h_step[:bs], c_step[:bs], cs[s, :bs], hs[s, :bs]
                gemm(v.flat, h_in)
                if w.peephole is None:
                    activate_blocks(v.i_f, v.o, v.g, self.activation)
                    c = torch.mul(v.f, c_in, out=c_new).addcmul_(v.i, v.g)
                else:
                    c = peephole_step(v, c_in, w.peephole, c_new, self.activation)
                rebuild_h(c, v.o, w, out=h_new, raw=raw[:bs] if raw.numel() else None)
                h_step, c_step = (h_new, c_new) if bs == B else (hs[s], cs[s])
            h_prev.copy_(h_step)
            c_prev.copy_(c_step)
            yield Chunk(t0, t1, gates, cs, hs)


class RecomputeCapture:
    """From nn.LSTM's own per-layer output: two GEMMs per chunk and a c-scan."""

    name = "recompute"
    needs_layer_output = True

    def run(self, x: torch.Tensor, h_seq: torch.Tensor | None, w: DirectionWeights, reverse: bool,
            batch: WorkingBatch, chunk_steps: int, h_out: torch.Tensor | None = None,
            h0: torch.Tensor | None = None, c0: torch.Tensor | None = None) -> Iterator[Chunk]:
        """h_out, h0, c0: as LoopCapture.run's."""
        T, B, _ = x.shape
        H, H_out = w.w_hh.shape[0] // 4, w.w_hh.shape[1]
        work = ChunkBuffers(x, chunk_steps, B, gates=4 * H, c=H, h=H_out if h_out is None else 0, ig=H, f=H,
                            raw=H if w.w_hr is not None else 0)
        c_prev = x.new_zeros(B, H) if c0 is None else c0.clone()
        for t0, t1 in chunk_bounds(T, chunk_steps, reverse):
            n = t1 - t0
            gates = input_projection(x[t0:t1], w, work("gates", n).view(n * B, 4 * H))
            h_before = previous_h(h_seq, t0, t1, reverse, h0, batch if reverse else None)
            gates.addmm_(h_before.reshape(n * B, H_out), w.w_hh.t())
            gates = gates.view(n, B, 4, H)
            activate(gates)
            i, f, g, o = gates.unbind(2)
            ig = torch.mul(i, g, out=work("ig", n))
            valid = batch.valid_rows(t0, t1)
            if valid is not None:
                # Where a sequence is not running, c carries on unchanged (f = 1, i g = 0): a
                # backward sequence keeps c_0 until its own last step, where it starts.
                mask = valid.unsqueeze(-1)
                ig.mul_(mask.to(ig.dtype))
                f = torch.where(mask, f, torch.ones((), dtype=f.dtype, device=f.device), out=work("f", n))
            cs = work("c", n)
            for t in _step_order(t0, t1, reverse):
                s = t - t0
                c_prev = torch.addcmul(ig[s], f[s], c_prev, out=cs[s])
            c_prev = c_prev.clone()  # cs is reused by the next chunk
            hs = rebuild_h(cs, o, w, out=work("h", n) if h_out is None else h_out[t0:t1],
                           raw=work("raw", n) if w.w_hr is not None else None)
            yield Chunk(t0, t1, gates, cs, hs)


def previous_h(h_seq: torch.Tensor, t0: int, t1: int, reverse: bool, h0: torch.Tensor | None = None,
               batch: WorkingBatch | None = None) -> torch.Tensor:
    """h_(t-1) for t in [t0, t1) (h_(t+1) backward), h0 (zeros when None) before the first step.
    A packed batch's backward sequences (`batch`) start at their own last step, where nn.LSTM's
    output past the end is padding: they read h0 there."""
    T = h_seq.shape[0]
    start = torch.zeros_like(h_seq[:1]) if h0 is None else h0.unsqueeze(0)
    if not reverse:
        if t0 > 0:
            return h_seq[t0 - 1 : t1 - 1]
        return torch.cat([start, h_seq[: t1 - 1]])
    before = h_seq[t0 + 1 : t1 + 1] if t1 < T else torch.cat([h_seq[t0 + 1 :], start])
    if h0 is None or batch is None or not batch.packed:
        return before  # padded steps of nn.LSTM's output are zero: a zero start already
    # Rows whose sequence starts at step t (t + 1 is past its end) read h0 instead of padding.
    after = torch.arange(t0 + 1, t1 + 1, device=h_seq.device).unsqueeze(1)
    lengths = torch.tensor(batch.lengths, device=h_seq.device)
    return torch.where((after >= lengths).unsqueeze(-1), start, before)


def fill_initial(buffer: torch.Tensor, state: torch.Tensor | None) -> None:
    """Every step of a (steps, B, width) buffer set to the initial state (zeros when None)."""
    if state is None:
        buffer.zero_()
    else:
        buffer.copy_(state.unsqueeze(0).expand_as(buffer))


METHOD_CLASSES = {"loop": LoopCapture, "recompute": RecomputeCapture}


def chunk_steps_for(spec: LSTMSpec) -> int:
    batch = 1 if spec.unbatched else spec.batch_size
    return max(1, min(spec.seq_len, MAX_CHUNK_STEPS, CHUNK_ELEMENTS // (batch * 4 * spec.hidden_size)))
