"""units --select/--select-text/--select-regex and --match (LSTMVis's select and match).

Every check compares against `reference_*` below: the definition in lstm_cli/text/select.py's
docstring written out again as plain Python loops over lists (math.ceil, no numpy), sharing no
code with the module. Planted states (a unit on exactly inside string literals) check that the
definition finds what it should; the shipped character model checks the command end to end
against a float64 LSTM loop from tests/reference.py; every usage error is one line, exit 2."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.cells import cell_len
from torch import nn

from lstm_cli.errors import UsageError
from lstm_cli.render.select import fit_context
from lstm_cli.text.select import (
    analyse, match_runs, on_steps, quantize, resolve_span, select_units, threshold_steps,
)
from tests.reference import reference_lstm

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "examples" / "char_lstm.pt"


# -- the definition, once more, by hand ---------------------------------------------------------


def ref_on(v: float, t: float, side: int = 1) -> bool:
    """Side 1: q >= k. Side -1 (--sign both): q <= -k - 1."""
    q = math.ceil(100.0 * v) - 1 if v == v else -101
    q = min(99, max(-101, q))
    return q >= round(100 * t) if side == 1 else q <= -round(100 * t) - 1


def sides(values: list[list[float]], sign: str) -> list[tuple[int, int]]:
    """(unit, side) of every unit the definition considers, in its order."""
    units = range(len(values[0]))
    return [(u, 1) for u in units] + ([(u, -1) for u in units] if sign == "both" else [])


def reference_select(values: list[list[float]], a: int, b: int, t: float, margin: int,
                     sign: str = "positive") -> list[int]:
    """values[step][unit]; the units (unit sides) ON at every step of [a, b) and OFF at the margin steps."""
    steps = len(values)
    chosen = []
    for j, (u, side) in enumerate(sides(values, sign)):
        inside = all(ref_on(values[s][u], t, side) for s in range(a, b))
        around = [s for s in list(range(a - margin, a)) + list(range(b, b + margin)) if 0 <= s < steps]
        if inside and not any(ref_on(values[s][u], t, side) for s in around):
            chosen.append(j)
    return chosen


def reference_means(values, a, b, u):
    inside = [values[s][u] for s in range(a, b)]
    outside = [values[s][u] for s in range(len(values)) if not a <= s < b]
    return sum(inside) / len(inside), (sum(outside) / len(outside) if outside else None)


def reference_matches(values, selected: list[int], a: int, b: int, t: float, min_length: int = 1,
                      sign: str = "positive"):
    """Every run as (start, end, length, matched, others, score, selection), ranked."""
    steps, units = len(values), sides(values, sign)

    def on(s, j):
        return ref_on(values[s][units[j][0]], t, units[j][1])

    need = math.ceil(len(selected) / 2)
    good = [sum(on(s, j) for j in selected) >= need for s in range(steps)]
    runs, s = [], 0
    while s < steps:
        if not good[s]:
            s += 1
            continue
        c = s
        while s < steps and good[s]:
            s += 1
        d = s
        if d - c < min_length:
            continue
        r = {j for j in range(len(units)) if all(on(x, j) for x in range(c, d))}
        matched = len(r & set(selected))
        others = len(r - set(selected))
        union = len(r | set(selected))
        runs.append((c, d, d - c, matched, others, matched / union if union else 0.0, c < b and d > a))
    runs.sort(key=lambda run: (-run[3], run[4], -run[2], run[0]))
    return runs


def reference_context(text: str, start: int, end: int) -> str:
    lines = text.split("\n")
    index = text[:start].count("\n")
    line = lines[index]
    first = sum(len(x) + 1 for x in lines[:index])
    s, e = start - first, min(end - first, len(line))
    return line[:s] + "[[" + line[s:e] + ("↵" if end - first > len(line) else "") + "]]" + line[e:]


# -- planted states --------------------------------------------------------------------------------

PLANTED_SOURCE = '''def greet(name):
    message = "hello there"
    # see the notes
    if name:
        return message + ", " + name
    return 'nobody'


TITLE = "a title"
'''


def literal_insides(text: str) -> list[tuple[int, int]]:
    return [(m.start(2), m.end(2)) for m in re.finditer(r"""(["'])([^"'\n]+)\1""", text)]


def comment_insides(text: str) -> list[tuple[int, int]]:
    return [(m.start(1), m.end(1)) for m in re.finditer(r"#([^\n]*)", text)]


def planted_values(text: str, noise: int = 10, seed: int = 5) -> np.ndarray:
    """Unit 0: +0.8 exactly inside string literals, -0.8 elsewhere. Unit 1: the same and also
    inside comments. Units 2.. : uniform noise in [-1, 1]."""
    steps = len(text)
    values = np.full((steps, 2 + noise), -0.8)
    for a, b in literal_insides(text):
        values[a:b, 0] = values[a:b, 1] = 0.8
    for a, b in comment_insides(text):
        values[a:b, 1] = 0.8
    values[:, 2:] = np.random.default_rng(seed).uniform(-1, 1, size=(steps, noise))
    return values


def labels_for(units: int) -> list[tuple[int, str, int]]:
    return [(0, "forward", u) for u in range(units)]


def test_the_planted_literal_unit_is_selected_and_matches_every_other_literal_first():
    text = PLANTED_SOURCE
    literals = literal_insides(text)
    assert [text[a:b] for a, b in literals] == ["hello there", ", ", "nobody", "a title"]
    values = planted_values(text)
    span = literals[0]
    result = analyse(values, labels_for(values.shape[1]), text, span, match=True, top=100)
    assert [u.unit for u in result.selected] == [0, 1] == reference_select(values.tolist(), *span, 0.3, 1)
    for unit in result.selected:
        inside, outside = reference_means(values.tolist(), *span, unit.unit)
        assert unit.mean_inside == pytest.approx(inside, abs=1e-12) and unit.mean_outside == pytest.approx(outside)
    got = [(m.start, m.end) for m in result.matches]
    # Both planted units are on exactly inside each literal: those runs come first (matched 2),
    # then the comment, where only unit 1 is on (matched 1).
    assert sorted(got[: len(literals)]) == literals
    assert all(m.matched == 2 for m in result.matches[: len(literals)])
    assert got[len(literals)] == comment_insides(text)[0] and result.matches[len(literals)].matched == 1
    assert len(got) == len(literals) + 1 and result.runs == len(literals) + 1
    assert [m.selection for m in result.matches] == [(m.start, m.end) == span for m in result.matches]
    want = reference_matches(values.tolist(), [0, 1], *span, 0.3)
    assert [(m.start, m.end, m.length, m.matched, m.others, m.selection) for m in result.matches] == \
        [w[:5] + (w[6],) for w in want]
    assert [m.score for m in result.matches] == pytest.approx([w[5] for w in want])
    for m in result.matches:
        assert m.context == reference_context(text, m.start, m.end)
    assert result.matches[0].context.count("[[") == 1
    # Top keeps the first N of the same ranking.
    top2 = analyse(values, labels_for(values.shape[1]), text, span, match=True, top=2)
    assert [(m.start, m.end) for m in top2.matches] == got[:2] and top2.runs == len(got)


def test_a_unit_low_inside_literals_is_found_only_with_sign_both():
    # The planted literal unit negated: -0.8 inside string literals, +0.8 elsewhere (a trained
    # unit's sign is a convention: this is the same detector).
    text = PLANTED_SOURCE
    literals = literal_insides(text)
    values = planted_values(text)
    values[:, 0] *= -1
    values[:, 1] = np.random.default_rng(9).uniform(-0.2, 0.2, size=len(text))  # never on at 0.3
    span = literals[0]
    positive = analyse(values, labels_for(values.shape[1]), text, span, match=True, top=100)
    assert positive.selected == [] and "--sign both" in positive.summary
    both = analyse(values, labels_for(values.shape[1]), text, span, match=True, top=100, sign="both")
    chosen = reference_select(values.tolist(), *span, 0.3, 1, "both")
    assert [(u.unit, u.sign) for u in both.selected] == [sides(values.tolist(), "both")[j] for j in chosen]
    assert (0, -1) in [(u.unit, u.sign) for u in both.selected] and both.units == 2 * values.shape[1]
    low = next(u for u in both.selected if u.unit == 0)
    assert low.mean_inside == pytest.approx(-0.8) and low.mean_outside > 0  # of v itself
    assert [(u.unit, u.sign) for u in both.selected] == [(0, -1)]  # no noise unit is on at all 11 steps
    assert sorted((m.start, m.end) for m in both.matches) == literals  # and it is on in every literal only
    want = reference_matches(values.tolist(), chosen, *span, 0.3, sign="both")
    assert [(m.start, m.end, m.matched, m.others) for m in both.matches] == [w[:2] + w[3:5] for w in want]


@pytest.mark.parametrize("sign, threshold", [("negative", 0.3), ("both", -0.1), ("", 0.3)])
def test_a_bad_sign_is_one_usage_error(sign, threshold):
    with pytest.raises(UsageError, match="--sign"):
        analyse(np.zeros((3, 1)), labels_for(1), "abc", (0, 1), sign=sign, threshold=threshold)


def test_selecting_a_comment_selects_only_the_comment_unit():
    text = PLANTED_SOURCE
    values = planted_values(text)
    span = comment_insides(text)[0]
    result = analyse(values, labels_for(values.shape[1]), text, span, match=True)
    assert [u.unit for u in result.selected] == [1]
    # Unit 1 is on inside literals too: they match with matched 1 and unit 0 among the others.
    assert {(m.start, m.end) for m in result.matches} == set(literal_insides(text) + [span])


@pytest.mark.parametrize("margin, before, after, selected", [
    (1, False, False, True),   # off on both sides
    (1, True, False, False),   # on one step before the span
    (0, True, False, True),    # margin 0: no condition around
    (1, False, True, False),   # on at the step right after
    (2, False, False, False),  # step a - 2 is on (planted below): margin 2 sees it
])
def test_margin_semantics_at_the_edges(margin, before, after, selected):
    values = [-0.5] * 12
    a, b = 5, 8
    for s in range(a, b):
        values[s] = 0.8
    values[a - 2] = 0.8  # two steps before: only margin 2 reaches it
    if before:
        values[a - 1] = 0.8
    if after:
        values[b] = 0.8
    column = np.array(values)[:, None]
    got = select_units(on_steps(quantize(column), 30), a, b, margin)
    assert (list(got) == [0]) == selected
    assert reference_select(column.tolist(), a, b, 0.3, margin) == ([0] if selected else [])


def test_a_span_at_the_text_edges_has_no_margin_steps_outside_it():
    column = np.array([0.8, 0.8, 0.8, -0.5, 0.8])[:, None]
    on = on_steps(quantize(column), 30)
    assert list(select_units(on, 0, 3, 1)) == [0]  # nothing before step 0; step 3 is off
    assert list(select_units(on, 0, 3, 2)) == []  # step 4 is on
    assert list(select_units(on, 4, 5, 1)) == [0]  # nothing after the last step
    result = analyse(column, labels_for(1), "abcde", (0, 5), threshold=-0.9)
    assert result.selected[0].mean_outside is None  # no other steps
    assert result.selected[0].mean_inside == pytest.approx(np.mean(column))


def test_quantisation_at_the_threshold():
    # v = t = 0.3 is off (v > t is false): 100 * 0.3 is exactly 30.0 in float64, q = 29 < k = 30;
    # 0.3 + 1e-9 is on (q = 30). The definition's "except within 1e-15 of the grid": 100 * 0.28 is
    # 28.000000000000004, so v = t = 0.28 is on; the browser's float64 arithmetic does the same.
    assert 100.0 * 0.3 == 30 and 100.0 * 0.28 > 28
    values = [0.3, 0.3 + 1e-9, 0.3 - 1e-9, 0.5, 0.5 + 1e-9, 1.0, -1.0, 1.5, -7.0, float("nan"), 0.28,
              0.0, -0.015, -0.01]
    q = quantize(values)
    assert q.dtype == np.int8
    assert q.tolist() == [29, 30, 29, 49, 50, 99, -101, 99, -101, -101, 28, -1, -2, -2]
    assert threshold_steps(0.3) == 30 and threshold_steps(0.5) == 50 and threshold_steps(0.28) == 28
    on = on_steps(q, threshold_steps(0.3)).tolist()
    assert on[:3] == [False, True, False]
    assert [ref_on(v, 0.3) for v in values[:3]] == on[:3]
    assert on_steps(q, threshold_steps(0.5)).tolist()[3:5] == [False, True]
    assert on_steps(q, threshold_steps(0.28)).tolist()[10] and ref_on(0.28, 0.28)
    assert on_steps(q, threshold_steps(-0.01)).tolist()[-3:] == [True, False, False]  # 0 > -0.01; not -0.015, -0.01
    assert [ref_on(v, -0.01) for v in values[-3:]] == [True, False, False]


@pytest.mark.parametrize("t, k", [(0.3, 30), (-0.99, -99), (0.99, 99), (0.25, 25), (0, 0), (-0.07, -7)])
def test_threshold_steps(t, k):
    assert threshold_steps(t) == k


@pytest.mark.parametrize("t", [0.305, 1.0, -1.0, 0.995, float("nan"), 2])
def test_threshold_steps_refuses(t):
    with pytest.raises(UsageError):
        threshold_steps(t)


def test_ranking_matched_then_others_then_length_then_start():
    # Units 0 and 1 are selected, unit 2 is not; need = 1.
    on = np.zeros((17, 3), dtype=bool)
    on[0:2, 0] = True                # matched 1
    on[3:5, 0:2] = True              # matched 2, others 0, length 2, start 3
    on[6:9, 0:3] = True              # matched 2, others 1, length 3
    on[10:13, 0:2] = True            # matched 2, others 0, length 3
    on[14:16, 0:2] = True            # matched 2, others 0, length 2, start 14
    runs, total = match_runs(on, [0, 1], (3, 5))
    assert [(r.start, r.end) for r in runs] == [(10, 13), (3, 5), (14, 16), (6, 9), (0, 2)]
    assert [r.score for r in runs] == [1.0, 1.0, 1.0, 2 / 3, 0.5]
    assert [r.selection for r in runs] == [False, True, False, False, False] and total == 5
    assert [(r.start, r.end) for r in match_runs(on, [0, 1], (3, 5), top=2)[0]] == [(10, 13), (3, 5)]
    assert [(r.start, r.end) for r in match_runs(on, [0, 1], (3, 5), min_length=3)[0]] == [(10, 13), (6, 9)]
    values = np.where(on, 0.8, -0.8)
    assert [(r.start, r.end, r.length, r.matched, r.others) for r in runs] == \
        [w[:5] for w in reference_matches(values.tolist(), [0, 1], 3, 5, 0.3)]


def test_a_run_needs_half_the_selected_units_at_each_step_and_r_is_on_throughout():
    on = np.zeros((6, 4), dtype=bool)
    on[0:3, 0] = on[0:5, 1] = on[2:5, 2] = True  # hits(0..4) = 2, 2, 3, 2, 2 >= ceil(3/2)
    on[1:4, 3] = True
    runs, _ = match_runs(on, [0, 1, 2], (0, 3))
    assert [(r.start, r.end, r.matched, r.others) for r in runs] == [(0, 5, 1, 0)]  # only unit 1 is on throughout


def test_the_module_agrees_with_the_reference_on_random_states():
    rng = np.random.default_rng(11)
    compared = 0
    for trial in range(200):
        steps, units = rng.integers(5, 40), rng.integers(1, 12)
        grid = rng.choice([-0.9, -0.31, -0.3, 0.0, 0.29, 0.3, 0.31, 0.5, 0.9], size=(steps, units))
        a = int(rng.integers(0, steps))
        b = int(rng.integers(a + 1, min(steps, a + 4) + 1))
        sign = str(rng.choice(["positive", "both"]))
        t = float(rng.choice([0.3, 0.0, 0.5] + ([-0.3] if sign == "positive" else [])))
        margin, min_length = int(rng.integers(0, 3)), int(rng.integers(1, 3))
        text = "x" * steps
        result = analyse(grid, labels_for(units), text, (a, b), threshold=t, margin=margin, match=True, top=1000,
                         min_length=min_length, sign=sign)
        want = reference_select(grid.tolist(), a, b, t, margin, sign)
        assert [(u.unit, u.sign) for u in result.selected] == [sides(grid.tolist(), sign)[j] for j in want]
        assert result.units == len(sides(grid.tolist(), sign))
        if want:
            ranked = reference_matches(grid.tolist(), want, a, b, t, min_length, sign)
            assert [(m.start, m.end, m.length, m.matched, m.others, m.selection) for m in result.matches] == \
                [w[:5] + (w[6],) for w in ranked]
            compared += 1
        else:
            assert result.matches == [] and "nothing to match" in result.match_summary
    assert compared >= 50


# -- spans ---------------------------------------------------------------------------------------


def test_spans_from_offsets_text_and_regex():
    text = "aa-aa-aaa 'x' 'yz'"
    assert resolve_span(text, select="3:5") == (3, 5)
    assert resolve_span(text, select_text="aa") == (0, 2)
    assert resolve_span(text, select_text="aa", occurrence=3) == (6, 8)  # non-overlapping, like str.count
    assert resolve_span(text, select_regex=r"(?<=')\w+(?=')") == (11, 12)
    assert resolve_span(text, select_regex=r"(?<=')\w+(?=')", occurrence=2) == (15, 17)
    assert resolve_span(text, select=f"0:{len(text)}") == (0, len(text))


@pytest.mark.parametrize("kwargs, message", [
    ({"select": "4:4"}, "empty selection"),
    ({"select": "4:2"}, "empty selection"),
    ({"select": "0:99"}, "past the end of the text"),
    ({"select": "a:b"}, "START:END"),
    ({"select_text": "zz"}, "is not in the text"),
    ({"select_text": "a", "occurrence": 9}, "beyond"),
    ({"select_regex": "("}, "not a valid regular expression"),
    ({"select_regex": "q"}, "has no match"),
    ({"select_regex": "x*"}, "empty string"),
    ({"select_regex": "a", "occurrence": 9}, "beyond"),
    ({"select": "0:2", "select_text": "a"}, "give one of"),
    ({"select": "0:2", "occurrence": 2}, "--occurrence"),
])
def test_span_errors(kwargs, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        resolve_span("abc abc", **kwargs)


# -- context lines -------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [12, 20, 27, 40, 80])
@pytest.mark.parametrize("before, run, after, continues", [
    ("        names = (", '"alpha"', ', "beta", "gamma", "delta", "epsilon", "zeta", "theta")', False),
    ("x = ", "y", "", True),
    ("", "a very long run of characters that does not fit in any column at all", " tail", False),
    ("a" * 50, "run", "b" * 50, False),
    ("\tx", "\ty", "z", False),
])
def test_context_fits_and_keeps_the_run_start(width, before, run, after, continues):
    for colour_on in (False, True):
        shown = fit_context(before, run, after, continues, width, colour_on).plain
        whole = len(before) + len(run) + len(after) + continues + (0 if colour_on else 4)
        assert cell_len(shown) <= max(width, 5 + (0 if colour_on else 4))
        if not colour_on:
            assert shown.count("[[") == 1 and shown.count("]]") == 1
            start = shown.index("[[") + 2
            assert shown[start] == (run.replace("\t", "→")[0])  # the run's first character is shown
        if whole <= width:  # the whole line, as it is
            assert "…" not in shown and shown.replace("[[", "").replace("]]", "") == \
                (before + run + "↵" * continues + after).replace("\t", "→")
        elif whole - (len(before) - len(before.lstrip())) > width:  # cut: an ellipsis says so
            assert "…" in shown
        else:  # a line that fits without its indentation loses only that
            assert "…" not in shown and shown.replace("[[", "").replace("]]", "") == \
                (before.lstrip() + run + "↵" * continues + after).replace("\t", "→")


# -- the command on the shipped character model ----------------------------------------------------

HELD_OUT = '''import os


def describe(path, verbose=False):
    """Say what a path is."""
    if not os.path.exists(path):
        return "missing: " + path
    if os.path.isdir(path):
        kind = "directory"
    else:
        kind = 'file'
    if verbose:
        print("checked", path)
    return "%s is a %s" % (path, kind)


for name in ["setup.py", "README", "docs"]:
    print(describe(name, verbose=True))
    names = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "iota", "kappa", "lambda", "omicron"]
'''


@pytest.fixture(scope="module")
def shipped_tanh_c() -> tuple[list[list[float]], list[tuple[int, str, int]]]:
    """tanh(c) of every unit of the shipped model over HELD_OUT from tests/reference.py's float64
    loop, as values[step][unit] in the definition's order."""
    state = torch.load(SHIPPED, weights_only=True)
    vocab = state["vocab"]
    lstm = nn.LSTM(32, 128, num_layers=2)
    lstm.load_state_dict({k[len("lstm."):]: v for k, v in state.items() if k.startswith("lstm.")})
    x = state["embedding.weight"][[vocab.index(ch) for ch in HELD_OUT]].unsqueeze(1)
    _, _, _, captured = reference_lstm(lstm, x)
    columns = torch.cat([torch.tanh(captured[(layer, "forward")]["c"][:, 0]) for layer in (0, 1)], dim=1)
    labels = [(layer, "forward", u) for layer in (0, 1) for u in range(128)]
    return columns.tolist(), labels


@pytest.mark.parametrize("selection", [["--select-text", "checked"], ["--select-regex", "(?<=')[a-z]+(?=')"]])
def test_the_shipped_model_end_to_end_against_a_float64_reference(run_cli, shipped_tanh_c, selection):
    values, labels = shipped_tanh_c
    result = run_cli("units", "--weights", str(SHIPPED), "--key", "lstm", "--text", HELD_OUT, *selection, "--match",
                     "--top", "1000", "--json")
    assert result.code == 0, result.stderr
    document = result.json()
    assert list(document) == ["command", "config", "characters", "min_r", "top", "features", "tracks", "summary",
                              "notes", "passed", "checks", "select", "source"]
    assert document["top"] == 3  # units per feature: --top counts matches with a selection
    select = document["select"]
    a, b = select["span"]["start"], select["span"]["end"]
    want_span = (HELD_OUT.index("checked"), HELD_OUT.index("checked") + 7) if selection[0] == "--select-text" \
        else (HELD_OUT.index("'file'") + 1, HELD_OUT.index("'file'") + 5)
    assert (a, b) == want_span and select["span"]["text"] == HELD_OUT[a:b]
    assert (select["state"], select["values"], select["threshold"], select["margin"]) == ("c", "tanh(c)", 0.3, 1)
    chosen = reference_select(values, a, b, 0.3, 1)
    assert chosen, "the selection should select a unit"
    assert [(u["layer"], u["direction"], u["unit"]) for u in select["selected"]] == [labels[u] for u in chosen]
    for unit, u in zip(select["selected"], chosen):
        inside, outside = reference_means(values, a, b, u)
        assert unit["mean_inside"] == pytest.approx(inside, abs=1e-9)
        assert unit["mean_outside"] == pytest.approx(outside, abs=1e-9)
    ranked = reference_matches(values, chosen, a, b, 0.3)
    got = select["matches"]
    assert len(got) == len(ranked) == select["runs"] > 1
    assert [(m["start"], m["end"], m["length"], m["matched"], m["others"], m["selection"]) for m in got] == \
        [w[:5] + (w[6],) for w in ranked]
    assert [m["score"] for m in got] == pytest.approx([w[5] for w in ranked], abs=1e-12)
    assert sum(m["selection"] for m in got) == 1
    for m in got:
        assert m["context"] == reference_context(HELD_OUT, m["start"], m["end"])
        assert m["line"] == HELD_OUT[: m["start"]].count("\n") + 1

    # The same for people, piped: the runs marked with [[ ]], no colour codes.
    shown = run_cli("units", "--weights", str(SHIPPED), "--key", "lstm", "--text", HELD_OUT, *selection, "--match")
    assert shown.code == 0, shown.stderr
    out = shown.stdout
    assert "\x1b[" not in out
    assert f"Selection {a}:{b}" in out and "tanh(c)" in out and "threshold 0.3" in out and "margin 1" in out
    rows = [line for line in out.splitlines() if re.match(r"\s*\d+\*?\s+\d+:\d+\s", line.strip("│ ") + " ")]
    assert len(rows) == 10  # --top: 10 matches by default
    for m, row in zip(got[:10], rows):
        assert f"{m['start']}:{m['end']}" in row and f"{m['score']:.3f}" in row
        assert f"{m['matched']}/{m['others']}" in row
        run_start = m["context"].index("[[")
        marked = m["context"][run_start : m["context"].index("]]") + 2]
        assert marked in row or row.rstrip().endswith("…") or "…]]" in row
    for unit in select["selected"]:
        # boxed or compact (one style for the whole output): the row's cells in order
        assert re.search(rf"^[│ ]*\s*{unit['layer']}[│ ]+{unit['unit']}[│ ]+{unit['mean_inside']:.3f}[│ ]", out, re.M)


def test_sign_both_finds_the_shipped_models_string_unit(run_cli, shipped_tanh_c):
    # Layer 1 unit 109 of the shipped model is low (tanh(c) near -0.9) inside string literals and
    # high elsewhere (docs/units.md): only --sign both can select it.
    values, labels = shipped_tanh_c
    args = ("units", "--weights", str(SHIPPED), "--key", "lstm", "--text", HELD_OUT, "--select-text", "directory",
            "--threshold", "0.5", "--match", "--top", "1000", "--json")
    positive = run_cli(*args).json()["select"]
    assert positive["sign"] == "positive" and all(u["sign"] == 1 for u in positive["selected"])
    result = run_cli(*args, "--sign", "both")
    assert result.code == 0, result.stderr
    select = result.json()["select"]
    a, b = select["span"]["start"], select["span"]["end"]
    assert select["sign"] == "both" and select["units"] == 2 * len(labels)
    chosen = reference_select(values, a, b, 0.5, 1, "both")
    sided = [labels[u] + (side,) for u, side in sides(values, "both")]
    assert [(u["layer"], u["direction"], u["unit"], u["sign"]) for u in select["selected"]] == \
        [sided[j] for j in chosen]
    assert (1, "forward", 109, -1) in [sided[j] for j in chosen]
    for unit, j in zip(select["selected"], chosen):
        u, side = sides(values, "both")[j]
        inside, outside = reference_means(values, a, b, u)
        assert unit["mean_inside"] == pytest.approx(inside, abs=1e-9)
        assert side * unit["mean_inside"] > 0.5  # v itself: a low side's mean is below -0.5
    ranked = reference_matches(values, chosen, a, b, 0.5, sign="both")
    assert [(m["start"], m["end"], m["matched"], m["others"]) for m in select["matches"]] == \
        [w[:2] + w[3:5] for w in ranked]
    literals = [(m.start(2), m.end(2)) for m in re.finditer(r"""(["'])([^"'\n]+)\1""", HELD_OUT)]
    others = [(c, d) for c, d in literals if not c <= a < d]
    found = [any(m["start"] < d and m["end"] > c for m in select["matches"]) for c, d in others]
    assert len(others) >= 15 and sum(found) >= 0.75 * len(others)
    shown = run_cli(*args[:-1], "--sign", "both").stdout
    assert "sign both" in shown and re.search(r"\b1[│ ]+109[│ ]+< −0\.5[│ ]", shown)


@pytest.mark.parametrize("width", [60, 80])
def test_the_matches_table_fits_60_and_80_columns(run_cli, monkeypatch, width):
    monkeypatch.setenv("COLUMNS", str(width))
    result = run_cli("units", "--weights", str(SHIPPED), "--key", "lstm", "--text", HELD_OUT,
                     "--select-regex", '(?<=")[a-z]+(?=")', "--occurrence", "9", "--match", "--top", "200")
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(cell_len(line) for line in lines) <= width
    assert "'zeta'" in result.stdout  # the selection, in a line of 116 characters
    rows = [line for line in lines if re.match(r"\s*\d+\*?\s+\d+:\d+\s", line)]
    assert len(rows) > 50 and all(row.count("[[") == 1 and row.count("]]") == 1 for row in rows)
    selection = [row for row in rows if re.match(r"\s*\d+\*", row)]
    assert len(selection) == 1 and "…" in selection[0]  # that line, cut around its run
    assert re.search(r"\[\[[a-z]*zeta", selection[0]) or re.search(r"\[\[[^\]]*…\]\]", selection[0])


def test_colour_on_a_terminal_instead_of_markers(run_cli, monkeypatch):
    import sys

    from rich.console import Console

    import lstm_cli.output as output

    def terminal(stderr: bool = False):  # what make_console gives on a terminal (NO_COLOR honoured by Rich)
        return Console(file=sys.stderr if stderr else sys.stdout, force_terminal=True, color_system="truecolor",
                       highlight=False, soft_wrap=False, width=100)

    monkeypatch.setattr(output, "make_console", terminal)
    monkeypatch.delenv("NO_COLOR", raising=False)
    args = ("units", "--weights", str(SHIPPED), "--key", "lstm", "--text", HELD_OUT, "--select-text", "checked",
            "--match")
    result = run_cli(*args)
    assert result.code == 0, result.stderr
    assert "\x1b[" in result.stdout and "[[" not in result.stdout
    monkeypatch.setenv("NO_COLOR", "1")
    plain = run_cli(*args)
    assert "[[" in plain.stdout


def test_without_a_selection_units_is_unchanged_and_top_counts_units(run_cli):
    result = run_cli("units", "--weights", str(SHIPPED), "--key", "lstm", "--text", HELD_OUT, "--top", "2", "--json")
    assert result.code == 0, result.stderr
    document = result.json()
    assert "select" not in document and document["top"] == 2
    assert all(len(f["best"]) == 2 for f in document["features"].values() if not f["constant"])


# -- small models: no unit selected, proj_size, errors -----------------------------------------------


def small_model(folder: Path, proj_size: int = 0) -> Path:
    torch.manual_seed(0)
    vocab = list("ab( )\n'\"x")
    lstm = nn.LSTM(len(vocab), 6, num_layers=2, bidirectional=True, proj_size=proj_size)
    path = folder / f"small{proj_size}.pt"
    torch.save({**{k: v.detach().clone() for k, v in lstm.state_dict().items()}, "vocab": vocab}, path)
    return path


SMALL_TEXT = "a (b 'ab' x)\n(ba) \"x a\"\n a(b (a)) b\n"


def test_nothing_selected_says_what_to_try_and_exits_0(tmp_path, run_cli):
    weights = small_model(tmp_path)
    args = ("units", "--weights", str(weights), "--text", SMALL_TEXT, "--select-text", "ab", "--threshold", "0.99",
            "--match")
    document = run_cli(*args, "--json").json()
    assert document["select"]["selected"] == [] and document["select"]["matches"] == []
    result = run_cli(*args)
    assert result.code == 0, result.stderr
    assert "No unit has tanh(c) > 0.99" in result.stdout and "--threshold" in result.stdout
    assert "--margin 0" in result.stdout and "nothing to match" in result.stdout
    # The same selection with the loosest settings does select: the sentence above was not vacuous.
    loose = run_cli("units", "--weights", str(weights), "--text", SMALL_TEXT, "--select-text", "ab",
                    "--threshold", "-0.99", "--margin", "0", "--json").json()["select"]
    assert loose["selected"] and loose["matches"] is None
    # A bidirectional model's units come layer by layer, forward before backward.
    order = [(u["layer"], u["direction"] == "backward", u["unit"]) for u in loose["selected"]]
    assert order == sorted(order) and {u["direction"] for u in loose["selected"]} == {"forward", "backward"}


def test_state_h_uses_the_hidden_state(tmp_path, run_cli):
    from lstm_cli.cli import SHARED_FLAGS, _default, spec_from_flags
    from lstm_cli.text.unit_states import unit_states

    weights = small_model(tmp_path)
    document = run_cli("units", "--weights", str(weights), "--text", SMALL_TEXT, "--select", "5:7", "--state", "h",
                       "--threshold", "0", "--margin", "0", "--json").json()["select"]
    flags = {name: _default(name) for name, _ in SHARED_FLAGS}
    flags.update(weights=str(weights), text=SMALL_TEXT)
    states = unit_states(spec_from_flags(flags, {"weights", "text"})).values
    values = np.concatenate([states[(layer, d)]["h"] for layer in (0, 1) for d in ("forward", "backward")], axis=1)
    chosen = reference_select(values.tolist(), 5, 7, 0.0, 0)
    assert document["values"] == "h" and len(document["selected"]) == len(chosen) > 0
    for unit, u in zip(document["selected"], chosen):
        assert unit["mean_inside"] == pytest.approx(values[5:7, u].mean())


@pytest.mark.parametrize("args, message", [
    (["--select", "3:3"], "empty selection"),
    (["--select", "5:2"], "empty selection"),
    (["--select", "0:400"], "past the end of the text"),
    (["--select", "three:four"], "START:END"),
    (["--select-regex", "(ab"], "not a valid regular expression"),
    (["--select-regex", "zzz"], "has no match"),
    (["--select-regex", "q*"], "empty string"),
    (["--select-text", "bab"], "is not in the text"),
    (["--select-text", "ab", "--occurrence", "7"], "beyond"),
    (["--select-regex", "a", "--occurrence", "99"], "beyond"),
    (["--select-text", "ab", "--occurrence", "0"], "counts from 1"),
    (["--select", "0:2", "--occurrence", "2"], "--occurrence"),
    (["--select", "0:2", "--select-text", "ab"], "--select and --select-text"),
    (["--select-text", "ab", "--select-regex", "a"], "give one of them"),
    (["--occurrence", "2"], "--occurrence works on a selection"),
    (["--state", "h"], "--state works on a selection"),
    (["--threshold", "0.2"], "--threshold works on a selection"),
    (["--margin", "0"], "--margin works on a selection"),
    (["--match"], "--match works on a selection"),
    (["--min-length", "2"], "--min-length works on a selection"),
    (["--select", "0:2", "--threshold", "0.305"], "two decimals"),
    (["--select", "0:2", "--threshold", "1"], "between -0.99 and 0.99"),
    (["--select", "0:2", "--threshold", "-1.5"], "between -0.99 and 0.99"),
    (["--select", "0:2", "--margin", "-1"], "--margin must be 0 or more"),
    (["--select", "0:2", "--match", "--min-length", "0"], "--min-length must be 1 or more"),
    (["--select", "0:2", "--state", "x"], "--state must be c"),
    (["--sign", "both"], "--sign works on a selection"),
    (["--select", "0:2", "--sign", "negative"], "--sign must be positive"),
    (["--select", "0:2", "--sign", "both", "--threshold", "-0.2"], "--sign both needs a --threshold of 0 or more"),
    (["--select", "0:2", "--match", "--top", "0"], "--top must be between 1 and 1000"),
])
def test_usage_errors_are_one_line_exit_2_nothing_on_stdout(tmp_path, run_cli, args, message):
    weights = small_model(tmp_path)
    result = run_cli("units", "--weights", str(weights), "--text", SMALL_TEXT, *args)
    assert result.code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_state_h_with_proj_size_and_a_selection_without_text_are_refused(tmp_path, run_cli):
    projected = small_model(tmp_path, proj_size=3)
    result = run_cli("units", "--weights", str(projected), "--text", SMALL_TEXT, "--select", "0:2", "--state", "h")
    assert result.code == 2 and result.stdout == "" and "--proj-size" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    fine = run_cli("units", "--weights", str(projected), "--text", SMALL_TEXT, "--select", "0:2", "--json")
    assert fine.code == 0, fine.stderr  # c has H units with a projection too
    assert fine.json()["select"]["units"] == 2 * 2 * 6
    weights = small_model(tmp_path)
    for flag in (["--select", "0:2"], ["--select-text", "ab"], ["--select-regex", "a"]):
        result = run_cli("units", "--weights", str(weights), *flag)
        assert result.code == 2 and result.stdout == ""
        assert "give --text or --text-file" in result.stderr and len(result.stderr.strip().splitlines()) == 1
