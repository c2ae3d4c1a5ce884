"""Models whose gates nn.LSTM cannot compute (Keras' hard_sigmoid): `gates` runs them through
its own loop with that activation and `inspect` through a float64 loop; both are checked here
against the independent float64 reference in tests/reference.py with the same activation."""

from pathlib import Path

import pytest
import torch

from lstm_cli import gates as gates_module
from lstm_cli.gates import kernels as gates_kernels
from lstm_cli.gates import run as gates_run
from lstm_cli.gates_options import GatesOptions
from lstm_cli.model import prepare
from lstm_cli.spec import LSTMSpec
from lstm_cli.verify.loop64 import loop_forward
from tests.reference import reference_lstm


def hard_spec(activation: str, **changes) -> LSTMSpec:
    base = dict(input_size=6, hidden_size=5, num_layers=2, seq_len=12, batch_size=3, bidirectional=True,
                lengths=(12, 7, 3), device="cpu", recurrent_activation=activation)
    return LSTMSpec(**(base | changes))


def scaled_lstm(spec: LSTMSpec, scale: float = 6.0):
    """The spec's weights times `scale`: large pre-activations, so the hard sigmoid clips at
    exactly 0 and 1 (where it differs most from sigmoid)."""
    prepared = prepare(spec)
    with torch.no_grad():
        for p in prepared.lstm.parameters():
            p.mul_(scale)
    return prepared


@pytest.mark.parametrize("activation", ["hard_sigmoid", "hard_sigmoid_keras3"])
def test_gates_capture_hard_sigmoid_gates_exactly(tmp_path: Path, monkeypatch, activation):
    spec = hard_spec(activation)
    prepared = scaled_lstm(spec)
    monkeypatch.setattr(gates_run, "prepare", lambda *a, **k: prepared)
    path = tmp_path / "g.pt"
    result = gates_module.run_gates(spec, GatesOptions(export=path))
    assert result.passed and result.method == "loop"
    assert activation in result.end_to_end.reference and result.shadow is None
    tensors = torch.load(path)
    _, _, _, want = reference_lstm(prepared.lstm, prepared.x, spec.lengths, activation)
    _, _, _, sigmoid = reference_lstm(prepared.lstm, prepared.x, spec.lengths, "sigmoid")
    clipped = 0
    for (layer, direction), gates in want.items():
        suffix = f"_l{layer}" + ("_reverse" if direction == "backward" else "")
        for name in "ifgoc":
            got = tensors[name + suffix]
            for n, length in enumerate(spec.lengths):
                torch.testing.assert_close(got[:length, n].double(), gates[name][:length, n], rtol=1e-5, atol=1e-5)
        clipped += int(((gates["f"] == 0) | (gates["f"] == 1)).sum())
        # The test can tell the activations apart: sigmoid gates are far from these.
        assert (sigmoid[(layer, direction)]["f"] - gates["f"]).abs().max() > 0.05
    assert clipped > 0


def test_a_capture_that_uses_sigmoid_for_a_hard_sigmoid_model_fails_its_check(monkeypatch):
    spec = hard_spec("hard_sigmoid")
    prepared = scaled_lstm(spec)
    monkeypatch.setattr(gates_run, "prepare", lambda *a, **k: prepared)
    real = gates_kernels.activate_blocks
    monkeypatch.setattr(gates_kernels, "activate_blocks", lambda i_f, o, g, activation="sigmoid": real(i_f, o, g, "sigmoid"))
    result = gates_module.run_gates(spec, GatesOptions())
    assert not result.passed
    assert all(check.first_bad is not None and check.first_bad["step"] in (0, 11) for check in result.checks[:2])


def test_the_float64_loop_matches_the_reference_with_any_activation():
    for activation in ("sigmoid", "hard_sigmoid", "hard_sigmoid_keras3"):
        spec = hard_spec(activation, proj_size=3, batch_first=True)
        prepared = scaled_lstm(spec, 3.0)
        got = loop_forward(prepared.lstm, prepared.x, spec, activation)
        out, h_n, c_n, _ = reference_lstm(prepared.lstm, prepared.x.transpose(0, 1), spec.lengths, activation)
        torch.testing.assert_close(got.output.double(), out.transpose(0, 1), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(got.h_n.double(), h_n, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(got.c_n.double(), c_n, rtol=1e-6, atol=1e-6)


# -- a Keras file with hard_sigmoid gates, through the command line --------------------------------


def keras_hard_sigmoid_file(tmp_path: Path) -> tuple[Path, torch.nn.LSTM]:
    from tests.test_format_keras import keras_weights, lstm_config, named, seeded_lstm, sequential, write_legacy

    lstm = seeded_lstm(21)
    with torch.no_grad():
        for p in lstm.parameters():
            p.mul_(6.0)  # large pre-activations: the hard sigmoid clips
    path = tmp_path / "model.h5"
    config = sequential(lstm_config("lstm", recurrent_activation="hard_sigmoid"))
    write_legacy(path, [("lstm", named("lstm/lstm_cell/", keras_weights(lstm)))], model_config=config)
    return path, lstm


def test_a_keras_hard_sigmoid_model_runs_in_inspect_and_gates_and_nowhere_else(tmp_path, run_cli):
    path, lstm = keras_hard_sigmoid_file(tmp_path)
    doc = run_cli("inspect", "--weights", str(path), "--json").json()
    assert doc["passed"] and doc["config"]["batch_first"] is True
    assert doc["source"]["recurrent_activation"] == "hard_sigmoid" and doc["source"]["key"] == "lstm"
    assert any("transposed" in line for line in doc["source"]["conversions"])
    assert any("float64 loop" in note for note in doc["notes"])
    text = run_cli("inspect", "--weights", str(path), "--explain")
    assert "hardsig(W_if x_t" in text.stdout and "clip(0.2 z + 0.5, 0, 1)" in text.stdout

    export = tmp_path / "gates.npz"
    result = run_cli("gates", "--weights", str(path), "--json", "--export", str(export), "--seq-len", "30")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["passed"] and doc["method"] == "loop" and "hard_sigmoid" in doc["end_to_end"]["reference"]
    import numpy as np

    with np.load(export) as data:
        x = torch.from_numpy(data["input"])  # batch-first, as Keras feeds it
        f_got = torch.from_numpy(data["f_l0"])
    _, _, _, want = reference_lstm(lstm, x.transpose(0, 1), None, "hard_sigmoid")
    torch.testing.assert_close(f_got.transpose(0, 1).double(), want[(0, "forward")]["f"], rtol=1e-5, atol=1e-5)
    assert bool(((want[(0, "forward")]["f"] == 0) | (want[(0, "forward")]["f"] == 1)).any())

    for command in ("compare-cell", "bench", "gradients"):
        result = run_cli(command, "--weights", str(path))
        assert result.code == 2 and "hard_sigmoid (clip(0.2 z + 0.5, 0, 1))" in result.stderr, command
        assert len(result.stderr.splitlines()) == 1
    result = run_cli("gates", "--weights", str(path), "--method", "recompute")
    assert result.code == 2 and "drop --method" in result.stderr
