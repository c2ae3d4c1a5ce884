"""unit_states: every unit's c, h and gates for one sequence, against tests/reference.py."""

import numpy as np
import pytest

from lstm_cli.model import prepare, time_major
from lstm_cli.spec import LSTMSpec
from lstm_cli.text.unit_states import unit_states
from tests.reference import reference_lstm


@pytest.mark.parametrize("activation", ["sigmoid", "hard_sigmoid"])
def test_unit_states_match_the_independent_float64_reference(activation):
    spec = LSTMSpec(input_size=5, hidden_size=6, num_layers=2, seq_len=9, batch_size=3, bidirectional=True,
                    lengths=(9, 4, 7), device="cpu", recurrent_activation=activation)
    states = unit_states(spec, sequence=2)
    prepared = prepare(spec)
    _, _, _, captured = reference_lstm(prepared.lstm, time_major(prepared.x, spec), spec.lengths, activation)
    assert states.steps == 7
    for (layer, direction), want in captured.items():
        for name in "ifgoc":
            got = states.values[(layer, direction)][name]
            np.testing.assert_allclose(got, want[name][:7, 2].detach().numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(states.unit(layer, 3, "h", direction), want["h"][:7, 2, 3].detach().numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("proj_size", [0, 3])
def test_units_and_trace_check_every_step_against_pytorchs_cell(run_cli, monkeypatch, tmp_path, proj_size):
    """units and trace verify the float64 unit values step by step against PyTorch's own
    nn.LSTMCell (issue 24: `passed`/`checks` for what they verify); a loop with i and f swapped
    fails at the first step, exit 1."""
    import torch

    from lstm_cli.verify import loop64

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(4, 5, num_layers=2, proj_size=proj_size)
    embedding = torch.randn(3, 4)
    path = tmp_path / "char.pt"
    torch.save({**{f"rnn.{k}": v for k, v in lstm.state_dict().items()}, "emb.weight": embedding,
                "vocab": ["a", "b", "c"]}, path)
    args = ["--weights", str(path), "--key", "rnn", "--text", "abcabcaab", "--json"]
    for command in ("units", "trace"):
        doc = run_cli(command, *args).json()
        assert doc["passed"] is True and len(doc["checks"]) == 2 and all(c["passed"] for c in doc["checks"])
    original = loop64.run_direction

    def wrong(w, *args, **kwargs):
        H = w.w_hh.shape[0] // 4
        order = torch.cat([torch.arange(H, 2 * H), torch.arange(0, H), torch.arange(2 * H, 4 * H)])
        spoiled = type(w)(w.w_ih[order], w.w_hh[order], None if w.b_ih is None else w.b_ih[order],
                          None if w.b_hh is None else w.b_hh[order], w.w_hr, w.peephole)
        return original(spoiled, *args, **kwargs)

    from lstm_cli.text import unit_states as module

    monkeypatch.setattr(module, "run_direction", wrong)
    bad = run_cli("units", *args)
    assert bad.code == 1
    assert not bad.json()["passed"] and all(not c["passed"] for c in bad.json()["checks"])
