"""gates --compare-weights: a second set of weights on the same input, side by side; each side's
statistics checked against the independent float64 reference on its own weights."""

from pathlib import Path

import pytest
import torch

from lstm_cli import model
from lstm_cli.spec import LSTMSpec
from tests.reference import reference_lstm

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
COUNTER = ["--weights", str(EXAMPLES / "counter_lstm.pt"), "--key", "lstm", "--seq-len", "60"]


def reference_means(lstm: torch.nn.LSTM, x: torch.Tensor) -> dict:
    """{(layer, direction): {gate: mean over every value}} in float64."""
    _, _, _, captured = reference_lstm(lstm, x)
    return {key: {g: gates[g].double().mean().item() for g in "ifgo"} for key, gates in captured.items()}


def layer_means(doc_layers: list) -> dict:
    return {(e["layer"], e["direction"]): {g: e["gates"][g]["mean"] for g in "ifgo"} for e in doc_layers}


def test_an_untrained_copy_runs_on_the_same_input_and_matches_its_reference(run_cli):
    result = run_cli("gates", *COUNTER, "--compare-weights", "random", "--units", "--json")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["passed"] and doc["compare"]["passed"] and doc["compare"]["config"]["source"] is None
    assert any(c["name"].startswith("compared weights: layer 1") for c in doc["checks"])
    spec = LSTMSpec(input_size=4, hidden_size=32, num_layers=2, seq_len=60, batch_size=3, device="cpu")
    placement = model.Placement(torch.device("cpu"), torch.float32)
    untrained = model.build_lstm(spec, placement)  # PyTorch's init from seed 0, as the command draws it
    x = model.make_input(spec, placement)  # the same seeded input the loaded model ran
    want = reference_means(untrained, x)
    got = layer_means(doc["compare"]["layers"])
    for key, gates in want.items():
        for gate, mean in gates.items():
            assert got[key][gate] == pytest.approx(mean, abs=1e-6), (key, gate)
    trained, untrained_f = doc["layers"][1]["gates"]["f"], doc["compare"]["layers"][1]["gates"]["f"]
    assert trained["right_saturated"] - untrained_f["right_saturated"] > 0.05  # training changed it
    assert doc["compare"]["layers"][0]["units"] is not None


def test_a_checkpoint_of_the_same_architecture_compares_and_another_is_refused(tmp_path, run_cli):
    state = torch.load(EXAMPLES / "counter_lstm.pt", weights_only=True)
    nudged = {k.removeprefix("lstm."): v * 1.5 for k, v in state.items() if k.startswith("lstm.")}
    torch.save(nudged, tmp_path / "nudged.pt")
    doc = run_cli("gates", *COUNTER, "--compare-weights", str(tmp_path / "nudged.pt"), "--json").json()
    assert doc["compare"]["config"]["source"]["file"] == str(tmp_path / "nudged.pt")
    other = torch.nn.LSTM(4, 32, num_layers=2)
    other.load_state_dict(nudged)
    spec = LSTMSpec(input_size=4, hidden_size=32, num_layers=2, seq_len=60, batch_size=3, device="cpu")
    x = model.make_input(spec, model.Placement(torch.device("cpu"), torch.float32))
    want = reference_means(other.eval(), x)
    got = layer_means(doc["compare"]["layers"])
    assert all(got[k][g] == pytest.approx(v, abs=1e-6) for k, gates in want.items() for g, v in gates.items())

    torch.save(torch.nn.LSTM(4, 16, num_layers=2).state_dict(), tmp_path / "small.pt")
    result = run_cli("gates", *COUNTER, "--compare-weights", str(tmp_path / "small.pt"))
    assert result.code == 2 and "has hidden size 16 where the model has 32" in result.stderr
    result = run_cli("gates", *COUNTER, "--compare-key", "lstm")
    assert result.code == 2 and "give --compare-weights too" in result.stderr


@pytest.mark.parametrize("columns", ["60", "80", "200"])
def test_the_side_by_side_table_keeps_every_number_whole(run_cli, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", columns)
    text = run_cli("gates", *COUNTER, "--compare-weights", "random", "--units").stdout
    assert "What changed: A = the model, B = untrained" in text
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= int(columns)
