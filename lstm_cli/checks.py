"""Numerical checks: one result type and one difference measure that every command shares.
How a check decides is `lstm_cli.verify` (the rule, the step-local check, the float64 shadow)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Check:
    """One verified claim. max_abs_diff is None for claims that are not numeric (shapes).

    tolerance is the bound at the element with the largest |difference| (so a passed check has
    max_abs_diff <= tolerance); worst_ratio the largest |difference| / bound over all elements
    (<= 1 passes); first_bad where the first failing element is (step, sequence, quantity,
    unit, value, reference, bound); checked what was compared."""

    name: str
    passed: bool
    max_abs_diff: float | None
    tolerance: float | None = None
    worst_ratio: float | None = None
    first_bad: dict | None = None
    checked: str | None = None
    max_abs_diff_by: dict[str, float] | None = None


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| in float64; NaN if either side has a NaN (which then fails any check)."""
    if a.numel() == 0:
        return 0.0
    diff = (a.detach().to(torch.float64) - b.detach().to(torch.float64)).abs()
    if torch.isnan(diff).any():
        return math.nan
    return diff.max().item()


def within(name: str, got: torch.Tensor, expected: torch.Tensor, bound: torch.Tensor | float) -> Check:
    """Element by element |got - expected| <= bound (a tensor like expected, or one number)."""
    diff = (got.detach().double() - expected.detach().double()).abs()
    bound = torch.as_tensor(bound, dtype=torch.float64, device=diff.device).expand_as(diff)
    if diff.numel() == 0:
        return Check(name, True, 0.0, 0.0, 0.0)
    if torch.isnan(diff).any():
        return Check(name, False, math.nan, None, math.nan)
    at = int(diff.argmax())
    ratio = torch.where(bound > 0, diff / bound, torch.where(diff == 0, 0.0, math.inf))
    return Check(
        name, bool((diff <= bound).all()), diff.flatten()[at].item(), bound.flatten()[at].item(), ratio.max().item()
    )


def close(name: str, a: torch.Tensor, b: torch.Tensor, rule) -> Check:
    """a and b are two copies of one value (an identity): within the rule's copy bound of b."""
    return within(name, a, b, rule.copy_bound(b.detach().double()))
