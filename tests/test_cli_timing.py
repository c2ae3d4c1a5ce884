"""compare-cell's timing: fastest / median / slowest of interleaved runs, and bench's busy-machine
notes (timing.spread_note, timing.stall_note), with a scripted clock: no wall-clock assertions."""

import pytest
import torch

from lstm_cli import compare_cell, timing
from lstm_cli import threads as threads_module
from lstm_cli.timing import Spread, TimedPath, interleaved_seconds

from tests.test_bench import scripted_clock


def fake_timer(monkeypatch, durations):
    """compare-cell's timed runs take `durations` seconds in order (nn.LSTM, loop, nn.LSTM, ...)."""
    clock = scripted_clock(durations)
    monkeypatch.setattr(compare_cell, "interleaved_seconds",
                        lambda *a, **k: interleaved_seconds(*a, **{**k, "clock": clock}))


def test_steady_timing_reports_min_median_max_and_no_note(run_cli, monkeypatch):
    rounds = [(1e-3, 3e-3), (1.2e-3, 3.3e-3), (1.1e-3, 3.1e-3), (1.4e-3, 3.9e-3), (1e-3, 3.2e-3)]
    fake_timer(monkeypatch, [d for r in rounds for d in r])
    result = run_cli("compare-cell", "--repeat", "5", "--json")
    assert result.code == 0, result.stderr
    doc = result.json()
    t = doc["timing"]
    assert (t["fused_s"], t["cells_s"]) == pytest.approx((1.1e-3, 3.2e-3))  # medians, as before
    assert t["ratio"] == pytest.approx(3.2e-3 / 1.1e-3)
    assert t["fused"] == pytest.approx({"min": 1e-3, "median": 1.1e-3, "max": 1.4e-3})
    assert t["cells"] == pytest.approx({"min": 3e-3, "median": 3.2e-3, "max": 3.9e-3})
    assert t["fused_runs_s"] == pytest.approx([r[0] for r in rounds]) and t["repeat"] == 5
    assert t["steady"] is True and doc["notes"] == [] and "note:" not in result.stderr

    fake_timer(monkeypatch, [d for r in rounds for d in r])
    text = " ".join(run_cli("compare-cell", "--repeat", "5").stdout.split())
    assert "time, fastest / median / slowest of 5 interleaved runs, 1 thread:" in text
    assert "nn.LSTM: 1.00 ms / 1.10 ms / 1.40 ms" in text
    assert "LSTMCell loop: 3.00 ms / 3.20 ms / 3.90 ms" in text
    assert "ratio of medians 2.91x" in text and "busy" not in text


def test_a_stalled_run_is_flagged(run_cli, monkeypatch):
    """The run the issue saw: nn.LSTM 672 ms once among 1 ms runs. The median survives, the
    spread does not, and the note says so on stderr, in JSON and beside the numbers."""
    fake_timer(monkeypatch, [1e-3, 3e-3, 0.672, 3e-3, 1e-3, 3e-3])
    result = run_cli("compare-cell", "--repeat", "3", "--json")
    doc = result.json()
    assert doc["timing"]["steady"] is False
    (note,) = doc["notes"]
    assert note.startswith("timings spread widely (slowest run / fastest: nn.LSTM 672.0x; steady is under 1.5x)")
    assert "the machine looks busy and the medians may not be trustworthy" in note
    assert [line for line in result.stderr.splitlines() if line.startswith("note: timings spread widely")]

    fake_timer(monkeypatch, [1e-3, 3e-3, 0.672, 3e-3, 1e-3, 3e-3])
    text = " ".join(run_cli("compare-cell", "--repeat", "3").stdout.split())
    assert "(the machine looked busy: see the note)" in text


def test_loop_beating_nn_lstm_is_flagged_with_thread_advice(run_cli, monkeypatch):
    """nn.LSTM held up in every run (steady at 672 ms), the loop at 5.86 ms: ratio 0.01x."""
    monkeypatch.setattr(threads_module, "usable_cpus", lambda: 4)
    before = torch.get_num_threads()
    fake_timer(monkeypatch, [0.672, 5.86e-3] * 3)
    doc = run_cli("compare-cell", "--repeat", "3", "--threads", "2", "--json").json()
    assert torch.get_num_threads() == before
    (note,) = doc["notes"]
    assert note.startswith("the LSTMCell loop took 0.00872x nn.LSTM's time, though it does the same arithmetic")
    assert note.endswith("on CPU its 2 threads wait for each other when another process holds a core: try --threads 1")
    assert doc["timing"]["threads"] == 2 and doc["timing"]["steady"] is False
    fake_timer(monkeypatch, [0.672, 5.86e-3] * 3)
    (note,) = run_cli("compare-cell", "--repeat", "3", "--threads", "1", "--json").json()["notes"]
    assert "--threads" not in note


def test_repeat_0_skips_timing(run_cli):
    doc = run_cli("compare-cell", "--repeat", "0", "--json").json()
    assert doc["timing"] is None and doc["notes"] == []


def test_bench_and_compare_cell_share_the_notes():
    """One rule, one wording: bench's notes are timing's, fed bench's rows."""
    wide = Spread(1e-3, 1.1e-3, 9e-3)
    assert timing.spread_note([TimedPath("nn.LSTM", Spread(1e-3, 1e-3, 1e-3)), TimedPath("capture", wide)]) == (
        "timings spread widely (slowest run / fastest: capture 9.0x; steady is under 1.5x): the machine "
        "looks busy and the medians may not be trustworthy; rerun when it is idle"
    )
    assert timing.spread_note([TimedPath("a", wide, "x"), TimedPath("a", Spread(1, 1, 20), "y")]).count("a 20.0x at y") == 1
    assert timing.spread_note([TimedPath("a", Spread(1.0, 1.2, 1.5))]) is None
    assert timing.stall_note([(0.6, "")], "the loop", "cpu", 2) is None
    assert timing.stall_note([(0.4, "r1"), (0.1, "r2")], "the loop", "cuda:0", 2).startswith(
        "the loop took 0.1x nn.LSTM's time at r2,")
