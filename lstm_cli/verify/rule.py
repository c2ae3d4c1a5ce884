"""The tolerance rule every check shares.

A checked value v (a gate, c_t or h_t of one step) passes when |v - v_ref| <= bound, element by
element, where v_ref is the float64 reference. The default bound follows the rounding a path in
the run's precision makes in one step, from the magnitudes of that very element (first-order
error propagation; see docs/checks.md):

    unit roundoff   u   = 2^-24 (float32), 2^-53 (float64), 2^-11 (float16), 2^-8 (bfloat16),
                          plus 2^-53 for the float64 reference's own rounding
    TF32 matmuls    u_in = 2^-11 (inputs rounded to 10 mantissa bits), else 0
    pre-activation  z = x W_ih^T + h W_hh^T + b,  S = |x| |W_ih|^T + |h| |W_hh|^T + |b_ih| + |b_hh|
                    e_z = GEMM_ULPS u (S + sqrt(K_x) |z_x| + sqrt(K_h) |z_h|) + 2 u_in S
                    + GEMM_ULPS (K_x + K_h + 1) eta
    gates           e_i = max sigma' on [z - e_z, z + e_z] * e_z + ACTIVATION_ULPS (u |i| + eta)  (f, o
                    alike; g with tanh')
    cell            e_c = |c_prev| e_f + |g| e_i + i e_g + e_i e_g + ACTIVATION_ULPS (u (|f c_prev| + |i g|) + eta)
    hidden          e_r = |tanh c| e_o + o max tanh' on [c - e_c, c + e_c] * e_c + ACTIVATION_ULPS (u |r| + eta),
                    r = o tanh(c); with proj_size: e_h = |W_hr| e_r + GEMM_ULPS u (S_r + sqrt(H) |h|)
                    + 2 u_in S_r + GEMM_ULPS (H + 1) eta, S_r = |W_hr| |r|; else e_h = e_r

eta is the checked dtype's underflow term (UNDERFLOW): every rounding is (x op y)(1 + d) + e,
|e| <= eta, so a value that underflows to 0 (or to a denormal) is within its bound. The slopes
sigma' = sigma(z) sigma(-z) and tanh' = 4 sigma(2z) sigma(-2z) are computed without the
cancellation of s (1 - s) or 1 - tanh^2, which are exactly 0 in float64 once |z| > 37 (19 for
tanh) while the true slope, and the float32 gate's error, are still 1e-16 and below.

The sqrt(K) |z| terms are the rounding of a long sum whose terms share a sign (partial sums
drift towards the total); S covers sums of mixed signs. --atol/--rtol replace the whole bound by
atol + rtol |v_ref| (numpy's allclose), on every command that checks.
"""

from __future__ import annotations

from dataclasses import dataclass

from lstm_cli.errors import UsageError

UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}
# The absolute part of one rounding, fl(x op y) = (x op y)(1 + d) + e with |e| <= UNDERFLOW:
# a result below the dtype's normal range loses its relative precision (a float32 gate of 0
# where float64 gives 4e-39 is a correct rounding). The smallest normal number covers a
# backend that flushes denormals as well as one that keeps them; float16's is 6.1e-5, far too
# loose for its values, and every backend keeps float16 subnormals, so its smallest subnormal
# (twice the largest error of rounding into that range) is used instead.
UNDERFLOW = {"float64": 2.0**-1022, "float32": 2.0**-126, "float16": 2.0**-24, "bfloat16": 2.0**-126}
TF32_INPUT_ROUNDOFF = 2.0**-11
# Measured (benchmarks/step_error.py): the largest error of one GEMM element was 1.9 u (S +
# sqrt(K) |z|) over K = 8..4096, random, same-sign, sparse and offset data, MKL and oneDNN,
# batched and single-row; 4 leaves a factor of two.
GEMM_ULPS = 4.0
# Activations, products and sums: each a rounding or two of its own result; vectorised exp/tanh
# are within 2 ulps.
ACTIVATION_ULPS = 4.0
# A converted model's original runtime (onnxruntime) computes sigmoid and tanh with fast
# approximations accurate to a few ulps of 1, not of the value: measured on onnxruntime 1.32's
# Sigmoid and Tanh over [-30, 30], absolute errors up to 2.8 u and 5.5 u (its sigmoid returns
# 1.2e-7 where the value is 1.5e-8). Its step check adds this many u to each activation's
# bound, absolutely; 12 leaves a factor of two.
ORIGINAL_ACTIVATION_ULPS = 12.0
# Two copies of one value (output[-1] and h_n[-1] written by one kernel) may differ by this many
# ulps of the value where a backend stores them through different paths.
COPY_ULPS = 4.0

FORMULA = (
    "|value - float64 step| <= bound per element; bound from one step's rounding in the run's precision: "
    f"e_z = {GEMM_ULPS:g} u (S + sqrt(K_x)|z_x| + sqrt(K_h)|z_h|) + 2 u_in S, propagated through the "
    "activations, c = f c_prev + i g and h = o tanh(c), each rounding with its underflow term eta "
    "(docs/checks.md)"
)


@dataclass(frozen=True)
class Rule:
    """How close a checked value must be: derived from `dtype` (and TF32), or atol + rtol |ref|."""

    dtype: str
    tf32: bool = False
    atol: float | None = None
    rtol: float | None = None

    @property
    def overridden(self) -> bool:
        return self.atol is not None or self.rtol is not None

    @property
    def u(self) -> float:
        """Unit roundoff of the checked path plus that of the float64 reference."""
        return UNIT_ROUNDOFF[self.dtype] + UNIT_ROUNDOFF["float64"]

    @property
    def eta(self) -> float:
        """Absolute underflow error of one rounding in the checked path (the float64 reference's
        own, 2^-1022, is below every dtype's)."""
        return UNDERFLOW[self.dtype]

    @property
    def u_in(self) -> float:
        return TF32_INPUT_ROUNDOFF if self.tf32 else 0.0

    def fixed_bound(self, reference):
        """atol + rtol |reference| (the user's override); works on floats and tensors."""
        return (self.atol or 0.0) + (self.rtol or 0.0) * abs(reference)

    def copy_bound(self, reference):
        """For two copies of one value: COPY_ULPS ulps of it, or the override."""
        if self.overridden:
            return self.fixed_bound(reference)
        return COPY_ULPS * UNIT_ROUNDOFF[self.dtype] * abs(reference)

    def describe(self) -> str:
        if self.overridden:
            return f"|diff| <= {self.atol or 0:g} + {self.rtol or 0:g} |reference| (--atol/--rtol)"
        precision = self.dtype + (" with TF32 matmuls" if self.tf32 else "")
        return f"one step's rounding in {precision}, element by element (u = {UNIT_ROUNDOFF[self.dtype]:.3g})"

    def as_dict(self) -> dict:
        return {
            "dtype": self.dtype, "tf32": self.tf32, "atol": self.atol, "rtol": self.rtol,
            "unit_roundoff": UNIT_ROUNDOFF[self.dtype], "description": self.describe(),
            "formula": None if self.overridden else FORMULA,
        }


def check_tolerances(atol: float | None, rtol: float | None) -> None:
    """--atol and --rtol: finite and >= 0, one line otherwise."""
    for name, value in (("--atol", atol), ("--rtol", rtol)):
        if value is not None and not (value >= 0 and value != float("inf")):
            raise UsageError(f"{name} must be a finite number >= 0 (got {value})")
