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
