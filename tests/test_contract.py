"""One contract for --json (issue 24): every command's document has the same top-level keys and
validates against the JSON Schema shipped for it (`lstm-cli schema COMMAND`), across random,
file, text and captured inputs; a usage error with --json still prints a JSON object."""

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch

from lstm_cli.schema import commands, generate, shipped

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
COMMON = ["command", "config", "source", "passed", "checks", "notes"]
SMALL = ["--input-size", "5", "--hidden-size", "4", "--num-layers", "2", "--seq-len", "6", "--batch-size", "3"]
TEXT = ["--weights", str(EXAMPLES / "char_lstm.pt"), "--key", "lstm", "--text", "def f(x):\n    return 'a' + x\n"]


@pytest.mark.parametrize("command", commands())
def test_the_shipped_schema_is_the_one_the_result_classes_give(command):
    """Regenerate with `python -m lstm_cli.schema` after changing a result dataclass."""
    assert shipped(command) == generate(command)


def test_the_schema_command_prints_the_shipped_schema_and_refuses_others(run_cli):
    result = run_cli("schema", "gates")
    assert result.code == 0 and json.loads(result.stdout) == shipped("gates")
    bad = run_cli("schema", "nope")
    assert bad.code == 2 and "schema takes one of bench, compare-cell, gates" in bad.stderr


def test_the_schema_command_does_not_import_torch():
    code = ("import sys; from lstm_cli.cli import main; code = main(['schema', 'units']); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["title"] == "lstm-cli units --json"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("contract")
    torch.manual_seed(0)
    torch.save(torch.nn.LSTM(5, 4, num_layers=2).state_dict(), folder / "w.pt")
    np.save(folder / "x.npy", np.random.default_rng(0).normal(size=(6, 3, 5)).astype(np.float32))
    return folder


CASES = {
    "inspect random": ["inspect", *SMALL],
    "inspect file": ["inspect", "--weights", "{w}", "--input", "{x}"],
    "inspect onnx capture": ["inspect", "--weights", str(EXAMPLES / "recognizer.onnx"), "--key", "/lstm/LSTM",
                             "--model-input", str(EXAMPLES / "recognizer_images.npy")],
    "compare-cell random": ["compare-cell", *SMALL, "--repeat", "1"],
    "compare-cell file": ["compare-cell", "--weights", "{w}", "--input", "{x}", "--repeat", "0"],
    "gates random": ["gates", *SMALL, "--units"],
    "gates file packed": ["gates", "--weights", "{w}", "--input", "{x}", "--lengths", "6,2,4"],
    "gates compare-input": ["gates", "--weights", "{w}", "--input", "{x}", "--compare-input", "random"],
    "gates text": ["gates", *TEXT],
    "gradients random": ["gradients", *SMALL],
    "gradients file": ["gradients", "--weights", "{w}", "--input", "{x}"],
    "bench random": ["bench", *SMALL, "--repeat", "1"],
    "units text": ["units", *TEXT],
    "units select": ["units", *TEXT, "--select-text", "return", "--match"],
    "trace text": ["trace", *TEXT],
    "report random": ["report", *SMALL, "--html", "{d}/random.html"],
    "report text": ["report", *TEXT, "--html", "{d}/text.html"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_document_validates_against_its_schema(run_cli, files, case):
    args = [a.format(w=files / "w.pt", x=files / "x.npy", d=files) for a in CASES[case]]
    result = run_cli(*args, "--json")
    assert result.code == 0, result.stderr
    document = result.json()
    jsonschema.validate(document, shipped(args[0]))
    assert list(document)[:2] == ["command", "config"] and all(key in document for key in COMMON)
    assert (document["source"] is None) == ("--weights" not in args and "--model" not in args)
    if args[0] == "bench":
        assert document["passed"] is None  # it times; it checks nothing (never a vacuous true)
    else:
        assert document["passed"] is True and document["checks"]


def test_a_wrong_document_fails_validation():
    """The schemas are not vacuous: a missing key or a wrong type is caught."""
    schema = shipped("inspect")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"command": "inspect", "config": {}}, schema)


@pytest.mark.parametrize("args, code", [
    (["inspect", "--hidden-size", "0"], 2),
    (["inspect", "--bogus"], 2),
    (["gates", "--weights", "/nonexistent.pt"], 2),
])
def test_a_usage_error_with_json_prints_a_json_error_object(run_cli, args, code):
    result = run_cli(*args, "--json")
    assert result.code == code
    error = json.loads(result.stdout)
    assert error["exit"] == code and error["error"] and "\n" not in error["error"]
    assert result.stderr.startswith("lstm-cli: error: ")
    plain = run_cli(*args)
    assert plain.code == code and plain.stdout == ""  # without --json nothing on stdout


@pytest.mark.parametrize("typed, suggestion", [
    ("--bogus", None), ("--hiden-size", "--hidden-size"), ("--plot-rang", "--plot-range"),
])
def test_an_unknown_flag_suggests_only_a_flag_close_to_it(run_cli, typed, suggestion):
    result = run_cli("gates", typed, "1")
    assert result.code == 2
    line, = result.stderr.strip().splitlines()
    if suggestion is None:
        assert line == f"lstm-cli: error: No such option: {typed}"
    else:
        assert line.endswith(f"(did you mean {suggestion}?)")
