"""gates --units: every unit's left- and right-saturated fractions against an independent float64
LSTM (tests/reference.py), padding left out; the terminal summary's counts and top units against
counts made here; JSON null without the flag; the scatter figure one point per unit and gate;
the summary whole at 60, 80 and 200 columns."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.cells import cell_len

import lstm_cli.plot as plot_module
from lstm_cli import model
from lstm_cli.cli import main
from lstm_cli.gates import GatesOptions, GateAccumulator, Thresholds, run_gates
from lstm_cli.plot import UNIT_MARKERS, units_figure
from lstm_cli.spec import LSTMSpec
from tests.reference import reference_lstm
from tests.test_gates import scaled_builder

GATES = ("i", "f", "g", "o")
SCALE = 4.0  # weights x4: gates saturate often, so the counts are far from all-zero
# A float32 gate and its float64 reference may fall on different sides of a threshold only
# when they lie this close to it; such values are counted as ambiguous, never as an error.
NEAR = 1e-5
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def scaled(monkeypatch, scale: float = SCALE) -> None:
    monkeypatch.setattr(model, "build_lstm", scaled_builder(scale))


def reference_units(spec: LSTMSpec, thresholds: Thresholds, scale: float = SCALE) -> dict:
    """{(layer, direction): {gate: (left counts, right counts, ambiguous counts, valid pairs)}}
    from tests/reference.py's float64 loop on the module and input the command builds."""
    placement = model.Placement(torch.device("cpu"), torch.float32)
    lstm = scaled_builder(scale)(spec, placement)
    with torch.no_grad():
        x = model.make_input(spec, placement)
        assert not spec.batch_first and not spec.unbatched
        _, _, _, captured = reference_lstm(lstm, x, spec.lengths)
    lengths = np.array(spec.lengths or [spec.seq_len] * spec.batch_size)
    valid = np.arange(spec.seq_len)[:, None] < lengths[None, :]  # (L, N)
    out = {}
    for key, tensors in captured.items():
        per_gate = {}
        for gate in GATES:
            low, high = thresholds.for_gate(gate)
            values = tensors[gate].numpy()[valid]  # (valid pairs, H): padding never counts
            near = (np.abs(values - low) < NEAR) | (np.abs(values - high) < NEAR)
            per_gate[gate] = ((values < low).sum(0), (values > high).sum(0), near.sum(0), int(valid.sum()))
        out[key] = per_gate
    return out


@pytest.mark.parametrize("flags", [
    dict(bidirectional=True, num_layers=2, lengths=(9, 4, 6), seq_len=9, batch_size=3),
    dict(num_layers=3, hidden_size=7, input_size=5, seq_len=12, batch_size=2),
])
@pytest.mark.parametrize("method", ["loop", "recompute"])
def test_unit_fractions_equal_the_float64_reference_over_valid_steps(monkeypatch, flags, method):
    spec = LSTMSpec(**flags)
    thresholds = Thresholds(0.2, 0.85, -0.7, 0.95)  # not the defaults: the flags reach the counts
    scaled(monkeypatch)
    result = run_gates(spec, GatesOptions(thresholds=thresholds, method=method, units=True))
    expected = reference_units(spec, thresholds)
    assert len(result.layers) == len(expected)
    seen_saturated = 0
    for entry in result.layers:
        for gate in GATES:
            left, right, near, pairs = expected[(entry.layer, entry.direction)][gate]
            got = entry.units[gate]
            assert len(got.left_saturated) == len(got.right_saturated) == spec.hidden_size
            got_left = np.array(got.left_saturated) * pairs
            got_right = np.array(got.right_saturated) * pairs
            assert np.all(np.abs(got_left - np.round(got_left)) < 1e-9)  # whole counts over valid pairs
            assert np.all(np.abs(got_left - left) <= near), (entry.layer, entry.direction, gate)
            assert np.all(np.abs(got_right - right) <= near), (entry.layer, entry.direction, gate)
            # the gate-level fractions are the units' mean: the same counts
            assert np.mean(got.left_saturated) == pytest.approx(entry.gates[gate].left_saturated, abs=1e-12)
            assert np.mean(got.right_saturated) == pytest.approx(entry.gates[gate].right_saturated, abs=1e-12)
            seen_saturated += int((left > 0).sum() + (right > 0).sum())
    assert seen_saturated > 0  # the test would be empty with nothing saturated


def test_padding_is_not_counted_even_where_a_zero_gate_would_be_left_saturated(monkeypatch):
    # Past its length a sequence's captured i, f, o would read as 0 (below 0.1): left-saturated
    # if padding counted. The reference zeroes them too; its counts over valid steps only must
    # match, and a count over all steps must not.
    spec = LSTMSpec(num_layers=1, lengths=(10, 2, 1), seq_len=10, batch_size=3)
    scaled(monkeypatch)
    result = run_gates(spec, GatesOptions(units=True))
    expected = reference_units(spec, Thresholds())
    left, _, near, pairs = expected[(0, "forward")]["i"]
    assert pairs == 13
    got = np.array(result.layers[0].units["i"].left_saturated) * pairs
    assert np.all(np.abs(got - left) <= near)
    # every padded step's i is 0 in the reference, below 0.1: counting padding would add 17
    padded = (10 - 2) + (10 - 1)
    assert np.all(np.abs(got - (left + padded)) > near)


def test_without_units_nothing_is_counted_and_json_is_null(run_cli):
    accumulator = GateAccumulator(5, 3, Thresholds(), torch.device("cpu"))
    assert accumulator.unit_left is None and accumulator.unit_summary() is None
    doc = run_cli("gates", "--json").json()
    assert all(entry["units"] is None for entry in doc["layers"])
    assert doc["units_plot"] is None
    on = run_cli("gates", "--json", "--units", "--bidirectional").json()
    for entry in on["layers"]:
        assert set(entry["units"]) == set(GATES)
        for gate in GATES:
            assert set(entry["units"][gate]) == {"left_saturated", "right_saturated"}
            assert all(len(entry["units"][gate][side]) == 20 for side in ("left_saturated", "right_saturated"))
            assert all(0 <= v <= 1 for v in entry["units"][gate]["right_saturated"])
    assert len(on["layers"]) == 8


def summary_rows(out: str) -> list[list[str]]:
    lines = out.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("Units: of the"))
    rows, layer = [], None
    for line in lines[start + 1 :]:
        if line.startswith("fractions over"):
            break
        words = line.split()
        if len(words) >= 2 and words[0].isdigit() and words[1] in ("fwd", "bwd"):
            layer, words = f"{words[0]} {words[1]}", words[2:]
        if words and words[0] in GATES and len(words) >= 6:
            rows.append([layer, *words])
    return rows


def test_summary_counts_and_top_units_equal_counts_made_here(capsys, monkeypatch):
    scaled(monkeypatch)
    monkeypatch.setenv("COLUMNS", "200")
    args = ["gates", "--units", "--bidirectional", "--lengths", "10,6,8", "--sat-high", "0.8"]
    assert main([*args, "--json"]) == 0
    doc = __import__("json").loads(capsys.readouterr().out)
    assert main(args) == 0
    rows = summary_rows(capsys.readouterr().out)
    assert len(rows) == 4 * len(doc["layers"])
    nonzero = 0
    for k, row in enumerate(rows):
        entry, gate = doc["layers"][k // 4], GATES[k % 4]
        assert row[0] == f"{entry['layer']} {'fwd' if entry['direction'] == 'forward' else 'bwd'}"
        assert row[1] == gate
        right = np.array(entry["units"][gate]["right_saturated"])
        left = np.array(entry["units"][gate]["left_saturated"])
        counts = [int((right > 0.5).sum()), int((right > 0.9).sum()), int((left > 0.5).sum()), int((left > 0.9).sum())]
        assert [int(w) for w in row[2:6]] == counts, row
        order = sorted(range(len(right)), key=lambda u: (-right[u], u))[:5]
        top = [f"u{u}:{100 * right[u]:.1f}%" for u in order if right[u] > 0]
        assert row[6:] == (top or ["-"]), row
        nonzero += sum(counts) + len(top)
    assert nonzero > 0


def unit_axes(figure) -> list:
    return [ax for ax in figure.axes if ax.get_label().startswith("units ")]


def test_scatter_has_one_point_per_unit_and_gate_at_its_fractions(monkeypatch):
    spec = LSTMSpec(bidirectional=True, num_layers=3, hidden_size=6, lengths=(10, 7, 3))
    scaled(monkeypatch)
    result = run_gates(spec, GatesOptions(units=True))
    figure = units_figure(spec, result.layers, thresholds=Thresholds(), device="cpu")
    axes = unit_axes(figure)
    assert [ax.get_label() for ax in axes] == [f"units layer {e.layer} {e.direction}" for e in result.layers]
    for ax, entry in zip(axes, result.layers):
        points = ax.collections
        assert len(points) == 4
        for collection, gate in zip(points, GATES):
            offsets = np.asarray(collection.get_offsets())
            assert offsets.shape == (6, 2)
            assert np.allclose(offsets[:, 0], entry.units[gate].left_saturated)
            assert np.allclose(offsets[:, 1], entry.units[gate].right_saturated)
        assert ax.get_xlim() == (0.0, 1.0) and ax.get_ylim() == (0.0, 1.0)
        guide = ax.lines[0].get_xydata()
        assert np.allclose(guide, [[0, 1], [1, 0]])  # left + right = 1
    labels = [t.get_text() for legend in figure.legends for t in legend.get_texts()]
    assert labels == ["i (input gate)", "f (forget gate)", "g (cell candidate)", "o (output gate)"]
    markers = {str(h.get_paths()[0]) for h in figure.legends[0].legend_handles}
    assert len(markers) == len(UNIT_MARKERS)  # one marker shape per gate
    title = " ".join(figure._suptitle.get_text().split("\n"))
    assert "hidden 6, 3 layers, bidirectional" in title and "lengths 10,7,3" in title
    assert "random weights, seed 0" in title and "above 0.9" in title
    # --layers picks the panels
    assert len(unit_axes(units_figure(spec, result.layers, thresholds=Thresholds(), layers=(1,)))) == 2


def test_plot_with_units_writes_a_second_file_next_to_the_plot(run_cli, tmp_path, monkeypatch):
    written = []
    monkeypatch.setattr(plot_module, "save_figure", lambda figure, path, **kw: written.append((path, figure)))
    result = run_cli("gates", "--weights", str(EXAMPLES / "counter_lstm.pt"), "--key", "lstm",
                     "--input", str(EXAMPLES / "counter_input.npy"), "--units", "--layers", "1",
                     "--plot", str(tmp_path / "g.png"), "--json")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert [p for p, _ in written] == [tmp_path / "g.png", tmp_path / "g_units.png"]
    assert doc["plot"] == str(tmp_path / "g.png") and doc["units_plot"] == str(tmp_path / "g_units.png")
    axes = unit_axes(written[1][1])
    assert [ax.get_label() for ax in axes] == ["units layer 1 forward"]
    assert all(len(np.asarray(c.get_offsets())) == 32 for c in axes[0].collections)
    title = " ".join(written[1][1]._suptitle.get_text().split("\n"))
    assert "counter_lstm.pt" in title and "layer 1 of 2" in title
    # no --units, no second file
    written.clear()
    assert run_cli("gates", "--plot", str(tmp_path / "h.png")).code == 0
    assert [p for p, _ in written] == [tmp_path / "h.png"]


def test_units_plot_path_must_be_writable(run_cli, tmp_path):
    (tmp_path / "g_units.png").mkdir()  # a folder where the scatter would go
    result = run_cli("gates", "--units", "--plot", str(tmp_path / "g.png"))
    assert result.code == 2 and "g_units.png" in result.stderr and "is a directory" in result.stderr


CUT = re.compile(r"\d…|…\d")
CONFIGS = {
    "seed": [],
    "wide": ["--bidirectional", "--proj-size", "3", "--num-layers", "12", "--hidden-size", "8"],
    "loaded": ["--weights", str(EXAMPLES / "counter_lstm.pt"), "--key", "lstm",
               "--input", str(EXAMPLES / "counter_input.npy")],
    "lengths": ["--lengths", "10,7,3", "--hidden-size", "300", "--num-layers", "1"],
}


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_summary_is_whole_at_every_width(capsys, monkeypatch, config):
    args = ["gates", "--units", *CONFIGS[config]]
    if config in ("seed", "lengths"):  # scaled, the 12-layer stack's checks could not pass
        scaled(monkeypatch)
    monkeypatch.setenv("COLUMNS", "200")
    assert main([*args, "--json"]) == 0
    doc = __import__("json").loads(capsys.readouterr().out)
    for width in (60, 80, 200):
        monkeypatch.setenv("COLUMNS", str(width))
        assert main(args) == 0
        out = capsys.readouterr().out
        assert not CUT.search(out), f"{width} columns: a number was cut:\n{out}"
        assert all(cell_len(line) <= width for line in out.splitlines()), out
        section = out[out.index("Units: of the") : out.index("fractions over")]
        words = section.split()
        for entry in doc["layers"]:  # every top unit shows whole, with its fraction
            for gate in GATES:
                right = entry["units"][gate]["right_saturated"]
                best = max(range(len(right)), key=lambda u: (right[u], -u))
                if right[best] > 0:
                    assert f"u{best}:{100 * right[best]:.1f}%" in words, (width, entry["layer"], gate)
