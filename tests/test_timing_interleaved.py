"""timing.interleaved_seconds: round-robin order and counts (no wall-clock assertions)."""

import torch

from lstm_cli.timing import interleaved_seconds


def test_runs_round_robin_after_warmup():
    calls = []
    runs = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    times = interleaved_seconds(runs, torch.device("cpu"), repeat=3, warmup=2)
    assert calls == ["a", "b"] * 5
    assert {name: len(t) for name, t in times.items()} == {"a": 3, "b": 3}
    assert all(t >= 0 for ts in times.values() for t in ts)
