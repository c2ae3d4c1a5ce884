"""The review's papercuts (issue 24), each shown fixed by a test that failed before the fix."""

import pytest
import torch
from pathlib import Path

from tests.test_text_input import char_model

LAYOUT_NOTE = "input layout assumed time-major"


def test_the_layout_note_is_only_for_input_the_user_laid_out(run_cli, tmp_path):
    """Text (and a capture) is laid out by the tool itself: no note that the layout was assumed;
    a tensor the user gives with a file that does not record the layout keeps the note."""
    path, _ = char_model(tmp_path)
    text = run_cli("inspect", "--weights", str(path), "--key", "rnn", "--text", "abcab", "--json")
    assert text.code == 0, text.stderr
    assert not any(LAYOUT_NOTE in note for note in text.json()["source"]["notes"])
    torch.save(torch.zeros(5, 2, 4), tmp_path / "x.pt")
    given = run_cli("inspect", "--weights", str(path), "--key", "rnn", "--input", str(tmp_path / "x.pt"), "--json")
    assert given.code == 0, given.stderr
    assert any(LAYOUT_NOTE in note for note in given.json()["source"]["notes"])


def test_a_share_that_is_not_zero_never_prints_as_zero():
    from lstm_cli.render.gates import top_units
    from lstm_cli.render.units import format_percent

    assert [format_percent(v) for v in (0.0, 1e-5, 0.0004, 0.0005, 0.5, 0.99951, 1.0)] == [
        "0.0%", "<0.1%", "<0.1%", "0.1%", "50.0%", ">99.9%", "100.0%"]
    # the --units top list: a unit right-saturated at 1 step in 100,000 is listed as <0.1%
    shown = [f"u{u}:{format_percent(v)}" for u, v in top_units([0.0, 1e-5, 0.2])]
    assert shown == ["u2:20.0%", "u1:<0.1%"]


def test_compare_cell_words_the_relative_difference_as_a_ratio(run_cli):
    """It read as a magnitude ("relative to max |output| 2.73e-07"); now it says what it is."""
    human = run_cli("compare-cell", "--repeat", "0")
    doc = run_cli("compare-cell", "--repeat", "0", "--json").json()
    line = next(line for line in human.stdout.splitlines() if line.startswith("output: max |diff|"))
    assert "relative to" not in line and line.endswith("of max |output| (max |diff| / max |output|)")
    ratio = float(line.split(", ")[1].split(" of max")[0])
    assert ratio == float(f"{doc['output_max_rel_diff']:.3g}")


def test_compare_weights_random_without_weights_is_refused(run_cli):
    """Random weights against an untrained copy from the same seed compared the model with
    itself; now it says why in one line."""
    result = run_cli("gates", "--compare-weights", "random")
    assert result.code == 2 and result.stdout == ""
    line, = result.stderr.strip().splitlines()
    assert "without --weights the model is that copy" in line


def test_the_steps_sparkline_is_on_a_log_scale_and_says_so():
    """Differences span decades: on the old linear scale everything but the largest sat at
    the bottom."""
    from lstm_cli.render.common import SPARK_LEVELS, log_sparkline

    line, scale = log_sparkline([0.0, 1e-8, 1e-7, 1e-6, float("nan")])
    assert line == SPARK_LEVELS[0] + SPARK_LEVELS[0] + SPARK_LEVELS[4] + SPARK_LEVELS[-1] + " "
    assert scale == "log scale 1e-08 to 1e-06, 0 at the bottom"


def test_compare_cell_steps_caption_names_the_column_it_draws(run_cli):
    out = run_cli("compare-cell", "--steps", "--repeat", "0").stdout
    assert any(line.startswith("loop - ref along the sequence (log scale ") for line in out.splitlines())


def test_a_type_takes_its_article(run_cli, tmp_path):
    """"holds a OrderedDict" read wrong."""
    from collections import OrderedDict

    from lstm_cli.formats.text import a_type

    assert [a_type(v) for v in (OrderedDict(), {}, 3, (1,), [])] == ["an OrderedDict", "a dict", "an int", "a tuple", "a list"]
    torch.save(OrderedDict(x=torch.zeros(2)), tmp_path / "x.pt")
    result = run_cli("inspect", "--input", str(tmp_path / "x.pt"))
    assert result.code == 2 and "holds an OrderedDict, not a single tensor" in result.stderr


def test_a_difference_and_its_bound_never_print_the_same_unless_equal():
    from lstm_cli.render.common import format_diff_pair, format_used

    assert format_diff_pair(5.9604645e-08, 5.9604644e-08) == ("5.960465e-08", "5.960464e-08")
    assert format_diff_pair(5.96e-08, 5.96e-08) == ("5.96e-08", "5.96e-08")  # equal: as they are
    assert format_diff_pair(1.5e-6, 3e-5) == ("1.5e-06", "3e-05")
    assert format_used(float("inf")) == "∞"  # a difference against a bound of 0


def test_a_failed_check_with_a_zero_bound_has_a_null_ratio_in_json_and_infinity_in_the_table(run_cli, monkeypatch):
    from lstm_cli.checks import within

    check = within("x", torch.tensor([1e-9]), torch.tensor([0.0]), 0.0)
    assert check.worst_ratio == float("inf") and not check.passed
    from lstm_cli.output import to_json
    import json

    assert json.loads(to_json(check))["worst_ratio"] is None


def test_help_examples_are_one_per_line_and_run(run_cli, tmp_path, monkeypatch):
    """Each command's --help lists its examples one per line (they were joined with " | "), and
    every one runs as written against the shipped files (outputs land in a temporary folder),
    except those needing a GPU or minutes."""
    import shlex

    from lstm_cli.cli import app

    root = Path(__file__).resolve().parent.parent
    ran = 0
    for command in app.registered_commands:
        epilog = command.epilog or ""
        assert " | lstm-cli" not in epilog
        lines = [line.strip() for line in epilog.splitlines() if line.strip().startswith("lstm-cli ")]
        assert lines, command.name
        for line in lines:
            if "--device cuda" in line or "--preset large" in line or "--preset medium" in line or ">" in line:
                continue  # a GPU, minutes of timing, or a shell redirection
            words = shlex.split(line.replace("$'def f(x):\\n    return x'", "'def f(x):\n    return x'"))[1:]
            words = [str(root / w) if w.startswith("examples/") else w for w in words]
            monkeypatch.chdir(tmp_path)
            result = run_cli(*words)
            assert result.code == 0, (line, result.stderr)
            ran += 1
    assert ran >= 20


def test_a_missing_file_is_reported_before_torch_is_imported():
    import subprocess
    import sys

    for flag in ("--weights", "--input", "--initial-state"):
        code = ("import sys; from lstm_cli.cli import main; code = main(['inspect', '%s', '/nonexistent.pt']); "
                "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(code)") % flag
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip() == f"lstm-cli: error: {flag} /nonexistent.pt: no such file"


def test_save_weights_says_saved_like_export_and_plot(run_cli, tmp_path):
    target = tmp_path / "w.pt"
    for command in ("inspect", "gates", "compare-cell"):
        result = run_cli(command, "--save-weights", str(target), *(["--repeat", "0"] if command == "compare-cell" else []))
        assert result.code == 0 and target.exists()
        assert result.stdout.splitlines()[-1] == f"saved: {target} (the weights that ran)"
        target.unlink()


def test_bench_says_how_long_each_row_will_take_when_piped(run_cli):
    """bench --preset large ran 421 s with nothing printed when piped: each row now says on
    stderr what its warm-up round took and how long its timed rounds should take."""
    result = run_cli("bench", "--sweep", "seq-len=5,20", "--repeat", "2", "--json")
    assert result.code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("lstm-cli: bench: row ")]
    assert [line.split(" (")[0] for line in lines] == ["lstm-cli: bench: row 1 of 2", "lstm-cli: bench: row 2 of 2"]
    assert all("one round of the three paths took" in line and "2 timed round(s) take about" in line for line in lines)
    assert result.json()["rows"][1]["seq_len"] == 20  # stdout stays one JSON document


def test_input_dash_reads_the_tensor_file_from_standard_input(run_cli, monkeypatch, tmp_path):
    import io
    import sys

    import numpy as np

    from lstm_cli.sources import stdin_copy

    x = np.random.default_rng(0).normal(size=(4, 2, 100)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)

    class Piped(io.TextIOWrapper):
        def isatty(self):
            return False

    stdin_copy.cache_clear()
    monkeypatch.setattr(sys, "stdin", Piped(io.BytesIO((tmp_path / "x.npy").read_bytes())))
    piped = run_cli("inspect", "--input", "-", "--json")
    stdin_copy.cache_clear()
    direct = run_cli("inspect", "--input", str(tmp_path / "x.npy"), "--json")
    assert piped.code == 0, piped.stderr
    assert piped.json()["config"]["input_source"] == "standard input"
    assert piped.json()["tensors"] == direct.json()["tensors"] and piped.json()["checks"] == direct.json()["checks"]
    monkeypatch.setattr(sys, "stdin", Piped(io.BytesIO(b"")))
    empty = run_cli("inspect", "--input", "-")
    stdin_copy.cache_clear()
    assert empty.code == 2 and empty.stderr.strip() == "lstm-cli: error: --input -: standard input is empty"


@pytest.mark.parametrize("width", [60, 80, 100, 160])
def test_one_table_style_for_a_whole_output_at_every_width(run_cli, monkeypatch, width):
    """At 80 columns inspect drew three boxed tables and a compact one: now when any table of an
    output must be compact (its cells do not fit on one line in a box), every table is."""
    monkeypatch.setenv("COLUMNS", str(width))
    for args in (["inspect"], ["gates", "--units"], ["compare-cell", "--repeat", "0", "--steps"], ["gradients"]):
        out = run_cli(*args).stdout
        boxed = "┏" in out
        compact = any(line.strip() and set(line.strip()) == {"─"} for line in out.splitlines())
        assert not (boxed and compact), (width, args)
