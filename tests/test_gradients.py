"""gradients: per-step norms against an independent float64 computation, --forget-bias and
the vanishing definition."""

import math

import pytest
import torch

from lstm_cli.gradients import build_model, run_gradients, set_forget_bias, vanishing_step
from lstm_cli.model import Placement
from lstm_cli.spec import LSTMSpec
from tests.reference import reference_lstm

SMALL = {"input_size": 5, "hidden_size": 4, "num_layers": 2, "seq_len": 6, "batch_size": 2}


# -- an independent computation: weights drawn here, equations written out, float64 ----------


def seeded_module(cell: str, spec: LSTMSpec) -> torch.nn.Module:
    """The documented init, done here: U(-1/sqrt(H), 1/sqrt(H)) for every parameter in order,
    from a generator seeded with seed + 2**32."""
    kind = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell]
    extra = {"proj_size": spec.proj_size} if cell == "lstm" else {}
    module = kind(spec.input_size, spec.hidden_size, spec.num_layers, bias=spec.bias, **extra)
    generator = torch.Generator().manual_seed(spec.seed + 2**32)
    bound = 1 / math.sqrt(spec.hidden_size)
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-bound, bound, generator=generator)
    return module


def reference_recurrent(module, x: torch.Tensor, cell: str) -> torch.Tensor:
    """Final hidden state of the last layer, (N, H), from the equations in PyTorch's docs.
    x is time-major (L, N, H_in) float64."""
    layer_input = x
    H = module.hidden_size
    for layer in range(module.num_layers):
        w_ih = getattr(module, f"weight_ih_l{layer}").double()
        w_hh = getattr(module, f"weight_hh_l{layer}").double()
        if module.bias:
            b_ih = getattr(module, f"bias_ih_l{layer}").double()
            b_hh = getattr(module, f"bias_hh_l{layer}").double()
        else:
            b_ih = b_hh = torch.zeros(w_ih.shape[0], dtype=torch.float64)
        h = torch.zeros(x.shape[1], H, dtype=torch.float64)
        outputs = []
        for x_t in layer_input:
            a, b = x_t @ w_ih.T + b_ih, h @ w_hh.T + b_hh
            if cell == "rnn":
                h = torch.tanh(a + b)
            else:  # gru: rows r | z | n
                r = torch.sigmoid(a[:, :H] + b[:, :H])
                z = torch.sigmoid(a[:, H : 2 * H] + b[:, H : 2 * H])
                n = torch.tanh(a[:, 2 * H :] + r * b[:, 2 * H :])
                h = (1 - z) * n + z * h
            outputs.append(h)
        layer_input = torch.stack(outputs)
    return layer_input[-1]


def reference_norms(cell: str, spec: LSTMSpec, forget_bias=None) -> list[float]:
    module = seeded_module(cell, spec)
    if forget_bias is not None:
        H = spec.hidden_size
        with torch.no_grad():
            for layer in range(spec.num_layers):
                getattr(module, f"bias_ih_l{layer}")[H : 2 * H] = forget_bias
                getattr(module, f"bias_hh_l{layer}")[H : 2 * H] = 0.0
    # the documented input: torch.randn in the user's layout from a generator seeded with seed
    shape = [spec.seq_len, spec.input_size] if spec.unbatched else (
        [spec.batch_size, spec.seq_len, spec.input_size] if spec.batch_first
        else [spec.seq_len, spec.batch_size, spec.input_size]
    )
    x = torch.randn(shape, generator=torch.Generator().manual_seed(spec.seed)).double()
    x_tm = x.unsqueeze(1) if spec.unbatched else (x.transpose(0, 1) if spec.batch_first else x)
    x_tm = x_tm.detach().requires_grad_(True)
    if cell == "lstm":
        _, h_n, _, _ = reference_lstm(module, x_tm)
        final = h_n[-1]
    else:
        final = reference_recurrent(module, x_tm, cell)
    (grad,) = torch.autograd.grad(final.sum(), x_tm)
    return [grad[t].norm().item() for t in range(spec.seq_len)]


CASES = {
    "rnn": ("rnn", {}, None),
    "gru": ("gru", {}, None),
    "lstm": ("lstm", {}, None),
    "lstm forget bias 1.5": ("lstm", {}, 1.5),
    "lstm proj_size": ("lstm", {"proj_size": 3}, None),
    "gru batch_first": ("gru", {"batch_first": True}, None),
    "rnn unbatched, no bias": ("rnn", {"unbatched": True, "bias": False}, None),
    "lstm one layer, seed 9": ("lstm", {"num_layers": 1, "seed": 9}, -2.0),
}


@pytest.mark.parametrize("cell, changes, bias", CASES.values(), ids=CASES.keys())
def test_norms_equal_an_independent_autograd_computation(cell, changes, bias):
    spec = LSTMSpec(**(SMALL | changes), dtype="float64", device="cpu")
    result = run_gradients(spec, (cell,), forget_bias=bias)
    (model,) = result.models
    expected = reference_norms(cell, spec, bias)
    assert model.grad_norms == pytest.approx(expected, rel=1e-10, abs=0)
    assert model.first_to_last_ratio == pytest.approx(expected[0] / expected[-1], rel=1e-10)
    assert model.forget_bias == bias


def test_float32_norms_agree_with_the_float64_reference():
    spec = LSTMSpec(**SMALL, device="cpu")
    result = run_gradients(spec)
    for model in result.models:
        assert model.grad_norms == pytest.approx(reference_norms(model.cell, spec), rel=1e-4)


# -- --forget-bias ---------------------------------------------------------------------------


@pytest.mark.parametrize("changes", [{}, {"proj_size": 2, "num_layers": 3}], ids=["plain", "proj_size"])
def test_forget_bias_changes_only_the_forget_rows(changes):
    spec = LSTMSpec(**(SMALL | changes), device="cpu")
    place = Placement(torch.device("cpu"), torch.float32)
    before = dict(build_model("lstm", spec, place).named_parameters())
    lstm = build_model("lstm", spec, place)
    set_forget_bias(lstm, 1.25)
    after = dict(lstm.named_parameters())
    assert after.keys() == before.keys()
    H = spec.hidden_size
    changed = set()
    for name, old in before.items():
        new = after[name]
        if name.startswith(("bias_ih", "bias_hh")):
            value = 1.25 if name.startswith("bias_ih") else 0.0
            assert torch.equal(new[H : 2 * H], torch.full((H,), value))
            assert torch.equal(new[:H], old[:H]) and torch.equal(new[2 * H :], old[2 * H :])
            changed.add(name)
        else:
            assert torch.equal(new, old), name
    assert changed == {f"bias_{k}_l{layer}" for k in ("ih", "hh") for layer in range(spec.num_layers)}
    # the forget gate's pre-activation bias is exactly B; the random init had something else
    for layer in range(spec.num_layers):
        total = getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")
        assert torch.equal(total[H : 2 * H], torch.full((H,), 1.25))


def test_vanishing_step_definition():
    assert vanishing_step([1e-5, 1e-4, 2e-3, 0.5, 1.0]) == 3  # 0.5, 2e-3 no; 1e-4 < 1e-3 yes
    assert vanishing_step([1e-9, 1e-4, 0.9, 1.0]) == 2  # the first one walking back counts
    assert vanishing_step([1.0, 1e-4, 0.9, 1.0]) == 2  # even if an earlier step recovers
    assert vanishing_step([1e-3, 1.0]) is None  # "below", not "at"
    assert vanishing_step([0.5, 2.0, 1.0]) is None
    assert vanishing_step([1.0]) is None  # one step: nothing to walk back to
    assert vanishing_step([1.0, 0.0]) is None  # no last-step gradient to compare with
    assert vanishing_step([0.0, 1.0]) == 1  # an underflowed gradient has vanished


@pytest.mark.gpu
def test_cuda_matches_cpu_in_float64():
    """cuDNN runs an RNN backward only in train mode: the command must work there too."""
    cpu = run_gradients(LSTMSpec(**SMALL, dtype="float64", device="cpu"), forget_bias=1.0)
    cuda = run_gradients(LSTMSpec(**SMALL, dtype="float64", device="cuda"), forget_bias=1.0)
    assert cuda.device.startswith("cuda")
    for a, b in zip(cpu.models, cuda.models):
        assert b.grad_norms == pytest.approx(a.grad_norms, rel=1e-9)