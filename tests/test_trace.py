"""trace: the values against an independent float64 LSTM on the shipped character model (input
built here from its embedding rows), the colour of characters in the terminal, the value-code
rows without colour, --top against stds computed here, bad --unit values, widths, --plot."""

from __future__ import annotations

import io
import math
import textwrap as stdlib_textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

from tests.reference import reference_lstm

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CHAR = str(EXAMPLES / "char_lstm.pt")
TEXT = "def f(x):\n    return x + 1  # done\n\nclass A:\n    pass\n"
LONG = Path(stdlib_textwrap.__file__).read_text()[:300]


def reference_states(text: str) -> dict:
    """{(layer, direction): {"c", "h", "i", ...: (L, H) float64}}: the checkpoint read here, each
    character's embedding row looked up here, tests/reference.py's loop."""
    checkpoint = torch.load(CHAR, weights_only=True)
    vocab = checkpoint["vocab"]
    rows = torch.tensor([vocab.index(ch) for ch in text])
    x = checkpoint["embedding.weight"].double()[rows].unsqueeze(1)  # (L, 1, 32)
    lstm = torch.nn.LSTM(32, 128, num_layers=2)
    lstm.load_state_dict({k.removeprefix("lstm."): v for k, v in checkpoint.items() if k.startswith("lstm.")})
    _, _, _, captured = reference_lstm(lstm, x)
    return {key: {name: value[:, 0].detach().numpy() for name, value in gates.items()} for key, gates in captured.items()}


@pytest.fixture(scope="module")
def reference():
    return reference_states(TEXT)


def trace(run_cli, *args: str, text: str = TEXT):
    return run_cli("trace", "--weights", CHAR, "--key", "lstm", "--text", text, *args)


@pytest.mark.parametrize("unit, layer, index, quantity", [
    ("1:37", 1, 37, "c"), ("0:5:f", 0, 5, "f"), ("1:100:h", 1, 100, "h"), ("0:0:g", 0, 0, "g"),
    ("1:3:i", 1, 3, "i"), ("0:127:o", 0, 127, "o"),
])
def test_values_match_an_independent_float64_lstm(run_cli, reference, unit, layer, index, quantity):
    result = trace(run_cli, "--unit", unit, "--json")
    assert result.code == 0, result.stderr
    document = result.json()
    assert document["command"] == "trace"
    assert document["unit"] == {"layer": layer, "unit": index, "quantity": quantity, "direction": "forward"}
    assert document["text"] == TEXT
    assert document["source"]["file"] == CHAR
    want = reference[(layer, "forward")][quantity][:, index]
    np.testing.assert_allclose(document["values"], want, rtol=1e-9, atol=1e-12)
    assert document["top"] == []


def test_top_picks_the_units_of_largest_std(run_cli, reference):
    document = trace(run_cli, "--unit", "0:4:f", "--top", "5", "--json").json()
    stds = reference[(0, "forward")]["f"].std(axis=0)
    want = list(np.argsort(-stds, kind="stable")[:5])
    assert [entry["unit"] for entry in document["top"]] == want
    assert [entry["rank"] for entry in document["top"]] == [1, 2, 3, 4, 5]
    for entry, unit in zip(document["top"], want):
        assert entry["quantity"] == "f" and entry["layer"] == 0
        assert entry["std"] == pytest.approx(stds[unit], rel=1e-9)
        np.testing.assert_allclose(entry["values"], reference[(0, "forward")]["f"][:, unit], rtol=1e-9, atol=1e-12)
    assert stds[want[-1]] >= np.sort(stds)[-5]  # nothing left out is larger


def test_without_unit_the_last_layers_three_most_varying_cells(run_cli, reference):
    result = trace(run_cli, "--json")
    assert result.code == 0
    document = result.json()
    stds = reference[(1, "forward")]["c"].std(axis=0)
    want = list(np.argsort(-stds, kind="stable")[:3])
    assert [entry["unit"] for entry in document["top"]] == want
    assert document["unit"] == {"layer": 1, "unit": int(want[0]), "quantity": "c", "direction": "forward"}
    assert "last layer" in result.stderr and "std" in result.stderr


def _colour_output(width: int = 80, *args: str) -> tuple[str, object]:
    from lstm_cli.cli import spec_from_flags, SHARED_FLAGS, _default
    from lstm_cli.render.trace import render_trace
    from lstm_cli.text.trace import parse_unit, run_trace

    flags = {name: _default(name) for name, _ in SHARED_FLAGS}
    flags.update(weights=CHAR, key="lstm", text=TEXT, device="cpu")
    spec = spec_from_flags(flags, {"weights", "key", "text", "device"})
    result = run_trace(spec, parse_unit("1:37"), None)
    console = Console(file=io.StringIO(), force_terminal=True, color_system="truecolor", width=width)
    render_trace(result, console)
    return console.file.getvalue(), result


def test_each_characters_background_is_its_values_colour(reference):
    from lstm_cli.render.trace import NEWLINE, rows

    output, result = _colour_output()
    values = reference[(1, "forward")]["c"][:, 37]
    bound = np.abs(values).max()
    lines = Text.from_ansi(output).split("\n")
    plain = [line.plain for line in lines]
    legend = next(k for k, line in enumerate(plain) if line.startswith("colour:"))
    first = next(k for k in range(legend, len(plain)) if plain[k].startswith("def f("))  # the legend may wrap
    text_rows = rows(TEXT, 80)
    console = Console(width=80)
    checked = 0
    for r, row in enumerate(text_rows):
        line = lines[first + r]
        for x, k in enumerate(row):
            assert line.plain[x] == (NEWLINE if TEXT[k] == "\n" else TEXT[k])
            style = line.get_style_at_offset(console, x)
            red, _, blue = style.bgcolor.triplet
            v = values[k]
            # diverging, centred at 0: red above 0, blue below, paler the nearer to 0
            if v > 0.05 * bound:
                assert red > blue, (k, v, style)
            elif v < -0.05 * bound:
                assert blue > red, (k, v, style)
            strength = abs(red - blue)
            # RdBu's ends, red (178, 24, 43) and blue (33, 102, 172), from near-white (247, 247, 247)
            assert strength == pytest.approx(abs(v) / bound * (178 - 43 if v > 0 else 172 - 33), abs=2.5), (k, v)
            checked += 1
    assert checked == len(TEXT)
    assert "\x1b[" in output  # colour codes really were written


def test_piped_output_puts_value_codes_under_each_text_row(run_cli, reference, monkeypatch):
    monkeypatch.setenv("COLUMNS", "20")
    result = trace(run_cli, "--unit", "0:5:f")
    assert result.code == 0, result.stderr
    assert "\x1b[" not in result.stdout
    lines = result.stdout.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("codes:"))
    # the legend may wrap; the text rows start with the text's first characters
    first = next(k for k in range(start, len(lines)) if lines[k].startswith("def f("))
    values = reference[(0, "forward")]["f"][:, 5]
    want = "".join(str(min(9, math.floor(v * 10))) for v in values)  # f in [0, 1]: its tenth
    shown = TEXT.replace("\n", "⏎\n").splitlines()
    text_rows, code_rows = lines[first::2], lines[first + 1::2]
    expected_rows = [chunk for line in shown for chunk in (line[i:i + 20] for i in range(0, len(line), 20))]
    assert text_rows[: len(expected_rows)] == expected_rows
    for text_row, code_row in zip(text_rows, code_rows[: len(expected_rows)]):
        assert len(code_row) == len(text_row) and code_row.isdigit()
    assert "".join(code_rows[: len(expected_rows)]) == want


def test_no_color_env_gives_code_rows_on_a_terminal(monkeypatch):
    from lstm_cli.output import make_console

    monkeypatch.setenv("NO_COLOR", "1")
    from lstm_cli.render.trace import coloured

    console = make_console()
    assert not coloured(console)


@pytest.mark.parametrize("args, message", [
    (("--unit", "2:0"), "layer 2 does not exist"),
    (("--unit", "0:128"), "unit 128 does not exist"),
    (("--unit", "0:1:x"), "neither a quantity nor a direction"),
    (("--unit", "a:b"), "--unit takes LAYER:UNIT"),
    (("--unit", "0"), "--unit takes LAYER:UNIT"),
    (("--unit", "0:1:c:backward"), "no backward direction"),
    (("--unit", "0:1:c:forward:x"), "--unit takes LAYER:UNIT"),
    (("--top", "0"), "--top must be between 1 and 128"),
    (("--top", "129"), "--top must be between 1 and 128"),
    (("--plot", "out.txt"), "--plot file must end in .png"),
])
def test_bad_flags_exit_2_with_one_line(run_cli, args, message):
    result = trace(run_cli, *args)
    assert result.code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_random_input_is_refused(run_cli):
    result = run_cli("trace", "--seq-len", "5")
    assert result.code == 2
    assert result.stderr.strip().splitlines() == ["lstm-cli: error: trace colours the characters of --text or --text-file: give one"]


@pytest.mark.parametrize("width", [60, 80, 200])
def test_no_line_wider_than_the_terminal(run_cli, monkeypatch, width):
    monkeypatch.setenv("COLUMNS", str(width))
    result = trace(run_cli, "--top", "2", "--unit", "1:0:g", text=LONG)
    assert result.code == 0, result.stderr
    too_wide = [line for line in result.stdout.splitlines() if cell_len(line) > width]
    assert not too_wide
    assert "…" not in result.stdout
    output, _ = _colour_output(width)
    assert all(cell_len(line) <= width for line in Text.from_ansi(output).plain.splitlines())


def test_shipped_model_on_300_characters_of_a_stdlib_file(run_cli, tmp_path, reference):
    path = tmp_path / "head.py"
    path.write_text(LONG)
    result = run_cli("trace", "--weights", CHAR, "--key", "lstm", "--text-file", str(path), "--json")
    assert result.code == 0, result.stderr
    document = result.json()
    assert len(document["values"]) == 300 and len(document["text"]) == 300
    assert all(math.isfinite(v) for v in document["values"])
    assert document["config"]["input_source"].startswith("text of 300 characters")
    want = reference_states(LONG)[(1, "forward")]["c"][:, document["unit"]["unit"]]
    np.testing.assert_allclose(document["values"], want, rtol=1e-9, atol=1e-12)


def test_plot_writes_a_figure_and_says_when_it_cut_the_text(run_cli, tmp_path, monkeypatch):
    import lstm_cli.render.trace as render_trace

    monkeypatch.setattr(render_trace, "PLOT_MAX_CHARS", 20)
    target = tmp_path / "trace.png"
    result = trace(run_cli, "--unit", "0:3", "--plot", str(target), "--json")
    assert result.code == 0, result.stderr
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    document = result.json()
    assert document["plot"] == str(target) and document["plot_truncated"] == 20
    assert f"first 20 of {len(TEXT)} characters" in result.stderr
    figure = render_trace.trace_figure(trace_result_for_plot())
    glyphs = figure.axes[0].collections[0]  # every character of the panel in one collection
    assert len(glyphs.get_offsets()) == 20 and len(glyphs.get_paths()) == 20


def test_a_long_trace_plot_is_wrapped_to_a_sane_shape_and_its_glyphs_sit_on_their_cells(monkeypatch):
    """3,000 characters of code (short lines) were one panel 30 inches tall (a 1010 x 8520 image,
    2.5 s a panel): the rows now flow in side-by-side blocks, about 3:1 a panel."""
    import lstm_cli.render.trace as render_trace
    from lstm_cli.render.trace import BLOCK_GAP, glyph, rows

    text = "".join(f"    line {k}: x = {k} * 2\n" for k in range(140))[:3000]
    result = trace_result_for_plot()
    result.text = text
    result.shown[0].values = [0.1] * len(text)
    figure = render_trace.trace_figure(result)
    width, height = figure.get_size_inches()
    assert 1.5 <= width / height <= 5 and height < 10
    grid = rows(text, render_trace.PLOT_COLUMNS)
    columns = max(len(row) for row in grid)
    blocks = render_trace.blocks_for(len(grid), columns)
    assert blocks > 1
    per_block = -(-len(grid) // blocks)
    offsets = figure.axes[0].collections[0].get_offsets()
    # character k at row r of the grid: column block r // per_block, its row r % per_block
    for r, row in enumerate(grid):
        for i, k in enumerate(row):
            x = (r // per_block) * (columns + BLOCK_GAP) + i
            assert tuple(offsets[k]) == (x, r % per_block), (k, glyph(text[k]))


def trace_result_for_plot():
    from lstm_cli.text.trace import TraceResult, TracedUnit

    traced = TracedUnit(0, 0, "c", "forward", [0.1] * len(TEXT), [-1.0, 1.0], 0.1, 0.0, 0.1, 0.1)
    result = TraceResult("trace", {"num_layers": 1, "input_size": 1, "hidden_size": 1, "seq_len": len(TEXT),
                                   "batch_size": 1, "seed": 0, "input_source": "text", "dtype": "float32"},
                         "cpu", "float64", {}, TEXT, traced.values, traced.scale, [], None, "")
    result.shown = [traced]
    return result
