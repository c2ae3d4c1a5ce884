"""Readable at every width: every command's tables at 60, 80 and 200 columns, for the seed,
a long sequence, a wide network and a loaded model. No number is ever cut, no line is wider
than the terminal, and every number a table shows is the JSON's value at the shown precision.
Also: long sequences binned in the per-step tables (--all-steps for every step), the header's
input source, TF32 only on CUDA, gates' capture method only with --verbose, and the README's
trained example read exactly as it is quoted."""

from __future__ import annotations

import dataclasses
import io
import math
import re
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.console import Console

from lstm_cli.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
WIDTHS = (60, 80, 200)
CONFIGS = {
    "seed": [],
    "long": ["--seq-len", "2000", "--hidden-size", "4", "--input-size", "4", "--num-layers", "1"],
    "wide": ["--bidirectional", "--proj-size", "3", "--num-layers", "12", "--hidden-size", "8"],
    "loaded": ["--weights", str(EXAMPLES / "memory_lstm.pt"), "--input", str(EXAMPLES / "memory_input.npy")],
}
COMMANDS = {
    "inspect": [],
    "compare-cell": ["--steps", "--repeat", "1"],
    "gates": ["--per-step"],
    "gradients": [],
}
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:e[+-]\d+)?%?|<0\.1%|>99\.9%")
BOX = str.maketrans({c: " " for c in "│┃┏┓┗┛┡┩└┘┳┻╇┼━─┣┫"})


def run(capsys, monkeypatch, width: int | None, *args: str) -> str:
    """stdout of `lstm-cli ARGS` run in this process with COLUMNS=width (None: --json)."""
    monkeypatch.setenv("COLUMNS", str(width or 100))
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def command_args(command: str, config: str) -> list[str]:
    args = list(CONFIGS[config])
    if command == "gradients" and config == "wide":
        args.remove("--bidirectional")  # gradients refuses a backward direction
    return [command, *COMMANDS[command], *args]


def shown_as(text: str, value: float | None) -> bool:
    """Whether `text` (a number as a table prints it: 0.369, 1.49e-07, 12.0%, 50,348, -, 0,
    nan) is `value` at the precision it shows: within half a unit of its last digit."""
    if text == "-":
        return value is None
    if text.lower() == "nan":
        return value is None or value != value
    if value is None:
        return False
    if text == "<0.1%":  # a share above 0 that would print as 0.0%
        return 0 < value < 0.0005
    if text == ">99.9%":  # below 1, would print as 100.0%
        return 0.9995 <= value < 1
    if text.endswith("%"):
        text, value = text[:-1], 100 * value
    digits = re.fullmatch(r"-?\d+(?:\.(\d+))?(?:e([+-]\d+))?", text.replace(",", ""))
    assert digits, f"not a number: {text!r}"
    unit = 10.0 ** (int(digits.group(2) or 0) - len(digits.group(1) or ""))
    return abs(float(text.replace(",", "")) - value) <= unit / 2 * (1 + 1e-9)


def rows(out: str, start: str, stop: str | None = None) -> list[list[str]]:
    """The lines of the table titled `start` (up to the line starting with `stop`), box
    characters removed, split into words."""
    lines = out.splitlines()
    first = next(k for k, line in enumerate(lines) if line.startswith(start))
    found = []
    for line in lines[first + 1 :]:
        if stop is not None and line.startswith(stop):
            break
        found.append(line.translate(BOX).split())
    return found


def numbers(words: list[str]) -> list[str]:
    return [w for w in words if NUMBER.fullmatch(w) or w == "-"]


def check_rows(out: str, checks: list[dict]) -> None:
    """The checks table: one row per check, in order, ending in passed; its numbers are the
    check's max |diff|, bound and used share."""
    found = [line.split() for line in out.translate(BOX).splitlines() if line.split()[-1:] == ["passed"]]
    assert len(found) == len(checks)
    for words, check in zip(found, checks):
        diff, bound, used = words[-4:-1]
        assert shown_as(diff, check["max_abs_diff"]) and shown_as(bound, check["tolerance"]), (words, check)
        if used not in ("-", "<1%") and check["worst_ratio"] is not None:
            assert shown_as(used, check["worst_ratio"]), (words, check)


def check_gates(out: str, doc: dict) -> None:
    table = [r for r in rows(out, "Gates: every layer", "saturated:") if r]
    stats = [r for r in table if len(numbers(r)) >= 6 or r[:1] == ["|c|"]]
    expected = []
    for entry in doc["layers"]:
        expected += [(g, entry["gates"][g]) for g in "ifgo"] + [("|c|", entry["cell"])]
    assert len(stats) == len(expected)
    for words, (gate, values) in zip(stats, expected):
        shown = numbers(words[words.index(gate) + 1 :])
        if gate == "|c|":
            assert len(shown) == 2 and all(shown_as(s, values[k]) for s, k in zip(shown, ("mean_abs", "max_abs")))
            continue
        assert len(shown) == 6, words
        keys = ("mean", "std", "min", "max", "left_saturated", "right_saturated")
        assert all(s.endswith("%") for s in shown[4:]), words  # 0.0%, never a bare 0
        for s, key in zip(shown, keys):
            assert shown_as(s, values[key]), (words, key, values[key])
    check_rows(out, doc["checks"])


def check_compare(out: str, doc: dict) -> None:
    flat = " ".join(out.split())
    match = re.search(r"output: max \|diff\| (\S+), (\S+) of max \|output\|", flat)
    assert shown_as(match.group(1).rstrip(","), doc["output_max_abs_diff"])
    assert shown_as(match.group(2), doc["output_max_rel_diff"])
    stack = [r for r in rows(out, "The loop (", "output (") if r and r[0].isdigit()]
    assert [r[-1] for r in stack] == [f"{s['parameters']:,}" for s in doc["stack"]]
    ends = [numbers(r)[-2:] for r in rows(out, "End to end, loop vs", "output: max") if r and r[0].isdigit()]
    assert len(ends) == len(doc["layers"])
    for (h, c), layer in zip(ends, doc["layers"]):
        assert shown_as(h, layer["h_n_max_abs_diff"]) and shown_as(c, layer["c_n_max_abs_diff"])
    # the per-step table: each row the largest over its steps (all of them: seq-len <= 64)
    values = doc["step_max_abs_diff"]
    steps = [r for r in rows(out, "Output difference at every", "loop - ref along the sequence") if r and r[0][0].isdigit()]
    size = math.ceil(len(values) / 64)
    assert len(steps) == math.ceil(len(values) / size) <= 64
    for k, words in enumerate(steps):
        start, stop = k * size, min((k + 1) * size, len(values))
        assert words[0] == (str(start) if stop - start == 1 else f"{start}-{stop - 1}")
        assert shown_as(words[1], max(values[start:stop])), (words, start, stop)
    check_rows(out, doc["checks"])


def check_gradients(out: str, doc: dict) -> None:
    lines = out.translate(BOX).splitlines()
    title = next(k for k, line in enumerate(lines) if line.startswith("Gradient norm"))
    for model in doc["models"]:
        first_word = model["module"].split()[0]
        row = next(line for line in lines[title:] if line.split()[:1] == [first_word])
        shown = numbers(row.split()[1:])[:3]
        expected = (model["first_step_norm"], model["last_step_norm"], model["first_to_last_ratio"])
        assert all(shown_as(s, v) for s, v in zip(shown, expected)), (row, expected)
    steps = len(doc["models"][0]["grad_norms"])
    if steps <= 20:
        table = [r for r in rows(out, "Norm at each", "Checks") if r and r[0].isdigit()]
        assert len(table) == steps
        for t, words in enumerate(table):
            assert all(shown_as(s, m["grad_norms"][t]) for s, m in zip(words[1:], doc["models"]))
    check_rows(out, doc["checks"])


def check_inspect(out: str, doc: dict) -> None:
    params = {r[0]: r for r in rows(out, "Parameters", "Gate blocks") if r and r[0].startswith(("weight", "bias", "total"))}
    for p in doc["parameters"]:
        assert f"{p['numel']:,}" in params[p["name"]]
    assert params["total"][1] == f"{doc['total_parameters']:,}"
    check_rows(out, doc["checks"])


CHECKERS = {"inspect": check_inspect, "compare-cell": check_compare, "gates": check_gates, "gradients": check_gradients}


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_number_whole_and_equal_to_the_json(capsys, monkeypatch, command, config):
    args = command_args(command, config)
    doc = __import__("json").loads(run(capsys, monkeypatch, None, *args, "--json"))
    for width in WIDTHS:
        out = run(capsys, monkeypatch, width, *args)
        assert "…" not in out, f"{width} columns: something was cut:\n{out}"
        too_wide = [line for line in out.splitlines() if cell_len(line) > width]
        assert not too_wide, f"{width} columns: {too_wide[:3]}"
        CHECKERS[command](out, doc)


# -- long sequences -----------------------------------------------------------------------------

LONG = ["--seq-len", "300", "--hidden-size", "4", "--input-size", "3", "--num-layers", "1", "--batch-size", "3"]


def per_step_rows(out: str, title: str) -> list[list[str]]:
    return [r for r in rows(out, title)
            if r and re.fullmatch(r"\d+(-\d+)?", r[0]) and all(NUMBER.fullmatch(w) or "-" in w for w in r)]


def test_per_step_tables_bin_long_sequences_and_all_steps_shows_each(capsys, monkeypatch):
    doc = __import__("json").loads(run(capsys, monkeypatch, None, "gates", *LONG, "--json"))
    binned = run(capsys, monkeypatch, 80, "gates", *LONG, "--per-step")
    assert "1 row = 5 steps, their mean" in " ".join(binned.split())
    table = per_step_rows(binned, "Per-step means, layer 0 forward")
    assert len(table) == 60 and table[0][0] == "0-4" and table[-1][0] == "295-299"
    means = doc["layers"][0]["per_step"]
    for k, words in enumerate(table):
        for gate, shown in zip("ifgo", words[1:]):
            assert shown_as(shown, sum(means[gate][5 * k : 5 * k + 5]) / 5)
    every = run(capsys, monkeypatch, 80, "gates", *LONG, "--all-steps")  # implies --per-step
    table = per_step_rows(every, "Per-step means, layer 0 forward")
    assert [r[0] for r in table] == [str(t) for t in range(300)]
    assert all(shown_as(words[1], means["i"][t]) for t, words in enumerate(table))

    steps = run(capsys, monkeypatch, 80, "compare-cell", *LONG, "--steps", "--repeat", "0")
    assert len(per_step_rows(steps, "Output difference at every step")) == 60
    every = run(capsys, monkeypatch, 80, "compare-cell", *LONG, "--all-steps", "--repeat", "0")
    assert len(per_step_rows(every, "Output difference at every step")) == 300


def test_lengths_show_how_many_sequences_run_at_each_step(capsys, monkeypatch):
    args = ["--seq-len", "10", "--lengths", "10,4,7", "--hidden-size", "4", "--num-layers", "1"]
    out = run(capsys, monkeypatch, 80, "gates", *args, "--per-step")
    table = per_step_rows(out, "Per-step means, layer 0 forward")
    assert [r[:2] for r in table] == [[str(t), str(sum(n > t for n in (10, 4, 7)))] for t in range(10)]
    out = run(capsys, monkeypatch, 80, "compare-cell", *args, "--steps", "--repeat", "0")
    assert [r[1] for r in per_step_rows(out, "Output difference at every step")] == ["3"] * 4 + ["2"] * 3 + ["1"] * 3
    # binned: a row where the count changes shows its range
    long = ["--seq-len", "200", "--lengths", "200,100,7", "--hidden-size", "4", "--num-layers", "1"]
    out = run(capsys, monkeypatch, 80, "gates", *long, "--per-step")
    table = per_step_rows(out, "Per-step means, layer 0 forward")
    assert table[0][:2] == ["0-3", "3"] and table[1][:2] == ["4-7", "2-3"] and table[-1][:2] == ["196-199", "1"]


def test_gates_sparklines_fit_or_move_under_the_table(capsys, monkeypatch):
    args = ["gates", "--seq-len", "500", "--hidden-size", "4", "--input-size", "3", "--num-layers", "1"]
    wide = run(capsys, monkeypatch, 200, *args)
    assert "1 char = 8 steps (their mean)" in " ".join(wide.split())  # 500 steps in 63 characters
    row = next(line for line in wide.splitlines() if line.startswith("0 fwd"))
    assert len(re.findall(r"[▁▂▃▄▅▆▇█]", row)) == 63
    narrow = run(capsys, monkeypatch, 60, *args)
    row = next(line for line in narrow.splitlines() if line.startswith("0 fwd  i"))
    assert not re.search(r"[▁▂▃▄▅▆▇█]", row)  # the numbers took the width ...
    below = next(line for line in narrow.splitlines() if line.startswith("0 fwd i "))
    assert 8 <= len(re.findall(r"[▁▂▃▄▅▆▇█]", below)) <= 60 - len("0 fwd i ")  # ... the bars have a line


def test_heatmap_merges_columns_in_a_narrow_terminal(capsys, monkeypatch):
    args = ["gates", "--seq-len", "640", "--hidden-size", "4", "--num-layers", "1", "--heatmap", "0:f"]
    out = run(capsys, monkeypatch, 60, *args)
    unit = next(line for line in out.splitlines() if line.startswith("u0 "))
    assert len(unit) <= 60 and len(re.findall(r"[▁▂▃▄▅▆▇█]", unit)) == 32  # 64 bins of 10 merged in pairs
    assert "a cell: 20 steps x 1 unit (mean)" in " ".join(out.split())
    assert "t = 0..639" in out


# -- headers --------------------------------------------------------------------------------------


def test_header_names_the_input_and_unbatched_runs(capsys, monkeypatch):
    seed = run(capsys, monkeypatch, 100, "inspect").splitlines()
    assert seed[0].startswith("input 100, hidden 20, 4 layer(s), seq-len 10, batch 3;")
    assert seed[1] == "input: random N(0, 1) from seed 0"
    loaded = run(capsys, monkeypatch, 100, "gates", *CONFIGS["loaded"]).splitlines()
    assert loaded[1] == f"input: file {EXAMPLES / 'memory_input.npy'}"
    unbatched = run(capsys, monkeypatch, 100, "compare-cell", "--unbatched", "--repeat", "0").splitlines()
    assert "seq-len 10, unbatched;" in unbatched[0] and "batch " not in unbatched[0]


def test_gates_prints_the_capture_method_only_when_verbose(capsys, monkeypatch):
    quiet = run(capsys, monkeypatch, 100, "gates")
    assert "capture method" not in quiet
    verbose = run(capsys, monkeypatch, 100, "gates", "--verbose")
    doc = __import__("json").loads(run(capsys, monkeypatch, None, "gates", "--json"))
    assert f"capture method: {doc['method']} ({doc['method_reason'].split()[0]}" in verbose


def test_tf32_is_named_on_cuda_only(capsys, monkeypatch):
    from lstm_cli.compare_cell import run_compare
    from lstm_cli.render.compare_cell import render_compare_cell
    from lstm_cli.spec import LSTMSpec

    cpu = run_compare(LSTMSpec(num_layers=1, hidden_size=4, device="cpu"), repeat=1)

    def header(result) -> str:
        console = Console(file=io.StringIO(), width=100)
        render_compare_cell(result, console)
        return console.file.getvalue().splitlines()[2]

    assert "TF32" not in header(cpu) and "full-precision" not in header(cpu)
    on_cuda = dataclasses.replace(cpu, device="cuda:0")
    assert header(on_cuda).endswith("; TF32 off (full-precision matmuls)")
    assert header(dataclasses.replace(on_cuda, tf32=True)).endswith("; TF32 allowed")
    # the time in the unit that reads best
    text = run(capsys, monkeypatch, 100, "compare-cell", "--repeat", "1")
    unit = r"\d+(\.\d+)? (ns|µs|ms|s)"  # fastest / median / slowest of each path
    assert re.search(rf"nn\.LSTM: {unit} / {unit} / {unit}\n  LSTMCell loop: {unit} / {unit} / {unit}\n  ratio", text)


# -- the README's trained example -----------------------------------------------------------------


def test_readme_trained_example_reads_as_quoted_at_80_columns(capsys, monkeypatch):
    readme = " ".join((ROOT / "README.md").read_text().split())
    out = run(capsys, monkeypatch, 80, "gates", *CONFIGS["loaded"])
    cells = {}
    for words in rows(out, "Gates: every layer", "saturated:"):
        for gate in ("i", "f", "|c|"):
            if gate in words[:3]:
                cells[gate] = numbers(words[words.index(gate) + 1 :])
    quote = re.search(r"the forget gate averages (\S+) and (\S+) of its values sit above 0\.9, against (\S+) below",
                      readme)
    assert quote.groups() == (cells["f"][0], cells["f"][5], cells["f"][4])
    quote = re.search(r"mostly shut \(mean (\S+), (\S+) below 0\.1\) but reaches (\S+?);", readme)
    assert quote.groups() == (cells["i"][0], cells["i"][4], cells["i"][3])
    assert re.search(r"grows to \|c\| = (\S+),", readme).group(1) == cells["|c|"][1]
    # The check's share of its bound and the end-to-end difference are rounding: they move a
    # little with the CPU's GEMM blocking and with the capture method auto measured faster here.
    used = float(re.search(r"within (\S+)% of its bound", readme).group(1))
    matched = float(re.search(r"matches `nn\.LSTM` to (\S+)\.", readme).group(1))
    flat = " ".join(out.split())
    shares = [float(share) for share in re.findall(r" (\d+)% passed", flat)]
    h_n = float(re.search(r"h_n (\S+),", flat).group(1))
    assert shares and all(abs(share - used) <= 10 for share in shares) and matched / 4 <= h_n <= matched * 4


@pytest.mark.parametrize("config", list(CONFIGS))
def test_bench_cuts_no_number_either(capsys, monkeypatch, config):
    """bench's timings differ from run to run, so only: nothing cut, nothing too wide, and
    every row's sizes as JSON has them (bench's renderer is render/bench.py's own)."""
    args = ["bench", "--repeat", "1", *CONFIGS[config]]
    doc = __import__("json").loads(run(capsys, monkeypatch, None, *args, "--json"))
    for width in WIDTHS:
        out = run(capsys, monkeypatch, width, *args)
        assert "…" not in out and all(cell_len(line) <= width for line in out.splitlines()), out
        for row in doc["rows"]:
            sizes = ", ".join(str(row[k]) for k in ("input_size", "hidden_size", "num_layers", "seq_len", "batch_size"))
            assert sizes in " ".join(out.split())  # the label may wrap after a comma
