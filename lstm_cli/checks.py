"""Numerical checks: one result type, one difference measure and one tolerance table that
every command shares."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# Largest |difference| accepted between two computations of the same LSTM quantity, by dtype.
# float32 1e-5 holds for a CPU LSTMCell loop against oneDNN at the seed sizes; float64 1e-10 at
# seq-len 200. CUDA float32 without TF32 differed by at most 6e-6 on an H200 (DESIGN.md).
TOLERANCE = {"float64": 1e-10, "float32": 1e-5, "float16": 1e-2, "bfloat16": 5e-2}
CUDA_FLOAT32_TOLERANCE = 5e-5
# cuDNN with TF32 differed from a plain-matmul cell loop by up to 5e-4 on an H200.
TF32_TOLERANCE = 2e-3


def default_tolerance(dtype: str, device_type: str = "cpu", tf32: bool = False) -> float:
    if dtype == "float32" and device_type == "cuda":
        return TF32_TOLERANCE if tf32 else CUDA_FLOAT32_TOLERANCE
    return TOLERANCE[dtype]


@dataclass
class Check:
    """One verified claim. max_abs_diff is None for claims that are not numeric (shapes)."""

    name: str
    passed: bool
    max_abs_diff: float | None
    tolerance: float | None = None


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| in float64; NaN if either side has a NaN (which then fails any check)."""
    if a.numel() == 0:
        return 0.0
    diff = (a.detach().to(torch.float64) - b.detach().to(torch.float64)).abs()
    if torch.isnan(diff).any():
        return math.nan
    return diff.max().item()


def close(name: str, a: torch.Tensor, b: torch.Tensor, tolerance: float) -> Check:
    diff = max_abs_diff(a, b)
    return Check(name, bool(diff <= tolerance), diff, tolerance)  # NaN <= x is False
