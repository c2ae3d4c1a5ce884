"""Every script in benchmarks/ runs here at a tiny size, in this process, so that none can rot
(as gates_bench.py did: its default --methods named a method it no longer defined). What a
script measures is not judged here (timing is not a test): only that its code paths run, that its
documented commands and its defaults name only things that exist, and that what it returns has
the shape its printout promises. Subprocesses are kept to the few that a script's measurement
is made of (speed_budget.py, memory_peak.py), each with a timeout.

benchmarks/capture_overhead.py has its own test in test_insitu_cli.py; gpu_check.sh is no
Python script."""

from __future__ import annotations

import importlib.util
import json
import math
import shlex
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = ("gates_bench", "memory_peak", "select_study", "speed_budget", "step_error", "threads_default",
           "verify_cost")
TIMEOUT = ["--timeout", "120"]  # seconds per subprocess: a hang fails the test instead of the suite


def load(name: str):
    """The script as a module, loaded by its path (benchmarks/ is no package)."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def restored(monkeypatch):
    """The scripts set torch's thread count (and may touch sys.path): put both back."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def documented_commands(module, name: str) -> list[list[str]]:
    """The argv of each example command in the script's docstring (comments dropped)."""
    script, commands = f"benchmarks/{name}.py", []
    for line in module.__doc__.splitlines():
        if line.lstrip().startswith(".venv/bin/python " + script):
            words = shlex.split(line, comments=True)
            commands.append(words[words.index(script) + 1:])
    return commands


def cli_commands() -> set[str]:
    import typer

    from lstm_cli.cli import app

    return set(typer.main.get_command(app).commands)


def positive(*numbers: float) -> bool:
    return all(isinstance(n, (int, float)) and math.isfinite(n) and n > 0 for n in numbers)


@pytest.mark.parametrize("name", SCRIPTS)
def test_the_defaults_and_the_documented_commands_name_only_what_exists(name):
    """parse_args checks every name a script looks up (sizes, methods, models, commands,
    presets) and exits 2 on an unknown one: the defaults and each docstring example must pass."""
    module = load(name)
    commands = documented_commands(module, name)
    assert commands, f"{name}.py's docstring shows no command"
    for argv in [[], *commands]:
        module.parse_args(argv)


def test_an_unknown_name_is_a_usage_error_not_a_key_error(capsys):
    module = load("gates_bench")
    with pytest.raises(SystemExit) as exit:
        module.parse_args(["--methods", "loop,loop_no_mkl"])
    assert exit.value.code == 2 and "loop_no_mkl" in capsys.readouterr().err


def test_gates_bench_runs_at_a_tiny_size(capsys, restored):
    module = load("gates_bench")
    assert set(module.parse_args([]).methods) == set(module.METHODS)  # the default runs them all
    rows = module.main(["--sizes", "tiny", "--repeat", "1", "--json"])
    row, = rows
    assert (row["size"], row["I"], row["H"], row["L"], row["T"], row["B"]) == ("tiny", *module.SIZES["tiny"])
    assert row["auto"] in module.METHODS
    for label in ("fused", *(f"{m}{alone}" for m in module.METHODS for alone in ("", "_alone"))):
        assert positive(row[f"{label}_s"]), label
        if label != "fused":
            assert positive(row[f"{label}_paired_ratio"]), label
    lines = capsys.readouterr().out.splitlines()
    assert json.loads(lines[-1]) == row  # --json prints what main returns
    module.main(["--sizes", "tiny", "--repeat", "1", "--methods", "recompute"])  # the table
    table = capsys.readouterr().out
    assert "fused nn.LSTM" in table and "recompute" in table and "loop_addmm" not in table


def test_memory_peak_runs_at_a_tiny_size(capsys, monkeypatch, restored):
    module = load("memory_peak")
    assert set(module.COMMANDS) <= cli_commands() and set(module.COMMAND_FLAGS) <= set(module.COMMANDS)
    flags = {"input_size": 4, "hidden_size": 8, "num_layers": 1, "seq_len": 3, "batch_size": 2, "proj_size": 0,
             "bidirectional": False, "dtype": "float32", "device": "cpu"}
    # Every default command, as main runs it but in this process: the flags it passes must be valid...
    from lstm_cli.cli import main as lstm_cli

    cli = module.command_line(flags)
    for command in module.COMMANDS:
        assert lstm_cli([command, *cli, *module.COMMAND_FLAGS.get(command, [])]) == 0, command
    # ...and its estimate must compute (the code main sends to a subprocess, run here).
    monkeypatch.setattr(sys, "argv", ["-c", json.dumps({"commands": list(module.COMMANDS), "flags": flags})])
    capsys.readouterr()
    exec(compile(module.ESTIMATE, "ESTIMATE", "exec"), {})
    estimates = json.loads(capsys.readouterr().out)
    assert set(estimates) == set(module.COMMANDS) and positive(*estimates.values())
    # One command end to end, in subprocesses: the baseline, the estimate, the command.
    rows = module.main(["--commands", "inspect", "--input-size", "4", "--hidden-size", "8", "--seq-len", "3",
                        "--batch-size", "2", *TIMEOUT])
    baseline, inspect = rows
    assert baseline["command"] == "(baseline)" and inspect["command"] == "inspect"
    assert baseline["exit"] == 0 and inspect["exit"] == 0
    assert positive(baseline["peak_bytes"], inspect["peak_bytes"], inspect["estimate_bytes"], inspect["ratio"])
    assert inspect["ratio"] == inspect["peak_bytes"] / inspect["estimate_bytes"]
    out = capsys.readouterr().out
    assert "(baseline)" in out and "\ninspect " in out


def test_speed_budget_runs_at_a_tiny_size(capsys, restored):
    module = load("speed_budget")
    assert Path(module.LSTM_CLI).exists()
    commands = {argv[1] for argv in module.RUNS.values() if argv[0] == module.LSTM_CLI} - {"--help"}
    assert commands <= cli_commands()
    # Start-up: `import torch` (the baseline, always run) and `lstm-cli --help`, once each.
    result = module.main(["--commands=--help", "--repeat", "1", "--warmup", "0", *TIMEOUT])
    assert set(result["median_s"]) == {"import torch", "--help"} and positive(*result["median_s"].values())
    assert set(result["met"]) == {"--help"} and isinstance(result["met"]["--help"], bool)
    # --large: the bare forward and gates, at a tiny model instead of the large one.
    result = module.main(["--large", "--large-size", "4,8,1,5,2", "--repeat", "1", *TIMEOUT])
    assert result["size"] == (4, 8, 1, 5, 2) and set(result["median_s"]) == {"bare forward", "gates"}
    assert positive(*result["median_s"].values(), result["paired_ratio"])
    out = capsys.readouterr().out
    assert "--help" in out and "(I, H, L, T, B) = (4, 8, 1, 5, 2)" in out
    assert "(512, 1024, 2, 400, 64)" in module.large_runs()["bare forward"][2]  # the full run's model


def test_step_error_runs_at_a_tiny_size(capsys, restored):
    module = load("step_error")
    from lstm_cli.verify import step

    free = step.CHECK_FREE_MACS
    for label, flags in module.MODELS.values():  # the example checkpoints it loads are there
        assert "weights" not in flags or Path(flags["weights"]).is_file(), label
    result = module.main(["--ks", "8", "--dtypes", "float32,bfloat16", "--seq-len", "3", "--batch-size", "2"])
    assert step.CHECK_FREE_MACS == free  # its every-step setting does not outlive the run
    assert list(result["gemm"]) == [8] and set(result["gemm"][8]) == set(module.KINDS)
    assert all(math.isfinite(r) and r >= 0 for pair in result["gemm"][8].values() for r in pair)
    rows = result["steps"]
    assert [(row["model"], row["dtype"]) for row in rows] == [
        (model, dtype) for model in module.MODELS for dtype in ("float32", "bfloat16")]
    for row in rows:
        assert all(math.isfinite(row[k]) and row[k] >= 0 for k in ("cell_loop", "gates_loop", "recompute"))
        assert positive(row["max_abs_c"])
    out = capsys.readouterr().out
    assert "seq-len 3, batch 2" in out and all(label in out for label, _ in module.MODELS.values())


def test_threads_default_runs_at_a_tiny_size(capsys, restored, tmp_path):
    """Every command on the seed model, once, idle and beside the busy competitor (stopped after)."""
    module = load("threads_default")
    assert set(module.COMMANDS) <= cli_commands() and set(module.DEFAULT_MODELS) <= set(module.MODELS)
    out_file = tmp_path / "runs.json"
    rows = module.main(["--busy", "both", "--repeat", "1", "--models", "seed", "--commands", ",".join(module.COMMANDS),
                        "--out", str(out_file)])
    assert [(row["command"], row["busy"]) for row in rows] == [
        (command, busy) for busy in (False, True) for command in module.COMMANDS]
    counts = [1, torch.get_num_threads()] if torch.get_num_threads() != 1 else [1]
    for row in rows:
        assert row["model"] == "seed" and positive(row["step_macs"])
        assert set(row["median"]) == {str(n) for n in counts} and positive(*row["median"].values())
        assert all(len(runs) == 1 for runs in row["runs"].values())
    assert json.loads(out_file.read_text())["rows"] == json.loads(json.dumps(rows))
    header, rule, *table = capsys.readouterr().out.strip().splitlines()
    assert len(table) == len(rows)
    assert all(line.count("|") == header.count("|") == rule.count("|") for line in table)  # cells under their heads


def test_verify_cost_runs_at_a_tiny_size(capsys, restored):
    module = load("verify_cost")
    from lstm_cli import compare_cell
    from lstm_cli.gates import run as gates_run
    from lstm_cli.spec import BENCH_PRESETS, SIZE_FIELDS

    for name in module.parse_args([]).presets:  # "bench's preset sizes"
        assert tuple(module.PRESETS[name][field] for field in SIZE_FIELDS) == BENCH_PRESETS[name]
    before = {(m.__name__, name): getattr(m, name) for m, name, _label in module.TIMED}
    rows = module.main(["tiny", "--repeat", "1", "--threads", "1"])
    assert {(m.__name__, name): getattr(m, name) for m, name, _label in module.TIMED} == before  # unwrapped
    assert gates_run.step_checks is before[(gates_run.__name__, "step_checks")]
    assert compare_cell.run_shadow is before[(compare_cell.__name__, "run_shadow")]
    assert [(row["preset"], row["command"]) for row in rows] == [("tiny", "gates"), ("tiny", "compare-cell")]
    for row in rows:
        assert positive(row["total_s"], row["check_s"], row["shadow_s"])  # the tiny model is checked and shadowed
        assert row["check_s"] + row["shadow_s"] <= row["total_s"]
    assert capsys.readouterr().out.count("tiny") == 2


SMALL_SOURCE = "x = 'ab' + \"cd e\"\ndef f(y):\n    '''Doc.'''\n    if y:\n        return 'ab'\n    return y\n"


def test_select_study_runs_on_a_small_text(capsys, restored, tmp_path, monkeypatch):
    module = load("select_study")
    text = SMALL_SOURCE
    # The spans it studies, against offsets counted here.
    literals = [(s.start, s.end, s.kind) for s in module.literal_insides(text)]
    first, cd, doc, last = text.index("ab"), text.index("cd e"), text.index("Doc."), text.rindex("ab")
    assert literals == [(first, first + 2, "one-line literal"), (cd, cd + 4, "one-line literal"),
                        (doc, doc + 4, "triple-quoted literal"), (last, last + 2, "one-line literal")]
    blocks = [(s.start, s.end, s.depth) for s in module.block_insides(text)]
    assert blocks == [(doc - 3, len(text) - 1, 4), (text.index("return 'ab'"), last + 3, 8)]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.py").write_text(text)
    results = module.main(["--text-file", "t.py", "--sign", "both", "--threshold", "0.5", "--show", "1"])
    out = capsys.readouterr().out
    assert "sign both" in out and results["units"] == 256
    rows = [r for r in results["one-line literal"]["rows"] if isinstance(r, dict)]
    for row in rows:
        assert 0 <= row["recall"] <= 1 and 0 <= row["base"] <= 1 and row["units"] >= 1
    assert f"one-line literals: 3 (0 without another of their kind); {len(rows)} of 3 select a unit" in out
