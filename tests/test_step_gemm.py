"""The capture's per-step GEMM: every backend computes gates += h W_hh^T within the GEMM's
rounding bound of a float64 product, the choice is the measured fastest, a backend that
disagrees or fails is never chosen, and steps with fewer sequences still compute right."""

import math

import pytest
import torch

from lstm_cli.gates import step_gemm
from lstm_cli.gates.step_gemm import BACKENDS, StepGemm, build, choose
from lstm_cli.verify.rule import GEMM_ULPS, UNIT_ROUNDOFF

U = UNIT_ROUNDOFF["float32"]


def within_gemm_bound(got: torch.Tensor, h: torch.Tensor, w: torch.Tensor, start: torch.Tensor) -> bool:
    """|got - (start + h W^T)| <= GEMM_ULPS u (|start| + |h||W|^T + sqrt(K) |h W^T|), in float64."""
    exact = start.double() + h.double() @ w.double().t()
    scale = start.double().abs() + h.double().abs() @ w.double().abs().t() + math.sqrt(h.shape[1]) * exact.abs()
    return bool(((got.double() - exact).abs() <= GEMM_ULPS * U * scale).all())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch, hidden, rows", [(8, 64, 8), (8, 64, 5), (1, 96, 1)])
def test_every_backend_computes_the_step_gemm_within_rounding(backend, batch, hidden, rows):
    generator = torch.Generator().manual_seed(batch * hidden + rows)
    w = torch.randn(4 * hidden, hidden, generator=generator) * 3  # trained-model scale weights
    h = torch.randn(rows, hidden, generator=generator)
    start = torch.randn(rows, 4 * hidden, generator=generator)
    gemm = StepGemm(w, batch, backend)
    if build(backend, w, batch) is None:
        assert gemm.backend == "addmm" and "not available" in gemm.choice.reason
    got = start.clone()
    gemm(got, h)
    assert within_gemm_bound(got, h, w, start)


def test_the_choice_is_the_fastest_measured_and_is_made_once(monkeypatch):
    w = torch.randn(4 * 512, 512)
    fake = {"addmm": 3e-3, "mkl-packed": 2e-3, "onednn": 1e-3}
    available = [name for name in BACKENDS if build(name, w, 16) is not None]
    timings = iter([fake[name] for name in available])
    monkeypatch.setattr(step_gemm, "_time", lambda step, w_hh, batch: next(timings))
    monkeypatch.setattr(step_gemm, "_CHOICES", {})
    choice = choose(w, 16)
    assert choice.backend == min(available, key=fake.get)
    assert set(choice.timings_s) == set(available) and "fastest on this machine" in choice.reason
    assert choose(w, 16) is choice  # cached: nothing is timed again (the iterator is spent)


def test_a_backend_that_disagrees_or_fails_is_never_chosen(monkeypatch):
    w = torch.randn(4 * 512, 512)
    monkeypatch.setattr(step_gemm, "_CHOICES", {})
    wrong = lambda w_hh, batch: (lambda gates, h: gates.add_(h @ w_hh[torch.randperm(w_hh.shape[0])].t()))  # noqa: E731

    def broken(w_hh, batch):
        raise RuntimeError("this op is not compiled in")

    monkeypatch.setitem(step_gemm._MAKERS, "mkl-packed", wrong)
    monkeypatch.setitem(step_gemm._MAKERS, "onednn", broken)
    monkeypatch.setattr(step_gemm, "_eligible", lambda name, w_hh: True)
    assert build("mkl-packed", w, 16) is None and build("onednn", w, 16) is None
    assert choose(w, 16).backend == "addmm"


def test_tiny_steps_take_addmm_without_timing(monkeypatch):
    monkeypatch.setattr(step_gemm, "_CHOICES", {})
    monkeypatch.setattr(step_gemm, "_time", lambda *a: pytest.fail("timed a tiny GEMM"))
    choice = choose(torch.randn(80, 20), 3)
    assert choice.backend == "addmm" and "call overhead decides" in choice.reason
