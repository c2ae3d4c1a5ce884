"""report --html in a real browser: headless Chromium driven by Playwright loads the page from
file://, makes no request but the file itself and logs no error; its select-and-match (the
exposed function, a real mouse drag, the keyboard) gives the units and matches of an independent
Python implementation reading the same page data; the 20,000-character page is under 15 MB and
interactive within 3 s. Screenshots go to tests/artifacts/.

Skips, with the reason, where Playwright or a chromium binary is missing (.ci/run installs
Debian's chromium; `pip install playwright` needs no browser download for this)."""

from __future__ import annotations

import os
import shutil
import textwrap as stdlib_textwrap
import time
from pathlib import Path

import numpy as np
import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright: pip install playwright")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip("needs a chromium binary (Debian: apt-get install chromium)", allow_module_level=True)

from tests.test_report import TEXT, char_spec, page_data, page_q, reference_select  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
BIG_CHARACTERS = 20_000
MAX_BYTES = 15_000_000
MAX_SECONDS = 3.0


def big_text() -> str:
    """20,000 characters of real Python source (textwrap.py, then shlex.py), every one in the
    shipped model's vocabulary."""
    import shlex

    import torch

    vocab = set(torch.load(str(Path(__file__).resolve().parent.parent / "examples" / "char_lstm.pt"),
                           weights_only=True)["vocab"])
    source = Path(stdlib_textwrap.__file__).read_text() + Path(shlex.__file__).read_text()
    text = "".join(ch for ch in source if ch in vocab)[:BIG_CHARACTERS]
    assert len(text) == BIG_CHARACTERS
    return text


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """The pages under test: the shipped character model on 2,500 characters, and a random
    bidirectional model's steps (state h)."""
    from lstm_cli.report import run_report
    from lstm_cli.spec import LSTMSpec

    folder = tmp_path_factory.mktemp("report-browser")
    text_page = folder / "char.html"
    run_report(char_spec(TEXT), text_page, threshold=0.3, margin=1)
    steps_page = folder / "steps.html"
    spec = LSTMSpec(input_size=4, hidden_size=8, num_layers=2, seq_len=140, batch_size=2, bidirectional=True,
                    device="cpu")
    run_report(spec, steps_page, state="h", threshold=0.05, margin=1)
    wide_page = folder / "wide.html"
    run_report(LSTMSpec(input_size=3, hidden_size=250, num_layers=2, seq_len=40, batch_size=1, device="cpu"), wide_page)
    return {"text": text_page, "steps": steps_page, "wide": wide_page}


class Loaded:
    """A page loaded from file://, with every request and every console or page error recorded."""

    def __init__(self, browser, path: Path, scheme: str = "light", width: int = 1280, height: int = 900):
        self.path = path
        self.url = path.resolve().as_uri()
        self.page = browser.new_page(viewport={"width": width, "height": height}, color_scheme=scheme)
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", lambda message: self.errors.append(f"console {message.type}: {message.text}")
                     if message.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.on("requestfailed", lambda request: self.errors.append(f"request failed: {request.url}"))
        self.page.goto(self.url)
        # Polled from here: Playwright's wait_for_function evaluates its predicate with eval, which
        # the page's Content-Security-Policy (rightly) forbids.
        deadline = time.monotonic() + 30
        while not self.page.evaluate("Boolean(window.lstmReport && window.lstmReport.ready === true)"):
            assert time.monotonic() < deadline, f"the page never became ready: {self.errors}"
            time.sleep(0.02)
        self.data = page_data(path.read_text(encoding="utf-8"))

    def js(self, expression: str, arg=None):
        return self.page.evaluate(expression, arg)

    def select(self, a: int, b: int, **options) -> dict:
        return self.js("([a, b, o]) => window.lstmReport.select(a, b, o)", [a, b, options])

    def check_clean(self) -> None:
        assert self.requests == [self.url], f"requests beyond the file itself: {self.requests}"
        assert self.errors == [], self.errors

    def close(self) -> None:
        self.page.close()


@pytest.fixture
def text_page(browser, pages):
    loaded = Loaded(browser, pages["text"])
    yield loaded
    loaded.check_clean()
    loaded.close()


@pytest.fixture
def steps_page(browser, pages):
    loaded = Loaded(browser, pages["steps"])
    yield loaded
    loaded.check_clean()
    loaded.close()


def same(got: dict, want: dict) -> None:
    """The page's answer (selected units and ranked matches) is the reference's."""
    assert got["selected"] == want["selected"]
    assert len(got["matches"]) == len(want["matches"])
    for mine, theirs in zip(got["matches"], want["matches"]):
        assert {k: mine[k] for k in ("start", "end", "matched", "others", "selection")} == \
            {k: theirs[k] for k in ("start", "end", "matched", "others", "selection")}
        assert mine["score"] == pytest.approx(theirs["score"], rel=1e-15, abs=0)


def drag(loaded: Loaded, first: int, last: int) -> None:
    """Press the mouse on character `first`, move over the characters to `last`, release."""
    page = loaded.page
    start = page.locator(f'#textview .ch[data-i="{first}"]')
    start.scroll_into_view_if_needed()
    a, b = start.bounding_box(), page.locator(f'#textview .ch[data-i="{last}"]').bounding_box()
    page.mouse.move(a["x"] + a["width"] / 2, a["y"] + a["height"] / 2)
    page.mouse.down()
    page.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2, steps=8)
    page.mouse.up()


def find_span(data: dict, lengths=(4, 3, 2, 6, 1), threshold: float = 0.3, margin: int = 1, within_line: bool = True):
    """A span of the text whose selection is not empty (in one line, for dragging)."""
    text = data["input"]["text"]
    for length in lengths:
        for a in range(40, len(text) - length, 7):
            if within_line and "\n" in text[a : a + length]:
                continue
            if reference_select(data, a, a + length, threshold, margin)["selected"]:
                return a, a + length
    raise AssertionError("no span selects any unit")


# -- loading -----------------------------------------------------------------------------------------


def test_loads_from_file_with_no_other_request_and_no_error(text_page):
    page = text_page.page
    assert page.title() == "lstm-cli report: char_lstm.pt"
    assert text_page.js("document.querySelectorAll('#textview .ch').length") == 2500
    assert text_page.js("document.getElementById('verdict').textContent") == "passed"
    assert text_page.js("document.querySelectorAll('canvas.map').length") == 10  # 2 layers x i, f, g, o, c
    assert text_page.js("document.querySelectorAll('#scatters canvas').length") == 4
    assert text_page.js("document.querySelectorAll('table.units tbody tr').length") == 256
    header = text_page.js("document.getElementById('provenance').textContent").split("\n")
    assert header == text_page.data["header"]
    text_page.check_clean()


# -- select and match: the function, the mouse, the keyboard -----------------------------------------------


@pytest.mark.parametrize("threshold, margin, min_length, sign", [
    (0.3, 1, 1, "positive"), (0.0, 0, 1, "positive"), (-0.2, 2, 2, "positive"), (0.5, 1, 1, "positive"),
    (0.75, 0, 3, "positive"), (0.3, 1, 1, "both"), (0.0, 0, 1, "both"), (0.2, 2, 2, "both")])
def test_select_function_equals_the_python_reference(text_page, threshold, margin, min_length, sign):
    data = text_page.data
    nonempty = 0
    for a, length in [(0, 1), (37, 3), (200, 8), (511, 2), (1234, 5), (2490, 10), (2499, 1), (999, 40), (5, 4)]:
        b = min(2500, a + length)
        got = text_page.select(a, b, threshold=threshold, margin=margin, minLength=min_length, top=0, sign=sign)
        want = reference_select(data, a, b, threshold, margin, min_length, sign=sign)
        same(got, want)
        assert got["total"] == len(want["matches"]) and got["sign"] == sign
        nonempty += bool(want["selected"])
        shown = text_page.select(a, b, threshold=threshold, margin=margin, minLength=min_length, top=10, sign=sign)
        same(shown, reference_select(data, a, b, threshold, margin, min_length, top=10, sign=sign))
    assert nonempty >= 2  # the comparison saw real selections


def test_page_and_cli_select_the_same(text_page):
    """The browser against `lstm-cli units --select/--match`'s own computation (text/select.py),
    where that module is present."""
    try:
        from lstm_cli.text.select import run_select
    except ImportError:
        pytest.skip("lstm_cli.text.select (units --select/--match) is not here yet")
    spec = char_spec(TEXT)
    from lstm_cli.text.unit_states import unit_states

    states = unit_states(spec)
    compared, negative = 0, 0
    for a, b, threshold, margin, min_length, sign in [
        (40, 44, 0.3, 1, 1, "positive"), (200, 208, 0.0, 0, 1, "positive"), (1234, 1239, 0.5, 1, 2, "positive"),
        (999, 1000, -0.2, 2, 1, "positive"), (5, 9, 0.3, 1, 1, "positive"),
        # sign both: 1:95 is low on [5, 9) (its negative side is selected), 0:23, 1:32 and 1:46 at 999
        (5, 9, 0.3, 1, 1, "both"), (999, 1000, 0.2, 2, 1, "both"), (40, 44, 0.3, 1, 1, "both"),
        (200, 208, 0.0, 0, 1, "both"), (2499, 2500, 0.5, 1, 1, "both"),
    ]:
        cli = run_select(spec, TEXT, (a, b), state="c", threshold=threshold, margin=margin, match=True, top=None,
                         min_length=min_length, states=states, sign=sign)
        page = text_page.select(a, b, threshold=threshold, margin=margin, minLength=min_length, top=0, sign=sign)
        assert page["selected"] == [{"layer": u.layer, "direction": u.direction, "unit": u.unit, "sign": u.sign}
                                    for u in cli.selected]
        assert [(m["start"], m["end"], m["matched"], m["others"], m["selection"]) for m in page["matches"]] == \
            [(m.start, m.end, m.matched, m.others, m.selection) for m in cli.matches]
        assert [m["score"] for m in page["matches"]] == pytest.approx([m.score for m in cli.matches], rel=1e-15)
        assert page["sides"] == cli.units and page["total"] == cli.runs
        compared += bool(cli.selected)
        negative += sum(u.sign == -1 for u in cli.selected)
    assert compared >= 6
    assert negative >= 4  # negative sides were selected, and matched the same


def test_mouse_drag_over_characters_selects_like_the_function(text_page):
    data = text_page.data
    a, b = find_span(data)
    drag(text_page, a, b - 1)
    shown = text_page.js("window.lstmReport.last")
    assert shown["span"] == [a, b]
    want = reference_select(data, a, b, 0.3, 1, 1, top=10)
    same(shown, want)
    same(shown, text_page.select(a, b, top=10))
    # what the reader sees: the selected characters, one chip per unit, one row per match
    assert text_page.js("document.querySelectorAll('#textview .ch.sel').length") == b - a
    assert text_page.js("document.querySelectorAll('#selected .chip').length") == len(want["selected"])
    assert text_page.js("document.querySelectorAll('#matches tbody tr').length") == len(want["matches"])
    marked = text_page.js("Array.from(document.querySelectorAll('#matches tbody tr.selection td:nth-child(2)')).map(td => td.textContent)")
    assert marked == [f"{m['start']}\u2013{m['end'] - 1}" for m in want["matches"] if m["selection"]]
    # dragging right to left selects the same span
    text_page.js("window.lstmReport.runSelection(0, 1)")
    drag(text_page, b - 1, a)
    assert text_page.js("window.lstmReport.last.span") == [a, b]


def test_keyboard_reaches_every_control_and_selects(text_page):
    page = text_page.page
    seen = []
    for _ in range(40):
        page.keyboard.press("Tab")
        seen.append(text_page.js("""(() => { const e = document.activeElement;
            return e.id || (e.tagName === 'TR' ? 'unit-row' : e.tagName.toLowerCase() + ':' + (e.textContent || '').trim().slice(0, 12)); })()"""))
    for control in ("threshold", "threshold-range", "sign", "margin", "min-length", "sel-from", "sel-to", "sel-go", "unit-pick",
                    "textview", "trace-left", "trace-right", "unit-row"):
        assert control in seen, f"{control} is not reachable with Tab (reached: {seen})"
    # move the cursor with the arrow keys, extend with Shift, select with Enter
    page.focus("#textview")
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    for _ in range(3):
        page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("Enter")
    shown = text_page.js("window.lstmReport.last")
    assert shown["span"] == [5, 9]
    same(shown, reference_select(text_page.data, 5, 9, top=10))
    # the unit list: arrow down to the second row, Enter colours the input by that unit
    page.focus("table.units tbody tr[tabindex='0']")
    first = int(text_page.js("document.activeElement.dataset.unit"))
    page.keyboard.press("ArrowDown")
    second = int(text_page.js("document.activeElement.dataset.unit"))
    page.keyboard.press("Enter")
    assert second != first
    assert text_page.js("document.querySelector('table.units tr.picked').dataset.unit") == str(second)
    assert text_page.js("document.getElementById('unit-pick').value").split(":")[1] == str(second % 128)


def test_threshold_margin_and_min_length_controls_rerun_the_selection(text_page):
    page, data = text_page.page, text_page.data
    a, b = find_span(data, threshold=0.5, margin=0)
    page.fill("#sel-from", str(a))
    page.fill("#sel-to", str(b))
    page.click("#sel-go")
    same(text_page.js("window.lstmReport.last"), reference_select(data, a, b, 0.3, 1, 1, top=10))
    page.fill("#threshold", "0.5")
    page.press("#threshold", "Enter")
    page.fill("#margin", "0")
    page.press("#margin", "Enter")
    page.fill("#min-length", "2")
    page.press("#min-length", "Enter")
    shown = text_page.js("window.lstmReport.last")
    assert (shown["threshold"], shown["margin"], shown["minLength"]) == (0.5, 0, 2)
    same(shown, reference_select(data, a, b, 0.5, 0, 2, top=10))
    assert text_page.js("document.getElementById('threshold-range').value") == "50"
    # a threshold with three decimals is refused, and the page keeps the last good one
    page.fill("#threshold", "0.505")
    page.press("#threshold", "Enter")
    assert text_page.js("document.getElementById('threshold').getAttribute('aria-invalid')") == "true"
    assert text_page.js("window.lstmReport.last.threshold") == 0.5
    # more matches on request
    total = shown["total"]
    if total > 10:
        page.click("#more-matches")
        assert text_page.js("document.querySelectorAll('#matches tbody tr').length") == min(20, total)


def test_sign_control_changes_the_result(text_page):
    page, data = text_page.page, text_page.data
    a, b = 5, 9  # at threshold 0.3, margin 1: unit 0:32 is high there, and 1:95 low
    page.fill("#sel-from", str(a))
    page.fill("#sel-to", str(b))
    page.click("#sel-go")
    positive = text_page.js("window.lstmReport.last")
    assert positive["sign"] == "positive" and all(u["sign"] == 1 for u in positive["selected"])
    same(positive, reference_select(data, a, b, top=10))
    assert not text_page.js("document.querySelector(\"table.units th[data-key='onneg']\").offsetParent")  # hidden
    # the keyboard: focus the sign control, move to "both"
    page.focus("#sign")
    page.keyboard.press("ArrowDown")
    if text_page.js("document.getElementById('sign').value") != "both":  # a platform whose select opens instead
        page.keyboard.press("Escape")
        page.select_option("#sign", "both")
    both = text_page.js("window.lstmReport.last")
    assert both["sign"] == "both" and both["sides"] == 512
    want = reference_select(data, a, b, top=10, sign="both")
    same(both, want)
    negatives = [u for u in want["selected"] if u["sign"] == -1]
    assert {"layer": 1, "direction": "forward", "unit": 95, "sign": -1} in negatives
    assert len(both["selected"]) > len(positive["selected"])
    # what the reader sees: a negative side named with a minus, in the chips, the table and the trace
    chips = text_page.js("Array.from(document.querySelectorAll('#selected .chip')).map(c => c.textContent)")
    assert "1:95\u2212" in chips and "0:32" in chips
    assert text_page.js("document.querySelector('#selected .chip.neg').dataset.unit") == str(256 + 128 + 95)
    row = "table.units tr[data-unit='223']"  # unit 1:95
    text_page.js("window.lstmReport.setUnit(223)")
    selected_column = text_page.js("Array.from(document.querySelectorAll('table.units th')).findIndex(th => th.dataset.key === 'selected')")
    assert text_page.js(f"document.querySelector(\"{row}\").children[{selected_column}].textContent") == "\u2713\u2212"
    assert text_page.js("document.querySelector(\"table.units th[data-key='onneg']\").offsetParent") is not None
    on_negative = text_page.js("Array.from(document.querySelectorAll('table.units th')).findIndex(th => th.dataset.key === 'onneg')")
    q = page_q(data).astype(int)
    shown = float(text_page.js(f"document.querySelector(\"{row}\").children[{on_negative}].textContent"))
    assert shown == pytest.approx(100 * (q[223] <= -31).mean(), abs=0.05)
    assert "negative sides (\u2212), drawn as \u2212tanh(c)" in text_page.js("document.getElementById('trace-range').textContent")
    # back to positive: the first result again
    page.select_option("#sign", "positive")
    same(text_page.js("window.lstmReport.last"), reference_select(data, a, b, top=10))


def test_sign_both_refuses_a_negative_threshold_in_one_line(text_page):
    page, data = text_page.page, text_page.data
    text_page.js("window.lstmReport.runSelection(5, 9)")
    page.select_option("#sign", "both")
    error = "document.getElementById('control-error')"
    assert text_page.js(f"{error}.hidden") is True
    page.fill("#threshold", "-0.2")
    page.press("#threshold", "Enter")
    assert text_page.js("document.getElementById('threshold').getAttribute('aria-invalid')") == "true"
    message = text_page.js(f"{error}.textContent")
    assert text_page.js(f"{error}.hidden") is False and "\n" not in message
    assert message.startswith("sign both needs a threshold of 0 or more") and "-0.2" in message
    shown = text_page.js("window.lstmReport.last")
    assert (shown["threshold"], shown["sign"]) == (0.3, "both")  # the page keeps its last good threshold
    # the slider likewise
    text_page.js("(() => { const r = document.getElementById('threshold-range'); r.value = '-5'; r.dispatchEvent(new Event('input')); })()")
    assert text_page.js("document.getElementById('threshold-range').getAttribute('aria-invalid')") == "true"
    assert text_page.js("window.lstmReport.last.threshold") == 0.3
    # the function throws a RangeError (it is the caller's to catch; the page never throws uncaught)
    with pytest.raises(sync_api.Error, match="sign both needs a threshold of 0 or more"):
        text_page.select(5, 9, threshold=-0.2, sign="both")
    with pytest.raises(sync_api.Error, match="sign must be positive"):
        text_page.select(5, 9, sign="negative")
    # sign positive takes the threshold typed: -0.2 is good there
    page.select_option("#sign", "positive")
    shown = text_page.js("window.lstmReport.last")
    assert (shown["threshold"], shown["sign"]) == (-0.2, "positive")
    same(shown, reference_select(data, 5, 9, -0.2, 1, 1, top=10))
    assert text_page.js(f"{error}.hidden") is True
    assert text_page.js("document.getElementById('threshold').getAttribute('aria-invalid')") is None
    # and sign both is refused while the threshold is below 0
    page.select_option("#sign", "both")
    assert text_page.js("document.getElementById('sign').value") == "positive"
    assert text_page.js("window.lstmReport.last.sign") == "positive"
    assert "raise the threshold first" in text_page.js(f"{error}.textContent")
    page.fill("#threshold", "0.1")
    page.press("#threshold", "Enter")
    assert text_page.js(f"{error}.hidden") is True
    page.select_option("#sign", "both")
    same(text_page.js("window.lstmReport.last"), reference_select(data, 5, 9, 0.1, 1, 1, top=10, sign="both"))


def test_a_match_link_scrolls_to_its_characters(text_page):
    page, data = text_page.page, text_page.data
    a, b = find_span(data)
    text_page.js("([a, b]) => window.lstmReport.runSelection(a, b)", [a, b])
    matches = text_page.js("window.lstmReport.last.matches")
    far = max(range(len(matches)), key=lambda n: abs(matches[n]["start"] - a))
    page.click(f'#matches a[data-match="{far}"]')
    target = matches[far]
    current = text_page.js("Array.from(document.querySelectorAll('#textview .ch.current')).map(e => +e.dataset.i)")
    assert current == list(range(target["start"], target["end"]))
    visible = text_page.js("""(i) => { const v = document.getElementById('textview').getBoundingClientRect();
        const r = document.querySelector(`#textview .ch[data-i="${i}"]`).getBoundingClientRect();
        return r.top >= v.top && r.bottom <= v.bottom && r.top >= 0 && r.bottom <= window.innerHeight; }""", target["start"])
    assert visible


def test_unit_list_sorts_by_any_column(text_page):
    page, data = text_page.page, text_page.data
    std = np.array(data["stats"]["std"])
    page.click("table.units th[data-key='std'] button")
    order = [int(u) for u in text_page.js("Array.from(document.querySelectorAll('table.units tbody tr')).map(r => r.dataset.unit)")]
    assert order == sorted(range(256), key=lambda u: (-std[u], u))
    page.click("table.units th[data-key='std'] button")
    assert int(text_page.js("document.querySelector('table.units tbody tr').dataset.unit")) == int(np.argmin(std))
    page.click("table.units th[data-key='on'] button")
    on = (page_q(data).astype(int) >= 30).mean(axis=1)
    top = int(text_page.js("document.querySelector('table.units tbody tr').dataset.unit"))
    assert on[top] == on.max()
    page.fill("#unit-pick", "1:37")
    page.press("#unit-pick", "Enter")
    assert text_page.js("document.querySelector('table.units tr.picked').dataset.unit") == str(128 + 37)
    # the characters are coloured by the picked unit: the value of its first character
    colour = text_page.js("getComputedStyle(document.querySelector('#textview .ch[data-i=\"0\"]')).backgroundColor")
    assert colour.startswith("rgb(")


def test_heatmap_hover_shows_a_cells_value(text_page):
    page, data = text_page.page, text_page.data
    canvas = page.locator("canvas.map[data-panel='1']")  # layer 0 forward f
    canvas.scroll_into_view_if_needed()
    left, top, width, height = text_page.js("""(() => { const c = document.querySelector("canvas.map[data-panel='1']");
        const r = c.getBoundingClientRect(); return [r.left + c.clientLeft, r.top + c.clientTop, c.clientWidth, c.clientHeight]; })()""")
    panel = data["heatmap"]["panels"][1]
    column, row = 100, 20
    page.mouse.move(left + (column + 0.5) / panel["columns"] * width, top + (row + 0.5) / panel["rows"] * height)
    tip = text_page.js("document.getElementById('tip').textContent")
    # "layer 0, forget gate f\nunit 20, steps 300–302 (mean): 0.6652\n"...""
    import re

    from tests.test_report import panel_values

    found = re.search(r"forget gate f\nunit (\d+), steps (\d+)\u2013(\d+) \(mean\): ([-0-9.e]+)", tip)
    assert found, tip
    unit, first, last, value = int(found[1]), int(found[2]), int(found[3]), float(found[4])
    assert abs(unit - row) <= 1 and abs(first - 3 * column) <= 3 and last == first + 2  # mouse positions are whole pixels
    assert value == pytest.approx(panel_values(panel)[unit, first // 3], rel=1e-3)


def test_a_long_unit_list_is_laid_out_as_it_scrolls(browser, pages):
    loaded = Loaded(browser, pages["wide"])
    try:
        rows = "document.querySelectorAll('table.units tbody tr').length"
        assert loaded.js(rows) == 400
        assert "400 of 500 rows" in loaded.js("document.getElementById('unit-table-status').textContent")
        loaded.page.fill("#unit-pick", "1:230")  # row 480 in the list's order
        loaded.page.press("#unit-pick", "Enter")
        assert loaded.js(rows) == 481
        assert loaded.js("document.querySelector('table.units tr.picked').dataset.unit") == "480"
        loaded.page.focus("table.units tr.picked")
        loaded.page.keyboard.press("End")
        assert loaded.js(rows) == 500 and loaded.js("document.activeElement.dataset.unit") == "499"
        assert loaded.js("document.getElementById('unit-table-status').textContent") == ""
        loaded.page.click("table.units th[data-key='std'] button")  # a new order starts again at 400
        assert loaded.js(rows) == 400
        loaded.page.eval_on_selector("#unit-table", "box => { box.scrollTop = box.scrollHeight; box.dispatchEvent(new Event('scroll')); }")
        assert loaded.js(rows) == 500
        loaded.check_clean()
    finally:
        loaded.close()


# -- steps (input that is not text) ----------------------------------------------------------------------------


def test_steps_page_selects_over_a_strip_of_steps(steps_page):
    data = steps_page.data
    assert data["input"]["kind"] == "steps"
    assert steps_page.js("document.querySelectorAll('#textview .ch.step').length") == 140
    spans = [(a, a + n) for a in range(0, 140, 9) for n in (1, 2, 4)]
    found = [(a, b) for a, b in spans if reference_select(data, a, b, 0.05, 1)["selected"]]
    assert found
    for a, b in spans:
        same(steps_page.select(a, b, top=0), reference_select(data, a, b, 0.05, 1))
        same(steps_page.select(a, b, top=0, sign="both"), reference_select(data, a, b, 0.05, 1, sign="both"))
    assert steps_page.js("window.lstmReport.unitName(32 + 8 + 3)") == "0:3:b\u2212"  # 0:3 backward's negative side
    a, b = found[0]
    drag(steps_page, a, b - 1)
    shown = steps_page.js("window.lstmReport.last")
    assert shown["span"] == [a, b]
    same(shown, reference_select(data, a, b, 0.05, 1, top=10))
    ARTIFACTS.mkdir(exist_ok=True)
    steps_page.page.screenshot(path=str(ARTIFACTS / "report_steps.png"), full_page=False)


# -- scale: 20,000 characters ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_page(tmp_path_factory):
    from lstm_cli.report import run_report

    path = tmp_path_factory.mktemp("report-big") / "big.html"
    result = run_report(char_spec(big_text()), path)
    return path, result


def test_twenty_thousand_characters_fit_and_load_quickly(browser, big_page):
    path, result = big_page
    size = path.stat().st_size
    assert result.bytes == size < MAX_BYTES, f"{size:,} bytes"
    assert (result.steps, result.shown_steps, result.steps_per_column, result.heatmap_columns) == (20_000, 20_000, 20, 1000)
    loaded = Loaded(browser, path)
    try:
        ready_ms = loaded.js("window.lstmReport.readyAt")  # since navigation start
        navigation = loaded.js("performance.getEntriesByType('navigation')[0].startTime")
        seconds = (ready_ms - navigation) / 1000
        print(f"\n20,000 characters: {size / 1e6:.2f} MB, interactive {seconds:.2f} s after navigation start")
        assert seconds < MAX_SECONDS, f"interactive after {seconds:.2f} s"
        assert "Subsampled: each column is the mean of 20 steps" in loaded.js("document.getElementById('heatmap-help').textContent")
        a, b = find_span(loaded.data)
        timing = loaded.js("""([a, b]) => { const t = performance.now(); window.lstmReport.runSelection(a, b);
            return performance.now() - t; }""", [a, b])
        print(f"select-and-match on 20,000 characters x 256 units, drawn: {timing:.0f} ms")
        assert timing < 1000
        same(loaded.js("window.lstmReport.last"), reference_select(loaded.data, a, b, top=10))
        loaded.check_clean()
    finally:
        loaded.close()


# -- how it looks ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_screenshots_in_both_colour_schemes(browser, pages, scheme):
    loaded = Loaded(browser, pages["text"], scheme=scheme)
    try:
        background = loaded.js("getComputedStyle(document.body).backgroundColor")
        ink = loaded.js("getComputedStyle(document.body).color")
        luminance = [sum(int(x) for x in colour[colour.index("(") + 1 : -1].split(",")[:3]) / 765 for colour in (background, ink)]
        assert (luminance[0] > 0.8 and luminance[1] < 0.3) if scheme == "light" else (luminance[0] < 0.2 and luminance[1] > 0.7)
        a, b = find_span(loaded.data)
        drag(loaded, a, b - 1)
        loaded.page.locator("#match-section").scroll_into_view_if_needed()
        ARTIFACTS.mkdir(exist_ok=True)
        name = "report" if scheme == "light" else "report_dark"
        loaded.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)
        loaded.page.screenshot(path=str(ARTIFACTS / f"{name}_full.png"), full_page=True)
        loaded.check_clean()
    finally:
        loaded.close()
