"""inspect: JSON contract, identity checks against independent computations, table output."""

import io
import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings

from lstm_cli.checks import Check
from lstm_cli.verify.rule import Rule
from lstm_cli.inspect import identity_checks, run_inspect
from lstm_cli.model import Forward, Placement, build_lstm, make_input, prepare, run_lstm
from lstm_cli.spec import LSTMSpec
from tests.strategies import small_specs

CPU32 = Placement(torch.device("cpu"), torch.float32)


def test_json_contract_at_defaults(run_cli):
    result = run_cli("inspect", "--json")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["command"] == "inspect"
    assert doc["config"]["hidden_size"] == 20 and doc["config"]["num_layers"] == 4
    shapes = {name: t["shape"] for name, t in doc["tensors"].items()}
    assert shapes == {"input": [10, 3, 100], "output": [10, 3, 20], "h_n": [4, 3, 20], "c_n": [4, 3, 20]}
    direct = torch.nn.LSTM(100, 20, num_layers=4)
    assert [(p["name"], p["shape"], p["numel"]) for p in doc["parameters"]] == [
        (n, list(p.shape), p.numel()) for n, p in direct.named_parameters()
    ]
    assert doc["total_parameters"] == sum(p.numel() for p in direct.parameters())
    assert {"name", "passed", "max_abs_diff"} <= set(doc["checks"][0])
    assert all(check["passed"] for check in doc["checks"])
    assert result.stderr == ""


def test_same_seed_same_numbers_and_input_stream_is_plain_randn():
    spec = LSTMSpec(seed=7)
    x = make_input(spec, CPU32)
    assert torch.equal(x, torch.randn(10, 3, 100, generator=torch.Generator().manual_seed(7)))
    assert torch.equal(make_input(spec, CPU32), x)  # the same stream, drawn again
    first, second = build_lstm(spec, CPU32), build_lstm(spec, CPU32)
    assert all(torch.equal(p, q) for p, q in zip(first.parameters(), second.parameters()))
    # Equal weights and input give equal outputs up to the GEMM's last bit, which on some CPUs
    # follows the buffers' memory alignment: compared within float32 rounding, not bit for bit.
    a, b = run_lstm(first, x, spec), run_lstm(second, x.clone(), spec)
    torch.testing.assert_close(a.output, b.output, rtol=1e-6, atol=1e-7)
    other = run_lstm(build_lstm(LSTMSpec(seed=8), CPU32), x, spec)
    assert (a.output - other.output).abs().max() > 1e-3


def test_weights_follow_pytorch_init_bound():
    lstm = build_lstm(LSTMSpec(hidden_size=16), CPU32)
    for p in lstm.parameters():
        assert p.abs().max() <= 0.25 and p.std() > 0.1  # U(-1/sqrt(16), 1/sqrt(16))


@settings(max_examples=40, deadline=None)
@given(small_specs())
def test_every_identity_holds_for_random_configs(spec):
    result = run_inspect(spec)
    failed = [c.name for c in result.checks if not c.passed]
    assert not failed
    assert result.total_parameters == result.expected_parameters


def _single_sequence_states(spec: LSTMSpec, lstm, x):
    """Independent packed reference: run each sequence alone, trimmed to its length."""
    states = []
    for n, length in enumerate(spec.lengths):
        seq = x[n, :length] if spec.batch_first else x[:length, n]
        with torch.no_grad():
            out, (h, _) = lstm(seq.unsqueeze(0 if spec.batch_first else 1))
        states.append((out, h[:, 0]))
    return states


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_run_matches_each_sequence_run_alone(batch_first, bidirectional):
    spec = LSTMSpec(
        input_size=5, hidden_size=4, num_layers=2, seq_len=6, batch_size=3,
        lengths=(6, 2, 4), batch_first=batch_first, bidirectional=bidirectional, dtype="float64",
    )
    place64 = Placement(torch.device("cpu"), torch.float64)
    lstm = build_lstm(spec, place64)
    x = make_input(spec, place64)
    forward = run_lstm(lstm, x, spec)
    for n, (alone_out, alone_h) in enumerate(_single_sequence_states(spec, lstm, x)):
        assert torch.allclose(forward.h_n[:, n], alone_h, atol=1e-12)
        got = forward.output[n] if batch_first else forward.output[:, n]
        length = spec.lengths[n]
        assert torch.allclose(got[:length], alone_out[0] if batch_first else alone_out[:, 0], atol=1e-12)
        assert torch.all(got[length:] == 0)


def test_identity_checks_can_fail():
    spec = LSTMSpec(bidirectional=True)
    lstm = build_lstm(spec, CPU32)
    forward = run_lstm(lstm, make_input(spec, CPU32), spec)
    rule = Rule("float32")
    assert all(c.passed for c in identity_checks(spec, forward, rule))
    broken_h = forward.h_n.clone()
    broken_h[-1, 0, 0] += 0.5  # backward state of the last layer
    checks = identity_checks(spec, Forward(forward.output, broken_h, forward.c_n), rule)
    backward = [c for c in checks if "backward" in c.name]
    assert len(backward) == 1 and not backward[0].passed
    assert backward[0].max_abs_diff == pytest.approx(0.5, abs=1e-6)
    assert [c.passed for c in checks if "forward" in c.name] == [True]


def test_failed_check_exits_1(run_cli, monkeypatch):
    import lstm_cli.inspect as inspect_module

    monkeypatch.setattr(
        inspect_module, "identity_checks", lambda *a: [Check("planted", False, 1.0, 1e-5)]
    )
    result = run_cli("inspect", "--json")
    assert result.code == 1
    doc = result.json()
    assert {"name": "planted", "passed": False, "max_abs_diff": 1.0, "tolerance": 1e-5}.items() <= doc["checks"][-1].items()
    assert doc["passed"] is False
    assert "1 check(s) failed" in result.stderr


def test_check_names_follow_the_users_indexing():
    names = lambda **kw: [c.name for c in run_inspect(LSTMSpec(**kw)).checks[2:]]  # noqa: E731
    assert names() == ["output[-1] == h_n[-1]"]
    assert names(batch_first=True) == ["output[:, -1] == h_n[-1]"]
    assert names(bidirectional=True) == [
        "output[-1, :, :20] == h_n[-2] (forward, last layer)",
        "output[0, :, 20:] == h_n[-1] (backward, last layer)",
    ]
    assert names(unbatched=True, proj_size=4) == ["output[-1] == h_n[-1]"]


def test_table_output_at_fixed_width():
    from rich.console import Console

    from lstm_cli.render.inspect import render_inspect

    buffer = io.StringIO()
    console = Console(file=buffer, width=100, color_system=None)
    render_inspect(run_inspect(LSTMSpec(proj_size=8), explain=True), console)
    text = buffer.getvalue()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    row = next(line for line in lines if "weight_hr_l3" in line)
    assert "(8, 20)" in row and "160" in row
    row = next(line for line in lines if "weight_ih_l1 " in line)
    assert "(80, 8)" in row and "640" in row
    total = next(line for line in lines if line.startswith("│ total"))
    # layer 0: 4*20*(100+8) + 2*80 + 8*20 = 8960; layers 1-3: 4*20*(8+8) + 160 + 160 = 1600
    assert total.count("13,760") == 2
    assert next(line for line in lines if "│ f " in line).split("│")[2].strip() == "20:40"
    assert "W_hr is (8, 20), so h_t is (3, 8) while c_t stays (3, 20)" in text
    assert "\x1b[" not in text


def test_piped_output_has_no_colour_codes_and_notes_go_to_stderr():
    # A fresh process: torch raises this warning once per process.
    result = subprocess.run(
        [sys.executable, "-m", "lstm_cli", "inspect", "--proj-size", "5"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "FORCE_COLOR": ""},
    )
    assert result.returncode == 0
    assert "\x1b[" not in result.stdout
    assert "UserWarning" not in result.stderr
    assert result.stderr.strip() == (
        "note: oneDNN has no LSTM kernel with projections, so PyTorch used its default implementation"
    )


def test_placing_a_run_leaves_denormals_as_the_users_program_has_them():
    from lstm_cli.model import place

    place(LSTMSpec(device="cpu"))
    tiny = torch.tensor([1e-39], dtype=torch.float32)  # a float32 denormal
    assert (tiny * 1.0).item() != 0.0  # not flushed to zero behind the user's back


def test_inspect_lengths_shows_the_packed_sequence_nn_lstm_returned(run_cli):
    from torch.nn.utils.rnn import pack_padded_sequence

    doc = run_cli("inspect", "--lengths", "4,10,7", "--bidirectional", "--proj-size", "5", "--json").json()
    spec = LSTMSpec(lengths=(4, 10, 7), bidirectional=True, proj_size=5, device="cpu")
    prepared = prepare(spec)
    packed = pack_padded_sequence(prepared.x, torch.tensor(spec.lengths), enforce_sorted=False)
    with torch.no_grad():
        out, _ = prepared.lstm(packed)
    assert doc["packed"]["data_shape"] == [21, 10] == list(out.data.shape)
    assert doc["packed"]["batch_sizes"] == out.batch_sizes.tolist() == [3, 3, 3, 3, 2, 2, 2, 1, 1, 1]
    assert doc["packed"]["sorted_indices"] == out.sorted_indices.tolist() == [1, 2, 0]
    assert "total_length=10" in doc["packed"]["unpacked_with"]
    assert doc["config"]["input_source"] == "random N(0, 1) from seed 0, zero past each length"
    assert run_cli("inspect", "--json").json()["packed"] is None
