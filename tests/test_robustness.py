"""Scripts run the tool thousands of times: every input gets a result or one clear error.
Closed pipes, Ctrl-C, colour, out-of-memory and generated flag combinations."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CLI = [sys.executable, "-m", "lstm_cli"]
COLOUR = re.compile(r"\x1b\[(3[0-7]|9[0-7]|38;)")  # foreground colour SGR codes


def _env(**changes):
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "TERM")}
    env.update(changes)
    return env


def test_closed_pipe_ends_quietly():
    for args in (["inspect"], ["inspect", "--json"], ["compare-cell", "--repeat", "0"]):
        process = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
        process.stdout.close()  # the reader is gone before the first byte is written
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert err == b"", err


def test_head_dash_1_in_a_shell_pipeline():
    result = subprocess.run(
        f"{sys.executable} -m lstm_cli inspect --explain | head -1",
        shell=True, capture_output=True, text=True, env=_env(), timeout=120,
    )
    assert result.stdout.startswith("input 100, hidden 20, 4 layer(s)")
    assert result.stderr == ""


def test_sigint_during_a_long_fused_call_exits_130_promptly():
    process = subprocess.Popen(
        [*CLI, "inspect", "--seq-len", "5000000", "--hidden-size", "8", "--num-layers", "2",
         "--batch-size", "1", "--input-size", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )
    time.sleep(3.0)  # past the torch import, inside one long nn.LSTM call
    assert process.poll() is None, "the run ended before it could be interrupted"
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert time.monotonic() - sent < 2.5
    assert err == "lstm-cli: interrupted\n" and out == ""


def test_no_color_is_honoured_and_pipes_get_no_colour():
    forced = subprocess.run([*CLI, "inspect"], capture_output=True, text=True, env=_env(FORCE_COLOR="1"), timeout=120)
    assert COLOUR.search(forced.stdout), "FORCE_COLOR should colour the checks (the test's control)"
    for env in (_env(FORCE_COLOR="1", NO_COLOR="1"), _env()):
        plain = subprocess.run([*CLI, "inspect"], capture_output=True, text=True, env=env, timeout=120)
        assert plain.returncode == 0 and not COLOUR.search(plain.stdout)
    piped = subprocess.run([*CLI, "inspect", "--bidirectional", "--explain"], capture_output=True, text=True, env=_env(), timeout=120)
    assert max(len(line) for line in piped.stdout.splitlines()) <= 80
    assert "\x1b[" not in piped.stdout


def test_json_is_never_wrapped():
    long_name = "x" * 150
    result = subprocess.run(
        [*CLI, "inspect", "--json", "--lengths", ",".join(["10"] * 60), "--batch-size", "60"],
        capture_output=True, text=True, env=_env(COLUMNS="40"), timeout=120,
    )
    doc = json.loads(result.stdout)
    assert doc["config"]["lengths"] == [10] * 60 and long_name not in result.stdout


@pytest.mark.parametrize(
    "error, message",
    [
        (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
         "the device ran out of memory while running (CUDA out of memory. Tried to allocate 20.00 GiB); use smaller sizes"),
        (RuntimeError("[enforce fail at alloc_cpu.cpp:116] DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"),
         "the machine ran out of memory while running"),
    ],
)
def test_out_of_memory_is_explained(run_cli, monkeypatch, error, message):
    import lstm_cli.inspect as inspect_module

    def raise_it(*args, **kwargs):
        raise error

    monkeypatch.setattr(inspect_module, "run_inspect", raise_it)
    result = run_cli("inspect")
    assert result.code == 2
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr


def test_unexpected_warnings_become_one_note(run_cli, monkeypatch):
    import warnings

    import lstm_cli.inspect as inspect_module

    real = inspect_module.run_inspect

    def noisy(*args, **kwargs):
        for _ in range(3):
            warnings.warn("something odd\nwith detail", UserWarning)
        return real(*args, **kwargs)

    monkeypatch.setattr(inspect_module, "run_inspect", noisy)
    result = run_cli("inspect", "--json")
    assert result.code == 0
    assert result.stderr.splitlines() == ["note: something odd"]
    assert "UserWarning" not in result.stderr


# -- generated command lines -------------------------------------------------------------------

SIZE_FLAGS = ["--input-size", "--hidden-size", "--num-layers", "--seq-len", "--batch-size"]
VALID_SIZE = st.integers(1, 4).map(str)
INVALID_NUMBER = st.sampled_from(["0", "-3", "abc", "1.5", "", "1e3", str(10**13)])


@st.composite
def shared_flags(draw) -> list[str]:
    args: list[str] = []
    for flag in SIZE_FLAGS:
        value = draw(st.one_of(st.none(), VALID_SIZE, VALID_SIZE, INVALID_NUMBER))
        if value is not None:
            args += [flag, value]
    for flag in ("--bidirectional", "--batch-first", "--no-bias", "--unbatched"):
        if draw(st.integers(0, 3)) == 0:
            args.append(flag)
    for flag, values in (
        ("--proj-size", st.sampled_from(["0", "1", "2", "5", "-1", "x"])),
        ("--dropout", st.sampled_from(["0", "0.3", "1", "-0.5", "nan", "inf", "half"])),
        ("--dtype", st.sampled_from(["float32", "float64", "bfloat16", "float16", "int8", ""])),
        ("--device", st.sampled_from(["cpu", "auto", "cuda", "cuda:7", "mps", "tpu"])),
        ("--seed", st.sampled_from(["0", "7", str(2**63), "-1", "s"])),
        ("--lengths", st.sampled_from(["1", "2,1", "3,1,2", "4,4,4,4", "0,1", "1,,2", "x"])),
    ):
        if draw(st.integers(0, 2)) == 0:
            args += [flag, draw(values)]
    if draw(st.integers(0, 10)) == 0:
        args.append(draw(st.sampled_from(["--nonsense", "--seq-len"])))  # unknown / missing value
    return args


COMMAND_FLAGS = {
    "inspect": st.sampled_from([["--explain"], []]),
    "compare-cell": st.tuples(
        st.sampled_from([["--repeat", "0"], ["--repeat", "1"], ["--repeat", "-2"]]),  # timing costs
        st.lists(
            st.sampled_from([
                ["--steps"], ["--allow-tf32"], ["--atol", "1e-3"], ["--atol", "-1"],
                ["--hidden-sizes", "3,2"], ["--hidden-sizes", "2,0"], ["--hidden-sizes", "x"],
            ]),
            max_size=3,
        ),
    ).map(lambda parts: parts[0] + sum(parts[1], [])),
    "gates": st.lists(
        st.sampled_from([
            ["--per-step"], ["--heatmap", "0:f"], ["--heatmap", "9:q"], ["--method", "loop"],
            ["--method", "recompute"], ["--method", "fast"], ["--sat-low", "0.2"], ["--sat-high", "2"],
            ["--sequence", "1"], ["--sequence", "-1"],
        ]),
        max_size=2,
    ).map(lambda parts: sum(parts, [])),
    "bench": st.tuples(
        st.sampled_from([["--repeat", "1"], ["--repeat", "0"]]),
        st.sampled_from([[], ["--sweep", "seq-len=2,3"], ["--sweep", "x=1"], ["--preset", "nope"], ["--method", "loop"]]),
    ).map(lambda parts: parts[0] + parts[1]),
    "gradients": st.lists(
        st.sampled_from([
            ["--cells", "rnn,lstm"], ["--cells", "gru"], ["--cells", "lstm,lstm"], ["--cells", "cnn"],
            ["--forget-bias", "1"], ["--forget-bias", "nan"], ["--forget-bias", "x"],
        ]),
        max_size=2,
    ).map(lambda parts: sum(parts, [])),
}


def assert_well_behaved(result, args):
    context = f"args={args} code={result.code} stderr={result.stderr!r}"
    assert result.code in (0, 1, 2), context
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, context
    if result.code == 2:
        # with --json: one JSON error object on stdout (the contract), else nothing there
        if "--json" in args:
            assert json.loads(result.stdout)["exit"] == 2, context
        else:
            assert result.stdout == "", context
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("lstm-cli: error: "), context
        return
    if result.code == 1:
        assert "check(s) failed" in result.stderr, context
    doc = json.loads(result.stdout)  # exactly one JSON document, nothing else on stdout
    assert doc["command"] == args[0] and isinstance(doc["config"], dict), context
    assert all(line.startswith(("note: ", "lstm-cli: ")) for line in result.stderr.splitlines()), context


@pytest.mark.parametrize("command", list(COMMAND_FLAGS))
def test_generated_command_lines_end_well(run_cli, command):
    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(shared=shared_flags(), own=COMMAND_FLAGS[command])
    def check(shared, own):
        args = [command, "--json", *shared, *own]
        assert_well_behaved(run_cli(*args), args)

    check()
