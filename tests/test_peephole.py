"""Peephole LSTMs (ONNX `P`, as audio-model converters write them): read, run by lstm-cli's own
loop in `inspect` and `gates`, checked step by step with the peephole terms in the bound, and
refused in one sentence by the commands that need nn.LSTM. The reference is a float64 loop
written here from the ONNX operator's equations, and onnxruntime running the file."""

import numpy as np
import pytest
import torch
from torch import nn

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")
from onnx import numpy_helper  # noqa: E402

from lstm_cli.formats.onnx_model import convert, read  # noqa: E402
from lstm_cli.gates import kernels  # noqa: E402
from tests.test_format_onnx import lstm_file, run_file, torch_layout  # noqa: E402

H, I = 5, 3


def onnx_peephole_lstm(x: np.ndarray, lstm: nn.LSTM, p: np.ndarray) -> np.ndarray:
    """Y (L, N, D*H) in float64, from ONNX's LSTM equations: i = s(Wx + Rh + P_i c_prev + b),
    f likewise with P_f, c = f c_prev + i tanh(.), o = s(Wx + Rh + P_o c + b), h = o tanh(c);
    P [D, 3H] blocks i, o, f. lstm holds W, R, b in PyTorch's i, f, g, o order."""
    outputs = []
    for d, suffix in enumerate(("", "_reverse")[: 2 if lstm.bidirectional else 1]):
        w_ih, w_hh = (getattr(lstm, f"{n}_l0{suffix}").detach().double().numpy() for n in ("weight_ih", "weight_hh"))
        b = (getattr(lstm, f"bias_ih_l0{suffix}") + getattr(lstm, f"bias_hh_l0{suffix}")).detach().double().numpy()
        p_i, p_o, p_f = p[d, :H], p[d, H : 2 * H], p[d, 2 * H :]
        sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
        h = np.zeros((x.shape[1], H))
        c = np.zeros((x.shape[1], H))
        y = np.zeros((x.shape[0], x.shape[1], H))
        steps = range(x.shape[0] - 1, -1, -1) if d else range(x.shape[0])
        for t in steps:
            z = x[t].astype(np.float64) @ w_ih.T + h @ w_hh.T + b
            zi, zf, zg, zo = np.split(z, 4, axis=1)
            i, f = sig(zi + p_i * c), sig(zf + p_f * c)
            c = f * c + i * np.tanh(zg)
            o = sig(zo + p_o * c)
            h = o * np.tanh(c)
            y[t] = h
        outputs.append(y)
    return np.concatenate(outputs, axis=2)


@pytest.fixture
def peephole_file(tmp_path):
    torch.manual_seed(21)
    lstm = nn.LSTM(I, H, bidirectional=True).eval()
    rng = np.random.default_rng(3)
    p = rng.uniform(-7, 7, (2, 3 * H)).astype(np.float32)  # |P| up to 7, as converters write them
    path = lstm_file(tmp_path / "peephole.onnx", lstm, extra_inputs=["", "", "", "P"],
                     extra_initializers=[numpy_helper.from_array(p, "P")])
    x = rng.standard_normal((12, 2, I)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    return path, lstm, p, x, tmp_path / "x.npy"


def test_the_reference_is_onnxruntime_running_the_file(peephole_file):
    path, lstm, p, x, _ = peephole_file
    [y, _, _] = run_file(path, X=x)
    assert np.allclose(torch_layout(y).numpy(), onnx_peephole_lstm(x, lstm, p), atol=1e-5)
    # and the peepholes matter: without them the output is another one
    assert not np.allclose(torch_layout(y).numpy(), onnx_peephole_lstm(x, lstm, 0 * p), atol=1e-2)


def test_reader_keeps_p_reordered_i_f_o(peephole_file):
    path, _, p, _, _ = peephole_file
    [found] = read(path).found
    for d, suffix in enumerate(("", "_reverse")):
        got = found.peepholes[f"peephole_l0{suffix}"]
        assert torch.equal(got, torch.from_numpy(np.stack([p[d, :H], p[d, 2 * H :], p[d, H : 2 * H]])))
    assert any(line.startswith("P (2, 15) -> peephole_l0, peephole_l0_reverse") for line in found.conversions)


def test_inspect_runs_the_peepholes_and_onnxruntime_agrees_step_by_step(run_cli, peephole_file):
    path, _, _, _, x_path = peephole_file
    result = run_cli("inspect", "--weights", str(path), "--input", str(x_path), "--json")
    doc = result.json()
    assert result.code == 0 and doc["passed"], result.stderr
    names = [c["name"] for c in doc["checks"]]
    assert sum(n.startswith("onnxruntime") for n in names) == 2  # one per direction, judged
    assert any("peephole connections (ONNX P)" in n for n in doc["notes"])
    assert doc["source"]["peepholes"] == ["peephole_l0", "peephole_l0_reverse"]


def test_a_wrong_peephole_order_fails_the_onnxruntime_check(run_cli, monkeypatch, peephole_file):
    path, _, _, _, x_path = peephole_file
    monkeypatch.setattr(convert, "ONNX_PEEPHOLE_FOR_TORCH", [0, 1, 2])  # ONNX's i, o, f kept as is
    result = run_cli("inspect", "--weights", str(path), "--input", str(x_path), "--json")
    assert result.code == 1
    failed = [c for c in result.json()["checks"] if not c["passed"]]
    assert failed and all(c["name"].startswith("onnxruntime") for c in failed)


@pytest.mark.parametrize("method", ["auto", "loop"])
def test_gates_are_the_peephole_equations_and_pass(run_cli, tmp_path, peephole_file, method):
    path, lstm, p, x, x_path = peephole_file
    export = tmp_path / "gates.npz"
    result = run_cli("gates", "--weights", str(path), "--input", str(x_path), "--method", method,
                     "--export", str(export), "--json")
    doc = result.json()
    assert result.code == 0 and doc["passed"], [c["first_bad"] for c in doc["checks"]]
    with np.load(export) as data:
        h = np.concatenate([data["h_l0"], data["h_l0_reverse"]], axis=2)
    assert np.allclose(h, onnx_peephole_lstm(x, lstm, p), atol=1e-5)


def test_recompute_is_refused_for_peepholes(run_cli, peephole_file):
    path, *_ = peephole_file
    result = run_cli("gates", "--weights", str(path), "--method", "recompute")
    assert result.code == 2 and "peephole connections (ONNX P)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("plant, step", [("o without its peephole", 0), ("i and f peepholes swapped", 1)])
def test_planted_peephole_mistakes_fail_at_their_first_step(run_cli, monkeypatch, peephole_file, plant, step):
    path, _, _, _, x_path = peephole_file
    real = kernels.peephole_step

    def spoiled(v, c_in, p, c_new, activation):
        p = p.clone()
        if plant.startswith("o"):
            p[2] = 0
        else:
            p[[0, 1]] = p[[1, 0]]
        return real(v, c_in, p, c_new, activation)

    monkeypatch.setattr(kernels, "peephole_step", spoiled)
    result = run_cli("gates", "--weights", str(path), "--input", str(x_path), "--json")
    assert result.code == 1
    failed = [c for c in result.json()["checks"] if not c["passed"]]
    # c_prev is 0 at a sequence's first step, so i and f peepholes show from the second one
    assert failed[0]["name"].startswith("layer 0 forward") and failed[0]["first_bad"]["step"] == step


@pytest.mark.parametrize("command", [["compare-cell"], ["bench"], ["gradients"]])
def test_commands_that_need_nn_lstm_refuse_peepholes_in_one_line(run_cli, tmp_path, command):
    p = numpy_helper.from_array(np.full((1, 3 * H), 0.5, np.float32), "P")
    path = lstm_file(tmp_path / "one_way.onnx", nn.LSTM(I, H), extra_inputs=["", "", "", "P"], extra_initializers=[p])
    result = run_cli(*command, "--weights", str(path))
    assert result.code == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "no peephole connections" in result.stderr
