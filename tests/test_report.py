"""report --html: the data inside the page, parsed back from the HTML, against an independent
float64 LSTM (tests/reference.py) and direct means; the page refers to nothing outside itself;
bad --html paths and flags fail in one line before any work.

The helpers at the top (page_data, page_q, reference_select) read a page the way a script would:
test_report_browser.py compares the browser's selection with reference_select, and the same
page data can be compared with `lstm-cli units --select/--match`."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import textwrap as stdlib_textwrap
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

from lstm_cli.errors import UsageError
from tests.reference import reference_lstm

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CHAR = str(EXAMPLES / "char_lstm.pt")
TEXT = Path(stdlib_textwrap.__file__).read_text()[:2500]  # > 1000 steps: the heatmaps bin time
HOSTILE = 'x = "</script><script>alert(1)</script><!-- &amp; http://example.com/a.png url(b) @import"\n'


# -- reading a page back -------------------------------------------------------------------------


def page_data(html: str) -> dict:
    """The JSON the page carries in <script id="lstm-data" type="application/json">."""
    match = re.search(r'<script id="lstm-data" type="application/json">(.*?)</script>', html, re.DOTALL)
    assert match, "no data block in the page"
    return json.loads(match.group(1))


def page_q(data: dict) -> np.ndarray:
    """The select-and-match state: (units, steps) int8."""
    raw = np.frombuffer(base64.b64decode(data["q"]), dtype=np.int8)
    return raw.reshape(data["units"], data["input"]["shown"])


def page_units(data: dict) -> list[dict]:
    """Every unit in the page's order: [{layer, direction, unit}]."""
    return [{"layer": b["layer"], "direction": b["direction"], "unit": u} for b in data["layers"] for u in range(b["units"])]


def panel_values(panel: dict) -> np.ndarray:
    """A heatmap panel's (rows, columns) values as the page decodes them (NaN: no value)."""
    codes = np.frombuffer(base64.b64decode(panel["data"]), dtype="<u2").reshape(panel["rows"], panel["columns"])
    values = panel["low"] + codes / 65534 * (panel["high"] - panel["low"])
    return np.where(codes == 65535, np.nan, values)


def reference_select(data: dict, a: int, b: int, threshold: float = 0.3, margin: int = 1, min_length: int = 1,
                     top: int | None = None, sign: str = "positive") -> dict:
    """Select-and-match written straight from its definition, on the page's own data. With sign
    "both", rows U..2U-1 are the units' negative sides, ON where q <= -k - 1."""
    q = page_q(data).astype(np.int16)
    U, T = q.shape
    units = [dict(unit, sign=1) for unit in page_units(data)]
    k = round(100 * threshold)
    on = q >= k
    if sign == "both":
        assert k >= 0
        units += [dict(unit, sign=-1) for unit in page_units(data)]
        on = np.concatenate([on, q <= -k - 1], axis=0)
        U = 2 * U
    lo, hi = max(0, a - margin), min(T, b + margin)
    chosen = on[:, a:b].all(axis=1) & ~on[:, lo:a].any(axis=1) & ~on[:, b:hi].any(axis=1)
    S = [u for u in range(U) if chosen[u]]
    matches = []
    if S:
        need = math.ceil(len(S) / 2)
        hits = on[S].sum(axis=0)
        s = 0
        while s < T:
            if hits[s] < need:
                s += 1
                continue
            e = s
            while e < T and hits[e] >= need:
                e += 1
            if e - s >= min_length:
                R = on[:, s:e].all(axis=1)
                matched, others = int((R & chosen).sum()), int((R & ~chosen).sum())
                matches.append({"start": s, "end": e, "matched": matched, "others": others,
                                "score": matched / int((R | chosen).sum()), "selection": s < b and e > a})
            s = e
        matches.sort(key=lambda m: (-m["matched"], m["others"], -(m["end"] - m["start"]), m["start"]))
    return {"selected": [units[u] for u in S], "matches": matches if top is None else matches[:top]}


class References(HTMLParser):
    """Every attribute that can make a browser fetch something, and the tags seen."""

    URL_ATTRIBUTES = {"src", "href", "action", "formaction", "srcset", "poster", "data", "background", "ping",
                      "manifest", "codebase", "cite", "longdesc", "xlink:href"}

    def __init__(self):
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        for name, value in attrs:
            if name in self.URL_ATTRIBUTES:
                self.urls.append((tag, name, value or ""))


def outside_data(html: str) -> str:
    """The page without its data block (where the user's text lives, JSON-escaped)."""
    return re.sub(r'(<script id="lstm-data" type="application/json">).*?(</script>)', r"\1\2", html, flags=re.DOTALL)


def assert_self_contained(html: str) -> None:
    parser = References()
    parser.feed(html)
    for tag, name, value in parser.urls:
        assert value.startswith("#") or value.startswith("data:"), f"<{tag} {name}={value!r}> refers outside the page"
    for tag, attrs in parser.tags:
        assert not (tag == "link" and "stylesheet" in (attrs.get("rel") or "")), "an external stylesheet"
        assert not (tag in ("script", "img", "iframe", "embed", "object", "audio", "video", "source") and attrs.get("src"))
    code = outside_data(html)
    for forbidden in ("http://", "https://", "@import", "fetch(", "XMLHttpRequest", "WebSocket", "EventSource",
                      "sendBeacon", "import(", "new Image", "@font-face"):
        assert forbidden not in code, f"{forbidden!r} in the page's own code"
    for url in re.findall(r"url\(\s*['\"]?([^)'\"]*)", code):
        assert url.startswith("data:"), f"url({url}) refers outside the page"
    for value in re.findall(r"""(?:src|href)\s*=\s*["']?(//[^"'\s>]*)""", html):
        pytest.fail(f"protocol-relative URL {value}")
    # The page's own policy forbids every request, whatever a later change adds.
    assert "Content-Security-Policy" in code and "default-src 'none'" in code


# -- building pages --------------------------------------------------------------------------------


def char_spec(text: str):
    from lstm_cli.cli import SHARED_FLAGS, _default, spec_from_flags

    flags = {name: _default(name) for name, _ in SHARED_FLAGS}
    flags.update(weights=CHAR, key="lstm", text=text, device="cpu")
    return spec_from_flags(flags, {"weights", "key", "text", "device"})


def char_reference(text: str) -> dict:
    """{(layer, direction): {"i", "f", "g", "o", "c", "h": (L, H) float64}} of the shipped model:
    the checkpoint read here, each character's embedding row looked up here, tests/reference.py's
    loop."""
    checkpoint = torch.load(CHAR, weights_only=True)
    vocab = checkpoint["vocab"]
    rows = torch.tensor([vocab.index(ch) for ch in text])
    x = checkpoint["embedding.weight"].double()[rows].unsqueeze(1)
    lstm = torch.nn.LSTM(32, 128, num_layers=2)
    lstm.load_state_dict({k.removeprefix("lstm."): v for k, v in checkpoint.items() if k.startswith("lstm.")})
    with torch.no_grad():
        _, _, _, captured = reference_lstm(lstm, x)
    return {key: {name: value[:, 0].numpy() for name, value in gates.items()} for key, gates in captured.items()}


def expected_q(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The definition's q of float64 values, and where 100 v is so near a whole number that two
    correct float64 computations may round to either side (q may then differ by one)."""
    scaled = 100.0 * values
    q = np.clip(np.ceil(scaled) - 1, -101, 99).astype(np.int16)
    return q, np.abs(scaled - np.rint(scaled)) < 1e-9


@pytest.fixture(scope="module")
def char_page(tmp_path_factory):
    from lstm_cli.report import run_report

    path = tmp_path_factory.mktemp("report") / "char.html"
    result = run_report(char_spec(TEXT), str(path), threshold=0.3, margin=1)
    html = path.read_text(encoding="utf-8")
    return result, html, page_data(html)


@pytest.fixture(scope="module")
def char_ref():
    return char_reference(TEXT)


# -- the data ----------------------------------------------------------------------------------------


def test_result_describes_the_file_written(char_page):
    result, html, data = char_page
    assert result.command == "report"
    assert result.config == char_spec(TEXT).config()
    assert result.passed is True and result.checks and all(c.passed for c in result.checks)
    assert result.bytes == os.path.getsize(result.html) == len(html.encode("utf-8"))
    assert (result.steps, result.shown_steps, result.units, result.text) == (2500, 2500, 256, True)
    assert (result.steps_per_column, result.heatmap_columns) == (3, 834)
    assert (result.state, result.threshold, result.margin, result.min_length, result.top, result.sign) == \
        ("c", 0.3, 1, 1, 10, "positive")
    assert not [name for name in os.listdir(Path(result.html).parent) if name.endswith(".tmp")]
    json.dumps(__import__("lstm_cli.output", fromlist=["jsonable"]).jsonable(result), allow_nan=False)


def test_header_is_the_commands_provenance_header(char_page):
    from lstm_cli.render.common import config_line

    result, _, data = char_page
    lines = config_line(result.config, result.device, result.dtype).split("\n")
    assert data["header"][: len(lines)] == lines
    assert any(line.startswith("weights: ") and "char_lstm.pt" in line for line in data["header"])
    assert data["header"][1].startswith("input: text of 2,500 characters")
    verification = data["verification"]
    assert verification["passed"] is True
    assert [c["name"] for c in verification["checks"]] == [c.name for c in result.checks]
    assert all(c["passed"] for c in verification["checks"])
    assert data["title"] == "lstm-cli report: char_lstm.pt"


def test_text_and_unit_order(char_page):
    _, _, data = char_page
    assert data["input"] == {"kind": "text", "text": TEXT, "steps": 2500, "shown": 2500, "sequence": 0, "batch": 1}
    assert data["layers"] == [{"layer": 0, "direction": "forward", "units": 128, "offset": 0},
                              {"layer": 1, "direction": "forward", "units": 128, "offset": 128}]
    assert data["state"] == {"name": "c", "label": "tanh(c)", "threshold": 0.3, "margin": 1, "min_length": 1, "top": 10,
                             "sign": "positive"}


def test_quantised_state_equals_tanh_c_of_an_independent_float64_lstm(char_page, char_ref):
    _, _, data = char_page
    q = page_q(data).astype(np.int16)
    tanh_c = np.concatenate([np.tanh(char_ref[(layer, "forward")]["c"]) for layer in (0, 1)], axis=1).T
    want, edge = expected_q(tanh_c)
    assert q.shape == want.shape == (256, 2500)
    differ = q != want
    assert not (differ & ~edge).any(), f"{int((differ & ~edge).sum())} values quantised differently"
    assert (np.abs(q - want) <= 1).all()
    assert q.min() >= -101 and q.max() <= 99
    stats = data["stats"]
    np.testing.assert_allclose(stats["mean"], tanh_c.mean(axis=1), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(stats["std"], tanh_c.std(axis=1), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(stats["min"], tanh_c.min(axis=1), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(stats["max"], tanh_c.max(axis=1), rtol=1e-9, atol=1e-12)
    assert data["default_unit"] == int(np.argmax(tanh_c.std(axis=1)))


def test_heatmap_bins_are_the_direct_means(char_page, char_ref):
    _, _, data = char_page
    heatmap = data["heatmap"]
    assert (heatmap["steps"], heatmap["steps_per_column"], heatmap["columns"], heatmap["units_per_row"]) == (2500, 3, 834, 1)
    order = [(layer, "forward", q) for layer in (0, 1) for q in "ifgoc"]
    assert [(p["layer"], p["direction"], p["quantity"]) for p in heatmap["panels"]] == order
    for panel, (layer, direction, quantity) in zip(heatmap["panels"], order):
        values = char_ref[(layer, direction)][quantity]  # (2500, 128)
        means = np.stack([values[start : start + 3].mean(axis=0) for start in range(0, 2500, 3)], axis=1)
        assert means.shape == (128, 834)  # the last column holds step 2499 alone
        got = panel_values(panel)
        step = (panel["high"] - panel["low"]) / 65534
        np.testing.assert_allclose(got, means, rtol=0, atol=step / 2 + 1e-9)
        assert panel["low"] == pytest.approx(means.min(), abs=1e-9) and panel["high"] == pytest.approx(means.max(), abs=1e-9)
        assert panel["scale"] == {"low": 0.0 if quantity in "ifo" else -1.0, "high": 1.0,
                                  "transform": "tanh" if quantity == "c" else None}


def test_saturation_scatter_is_the_gates_runs_per_unit_fractions(char_page, char_ref):
    _, _, data = char_page
    saturation = data["saturation"]
    assert saturation["thresholds"] == {"low": 0.1, "high": 0.9, "tanh_low": -0.9, "tanh_high": 0.9}
    assert [(e["layer"], e["direction"]) for e in saturation["layers"]] == [(0, "forward"), (1, "forward")]
    for entry in saturation["layers"]:
        gates = char_ref[(entry["layer"], entry["direction"])]
        for gate in "ifgo":
            low, high = (-0.9, 0.9) if gate == "g" else (0.1, 0.9)
            # float32 capture against float64: a value within rounding of a threshold may count
            # on either side, so allow a few steps' worth.
            np.testing.assert_allclose(entry["gates"][gate]["left"], (gates[gate] < low).mean(axis=0), atol=3 / 2500)
            np.testing.assert_allclose(entry["gates"][gate]["right"], (gates[gate] > high).mean(axis=0), atol=3 / 2500)


def test_page_refers_to_nothing_outside_itself(char_page):
    _, html, _ = char_page
    assert_self_contained(html)
    assert "http://" not in html and "https://" not in html
    assert html.count("<script") == 2 and html.count("</script>") == 2


def test_hostile_text_stays_data(tmp_path):
    from lstm_cli.report import run_report

    path = tmp_path / "hostile.htm"
    run_report(char_spec(HOSTILE), str(path))
    html = path.read_text(encoding="utf-8")
    assert html.count("<script") == 2 and html.count("</script>") == 2  # the text's tags are escaped
    assert page_data(html)["input"]["text"] == HOSTILE
    assert_self_contained(html)


def test_assets_are_package_files_with_no_network_code():
    from lstm_cli.report.page import asset

    js, css, template = asset("report.js"), asset("report.css"), asset("template.html")
    assert "window.lstmReport" in js and "prefers-color-scheme" in css and "{{DATA}}" in template
    for code in (js, css, template):
        assert "http://" not in code and "https://" not in code and "url(" not in code


# -- steps (not text), bidirectional, h -----------------------------------------------------------------


def test_steps_page_for_random_bidirectional_input_with_state_h(tmp_path):
    from lstm_cli.model import prepare, time_major
    from lstm_cli.report import run_report
    from lstm_cli.spec import LSTMSpec

    spec = LSTMSpec(input_size=5, hidden_size=6, num_layers=2, seq_len=30, batch_size=3, bidirectional=True,
                    lengths=(23, 30, 9), device="cpu")
    path = tmp_path / "steps.html"
    result = run_report(spec, path, state="h", threshold=-0.25, margin=0)
    data = page_data(path.read_text(encoding="utf-8"))
    assert data["input"] == {"kind": "steps", "text": None, "steps": 23, "shown": 23, "sequence": 0, "batch": 3}
    assert [(b["layer"], b["direction"], b["offset"]) for b in data["layers"]] == [
        (0, "forward", 0), (0, "backward", 6), (1, "forward", 12), (1, "backward", 18)]
    assert data["state"]["label"] == "h" and data["state"]["threshold"] == -0.25 and result.units == 24
    prepared = prepare(spec)
    with torch.no_grad():
        _, _, _, captured = reference_lstm(prepared.lstm, time_major(prepared.x, spec), spec.lengths)
    h = np.concatenate([captured[(b["layer"], b["direction"])]["h"][:23, 0].numpy() for b in data["layers"]], axis=1).T
    want, edge = expected_q(h)
    q = page_q(data).astype(np.int16)
    assert not ((q != want) & ~edge).any()
    backward_c = captured[(1, "backward")]["c"][:23, 0].numpy().T
    panel = next(p for p in data["heatmap"]["panels"] if (p["layer"], p["direction"], p["quantity"]) == (1, "backward", "c"))
    np.testing.assert_allclose(panel_values(panel), backward_c, atol=(panel["high"] - panel["low"]) / 65534 / 2 + 1e-12)


def test_long_inputs_are_capped_and_binned_with_notes(tmp_path, monkeypatch):
    from lstm_cli.report import data as pagedata
    from lstm_cli.report import run_report
    from lstm_cli.spec import LSTMSpec

    monkeypatch.setattr(pagedata, "MAX_STEPS", 100)
    monkeypatch.setattr(pagedata, "MAX_COLUMNS", 100)
    monkeypatch.setattr(pagedata, "MAX_ROWS", 4)
    spec = LSTMSpec(input_size=3, hidden_size=10, num_layers=1, seq_len=250, batch_size=1, device="cpu")
    path = tmp_path / "long.html"
    result = run_report(spec, path)
    data = page_data(path.read_text(encoding="utf-8"))
    assert (result.shown_steps, result.steps_per_column, result.heatmap_columns) == (100, 3, 84)
    assert (result.heatmap_rows, result.units_per_row) == (4, 3)
    assert page_q(data).shape == (10, 100)
    assert data["caps"]["steps_cut"] and data["caps"]["time_binned"] and data["caps"]["units_binned"]
    notes = " ".join(data["notes"])
    assert "first 100 of 250 steps" in notes and "84 columns, each the mean of 3 steps" in notes
    assert "10 units drawn as 4 rows" in notes
    from lstm_cli.text.unit_states import unit_states

    f = unit_states(spec).values[(0, "forward")]["f"]  # (250, 10)
    panel = data["heatmap"]["panels"][1]
    assert panel["quantity"] == "f" and (panel["rows"], panel["columns"]) == (4, 84)
    np.testing.assert_allclose(panel_values(panel)[3, 83], f[249, 9], atol=1e-4)  # last bins: 1 step, 1 unit
    np.testing.assert_allclose(panel_values(panel)[0, 0], f[0:3, 0:3].mean(), atol=1e-4)


def test_quantise_follows_the_definition():
    from lstm_cli.text.select import quantize as quantise  # the one definition the page's data uses

    v = np.array([-1.0, -0.999, -0.5, -0.001, 0.0, 0.001, 0.3, 0.30000001, 0.5, 0.999, 1.0, np.nan, 2.0, -3.0])
    assert quantise(v).tolist() == [-101, -100, -51, -1, -1, 0, 29, 30, 49, 99, 99, -101, 99, -101]
    assert quantise(v).dtype == np.int8
    # ON (q >= round(100 t)) is v > t, away from rounding at t itself
    grid = np.linspace(-1, 1, 20001)
    for t in (0.3, -0.25, 0.0, 0.99, -0.99, 0.07):
        k = round(100 * t)
        away = np.abs(grid - t) > 1e-9
        assert ((quantise(grid) >= k) == (grid > t))[away].all()


def test_reference_select_on_a_planted_pattern():
    """The reference itself, on a hand-made page: units 0 and 1 fire together on [2, 4) and
    [8, 10); unit 2 fires on [2, 6); unit 3 never."""
    q = np.full((4, 12), -50, dtype=np.int8)
    q[0, 2:4] = q[1, 2:4] = 40
    q[0, 8:10] = q[1, 8:10] = 40
    q[2, 2:6] = 40
    data = {"q": base64.b64encode(q.tobytes()).decode(), "units": 4, "input": {"shown": 12},
            "layers": [{"layer": 0, "direction": "forward", "units": 4, "offset": 0}]}
    got = reference_select(data, 2, 4, threshold=0.3, margin=1)
    assert [u["unit"] for u in got["selected"]] == [0, 1]  # unit 2 is ON just after the span: not selected
    assert got["matches"] == [  # same matched count: fewer other units first
        {"start": 8, "end": 10, "matched": 2, "others": 0, "score": 1.0, "selection": False},
        {"start": 2, "end": 4, "matched": 2, "others": 1, "score": 2 / 3, "selection": True},
    ]
    assert [u["unit"] for u in reference_select(data, 2, 4, margin=0)["selected"]] == [0, 1, 2]
    assert [u["unit"] for u in reference_select(data, 2, 4, threshold=0.4)["selected"]] == [0, 1]  # q 40 >= k 40
    assert reference_select(data, 2, 4, threshold=0.41) == {"selected": [], "matches": []}
    assert reference_select(data, 0, 2) == {"selected": [], "matches": []}
    # margin clipped at the ends; need = ceil(3 / 2) = 2 of units 0, 1, 2 over [2, 4)
    wide = reference_select(data, 2, 4, margin=0, min_length=3)
    assert wide["matches"] == [{"start": 2, "end": 4, "matched": 3, "others": 0, "score": 1.0, "selection": True}][:0]
    assert reference_select(data, 2, 4, margin=0, min_length=2)["matches"][0]["start"] == 2


def test_reference_select_with_both_signs_on_a_planted_pattern():
    """Sign both: unit u's negative side is unit U + u, ON where q <= -k - 1. Units 0 and 1 dip
    together on [3, 5) and [9, 11) (q -40, below -0.3); unit 2 is up on [3, 5) (q 40); every
    other value is q 0 (neither side ON at t = 0.3)."""
    q = np.zeros((3, 14), dtype=np.int8)
    q[0, 3:5] = q[1, 3:5] = -40
    q[0, 9:11] = q[1, 9:11] = -40
    q[2, 3:5] = 40
    data = {"q": base64.b64encode(q.tobytes()).decode(), "units": 3, "input": {"shown": 14},
            "layers": [{"layer": 0, "direction": "forward", "units": 3, "offset": 0}]}
    assert reference_select(data, 3, 5)["selected"] == [{"layer": 0, "direction": "forward", "unit": 2, "sign": 1}]
    got = reference_select(data, 3, 5, sign="both")
    assert [(u["unit"], u["sign"]) for u in got["selected"]] == [(2, 1), (0, -1), (1, -1)]
    assert got["matches"] == [  # need 2 of 3: [3, 5) has all three, [9, 11) the two negative sides
        {"start": 3, "end": 5, "matched": 3, "others": 0, "score": 1.0, "selection": True},
        {"start": 9, "end": 11, "matched": 2, "others": 0, "score": 2 / 3, "selection": False},
    ]
    # q -31 is ON below -0.3 (q <= -31); q -30 is not; and a positive side never at the same time
    q[0, 3:5] = q[1, 3:5] = -31
    data["q"] = base64.b64encode(q.tobytes()).decode()
    assert [(u["unit"], u["sign"]) for u in reference_select(data, 3, 5, sign="both")["selected"]] == [(2, 1), (0, -1), (1, -1)]
    q[0, 3:5] = q[1, 3:5] = -30
    data["q"] = base64.b64encode(q.tobytes()).decode()
    assert [(u["unit"], u["sign"]) for u in reference_select(data, 3, 5, sign="both")["selected"]] == [(2, 1)]


# -- bad input: one line, before any work -----------------------------------------------------------------


@pytest.fixture
def no_work(monkeypatch):
    """Fail loudly if run_report gets as far as running the model."""
    import lstm_cli.gates.run as gates_run

    def refuse(*args, **kwargs):
        raise AssertionError("run_gates ran before the flags were checked")

    monkeypatch.setattr(gates_run, "run_gates", refuse)


def _usage_error(path, **kwargs) -> str:
    from lstm_cli.report import run_report
    from lstm_cli.spec import LSTMSpec

    with pytest.raises(UsageError) as info:
        run_report(LSTMSpec(device="cpu"), path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message
    return message


def test_bad_html_paths_are_one_line_usage_errors(tmp_path, no_work):
    assert "must end in .html or .htm" in _usage_error(str(tmp_path / "report.txt"))
    assert "must end in .html or .htm" in _usage_error(str(tmp_path / "report"))
    folder = tmp_path / "folder.html"
    folder.mkdir()
    assert "is a directory" in _usage_error(str(folder))
    assert "does not exist" in _usage_error(str(tmp_path / "missing" / "report.html"))
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert "does not exist" in _usage_error(str(a_file / "report.html"))
    for message in (_usage_error(str(tmp_path / "report.txt")),):
        assert message.startswith("--html")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_html_path_is_a_usage_error(tmp_path, no_work):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert "not writable" in _usage_error(str(locked / "report.html"))
    finally:
        locked.chmod(0o755)
    existing = tmp_path / "old.html"
    existing.write_text("old")
    existing.chmod(0o444)
    assert "not writable" in _usage_error(str(existing))


def test_state_h_of_a_projecting_model_is_refused(tmp_path, no_work):
    from lstm_cli.report import run_report
    from lstm_cli.spec import LSTMSpec

    with pytest.raises(UsageError, match="--state h: this model projects h to 3 values"):
        run_report(LSTMSpec(hidden_size=6, proj_size=3, device="cpu"), tmp_path / "r.html", state="h")


@pytest.mark.parametrize("kwargs, words", [
    ({"threshold": 1.0}, "--threshold must be between -0.99 and 0.99"),
    ({"threshold": -1}, "--threshold must be between -0.99 and 0.99"),
    ({"threshold": float("nan")}, "--threshold must be between"),
    ({"threshold": 0.305}, "two decimals at most"),
    ({"state": "g"}, "--state must be c"),
    ({"margin": -1}, "--margin must be a whole number"),
    ({"min_length": 0}, "--min-length must be"),
    ({"top": 0}, "--top must be 1 or more"),
    ({"sign": "negative"}, "--sign must be positive"),
    ({"sign": "both", "threshold": -0.2}, "--sign both needs a --threshold of 0 or more"),
])
def test_bad_flags_are_one_line_usage_errors(tmp_path, no_work, kwargs, words):
    assert words in _usage_error(str(tmp_path / "r.html"), **kwargs)


def test_check_options_checks_the_sign():
    from lstm_cli.report.options import check_options

    assert check_options().sign == "positive"
    assert check_options(threshold=0.0, sign="both").sign == "both"
    assert check_options(threshold=-0.2).sign == "positive"  # a negative threshold is fine with positive
    for kwargs, words in [({"sign": "negative"}, "--sign must be positive"), ({"sign": ""}, "--sign must be positive"),
                          ({"sign": "both", "threshold": -0.01}, "--sign both needs a --threshold of 0 or more"),
                          ({"sign": "both", "threshold": 1.5}, "--threshold must be between")]:
        with pytest.raises(UsageError) as info:
            check_options(**kwargs)
        assert words in str(info.value) and "\n" not in str(info.value)


def test_page_data_carries_the_starting_sign(tmp_path):
    import io

    from rich.console import Console

    from lstm_cli.output import jsonable
    from lstm_cli.render.report import render_report
    from lstm_cli.report import run_report
    from lstm_cli.spec import LSTMSpec

    path = tmp_path / "both.html"
    result = run_report(LSTMSpec(input_size=3, hidden_size=5, seq_len=12, device="cpu"), path, threshold=0.1, sign="both")
    data = page_data(path.read_text(encoding="utf-8"))
    assert data["state"]["sign"] == "both" and data["state"]["threshold"] == 0.1
    assert result.sign == "both" and jsonable(result)["sign"] == "both"
    console = Console(file=io.StringIO(), width=400, color_system=None)
    render_report(result, console)
    assert "sign both" in console.file.getvalue()


def test_an_existing_file_is_replaced_whole(tmp_path):
    from lstm_cli.report import run_report
    from lstm_cli.spec import LSTMSpec

    path = tmp_path / "r.html"
    path.write_text("old contents")
    result = run_report(LSTMSpec(device="cpu"), path)
    html = path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert result.bytes == path.stat().st_size
    assert sorted(os.listdir(tmp_path)) == ["r.html"]
    assert_self_contained(html)


def test_summary_for_people(char_page):
    import io

    from rich.console import Console

    from lstm_cli.render.report import render_report

    result, _, _ = char_page
    console = Console(file=io.StringIO(), width=400, color_system=None)
    render_report(result, console)
    out = console.file.getvalue()
    assert "input 32, hidden 128, 2 layer(s), seq-len 2500" in out
    assert "layer 0 forward" in out and "passed" in out
    assert f"Wrote {result.html} (" in out and "2,500 characters, 256 units' tanh(c)" in out
    assert "834 columns (3 steps each)" in out and "no network request" in out
