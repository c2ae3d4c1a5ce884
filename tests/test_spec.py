"""spec.py's shape and parameter formulas, checked against real nn.LSTM modules and calls."""

import pytest
import torch
from hypothesis import given, settings

from lstm_cli.errors import UsageError
from lstm_cli.spec import LSTMSpec, format_bytes, parse_lengths
from tests.strategies import small_specs


def direct_lstm(spec: LSTMSpec) -> torch.nn.LSTM:
    return torch.nn.LSTM(
        spec.input_size,
        spec.hidden_size,
        num_layers=spec.num_layers,
        bias=spec.bias,
        batch_first=spec.batch_first,
        bidirectional=spec.bidirectional,
        proj_size=spec.proj_size,
    )


@settings(max_examples=60, deadline=None)
@given(small_specs(allow_lengths=False))
def test_tensor_shapes_match_a_direct_call(spec):
    lstm = direct_lstm(spec)
    if spec.unbatched:
        x = torch.randn(spec.seq_len, spec.input_size)
    elif spec.batch_first:
        x = torch.randn(spec.batch_size, spec.seq_len, spec.input_size)
    else:
        x = torch.randn(spec.seq_len, spec.batch_size, spec.input_size)
    with torch.no_grad():
        out, (h, c) = lstm(x)
    assert spec.tensor_shapes() == {
        "input": list(x.shape),
        "output": list(out.shape),
        "h_n": list(h.shape),
        "c_n": list(c.shape),
    }


@settings(max_examples=60, deadline=None)
@given(small_specs())
def test_parameter_shapes_and_count_match_the_module(spec):
    lstm = direct_lstm(spec)
    assert spec.parameter_shapes() == [(n, list(p.shape)) for n, p in lstm.named_parameters()]
    assert spec.parameter_count() == sum(p.numel() for p in lstm.parameters())


def test_seed_example_numbers():
    # nn.LSTM(100, 20, num_layers=4): 4*20*(100+20) + 160 for layer 0, 4*20*40 + 160 after.
    spec = LSTMSpec()
    assert spec.parameter_count() == (9600 + 160) + 3 * (3200 + 160)
    assert spec.tensor_shapes()["output"] == [10, 3, 20]
    assert spec.tensor_shapes()["h_n"] == [4, 3, 20]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"hidden_size": 0}, "--hidden-size must be at least 1"),
        ({"input_size": -3}, "--input-size must be at least 1"),
        ({"num_layers": 0}, "--num-layers must be at least 1"),
        ({"seq_len": 0}, "--seq-len must be at least 1"),
        ({"batch_size": 0}, "--batch-size must be at least 1"),
        ({"proj_size": 20}, "--proj-size must be smaller than --hidden-size"),
        ({"proj_size": -1}, "--proj-size must be 0"),
        ({"dropout": 1.0}, "--dropout must be in [0, 1)"),
        ({"dropout": float("nan")}, "--dropout must be in [0, 1)"),
        ({"dtype": "int8"}, "--dtype must be one of"),
        ({"device": "tpu"}, "--device must be auto"),
        ({"device": "cuda:x"}, "--device must be auto"),
        ({"seed": -1}, "--seed must be in"),
        ({"lengths": (10, 7)}, "--lengths has 2 values but --batch-size is 3"),
        ({"lengths": (10, 11, 3)}, "between 1 and --seq-len 10"),
        ({"lengths": (10, 0, 3)}, "between 1 and --seq-len 10"),
        ({"lengths": (10, 7, 3), "unbatched": True}, "cannot be combined with --unbatched"),
    ],
)
def test_validation_messages(changes, message):
    with pytest.raises(UsageError, match=None) as error:
        LSTMSpec(**changes)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_parse_lengths():
    assert parse_lengths("10, 7,3") == (10, 7, 3)
    assert parse_lengths(None) is None
    with pytest.raises(UsageError, match="whole numbers"):
        parse_lengths("10,seven")


def test_memory_estimate_counts_every_term():
    spec = LSTMSpec(input_size=2, hidden_size=3, num_layers=1, seq_len=5, batch_size=7, dtype="float64")
    elements = spec.parameter_count() + 5 * 7 * 2 * 2 + 1 * 5 * 7 * 3 + 5 * 7 * 12 + 4 * 7 * 3
    assert spec.memory_estimate_bytes() == 8 * elements
    assert spec.memory_estimate_bytes(extra_elements=10) == 8 * (elements + 10)


def test_format_bytes():
    assert format_bytes(512) == "512 B"
    assert format_bytes(3 * 1024**3) == "3.0 GiB"
