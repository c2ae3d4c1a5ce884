"""The step-local bound where trained models live: gates saturated at |z| of 40-90, cell terms
that underflow to denormals or to 0, and float16 / bfloat16 files at long sequences. A correct
computation must pass every time (no verdict may cry wolf), and planted mistakes must still fail
at their first step. References: tests/reference.py (an independent float64 loop) and plain math."""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from lstm_cli import cells
from lstm_cli.verify.rule import UNDERFLOW, UNIT_ROUNDOFF
from lstm_cli.verify.step import sigmoid_slope, tanh_slope
from tests.reference import reference_lstm
from tests.test_verify import PLANTS, counter_lstm, plant

DTYPES = ["float32", "float64", "float16", "bfloat16"]


def pre_activations(lstm: nn.LSTM, x: torch.Tensor) -> list[torch.Tensor]:
    """Every layer's z = x W_ih^T + h_(t-1) W_hh^T + b (T, N, 4H) in float64, from the
    independent reference loop's own h."""
    _, _, _, captured = reference_lstm(lstm, x)
    layer_input, zs = x.double(), []
    for layer in range(lstm.num_layers):
        w_ih, w_hh = (getattr(lstm, f"{n}_l{layer}").double() for n in ("weight_ih", "weight_hh"))
        b = (getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")).double()
        h = captured[(layer, "forward")]["h"]
        h_before = torch.cat([torch.zeros_like(h[:1]), h[:-1]])
        zs.append(layer_input @ w_ih.T + h_before @ w_hh.T + b)
        layer_input = h
    return zs


def save_state(lstm: nn.LSTM, path, dtype: str) -> list[str]:
    torch.save({k: v.to(getattr(torch, dtype)) for k, v in lstm.state_dict().items()}, path)
    return ["--weights", str(path)]


@pytest.fixture(scope="module")
def saturated_counter() -> nn.LSTM:
    """The trained counter model with every weight times 6: on random N(0, 1) input its
    second layer's gates reach |z| of 70 (8% of them past 40) and |c| of 200."""
    lstm = counter_lstm()
    with torch.no_grad():
        for p in lstm.parameters():
            p.mul_(6)
    return lstm


# -- the slopes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("z", [0.0, 1.0, 20.0, 37.0, 40.0, 90.0, 300.0])
def test_slopes_keep_their_value_where_one_minus_s_cancels(z):
    # sigma'(z) = e^-z / (1 + e^-z)^2 and tanh'(z) = 4 e^-2z / (1 + e^-2z)^2, straight from math.
    exact_sigmoid = math.exp(-z) / (1 + math.exp(-z)) ** 2
    exact_tanh = 4 * math.exp(-2 * z) / (1 + math.exp(-2 * z)) ** 2
    t = torch.tensor([z, -z], dtype=torch.float64)
    assert torch.allclose(sigmoid_slope(t), torch.tensor(exact_sigmoid, dtype=torch.float64), rtol=1e-12, atol=0)
    assert torch.allclose(tanh_slope(t), torch.tensor(exact_tanh, dtype=torch.float64), rtol=1e-12, atol=0)
    if z >= 40:  # where s (1 - s) is exactly 0 in float64 and the slope is not
        s = torch.tensor(z, dtype=torch.float64).sigmoid()
        assert (s * (1 - s)).item() == 0.0 and exact_sigmoid > 0


def test_underflow_terms_are_each_dtypes_own():
    assert UNDERFLOW["float32"] == np.finfo(np.float32).tiny  # smallest normal: flushed or not
    assert UNDERFLOW["float64"] == np.finfo(np.float64).tiny
    assert UNDERFLOW["float16"] == np.finfo(np.float16).smallest_subnormal
    assert UNDERFLOW["bfloat16"] == torch.finfo(torch.bfloat16).tiny
    assert all(UNDERFLOW[d] < UNIT_ROUNDOFF[d] for d in DTYPES)


# -- deeply saturated gates ------------------------------------------------------------------------


def test_the_saturated_model_really_saturates(saturated_counter):
    x = torch.randn(200, 3, 4, generator=torch.Generator().manual_seed(0))
    z = pre_activations(saturated_counter, x)[1].abs()
    assert 40 < z.max() < 90 and (z > 40).double().mean() > 0.02


@pytest.mark.parametrize("dtype", DTYPES)
def test_deeply_saturated_gates_pass_in_every_dtype(run_cli, tmp_path, saturated_counter, dtype):
    """The file's dtype is adopted: no --dtype flag."""
    weights = save_state(saturated_counter, tmp_path / f"saturated_{dtype}.pt", dtype)
    for command in (["compare-cell", "--repeat", "0"], ["gates", "--method", "loop"], ["gates", "--method", "recompute"]):
        result = run_cli(*command, *weights, "--seq-len", "200", "--batch-size", "3", "--json")
        doc = result.json()
        assert result.code == 0, (command, [c["first_bad"] for c in doc["checks"] if not c["passed"]])
        assert doc["config"]["dtype"] == dtype
        assert all(c["passed"] and c["worst_ratio"] <= 1 for c in doc["checks"])


@pytest.mark.parametrize("kind", ["weight", "swap", "bias"])
def test_planted_mistakes_fail_at_their_first_step_on_the_saturated_model(run_cli, monkeypatch, tmp_path,
                                                                            saturated_counter, kind):
    weights = save_state(saturated_counter, tmp_path / "saturated.pt", "float32")
    original = cells.cells_from_lstm
    monkeypatch.setattr(cells, "cells_from_lstm", lambda lstm: plant(kind)(original(lstm)))
    result = run_cli("compare-cell", "--json", "--repeat", "0", *weights, "--seq-len", "200")
    assert result.code == 1
    failed = [c for c in result.json()["checks"] if not c["passed"]]
    _, where, step = PLANTS[kind]
    assert failed[0]["name"].startswith(where) and failed[0]["first_bad"]["step"] == step


# -- underflow ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def decaying() -> tuple[nn.LSTM, np.ndarray]:
    """An LSTM whose cell state halves every step once its input stops: the input gate is
    open only at step 0 (x = 10 there, 0 after; i = sigmoid(-100) afterwards), the forget gate
    sits at 0.5. c and h fall through float16's, then float32's denormal range to float64's
    values of 1e-90 and below, which every lower precision rounds to 0."""
    H = 4
    lstm = nn.LSTM(1, H, 1)
    with torch.no_grad():
        for p in lstm.parameters():
            p.zero_()
        lstm.weight_ih_l0[:H] = 20.0  # i: z = 20 x - 100
        lstm.bias_ih_l0[:H] = -100.0
        lstm.weight_ih_l0[2 * H : 3 * H] = torch.linspace(0.1, 0.3, H).unsqueeze(1)  # g = tanh(0.1..0.3 x)
        lstm.bias_ih_l0[3 * H :] = 3.0  # o = sigmoid(3)
        lstm.weight_hh_l0[H : 2 * H] = 0.01  # f = sigmoid(0.01 sum h): 0.5 and a little
    x = np.zeros((300, 2, 1), dtype=np.float32)
    x[0] = 10.0
    return lstm, x


def test_the_decaying_model_underflows(decaying):
    lstm, x = decaying
    _, _, _, captured = reference_lstm(lstm, torch.from_numpy(x))
    c = captured[(0, "forward")]["c"].abs()
    assert c[0].min() > 0.5 and c[-1].max() < 1e-80  # from O(1) to far below float32's range
    assert ((c > 1e-45) & (c < 1e-38)).any()  # and through float32's denormals on the way


@pytest.mark.parametrize("dtype", DTYPES)
def test_underflowing_cell_states_pass_in_every_dtype(run_cli, tmp_path, decaying, dtype):
    lstm, x = decaying
    weights = save_state(lstm, tmp_path / f"decaying_{dtype}.pt", dtype)
    np.save(tmp_path / "x.npy", x)
    for command in (["compare-cell", "--repeat", "0"], ["gates", "--method", "loop"], ["gates", "--method", "recompute"]):
        result = run_cli(*command, *weights, "--input", str(tmp_path / "x.npy"), "--json")
        doc = result.json()
        assert result.code == 0, (command, [c["first_bad"] for c in doc["checks"] if not c["passed"]])
        assert all(c["passed"] for c in doc["checks"])


def test_a_planted_mistake_still_fails_while_the_state_underflows(run_cli, monkeypatch, tmp_path, decaying):
    """The underflow term is absolute and tiny: a forget gate off by 1e-3 relative fails at
    the step where it first changes c, though c is decaying."""
    lstm, x = decaying
    weights = save_state(lstm, tmp_path / "decaying.pt", "float32")
    np.save(tmp_path / "x.npy", x)
    original = cells.cells_from_lstm

    def spoil(stack):
        with torch.no_grad():
            cell = stack.cells[0][0]
            cell.weight_hh[cell.hidden_size : 2 * cell.hidden_size] *= 1.5
        return stack

    monkeypatch.setattr(cells, "cells_from_lstm", lambda lstm: spoil(original(lstm)))
    result = run_cli("compare-cell", "--json", "--repeat", "0", *weights, "--input", str(tmp_path / "x.npy"))
    assert result.code == 1
    [failed] = [c for c in result.json()["checks"] if not c["passed"]]
    assert failed["first_bad"]["step"] == 1  # h is 0 before step 1, so W_hh shows from there


# -- half precision files at long sequences --------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_trained_file_passes_at_1000_steps(run_cli, tmp_path, dtype):
    weights = save_state(counter_lstm(), tmp_path / f"counter_{dtype}.pt", dtype)
    for command in (["compare-cell", "--repeat", "0"], ["gates"]):
        result = run_cli(*command, *weights, "--key", "", "--seq-len", "1000", "--batch-size", "2", "--json")
        doc = result.json()
        assert result.code == 0, (command, [c["first_bad"] for c in doc["checks"] if not c["passed"]])
        assert doc["config"]["dtype"] == dtype and doc["passed"]


# -- property: no false verdict anywhere in weight scale x dtype --------------------------------


@settings(max_examples=24, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(log_scale=st.floats(-3, 2), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16),
       bidirectional=st.booleans(), command=st.sampled_from(["compare-cell", "gates"]))
def test_random_models_at_any_weight_scale_never_fail_the_check(run_cli, tmp_path, log_scale, dtype, seed,
                                                                bidirectional, command):
    torch.manual_seed(seed)
    lstm = nn.LSTM(6, 8, 2, bidirectional=bidirectional)
    with torch.no_grad():
        for p in lstm.parameters():
            p.copy_(torch.randn_like(p) * 10**log_scale)
    weights = save_state(lstm, tmp_path / f"random_{seed}_{dtype}.pt", dtype)
    extra = ["--repeat", "0"] if command == "compare-cell" else []
    result = run_cli(command, *extra, *weights, "--seq-len", "60", "--batch-size", "3", "--seed", str(seed), "--json")
    doc = result.json()
    assert result.code == 0, [c["first_bad"] for c in doc["checks"] if not c["passed"]]
    assert doc["checks"] and all(c["passed"] for c in doc["checks"])
