"""Bad input: one clear line on stderr, exit 2, nothing on stdout, never a traceback."""

import re

import pytest
import torch

BAD_INPUT = [
    (["--hidden-size", "0"], "--hidden-size must be at least 1 (got 0)"),
    (["--input-size", "-1"], "--input-size must be at least 1"),
    (["--num-layers", "0"], "--num-layers must be at least 1"),
    (["--num-layers", "10000000000000"], "--num-layers must be at most 1000 (got 10000000000000)"),
    (["--seq-len", "0"], "--seq-len must be at least 1"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--proj-size", "20"], "--proj-size must be smaller than --hidden-size (got 20 >= 20)"),
    (["--proj-size", "-2"], "--proj-size must be 0 (off) or positive"),
    (["--dropout", "1"], "--dropout must be in [0, 1)"),
    (["--dropout", "-0.1"], "--dropout must be in [0, 1)"),
    (["--dropout", "nan"], "--dropout must be in [0, 1)"),
    (["--lengths", "10,7"], "--lengths has 2 values but --batch-size is 3"),
    (["--lengths", "10,7,11"], "--lengths values must be between 1 and --seq-len 10 (got 11)"),
    (["--lengths", "10,x,3"], "--lengths takes whole numbers"),
    (["--lengths", "3,2,1", "--unbatched"], "cannot be combined with --unbatched"),
    (["--dtype", "int8"], "--dtype must be one of float32, float64, float16, bfloat16"),
    (["--device", "tpu"], "--device must be auto, cpu, cuda, cuda:N or mps"),
    (["--seed", "-5"], "--seed must be in [0, 2**63)"),
    (["--hidden-size", "abc"], "'abc' is not a valid int"),
    (["--dropout", "lots"], "'lots' is not a valid float"),
    (["--no-such-flag"], "No such option: --no-such-flag"),
    (["--seq-len"], "--seq-len"),
]


@pytest.mark.parametrize("args, message", BAD_INPUT)
def test_bad_flags_give_one_line_and_exit_2(run_cli, args, message):
    result = run_cli("inspect", *args)
    assert result.code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lstm-cli: error: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_unknown_command(run_cli):
    result = run_cli("inspekt")
    assert result.code == 2 and len(result.stderr.splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_is_a_usage_error(run_cli):
    result = run_cli("inspect", "--device", "cuda")
    assert result.code == 2
    assert "--device cuda: CUDA is not available" in result.stderr


def test_memory_guard_refuses_before_allocating(run_cli, monkeypatch):
    import lstm_cli.runtime as runtime

    monkeypatch.setattr(runtime, "available_bytes", lambda device: 10 * 1024**2)
    monkeypatch.setattr(torch.nn, "LSTM", None)  # allocation would crash: the guard must act first
    result = run_cli("inspect", "--hidden-size", "1000", "--json")
    assert result.code == 2
    found = re.search(r"needs about ([\d.]+) MiB but cpu has 10.0 MiB available", result.stderr)
    # The weights alone: 4*1000*(100+1000) + 8000 + 3 * (4*1000*2000 + 8000) float32 numbers.
    weights_mib = (4_408_000 + 3 * 8_008_000) * 4 / 2**20
    assert found and float(found.group(1)) >= weights_mib


def test_memory_guard_on_a_huge_real_configuration(run_cli):
    result = run_cli("inspect", "--hidden-size", "200000", "--num-layers", "40")
    assert result.code == 2
    assert "this configuration needs about" in result.stderr
    assert "TiB" in result.stderr or "GiB" in result.stderr


def test_dropout_with_one_layer_is_one_plain_sentence(run_cli):
    result = run_cli("inspect", "--num-layers", "1", "--dropout", "0.5", "--json")
    assert result.code == 0
    assert result.stderr.splitlines() == [
        "note: --dropout has no effect with one layer: PyTorch applies it between layers only"
    ]


def test_internal_errors_are_one_line_unless_debugging(run_cli, monkeypatch):
    import lstm_cli.inspect as inspect_module

    def explode(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(inspect_module, "run_inspect", explode)
    result = run_cli("inspect")
    assert result.code == 1
    assert result.stderr.splitlines() == [
        "lstm-cli: error: internal error: ZeroDivisionError: boom "
        "(run with LSTM_CLI_DEBUG=1 for the traceback)"
    ]
    monkeypatch.setenv("LSTM_CLI_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        run_cli("inspect")
