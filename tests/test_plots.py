"""--plot figures: titles that say what ran (sizes, seq-len, batch, dtype, weights, input), padding
in a colour no value uses with a legend entry, fixed or per-panel colour ranges, .svg and .pdf
besides .png, --layers, and labels that stay readable at 12 layers and at 2000 steps.

The figures are inspected as matplotlib objects (titles, meshes, colour limits, text boxes), not
as pixels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lstm_cli import plot as plot_module
from lstm_cli.spec import LSTMSpec

pytest.importorskip("matplotlib")

from lstm_cli.gates import GatesOptions, run_gates
from lstm_cli.gradients import run_gradients
from lstm_cli.plot import (
    MAX_STEP_COLUMNS,
    PADDING_COLOR,
    PADDING_LABEL,
    gates_figure,
)
from lstm_cli.render.gradients_plot import gradients_figure

SMALL = ["--input-size", "4", "--hidden-size", "3", "--num-layers", "2", "--seq-len", "6", "--batch-size", "2"]
PNG = b"\x89PNG\r\n\x1a\n"


def synthetic(spec: LSTMSpec, sequence: int = 0, seed: int = 0) -> dict:
    """What run_gates hands plot_gates: per (layer, direction) one sequence's gates and c,
    NaN past the sequence's length."""
    generator = torch.Generator().manual_seed(seed)
    T, H = spec.seq_len, spec.hidden_size
    length = spec.lengths[sequence] if spec.lengths else T
    kept = {}
    for layer in range(spec.num_layers):
        for direction in spec.directions():
            gates = torch.rand(T, 4, H, generator=generator)
            gates[:, 2] = gates[:, 2] * 2 - 1  # g in [-1, 1]
            c = (torch.rand(T, H, generator=generator) * 2 - 1) * (layer + 1)  # |c| grows with the layer
            gates[length:], c[length:] = math.nan, math.nan
            kept[(layer, direction)] = {"gates": gates, "c": c}
    return kept


def heat_axes(figure) -> list:
    """The heatmap panels (axes with a mesh), in row-major order."""
    return [ax for ax in figure.axes if ax.get_label().startswith("heatmap ")]


def meshes(figure) -> list:
    return [ax.collections[0] for ax in heat_axes(figure)]


def colorbar_axes(figure) -> list:
    return [ax for ax in figure.axes if ax.get_label().startswith("<colorbar>")]


def panel_rows(figure) -> list[str]:
    """The row labels ("layer 0 forward") of the first column."""
    return [" ".join(ax.get_ylabel().split("\n")[:2]) for ax in heat_axes(figure) if ax.get_ylabel()]


def legend_texts(figure) -> list[str]:
    return [text.get_text() for legend in figure.legends for text in legend.get_texts()]


def overlapping(texts) -> list[tuple[str, str]]:
    """Pairs of visible, non-empty texts whose drawn boxes overlap."""
    texts = [t for t in texts if t.get_visible() and t.get_text().strip()]
    boxes = [(t.get_text(), t.get_window_extent()) for t in texts]
    return [(a, b) for i, (a, box_a) in enumerate(boxes) for b, box_b in boxes[i + 1:] if box_a.overlaps(box_b)]


def drawn(figure):
    figure.canvas.draw()
    return figure


# -- titles: what ran ---------------------------------------------------------------------------


def test_gates_title_has_the_configuration_and_random_sources():
    spec = LSTMSpec(input_size=5, hidden_size=3, num_layers=2, seq_len=7, batch_size=2, bidirectional=True,
                    proj_size=2, dtype="float64", seed=11)
    title = gates_figure(spec, synthetic(spec), 1, device="cpu")._suptitle.get_text()
    flat = " ".join(title.split("\n"))
    for needle in ("sequence 1 (of 2)", "input 5", "hidden 3", "2 layers", "bidirectional", "proj 2",
                   "seq-len 7", "batch 2", "float64 on cpu", "random weights, seed 11",
                   "input random N(0, 1) from seed 11", "colour: fixed range"):
        assert needle in flat, (needle, title)


def test_gates_title_names_the_weights_file_its_format_and_the_input_file():
    spec = LSTMSpec(input_size=4, hidden_size=3, num_layers=1, seq_len=5, batch_size=1, weights="model.pt",
                    input="x.npy", source={"file": "model.pt", "format": "PyTorch state_dict (torch.save)",
                                           "key": "lstm", "conversions": [], "notes": [],
                                           "recurrent_activation": "hard_sigmoid"})
    flat = " ".join(gates_figure(spec, synthetic(spec), 0)._suptitle.get_text().split("\n"))
    assert "weights model.pt (PyTorch state_dict (torch.save), key 'lstm')" in flat
    assert "gates i, f, o hard_sigmoid" in flat
    assert "input file x.npy" in flat
    assert "random weights" not in flat


def test_gates_plot_from_the_command_line_titles_the_loaded_model(run_cli, tmp_path, monkeypatch):
    drawn_figures = []
    monkeypatch.setattr(plot_module, "save_figure", lambda figure, path, **kw: drawn_figures.append(figure))
    result = run_cli("gates", "--weights", "examples/counter_lstm.pt", "--input", "examples/counter_input.npy",
                     "--plot", str(tmp_path / "g.png"))
    assert result.code == 0, result.stderr
    flat = " ".join(drawn_figures[0]._suptitle.get_text().split("\n"))
    assert "weights examples/counter_lstm.pt (PyTorch state_dict (torch.save), key 'lstm')" in flat
    assert "input file examples/counter_input.npy" in flat and "seq-len 1000, batch 4" in flat
    assert "each column the mean of 5 steps" in flat  # 1000 steps drawn as 200 columns


def test_a_long_title_is_wrapped_inside_the_figure(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    long_path = "very/long/directory/" * 12 + "model.pt"  # relative: shown as given
    spec = LSTMSpec(input_size=4, hidden_size=3, num_layers=1, seq_len=5, batch_size=1, weights=long_path,
                    source={"file": long_path, "format": "PyTorch state_dict (torch.save)", "key": None,
                            "conversions": [], "notes": [], "recurrent_activation": "sigmoid"})
    figure = drawn(gates_figure(spec, synthetic(spec), 0))
    box, page = figure._suptitle.get_window_extent(), figure.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1
    assert long_path.replace("/", "") in figure._suptitle.get_text().replace("\n", "").replace("/", "")


def test_a_title_names_a_file_outside_this_folder_by_its_name_only(monkeypatch, tmp_path):
    """A figure goes into documents: /home/someone/... says nothing there (issue 24)."""
    monkeypatch.chdir(tmp_path)
    outside, inside = "/opt/models/run7/model.pt", str(tmp_path / "sub" / "weights.pt")
    for path, shown in ((outside, "weights model.pt (PyTorch"), (inside, "weights sub/weights.pt (PyTorch")):
        spec = LSTMSpec(input_size=4, hidden_size=3, num_layers=1, seq_len=5, batch_size=1, weights=path,
                        source={"file": path, "format": "PyTorch state_dict (torch.save)", "key": None,
                                "conversions": [], "notes": [], "recurrent_activation": "sigmoid"})
        title = gates_figure(spec, synthetic(spec), 0)._suptitle.get_text().replace("\n", " ")
        assert shown in title and "/opt/" not in title and str(tmp_path) not in title


def test_gradients_title_has_the_configuration_and_sources():
    spec = LSTMSpec(input_size=4, hidden_size=3, num_layers=2, seq_len=6, batch_size=2, device="cpu", seed=5)
    result = run_gradients(spec, ("rnn", "lstm"))
    figure = drawn(gradients_figure(result))
    axes = figure.axes[0]
    flat = " ".join(axes.get_title().split("\n"))
    for needle in ("loss = sum of h_n[-1]", "input 4", "hidden 3", "2 layers", "unidirectional", "seq-len 6",
                   "batch 2", "float32 on cpu", "random weights, seed 5", "input random N(0, 1) from seed 5"):
        assert needle in flat, (needle, flat)
    box, page = axes.title.get_window_extent(), figure.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1  # not cut off at the sides
    # a loaded LSTM beside random references: both are said
    result.config["source"] = {"file": "m.pt", "format": "Keras .h5", "key": None, "conversions": [],
                               "notes": [], "recurrent_activation": "sigmoid"}
    flat = " ".join(gradients_figure(result).axes[0].get_title().split("\n"))
    assert "nn.LSTM weights m.pt (Keras .h5)" in flat and "nn.RNN (tanh) random weights, seed 5" in flat


# -- padding ------------------------------------------------------------------------------------


def test_padding_is_masked_in_a_colour_no_value_uses_with_a_legend_entry():
    import matplotlib
    from matplotlib.colors import to_rgba

    spec = LSTMSpec(input_size=4, hidden_size=3, num_layers=2, seq_len=10, batch_size=3, lengths=(10, 7, 3),
                    bidirectional=True)
    figure = gates_figure(spec, synthetic(spec, sequence=2), 2)
    assert len(meshes(figure)) == 4 * 5
    for mesh in meshes(figure):
        values = mesh.get_array()
        mask = np.ma.getmaskarray(values)
        assert mask.shape == (3, 4)  # 3 units x (3 valid steps + 1 padding column)
        assert mask[:, 3].all() and not mask[:, :3].any()
        assert list(mesh.get_coordinates()[0, :, 0]) == [-0.5, 0.5, 1.5, 2.5, 9.5]  # padding: steps 3..9
        assert mesh.get_cmap().get_bad() == pytest.approx(to_rgba(PADDING_COLOR))
        hatched = [p for p in mesh.axes.patches if p.get_hatch()]
        assert len(hatched) == 1 and hatched[0].get_x() == 2.5 and hatched[0].get_width() == 7
    assert PADDING_LABEL in legend_texts(figure)
    grey = np.array(to_rgba(PADDING_COLOR)[:3])
    for name in ("viridis", "RdBu_r"):  # far from every colour either map draws
        lut = matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3]
        assert np.abs(lut - grey).sum(axis=1).min() > 0.25, name


def test_no_padding_means_no_legend():
    spec = LSTMSpec(input_size=4, hidden_size=3, num_layers=1, seq_len=5, batch_size=2)
    figure = gates_figure(spec, synthetic(spec), 0)
    assert legend_texts(figure) == []
    assert not any(np.ma.getmaskarray(mesh.get_array()).any() for mesh in meshes(figure))


def test_padding_from_a_real_run_is_masked(run_cli, tmp_path, monkeypatch):
    drawn_figures = []
    monkeypatch.setattr(plot_module, "save_figure", lambda figure, path, **kw: drawn_figures.append(figure))
    result = run_cli("gates", *SMALL[:-2], "--batch-size", "3", "--lengths", "6,4,2", "--sequence", "1",
                     "--plot", str(tmp_path / "g.png"))
    assert result.code == 0, result.stderr
    figure = drawn_figures[0]
    for mesh in meshes(figure):
        mask = np.ma.getmaskarray(mesh.get_array())
        assert mask[:, -1].all() and not mask[:, :-1].any()
    assert PADDING_LABEL in legend_texts(figure)
    assert "its length 4 of 6 steps" in figure._suptitle.get_text()


# -- colour range -------------------------------------------------------------------------------


def test_fixed_range_per_gate_with_c_symmetric_per_layer():
    """c's colours span +-max|c| of each layer: a layer with |c| 20 next to one with 400 (as in
    the shipped trained models) is not washed out by the other's range (issue 24)."""
    spec = LSTMSpec(input_size=4, hidden_size=3, num_layers=3, seq_len=5, batch_size=1)
    kept = synthetic(spec)
    kept[(2, "forward")]["c"] = kept[(2, "forward")]["c"] * 400 / kept[(2, "forward")]["c"].abs().max()
    figure = gates_figure(spec, kept, 0)
    rows = sorted(kept)
    for i, mesh in enumerate(meshes(figure)):
        bound = float(kept[rows[i // 5]]["c"].abs().max())
        expected = {0: (0, 1), 1: (0, 1), 2: (-1, 1), 3: (0, 1), 4: (-bound, bound)}[i % 5]
        assert mesh.get_clim() == pytest.approx(expected)
    assert meshes(figure)[4].get_clim()[1] < 50 and meshes(figure)[14].get_clim()[1] == pytest.approx(400)
    assert len(colorbar_axes(figure)) == 4 + 3  # one per gate column, one beside each c panel


def test_panel_range_scales_each_panel_to_its_min_and_max_with_a_colorbar_each():
    spec = LSTMSpec(input_size=4, hidden_size=3, num_layers=2, seq_len=5, batch_size=1)
    kept = synthetic(spec)
    figure = gates_figure(spec, kept, 0, color_range="panel")
    rows = sorted(kept)
    for i, mesh in enumerate(meshes(figure)):
        values = kept[rows[i // 5]]["c"] if i % 5 == 4 else kept[rows[i // 5]]["gates"][:, i % 5]
        assert mesh.get_clim() == pytest.approx((float(values.min()), float(values.max())), rel=1e-6)
        assert mesh.get_cmap().name.startswith("viridis")  # no colour that reads as 0
    assert len(colorbar_axes(figure)) == 2 * 5
    assert "each panel its own min..max" in figure._suptitle.get_text()


def test_plot_range_panel_from_the_command_line(run_cli, tmp_path, monkeypatch):
    drawn_figures = []
    monkeypatch.setattr(plot_module, "save_figure", lambda figure, path, **kw: drawn_figures.append(figure))
    result = run_cli("gates", *SMALL, "--plot", str(tmp_path / "g.png"), "--plot-range", "panel")
    assert result.code == 0, result.stderr
    assert len(colorbar_axes(drawn_figures[0])) == 2 * 5


# -- formats ------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix, magic", [(".png", PNG), (".svg", b"<?xml"), (".pdf", b"%PDF-")])
def test_gates_plot_writes_each_format(run_cli, tmp_path, suffix, magic):
    target = tmp_path / f"gates{suffix}"
    result = run_cli("gates", *SMALL, "--plot", str(target), "--json")
    assert result.code == 0, result.stderr
    data = target.read_bytes()
    assert data.startswith(magic)
    if suffix == ".svg":
        assert b"<svg" in data[:1000]
    assert result.json()["plot"] == str(target)


@pytest.mark.parametrize("suffix, magic", [(".svg", b"<?xml"), (".pdf", b"%PDF-"), (".PNG", PNG)])
def test_gradients_plot_writes_each_format(run_cli, tmp_path, suffix, magic):
    target = tmp_path / f"norms{suffix}"
    result = run_cli("gradients", *SMALL, "--plot", str(target), "--json")
    assert result.code == 0, result.stderr
    assert target.read_bytes().startswith(magic)
    assert result.json()["plot"] == str(target)


# -- --layers -----------------------------------------------------------------------------------


def test_layers_draws_that_many_rows(run_cli, tmp_path, monkeypatch):
    drawn_figures = []
    monkeypatch.setattr(plot_module, "save_figure", lambda figure, path, **kw: drawn_figures.append(figure))
    result = run_cli("gates", *SMALL[:4], "--num-layers", "4", "--bidirectional", "--layers", "2,0",
                     "--plot", str(tmp_path / "g.png"))
    assert result.code == 0, result.stderr
    figure = drawn_figures[0]
    assert panel_rows(figure) == ["layer 0 forward", "layer 0 backward", "layer 2 forward", "layer 2 backward"]
    assert len(meshes(figure)) == 4 * 5
    assert "layers 0, 2 of 4" in figure._suptitle.get_text()


def test_layers_in_run_gates_keeps_the_statistics_of_every_layer(tmp_path):
    spec = LSTMSpec(input_size=4, hidden_size=3, num_layers=3, seq_len=5, batch_size=2, device="cpu")
    result = run_gates(spec, GatesOptions(plot=tmp_path / "g.png", plot_layers=(1,)))
    assert len(result.layers) == 3  # --layers picks what is drawn, not what is measured
    assert (tmp_path / "g.png").read_bytes().startswith(PNG)


BAD = [
    (["--plot", "g.png", "--layers", "4"], "--layers: layer 4 does not exist: layers are 0 to 3 (--num-layers 4)"),
    (["--plot", "g.png", "--layers", "a"], "--layers takes layer numbers from 0 to 3, comma-separated, like 0,2"),
    (["--plot", "g.png", "--layers", ""], "--layers takes layer numbers from 0 to 3"),
    (["--plot", "g.png", "--layers", "-1"], "--layers takes layer numbers from 0 to 3"),
    (["--plot", "g.png", "--layers", "1,1"], "--layers lists layer 1 more than once"),
    (["--layers", "0"], "--layers chooses what --plot draws: add --plot"),
    (["--plot-range", "panel"], "--plot-range chooses what --plot draws: add --plot"),
    (["--plot", "g.png", "--plot-range", "auto"], "--plot-range must be fixed (each gate's own range"),
    (["--plot", "g.jpg"], "--plot file must end in .png, .svg or .pdf (got 'g.jpg')"),
    (["--num-layers", "25", "--bidirectional", "--plot", "g.png"],
     "at most 48 to stay readable, and this would be 50 (25 layers x 2 directions): pick at most 24 layers"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_plot_flags_give_one_line_and_exit_2(run_cli, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = run_cli("gates", *args)
    assert result.code == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lstm-cli: error: ") and message in lines[0], result.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_many_layers_fit_with_layers(run_cli, tmp_path, monkeypatch):
    drawn_figures = []
    monkeypatch.setattr(plot_module, "save_figure", lambda figure, path, **kw: drawn_figures.append(figure))
    result = run_cli("gates", "--input-size", "2", "--hidden-size", "2", "--seq-len", "3", "--num-layers", "60",
                     "--layers", "0,59", "--plot", str(tmp_path / "g.png"))
    assert result.code == 0, result.stderr
    assert panel_rows(drawn_figures[0]) == ["layer 0 forward", "layer 59 forward"]


def test_gradients_bad_plot_suffix_names_every_format(run_cli):
    result = run_cli("gradients", "--plot", "norms.gif")
    assert result.code == 2
    assert result.stderr.splitlines() == [
        "lstm-cli: error: --plot file must end in .png, .svg or .pdf (got 'norms.gif')"
    ]


# -- readable at 12 layers and 2000 steps -------------------------------------------------------


def _check_readable(figure) -> None:
    drawn(figure)
    page = figure.bbox
    width_in, height_in = figure.get_size_inches()
    assert height_in <= 24 and width_in <= 18
    row_labels = [ax.yaxis.label for ax in heat_axes(figure) if ax.get_ylabel()]
    assert not overlapping(row_labels)
    for label in row_labels:  # inside the figure, not cut off at the left
        assert label.get_window_extent().x0 >= page.x0 - 1
    titles = [ax.title for ax in heat_axes(figure)]
    assert not overlapping(titles)
    for ax in figure.axes:  # tick labels: few, large enough, none on top of another
        for axis in (ax.xaxis, ax.yaxis):
            labels = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
            assert len(labels) <= 8
            assert all(t.get_fontsize() >= 8 for t in labels)
            assert not overlapping(labels), [t.get_text() for t in labels]
    assert figure._suptitle.get_fontsize() >= 10


def test_twelve_layers_bidirectional_stay_readable():
    spec = LSTMSpec(input_size=4, hidden_size=20, num_layers=12, seq_len=10, batch_size=1, bidirectional=True)
    figure = gates_figure(spec, synthetic(spec), 0)
    assert len(panel_rows(figure)) == 24
    _check_readable(figure)


def test_two_thousand_steps_are_binned_and_stay_readable():
    spec = LSTMSpec(input_size=4, hidden_size=100, num_layers=2, seq_len=2000, batch_size=2, lengths=(2000, 1500))
    kept = synthetic(spec, sequence=1)
    figure = gates_figure(spec, kept, 1)
    _check_readable(figure)
    mesh = meshes(figure)[0]  # layer 0, gate i
    values = mesh.get_array()
    # 1500 valid steps in bins of 8 (the last of 4), then one padding column; 100 units in pairs
    assert values.shape == (50, 188 + 1) and 188 <= MAX_STEP_COLUMNS
    title = " ".join(figure._suptitle.get_text().split("\n"))
    assert "each column the mean of 8 steps" in title and "each row the mean of 2 units" in title
    raw = kept[(0, "forward")]["gates"][:, 0].double().numpy()
    assert values[0, 0] == pytest.approx(raw[0:8, 0:2].mean())  # the mean of its steps and units
    assert values[-1, -2] == pytest.approx(raw[1496:1500, 98:100].mean())
    assert np.ma.getmaskarray(values)[:, -1].all()
    assert list(mesh.get_coordinates()[0, -3:, 0]) == [1495.5, 1499.5, 1999.5]


def test_gradients_at_two_thousand_steps_stay_readable():
    spec = LSTMSpec(input_size=3, hidden_size=4, num_layers=1, seq_len=2000, batch_size=1, device="cpu")
    figure = drawn(gradients_figure(run_gradients(spec, ("rnn", "lstm"))))
    axes = figure.axes[0]
    low, high = axes.get_xlim()
    assert low <= 0 and high >= 1999
    for axis in (axes.xaxis, axes.yaxis):
        labels = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
        assert not overlapping(labels)
    box, page = axes.title.get_window_extent(), figure.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and box.y1 <= page.y1


def test_plotting_some_layers_keeps_only_those_layers_sequences(tmp_path, monkeypatch):
    from lstm_cli import gates as gates_module
    from lstm_cli.gates import run as gates_run

    spec = LSTMSpec(num_layers=4, device="cpu")
    kept = {}
    real = gates_run.capture_gates

    def spy(*args, **kwargs):
        kept.update(kwargs["keep_sequence"])
        return real(*args, **kwargs)

    monkeypatch.setattr(gates_run, "capture_gates", spy)
    options = GatesOptions(plot=tmp_path / "p.png", plot_layers=(1, 3))
    run_gates(spec, options)
    assert sorted(kept) == [(1, "forward"), (3, "forward")]
    every = gates_module.extra_elements(spec, GatesOptions(plot=tmp_path / "p.png"))
    some = gates_module.extra_elements(spec, options)
    assert every - some == 2 * spec.seq_len * 5 * spec.hidden_size  # two layers' sequences fewer
