"""bench: the FLOP formula by hand (--lengths, --unbatched), presets and sweeps, the JSON
contract, min/median/max and the busy-machine notes (fake timers, never real speed), --threads,
bad flags, and a table that keeps every number whole at 60, 80 and 200 columns."""

import io
import os
import re
import time
from dataclasses import replace

import pytest

from lstm_cli.bench import (
    BenchResult, BenchRow, bench_specs, counted_steps, forward_flops, spread_note, stall_note,
)
from lstm_cli.spec import LSTMSpec
from lstm_cli.timing import Spread, spread


def test_flops_by_hand():
    # Seed example: per step and sequence 8*20*(100+20) for layer 0, 8*20*(20+20) for 3 more.
    assert forward_flops(LSTMSpec()) == 3 * 10 * (8 * 20 * 120 + 3 * 8 * 20 * 40)
    # The formula, per direction: 8*B*T*H*((I+H) + (L-1)*(D*H+H)).
    spec = LSTMSpec(input_size=7, hidden_size=5, num_layers=3, seq_len=4, batch_size=2, bidirectional=True)
    assert forward_flops(spec) == 2 * 8 * 2 * 4 * 5 * ((7 + 5) + 2 * (2 * 5 + 5))
    # proj_size 3: W_hh is (4H, 3), later layers take 2*3 inputs, and each layer adds 2*3*5.
    projected = LSTMSpec(input_size=7, hidden_size=5, num_layers=2, seq_len=4, batch_size=2, proj_size=3)
    assert forward_flops(projected) == 2 * 4 * ((8 * 5 * (7 + 3) + 30) + (8 * 5 * (3 + 3) + 30))
    assert forward_flops(LSTMSpec(unbatched=True)) == forward_flops(LSTMSpec(batch_size=1))


def test_presets_and_sweeps_expand_to_rows():
    (large,) = bench_specs(LSTMSpec(dtype="float64"), "large", None)
    assert (large.input_size, large.hidden_size, large.num_layers, large.seq_len, large.batch_size) == (512, 1024, 2, 200, 64)
    assert large.dtype == "float64"
    rows = bench_specs(LSTMSpec(), "medium", ("seq_len", [10, 1000]))
    assert [(r.seq_len, r.hidden_size) for r in rows] == [(10, 256), (1000, 256)]


def test_json_contract(run_cli):
    result = run_cli("bench", "--sweep", "seq-len=3,6", "--hidden-size", "8", "--num-layers", "2",
                     "--repeat", "2", "--json")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["command"] == "bench" and doc["device"] == "cpu" and doc["config"]["hidden_size"] == 8
    assert [row["seq_len"] for row in doc["rows"]] == [3, 6]
    for row in doc["rows"]:
        assert row["fused_s"] > 0 and row["cells_s"] > 0 and row["gates_s"] > 0
        assert row["cells_ratio"] == pytest.approx(row["cells_s"] / row["fused_s"])
        assert row["gates_ratio"] == pytest.approx(row["gates_s"] / row["fused_s"])
        spec = LSTMSpec(hidden_size=8, num_layers=2, seq_len=row["seq_len"])
        assert row["gflop"] == pytest.approx(forward_flops(spec) / 1e9)
        assert row["fused_gflops"] == pytest.approx(row["gflop"] / row["fused_s"])
        assert row["gates_method"] in ("loop", "recompute") and row["repeat"] == 2
        for path in ("fused", "cells", "gates"):  # added keys: fastest, slowest and every run
            assert row[f"{path}_min_s"] <= row[f"{path}_s"] <= row[f"{path}_max_s"]
            assert len(row[f"{path}_runs_s"]) == 2
        assert row["unbatched"] is False and row["counted_steps"] == row["seq_len"] * 3
    assert isinstance(doc["threads"], int) and doc["threads_flag"] is None and isinstance(doc["steady"], bool)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "huge"], "--preset must be one of seed, medium, large"),
        (["--preset", "seed", "--seq-len", "5"], "--seq-len is set by --preset/--sweep here"),
        (["--sweep", "seq-len=5", "--seq-len", "5"], "--seq-len is set by --preset/--sweep here"),
        (["--sweep", "depth=3"], "--sweep takes NAME=V1,V2,..."),
        (["--sweep", "seq-len"], "--sweep takes NAME=V1,V2,..."),
        (["--sweep", "batch-size=2,0"], "--sweep values must be at least 1"),
        (["--sweep", "seq-len=" + ",".join(["1"] * 21)], "at most 20 values"),
        (["--repeat", "0"], "--repeat must be between 1 and 1000"),
        (["--method", "fast"], "--method must be auto, loop or recompute"),
        (["--save-weights", "w.pt"], "bench times several models and saves none"),
        (["--sweep", "batch-size=2,4", "--lengths", "10,7,3"], "--lengths has 3 values but --batch-size is 2"),
    ],
)
def test_bad_flags(run_cli, args, message):
    result = run_cli("bench", *args)
    assert result.code == 2
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1
    assert message in result.stderr


def test_weights_fix_the_architecture(run_cli, tmp_path):
    import torch

    torch.save(torch.nn.LSTM(4, 6).state_dict(), tmp_path / "w.pt")
    result = run_cli("bench", "--weights", str(tmp_path / "w.pt"), "--sweep", "hidden-size=8,16")
    assert result.code == 2 and "--weights fixes the model's sizes" in result.stderr
    doc = run_cli("bench", "--weights", str(tmp_path / "w.pt"), "--sweep", "seq-len=2,4", "--repeat", "1", "--json").json()
    assert [(r["hidden_size"], r["seq_len"]) for r in doc["rows"]] == [(6, 2), (6, 4)]
    text = run_cli("bench", "--weights", str(tmp_path / "w.pt"), "--repeat", "1")
    assert text.code == 0 and f"weights: {tmp_path / 'w.pt'}" in " ".join(text.stdout.split())


# -- what a forward pass computes under --lengths and --unbatched ------------------------------


def test_flops_count_only_valid_steps_under_lengths():
    # Per sequence and step: layer 0 8*5*(7+5) = 480, layer 1 8*5*(5+5) = 400. --lengths 10,1,1
    # leaves 12 valid (sequence, step) pairs of the 30 that seq_len x batch would count.
    packed = LSTMSpec(input_size=7, hidden_size=5, num_layers=2, seq_len=10, batch_size=3, lengths=(10, 1, 1))
    assert counted_steps(packed) == 12
    assert forward_flops(packed) == 12 * (480 + 400) == 10560
    # The 2.5x: counting all 30 steps overstated GFLOP/s by 30 / 12.
    assert forward_flops(replace(packed, lengths=None)) == 2.5 * forward_flops(packed)
    # Bidirectional: both directions run each valid step; layer 1 reads 2*5 inputs: 8*5*(10+5) = 600.
    both = replace(packed, bidirectional=True)
    assert forward_flops(both) == 2 * 12 * (480 + 600)


def test_json_gflop_under_lengths(run_cli):
    doc = run_cli("bench", "--input-size", "7", "--hidden-size", "5", "--num-layers", "2", "--seq-len", "10",
                  "--batch-size", "3", "--lengths", "10,1,1", "--repeat", "1", "--json").json()
    (row,) = doc["rows"]
    assert row["counted_steps"] == 12 and row["gflop"] == pytest.approx(10560 / 1e9)
    assert row["fused_gflops"] == pytest.approx(row["gflop"] / row["fused_s"])


def test_unbatched_is_named_and_counted_as_one_sequence(run_cli):
    doc = run_cli("bench", "--unbatched", "--repeat", "2", "--json").json()
    (row,) = doc["rows"]
    assert row["unbatched"] is True and row["counted_steps"] == 10
    assert row["gflop"] == pytest.approx(forward_flops(LSTMSpec(batch_size=1)) / 1e9)
    for path in ("fused", "cells", "gates"):  # every time and ratio is a real, positive number
        assert 0 < row[f"{path}_min_s"] <= row[f"{path}_s"] <= row[f"{path}_max_s"]
    assert row["cells_ratio"] == pytest.approx(row["cells_s"] / row["fused_s"]) and row["cells_ratio"] > 0
    text = run_cli("bench", "--unbatched", "--repeat", "1")
    assert text.code == 0, text.stderr
    assert "100, 20, 4, 10, unbatched" in text.stdout and "--unbatched: one sequence" in text.stdout
    assert "100, 20, 4, 10, 3" not in text.stdout


# -- min / median / max and the busy-machine warnings ------------------------------------------


def scripted_clock(durations):
    """A fake perf_counter: interleaved_seconds reads it before and after each timed run, and
    run k (round-robin nn.LSTM, cell loop, capture) takes durations[k] seconds."""
    state = {"now": 0.0, "calls": 0}

    def clock():
        if state["calls"] % 2:
            state["now"] += durations[state["calls"] // 2]
        state["calls"] += 1
        return state["now"]

    return clock


def fake_timer(monkeypatch, durations):
    from lstm_cli import bench
    from lstm_cli.timing import interleaved_seconds

    clock = scripted_clock(durations)
    monkeypatch.setattr(bench, "interleaved_seconds", lambda *a, **k: interleaved_seconds(*a, **{**k, "clock": clock}))


def test_steady_run_gives_no_warning(run_cli, monkeypatch):
    # nn.LSTM 1.0 ms, cell loop 2.5 ms, capture 6 ms, each within 1.4x across 5 rounds.
    rounds = [(1e-3, 2.5e-3, 6e-3), (1.1e-3, 2.6e-3, 6.2e-3), (1.4e-3, 3.5e-3, 8.4e-3),
              (1e-3, 2.5e-3, 6e-3), (1.2e-3, 2.4e-3, 6.1e-3)]
    fake_timer(monkeypatch, [d for r in rounds for d in r])
    result = run_cli("bench", "--repeat", "5", "--json")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["notes"] == [] and doc["steady"] is True and "note:" not in result.stderr
    (row,) = doc["rows"]
    assert (row["fused_min_s"], row["fused_s"], row["fused_max_s"]) == pytest.approx((1e-3, 1.1e-3, 1.4e-3))
    assert (row["cells_min_s"], row["cells_s"], row["cells_max_s"]) == pytest.approx((2.4e-3, 2.5e-3, 3.5e-3))
    assert row["fused_runs_s"] == pytest.approx([r[0] for r in rounds])
    assert row["cells_ratio"] == pytest.approx(2.5e-3 / 1.1e-3)


def test_slowed_path_warns(run_cli, monkeypatch):
    """One capture run in five sleeps 0.3 s: the capture's slowest run is far past 1.5x its
    fastest, and a one-line note (stderr and JSON) says the medians may not be trustworthy."""
    from lstm_cli import bench

    real, calls = bench.capture_gates, []

    def slowed(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the warm-up, one timed run, then this one
            time.sleep(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(bench, "capture_gates", slowed)
    result = run_cli("bench", "--hidden-size", "8", "--num-layers", "1", "--seq-len", "3", "--repeat", "5", "--json")
    assert result.code == 0, result.stderr
    doc = result.json()
    (row,) = doc["rows"]
    assert row["gates_max_s"] >= 0.3 and row["gates_min_s"] < 0.3
    busy = [note for note in doc["notes"] if "timings spread widely" in note]
    assert len(busy) == 1 and "capture" in busy[0]
    assert "the machine looks busy and the medians may not be trustworthy" in busy[0]
    assert doc["steady"] is False
    stderr_lines = [line for line in result.stderr.splitlines() if "timings spread widely" in line]
    assert len(stderr_lines) == 1 and stderr_lines[0].startswith("note: ")


def test_cell_loop_beating_nn_lstm_warns(run_cli, monkeypatch):
    # nn.LSTM steadily 100 ms (held up in every run, so its spread is small), cell loop 1 ms.
    fake_timer(monkeypatch, [0.1, 1e-3, 2e-3] * 3)
    doc = run_cli("bench", "--repeat", "3", "--json").json()
    assert len(doc["notes"]) == 1 and doc["steady"] is False
    assert "the cell loop took 0.01x nn.LSTM's time" in doc["notes"][0]
    assert "medians may not be trustworthy" in doc["notes"][0]


def test_spread_rule():
    assert spread([1.0, 3.0, 1.2]) == Spread(1.0, 1.2, 3.0)
    assert not Spread(1.0, 1.0, 1.5).wide and Spread(1.0, 1.0, 1.51).wide
    assert Spread(2.0, 2.0, 2.0).ratio == 1.0 and not spread([5.0]).wide
    row = BenchRow(100, 20, 4, 10, 3, "loop", 2, 2e-3, 1e-3, 3e-3, 0.5, 1.5, 1e-3, 0.5, 1.0, 0.33,
                   fused_min_s=2e-3, fused_max_s=2e-3, cells_min_s=1e-3, cells_max_s=1e-3,
                   gates_min_s=1e-3, gates_max_s=9e-3)
    assert "capture 9.0x" in spread_note([row])
    # Several rows: the note says at which one, by the same label as the table.
    assert "capture 9.0x at 100, 20, 4, 10, 3" in spread_note([row, replace(row, gates_max_s=3e-3)])
    row.cells_ratio = 0.01
    assert "try --threads 1" in stall_note([row], "cpu", 2)
    assert "--threads" not in stall_note([row], "cpu", 1) and "--threads" not in stall_note([row], "cuda:0", 8)


# -- --threads ---------------------------------------------------------------------------------


def test_threads_flag_sets_and_reports_what_ran(run_cli):
    import torch

    before = torch.get_num_threads()
    doc = run_cli("bench", "--threads", "1", "--repeat", "1", "--json").json()
    assert doc["threads"] == 1 and doc["threads_flag"] == 1
    text = run_cli("bench", "--threads", "1", "--repeat", "1").stdout
    assert "1 thread (--threads)" in text
    default = run_cli("bench", "--repeat", "1", "--json").json()
    assert default["threads"] == before and default["threads_flag"] is None
    if len(os.sched_getaffinity(0)) >= 2 and before != 2:
        assert run_cli("bench", "--threads", "2", "--repeat", "1", "--json").json()["threads"] == 2
    assert torch.get_num_threads() == before  # put back after the run


@pytest.mark.parametrize("value", ["0", "-1", str(len(os.sched_getaffinity(0)) + 1), "100000"])
def test_threads_out_of_range(run_cli, value):
    result = run_cli("bench", "--threads", value)
    assert result.code == 2 and result.stdout == "" and len(result.stderr.splitlines()) == 1
    assert f"--threads must be between 1 and {len(os.sched_getaffinity(0))}" in result.stderr


def test_unbatched_batch_sweep_refused(run_cli):
    result = run_cli("bench", "--unbatched", "--sweep", "batch-size=1,2")
    assert result.code == 2 and len(result.stderr.splitlines()) == 1
    assert "--unbatched input has no batch" in result.stderr


# -- readable at every width -------------------------------------------------------------------


def wide_result() -> BenchResult:
    """A sweep with every kind of number: µs to seconds, ratios from 0.00330x to 1232x,
    GFLOP/s from 0.00234 to 45100, and an unbatched row."""
    rows = []
    for k, (fused, cells, gates) in enumerate([(812e-6, 2.68e-6, 1.0), (23.4e-3, 31.2e-3, 3.16), (3.16, 6.2, 7.1)]):
        rows.append(BenchRow(
            512, 1024, 2, 200 * (k + 1), 64, "recompute", 5, fused, cells, gates,
            cells / fused, gates / fused, 45.1 * (k + 1), 45100.0, 0.00234, 45.1 * (k + 1) / gates,
            fused * 0.9, fused * 1.3, cells * 0.95, cells * 1.1, gates * 0.99, gates * 1.2,
            unbatched=k == 1, counted_steps=12800,
        ))
    return BenchResult("bench", LSTMSpec().config(), "cuda:0", "float32", "2.13.0+cu130", 16, rows, [], [])


@pytest.mark.parametrize("width", [60, 80, 200])
def test_table_never_truncates_a_number(width):
    from rich.console import Console

    from lstm_cli.render.bench import render_bench

    console = Console(width=width, file=io.StringIO(), highlight=False, color_system=None)
    render_bench(wide_result(), console)
    out = console.file.getvalue()
    assert max(len(line) for line in out.splitlines()) <= width
    assert not re.search(r"\d…|…\d|\d\.…|…\s*[µm]?s\b", out), out
    for number in ("812 µs", "2.68 µs", "23.4 ms", "3.16 s", "0.00330x", "1232x", "45100", "0.00234",
                   "1.96x", "6.20 s", "4.11 s"):
        assert number in out, (number, out)
    assert "512, 1024, 2, 400, unbatched" in " ".join(out.split())  # the label may wrap, whole


@pytest.mark.parametrize("columns", ["60", "80", "200"])
def test_cli_table_fits_every_width(run_cli, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", columns)
    result = run_cli("bench", "--sweep", "seq-len=3,30", "--hidden-size", "8", "--repeat", "2")
    assert result.code == 0, result.stderr
    assert "…" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= int(columns)
    assert re.search(r"nn\.LSTM +\d+(\.\d+)? [µm]?s +\d", result.stdout), result.stdout


def test_ratio_and_rate_formats():
    from lstm_cli.render.bench import format_rate, format_ratio

    assert [format_ratio(r) for r in (0.0033, 0.0133, 0.999, 2.384, 9.996, 27.34, 1234.4)] == [
        "0.00330x", "0.0133x", "0.999x", "2.38x", "10.0x", "27.3x", "1234x"]
    assert format_ratio(None) == "" and format_rate(45100.4) == "45100" and format_rate(0.002344) == "0.00234"
