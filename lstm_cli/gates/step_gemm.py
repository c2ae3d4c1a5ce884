"""The gate capture's per-step GEMM, gates += h W_hh^T, and which backend computes it, chosen
by timing each candidate on the real shapes once per process.

Which kernel is fastest depends on the CPU, not on the shapes alone: for (64 x 1024) @ (1024 x
4096) on one thread, an AMD EPYC measured addmm 5.9 ms, MKL with a packed weight 5.7 ms and
oneDNN's inner product 2.9 ms, while on an Intel Xeon MKL's packed GEMM is the fastest. So the
capture asks each backend for the real GEMM a few times and keeps the fastest.

Backends:
- addmm: torch.addmm_, every device and dtype; the fallback for everything else.
- mkl-packed: W_hh packed once by MKL for the full batch (torch.ops.mkl._mkl_reorder_linear_weight,
  then _mkl_linear); CPU float32 builds with MKL.
- onednn: W_hh reordered once for oneDNN's inner product (torch.ops.mkldnn._reorder_linear_weight,
  then _linear_pointwise); CPU float32 builds with oneDNN.
The last two are private torch ops: each is probed on the real weight and must match addmm
within float32 rounding; any error or mismatch drops it from the choice. Steps where fewer
sequences run than the batch (a packed batch's tail) use addmm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from lstm_cli.timing import best_seconds

BACKENDS = ("addmm", "mkl-packed", "onednn")
# Below this many multiply-adds per step every backend costs about the same (call overhead):
# take addmm without timing anything.
MIN_TIMED_MACS = 1 << 20


@dataclass
class GemmChoice:
    """Which backend the capture uses for one weight shape, and why."""

    backend: str
    reason: str
    timings_s: dict[str, float] = field(default_factory=dict)  # best time per call, by backend


def _addmm(w_hh: torch.Tensor, batch: int) -> Callable[[torch.Tensor, torch.Tensor], None]:
    w_t = w_hh.t()
    return lambda gates, h: gates.addmm_(h, w_t)


def _mkl_packed(w_hh: torch.Tensor, batch: int) -> Callable[[torch.Tensor, torch.Tensor], None]:
    packed = torch.ops.mkl._mkl_reorder_linear_weight(w_hh, batch)
    return lambda gates, h: gates.add_(torch.ops.mkl._mkl_linear(h, packed, w_hh, None, batch))


def _onednn(w_hh: torch.Tensor, batch: int) -> Callable[[torch.Tensor, torch.Tensor], None]:
    reordered = torch.ops.mkldnn._reorder_linear_weight(w_hh, batch)
    return lambda gates, h: gates.add_(torch.ops.mkldnn._linear_pointwise(h, reordered, None, "none", [], ""))


_MAKERS = {"addmm": _addmm, "mkl-packed": _mkl_packed, "onednn": _onednn}


def _eligible(name: str, w_hh: torch.Tensor) -> bool:
    """Whether this torch build and this weight can try the backend at all."""
    if name == "addmm":
        return True
    if w_hh.device.type != "cpu" or w_hh.dtype != torch.float32:
        return False
    if name == "mkl-packed":
        return torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear")
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def build(name: str, w_hh: torch.Tensor, batch: int) -> Callable[[torch.Tensor, torch.Tensor], None] | None:
    """The backend's step function for this weight, checked against addmm on a probe; None if
    this build cannot run it or it disagrees."""
    if not _eligible(name, w_hh):
        return None
    try:
        step = _MAKERS[name](w_hh, batch)
        if name == "addmm":
            return step
        # A wrong layout or a broken op is off by O(1), rounding by 1e-6 of the row's scale:
        # two rows of the product against addmm tell them apart at a small share of the cost.
        probe = torch.linspace(-1, 1, batch * w_hh.shape[1], dtype=w_hh.dtype).view(batch, w_hh.shape[1])
        got = torch.zeros(batch, w_hh.shape[0], dtype=w_hh.dtype)
        step(got, probe)
        rows = probe[:2]
        want = rows @ w_hh.t()
        scale = rows.abs() @ w_hh.abs().t()
        if got.shape != (batch, w_hh.shape[0]) or not bool(((got[:2] - want).abs() <= 1e-4 * scale + 1e-30).all()):
            return None
        return step
    except (RuntimeError, AttributeError, TypeError, NotImplementedError):
        return None


_CHOICES: dict[tuple, GemmChoice] = {}


def choose(w_hh: torch.Tensor, batch: int) -> GemmChoice:
    """The fastest backend for gates (batch, 4H) += h (batch, H_out) W_hh^T, measured once per
    shape, dtype, device and thread count in this process."""
    key = (tuple(w_hh.shape), batch, w_hh.dtype, str(w_hh.device), torch.get_num_threads())
    if key in _CHOICES:
        return _CHOICES[key]
    macs = batch * w_hh.numel()
    if macs < MIN_TIMED_MACS:
        choice = GemmChoice("addmm", f"a step of {macs:,} multiply-adds: call overhead decides, not the kernel")
        _CHOICES[key] = choice
        return choice
    candidates = {name: step for name in BACKENDS if (step := build(name, w_hh, batch)) is not None}
    if len(candidates) == 1:
        choice = GemmChoice("addmm", "the only backend this build and device run")
    else:
        timings = {name: _time(step, w_hh, batch) for name, step in candidates.items()}
        best = min(timings, key=timings.get)
        listed = ", ".join(f"{name} {seconds * 1e3:.3g} ms" for name, seconds in sorted(timings.items(), key=lambda kv: kv[1]))
        choice = GemmChoice(best, f"fastest on this machine for ({batch} x {w_hh.shape[1]}) @ "
                                  f"({w_hh.shape[1]} x {w_hh.shape[0]}): {listed}", timings)
    _CHOICES[key] = choice
    return choice


def _time(step: Callable[[torch.Tensor, torch.Tensor], None], w_hh: torch.Tensor, batch: int) -> float:
    """Best seconds per call of one backend on a representative h."""
    gates = torch.zeros(batch, w_hh.shape[0], dtype=w_hh.dtype, device=w_hh.device)
    h = torch.randn(batch, w_hh.shape[1], generator=torch.Generator().manual_seed(0)).to(w_hh)
    return best_seconds(lambda: step(gates, h), w_hh.device)


class StepGemm:
    """gates += h W_hh^T for one step, by `backend` ("auto": the measured choice)."""

    def __init__(self, w_hh: torch.Tensor, batch: int, backend: str = "auto"):
        self.batch = batch
        self.w_t = w_hh.t()
        if backend == "auto":
            self.choice = choose(w_hh, batch)
            full = build(self.choice.backend, w_hh, batch)
        else:
            full = build(backend, w_hh, batch)
            reason = "asked for" if full is not None else "asked for, but not available here: addmm instead"
            self.choice = GemmChoice(backend if full is not None else "addmm", reason)
        self.full = full if full is not None else _addmm(w_hh, batch)

    @property
    def backend(self) -> str:
        return self.choice.backend

    def __call__(self, gates: torch.Tensor, h: torch.Tensor) -> None:
        if h.shape[0] == self.batch:
            self.full(gates, h)
        else:  # a packed batch's tail: fewer rows than the packed weight was made for
            gates.addmm_(h, self.w_t)
