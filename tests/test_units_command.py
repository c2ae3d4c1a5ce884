"""units: the text's features against lists computed by hand; every r against numpy.corrcoef of
unit_states' values; a planted unit (weights built so that its cell state is bracket depth
times tanh(0.5)) found as the best unit for bracket_depth; the plain sentence when nothing
reaches the threshold; tables whole at 60, 80 and 200 columns; and the shipped character model
on a held-out stdlib file in a few seconds."""

from __future__ import annotations

import json
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.cells import cell_len
from torch import nn

from lstm_cli.cli import _default, SHARED_FLAGS, spec_from_flags
from lstm_cli.text.features import FEATURES, text_features
from lstm_cli.text.unit_states import unit_states

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "examples" / "char_lstm.pt"


def feature_lists(text: str) -> dict[str, list[int]]:
    return {name: [int(v) for v in values] for name, values in text_features(text).items()}


# -- (1) features by hand -----------------------------------------------------------------------


def test_strings_with_escapes_and_brackets_inside_them():
    text = 'x = "a\\"(" + f(1)'
    got = feature_lists(text)
    #        x     =     "  a  \  "  (  "     +     f  (  1  )
    assert got["in_string"] == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert got["bracket_depth"] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0]
    assert got["is_punct"] == [0, 0, 1, 0, 1, 0, 1, 1, 1, 1, 0, 1, 0, 0, 1, 0, 1]
    assert got["is_digit"] == [0] * 15 + [1, 0]
    assert got["is_space"] == [0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0]


def test_nested_brackets_and_a_closing_bracket_at_depth_zero():
    got = feature_lists("a([{b}]c))(")
    assert got["bracket_depth"] == [0, 1, 2, 3, 3, 2, 1, 1, 0, 0, 1]
    assert got["in_string"] == [0] * 11
    assert got["column"] == list(range(11))


def test_comments_with_quotes_open_no_string():
    text = "a = 'b' # it's (x\nc\"d\""
    got = feature_lists(text)
    #       a     =     '  b  '     #     i  t  '  s     (  x  \n c  "  d  "
    assert got["in_comment"] == [0] * 8 + [1] * 9 + [0, 0, 0, 0, 0]
    assert got["in_string"] == [0, 0, 0, 0, 1, 1, 1] + [0] * 11 + [0, 1, 1, 1]
    assert got["bracket_depth"] == [0] * 22  # the ( is in the comment
    assert got["column"] == list(range(18)) + [0, 1, 2, 3]


def test_hash_inside_a_string_and_an_unclosed_string_ending_at_its_line():
    text = "s = '#x\ny"
    got = feature_lists(text)
    assert got["in_comment"] == [0] * 9
    assert got["in_string"] == [0, 0, 0, 0, 1, 1, 1, 0, 0]


def test_triple_quoted_strings_span_lines_and_keep_single_quotes_inside():
    text = 'a"""b\n"c"\n"""d'
    got = feature_lists(text)
    #                         a  "  "  "  b  \n "  c  "  \n "  "  "  d
    assert got["in_string"] == [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]
    assert got["column"] == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 0, 1, 2, 3]


def test_indentation_and_column_per_line():
    text = "def f():\n    if x:\n        y = [1,\n  2]\n\nz"
    got = feature_lists(text)
    lines = text.split("\n")
    want_indent, want_column = [], []
    for k, line in enumerate(lines):
        n = len(line) + (k < len(lines) - 1)
        want_indent += [len(line) - len(line.lstrip(" "))] * n
        want_column += list(range(n))
    # by hand: 0 for "def f():\n", 4 for the if line, 8 for "y = [1,", 2 for "  2]", 0, 0
    assert want_indent == [0] * 9 + [4] * 10 + [8] * 16 + [2] * 5 + [0] + [0]
    assert got["indent"] == want_indent
    assert got["column"] == want_column
    assert got["bracket_depth"][text.index("[")] == 1 and got["bracket_depth"][text.index("]")] == 0
    assert got["bracket_depth"][text.index("(")] == 1 and got["bracket_depth"][text.index(")")] == 0


def test_character_classes():
    got = feature_lists("aZ9 _é\t!")
    assert got["is_letter"] == [1, 1, 0, 0, 0, 1, 0, 0]
    assert got["is_upper"] == [0, 1, 0, 0, 0, 0, 0, 0]
    assert got["is_digit"] == [0, 0, 1, 0, 0, 0, 0, 0]
    assert got["is_space"] == [0, 0, 0, 1, 0, 0, 1, 0]
    assert got["is_punct"] == [0, 0, 0, 0, 1, 0, 0, 1]
    assert list(text_features("ab")) == list(FEATURES)


# -- models with a vocabulary ------------------------------------------------------------------


def save_model(path: Path, lstm: nn.LSTM, vocab: list[str]) -> Path:
    torch.save({**{k: v.detach().clone() for k, v in lstm.state_dict().items()}, "vocab": vocab}, path)
    return path


def random_model(folder: Path, vocab: list[str], hidden: int = 5, layers: int = 2, bidirectional: bool = True,
                 seed: int = 0) -> Path:
    torch.manual_seed(seed)
    lstm = nn.LSTM(len(vocab), hidden, num_layers=layers, bidirectional=bidirectional)
    return save_model(folder / "random.pt", lstm, vocab)


def spec_for(weights: Path, text: str):
    flags = {name: _default(name) for name, _ in SHARED_FLAGS}
    flags.update(weights=str(weights), text=text)
    return spec_from_flags(flags, {"weights", "text"})


# -- (2) r against numpy.corrcoef ----------------------------------------------------------------


def test_every_r_is_numpys_corrcoef_of_unit_states(tmp_path, run_cli):
    vocab = list("ab( )\n'#")
    text = "a (b 'a(' b)\n# a)b\n((ab) ' '\n  a(b)"
    weights = random_model(tmp_path, vocab)
    result = run_cli("units", "--weights", str(weights), "--text", text, "--top", "40", "--json")
    assert result.code == 0, result.stderr
    document = result.json()
    assert list(document) == ["command", "config", "characters", "min_r", "top", "features", "tracks", "summary",
                              "notes", "passed", "checks", "source"]
    assert document["passed"] is True and document["checks"]  # the unit values, against PyTorch's cell
    states = unit_states(spec_for(weights, text)).values
    features = text_features(text)
    compared = 0
    for name in FEATURES:
        entry = document["features"][name]
        assert entry["constant"] == (features[name].min() == features[name].max())
        if entry["constant"]:
            assert entry["best"] == []
            continue
        assert len(entry["best"]) == 40  # 2 layers x 2 directions x (c, h) x 5 units
        strengths = [abs(b["r"]) for b in entry["best"]]
        assert strengths == sorted(strengths, reverse=True)
        for b in entry["best"]:
            series = states[(b["layer"], b["direction"])][b["quantity"]][:, b["unit"]]
            want = np.corrcoef(series, features[name])[0, 1]
            assert b["r"] == pytest.approx(want, abs=1e-12)
            compared += 1
    assert compared >= 8 * 40
    assert document["features"]["is_upper"]["constant"] and document["features"]["is_digit"]["constant"]
    assert "constant over this text, so skipped (no correlation exists): is_digit, is_upper" in document["notes"]


# -- (3) the planted unit --------------------------------------------------------------------------


def planted_model(path: Path, hidden: int = 4) -> Path:
    """One-hot over ['(', ')', 'a']; unit 0 has i = f = sigmoid(30) (1 - 9e-14), g = tanh(+0.5)
    for '(', tanh(-0.5) for ')', 0 for 'a', and no recurrence: c0 = tanh(0.5) * depth. The other
    units have random weights."""
    torch.manual_seed(3)
    lstm = nn.LSTM(3, hidden)
    H = hidden
    with torch.no_grad():
        for gate, rows in (("i", 0), ("f", H), ("g", 2 * H), ("o", 3 * H)):
            lstm.weight_hh_l0[rows] = 0.0
            lstm.weight_ih_l0[rows] = 0.0
            lstm.bias_hh_l0[rows] = 0.0
            lstm.bias_ih_l0[rows] = 0.0 if gate == "g" else 30.0
        lstm.weight_ih_l0[2 * H] = torch.tensor([0.5, -0.5, 0.0])
    return save_model(path, lstm, ["(", ")", "a"])


def test_a_planted_bracket_counter_is_the_best_unit_for_bracket_depth(tmp_path, run_cli):
    weights = planted_model(tmp_path / "planted.pt")
    text = "(a(a)a)((a))"
    result = run_cli("units", "--weights", str(weights), "--text", text, "--top", "16", "--json")
    assert result.code == 0, result.stderr
    document = result.json()
    depth = [1, 1, 2, 2, 1, 1, 0, 1, 2, 2, 1, 0]
    assert text_features(text)["bracket_depth"].tolist() == depth
    c0 = unit_states(spec_for(weights, text)).unit(0, 0, "c")
    np.testing.assert_allclose(c0, np.tanh(0.5) * np.array(depth), atol=1e-11)  # the plant took
    best = document["features"]["bracket_depth"]["best"]
    assert (best[0]["layer"], best[0]["direction"], best[0]["unit"], best[0]["quantity"]) == (0, "forward", 0, "c")
    assert best[0]["r"] > 0.999
    others = [b for b in best if b["unit"] != 0]
    assert len(best) == 8 and len(others) == 6  # 4 units x (c, h), unit 0 c and h first
    assert all(abs(b["r"]) < 0.95 for b in others)
    assert {"feature": "bracket_depth", "layer": 0, "direction": "forward", "unit": 0, "quantity": "c",
            "r": best[0]["r"]} in document["tracks"]
    assert document["tracks"][0]["r"] == best[0]["r"]  # strongest first
    assert "0:0:c with bracket_depth" in document["summary"]
    # The table says it too.
    text_run = run_cli("units", "--weights", str(weights), "--text", text)
    assert text_run.code == 0
    row = next(line for line in text_run.stdout.splitlines() if "bracket_depth" in line)
    assert "0:0:c" in row and f"{best[0]['r']:.3f}" in row


# -- (4) nothing tracks ----------------------------------------------------------------------------


def test_a_random_model_below_the_threshold_gets_the_plain_sentence(tmp_path, run_cli):
    vocab = list("ab( )\n")
    text = "ab (a b)\n(ba) a\n a(b (a)) b\nab a(b)\n" * 3
    weights = random_model(tmp_path, vocab, hidden=4, layers=1, bidirectional=False, seed=1)
    result = run_cli("units", "--weights", str(weights), "--text", text, "--min-r", "0.999", "--json")
    assert result.code == 0, result.stderr
    document = result.json()
    strongest = max(abs(b["r"]) for f in document["features"].values() for b in f["best"])
    assert strongest < 0.999  # what makes this the nothing-tracks case
    assert document["tracks"] == []
    assert document["summary"].startswith("No unit tracks any feature: no |r| reaches 0.999")
    assert "r = " in document["summary"]
    shown = run_cli("units", "--weights", str(weights), "--text", text, "--min-r", "0.999")
    assert "No unit tracks any feature" in shown.stdout
    # The same text at the default threshold names what reaches it, and tracks lists only those.
    default = run_cli("units", "--weights", str(weights), "--text", text, "--json").json()
    assert all(abs(t["r"]) >= 0.5 for t in default["tracks"])
    listed = [b for f in default["features"].values() for b in f["best"] if abs(b["r"]) >= 0.5]
    assert len(default["tracks"]) == len(listed)


# -- (5) widths ----------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [60, 80, 200])
def test_no_line_wider_than_the_terminal_and_every_r_whole(tmp_path, run_cli, monkeypatch, width):
    vocab = list("ab( )\n'#")
    text = "a (b 'a(' b)\n# a)b\n((ab) ' '\n  a(b)" * 4
    weights = random_model(tmp_path, vocab)
    document = run_cli("units", "--weights", str(weights), "--text", text, "--json").json()
    monkeypatch.setenv("COLUMNS", str(width))
    result = run_cli("units", "--weights", str(weights), "--text", text)
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(cell_len(line) for line in lines) <= width
    for name, entry in document["features"].items():
        for b in entry["best"]:
            assert f"{b['r']:.3f}" in result.stdout
    assert document["summary"].split(":")[0].split()[0] in result.stdout


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    ([], "give --text or --text-file"),
    (["--text", "ab", "--top", "0"], "--top must be between 1 and 1000"),
    (["--text", "ab", "--min-r", "1.5"], "--min-r must be between 0 and 1"),
])
def test_usage_errors_are_one_line_exit_2(tmp_path, run_cli, args, message):
    weights = random_model(tmp_path, list("ab"), layers=1, bidirectional=False)
    result = run_cli("units", "--weights", str(weights), *args)
    assert result.code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


# -- (6) the shipped model on held-out text ---------------------------------------------------------


def test_the_shipped_model_on_2000_characters_of_held_out_textwrap(tmp_path, run_cli):
    source = Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py"
    if not source.exists():
        pytest.skip("no textwrap.py in this Python's stdlib")
    sample = tmp_path / "textwrap_head.py"
    sample.write_text(source.read_text(encoding="utf-8")[:2000], encoding="utf-8")
    start = time.perf_counter()
    result = run_cli("units", "--weights", str(SHIPPED), "--key", "lstm", "--text-file", str(sample), "--json")
    elapsed = time.perf_counter() - start
    assert result.code == 0, result.stderr
    assert elapsed < 30, f"{elapsed:.1f} s"
    document = result.json()
    assert document["characters"] == 2000
    assert set(document["features"]) == set(FEATURES)
    for entry in document["features"].values():
        assert entry["constant"] or len(entry["best"]) == 3
        for b in entry["best"]:
            assert 0 <= b["layer"] < 2 and 0 <= b["unit"] < 128 and b["quantity"] in ("c", "h")
            assert -1 <= b["r"] <= 1
    assert json.loads(json.dumps(document)) == document
