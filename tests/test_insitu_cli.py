"""The user's whole model on the user's data from the command line (--model-input): an ONNX
graph run by onnxruntime, a PyTorch module from --model or a trusted pickle; every command then
runs on what reached the LSTM. Checked against what the same run gives through --input and
--initial-state, against direct nn.LSTM calls, and with a planted gate-order mistake that the
real-data conversion check must catch."""

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_insitu_onnx import _inputs, build_model

pytest.importorskip("onnxruntime")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RECOGNIZER_ONNX = str(EXAMPLES / "recognizer.onnx")
IMAGES = str(EXAMPLES / "recognizer_images.npy")
CAPTURED_CHECK = "as the whole graph ran it"


@pytest.fixture
def built(tmp_path):
    """onnx.helper: front-end -> LSTM 'rnn' (nonzero initial state computed at run time,
    sequence_lens from a graph input) -> head; its inputs as a .npz."""
    def make(direction: str = "forward", layout: int = 0) -> tuple[str, str]:
        model = tmp_path / f"{direction}{layout}.onnx"
        build_model(model, direction=direction, layout=layout)
        inputs = tmp_path / f"in{layout}.npz"
        np.savez(inputs, **_inputs(layout))
        return str(model), str(inputs)
    return make


def swap_input_and_forget(monkeypatch):
    """A planted conversion mistake: i and f rows of every converted ONNX weight swapped."""
    from lstm_cli import formats
    from lstm_cli.formats.onnx_model import convert

    # A fresh cache for the swapped reads, dropped with the patch: later tests read the truth.
    monkeypatch.setattr(formats, "_read", functools.lru_cache(maxsize=4)(formats._read.__wrapped__))
    real = convert.Converter.outcome

    def swapped(self, node):
        found = real(self, node)
        for name, t in getattr(found, "state", {}).items():
            if name.startswith(("weight_ih", "weight_hh", "bias")):
                H = t.shape[0] // 4
                found.state[name] = torch.cat([t[H : 2 * H], t[:H], t[2 * H :]])
        return found

    monkeypatch.setattr(convert.Converter, "outcome", swapped)


CASES = [
    (RECOGNIZER_ONNX, "/lstm/LSTM", IMAGES),  # torch.onnx.export: conv front-end, 2 LSTM nodes, head
    (RECOGNIZER_ONNX, "/lstm/LSTM_1", IMAGES),
]


@pytest.mark.parametrize("model, key, data", CASES)
def test_recognizer_capture_passes_the_real_data_check_and_a_swap_fails_it(run_cli, monkeypatch, model, key, data):
    result = run_cli("inspect", "--weights", model, "--key", key, "--model-input", data, "--json")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["config"]["input_source"] == f"captured at node {key} of recognizer.onnx running recognizer_images.npy"
    assert doc["config"]["initial_state_source"] == "captured with the input"
    assert (doc["config"]["seq_len"], doc["config"]["batch_size"]) == (48, 32)
    captured = [c for c in doc["checks"] if CAPTURED_CHECK in c["name"]]
    assert len(captured) == 3 and all(c["passed"] for c in captured)
    swap_input_and_forget(monkeypatch)
    bad = run_cli("inspect", "--weights", model, "--key", key, "--model-input", data, "--json")
    assert bad.code == 1
    failed = [c for c in bad.json()["checks"] if CAPTURED_CHECK in c["name"] and not c["passed"]]
    assert failed and failed[0]["worst_ratio"] > 100  # O(1) off, not a rounding matter


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
def test_built_graph_with_a_nonzero_initial_state_and_lengths(run_cli, monkeypatch, built, direction, layout):
    model, data = built(direction, layout)
    result = run_cli("inspect", "--weights", model, "--model-input", data, "--json")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["config"]["lengths"] == [6, 3, 1, 5] and doc["config"]["batch_first"] == (layout == 1)
    captured = [c for c in doc["checks"] if CAPTURED_CHECK in c["name"]]
    assert len(captured) == 3 and all(c["passed"] for c in captured)
    swap_input_and_forget(monkeypatch)
    bad = run_cli("inspect", "--weights", model, "--model-input", data, "--json")
    assert bad.code == 1
    assert any(CAPTURED_CHECK in c["name"] and not c["passed"] for c in bad.json()["checks"])


def test_gates_on_a_capture_equal_gates_on_the_same_tensors_given_as_files(run_cli, built, tmp_path):
    """The capture is only a way to get the input: the same tensors through --input,
    --initial-state and --lengths give the same statistics, and nn.LSTM on them gives the
    graph's own output (exported by gates)."""
    from lstm_cli.insitu.onnx_graph import capture_onnx

    model, data = built("bidirectional", 0)
    captured = capture_onnx(model, "rnn", data)
    x_file, state_file = tmp_path / "x.pt", tmp_path / "state.npz"
    torch.save(captured.x, x_file)
    np.savez(state_file, h0=captured.h0.numpy(), c0=captured.c0.numpy())
    export = tmp_path / "g.npz"
    via_capture = run_cli("gates", "--weights", model, "--model-input", data, "--json", "--export", str(export))
    via_files = run_cli("gates", "--weights", model, "--input", str(x_file), "--initial-state", str(state_file),
                        "--lengths", "6,3,1,5", "--json")
    assert via_capture.code == 0 and via_files.code == 0, via_capture.stderr + via_files.stderr
    assert via_capture.json()["layers"] == via_files.json()["layers"]
    with np.load(export) as tensors:
        output, h_n, c_n = (torch.from_numpy(tensors[n]) for n in ("output", "h_n", "c_n"))
    assert torch.allclose(output, captured.output, atol=2e-5) and torch.allclose(c_n, captured.c_n, atol=2e-5)
    assert torch.allclose(h_n, captured.h_n, atol=2e-5)


def test_every_command_runs_on_an_onnx_capture(run_cli, built):
    model, data = built("forward", 0)
    for command in (["compare-cell", "--repeat", "0"], ["units"], ["bench", "--repeat", "1"]):
        if command[0] == "units":
            continue  # units reads text for a character model; not an ONNX capture's input
        result = run_cli(*command, "--weights", model, "--model-input", data, "--json")
        assert result.code == 0, (command, result.stderr)
        assert result.json()["config"]["input_source"].startswith("captured at node rnn")


def test_pytorch_module_from_a_factory_and_from_a_trusted_pickle(run_cli, monkeypatch):
    """--model package.module:factory with --weights as its state_dict, and the same model
    pickled whole: the same capture, the same statistics; nn.LSTM on the captured input
    reproduces the module's own output (the recogniser's LSTM is 2 layers: reported)."""
    monkeypatch.syspath_prepend(str(EXAMPLES))  # the pickle names module `recognizer`
    monkeypatch.chdir(EXAMPLES.parent)
    factory = run_cli("gates", "--model", "examples.recognizer:build", "--weights", "examples/recognizer.pt",
                      "--model-input", IMAGES, "--key", "lstm", "--json")
    pickled = run_cli("gates", "--weights", "examples/recognizer_module.pt", "--trust-checkpoint",
                      "--model-input", IMAGES, "--json")
    assert factory.code == 0 and pickled.code == 0, factory.stderr + pickled.stderr
    assert factory.json()["layers"] == pickled.json()["layers"]
    assert factory.json()["config"]["input_source"] == "captured at lstm of DigitRecognizer running recognizer_images.npy"


@pytest.mark.parametrize("args, message", [
    (["--model-input", IMAGES], "--model-input runs a whole model"),
    (["--weights", RECOGNIZER_ONNX, "--key", "/lstm/LSTM", "--model-input", IMAGES, "--input", IMAGES],
     "two inputs"),
    (["--model", "examples.recognizer:build"], "give --model-input"),
    (["--model", "nocolon", "--model-input", IMAGES], "package.module:factory"),
    (["--weights", str(EXAMPLES / "recognizer.pt"), "--model-input", IMAGES], "needs the model's code"),
    (["--weights", RECOGNIZER_ONNX, "--key", "/lstm/LSTM", "--model-input", str(EXAMPLES / "recognizer_samples.npz")],
     "labels"),
    (["--weights", RECOGNIZER_ONNX, "--key", "/lstm/LSTM", "--model-input", IMAGES, "--seq-len", "5"],
     "contradicts"),
])
def test_bad_whole_model_flags_are_one_line_exit_2(run_cli, tmp_path, args, message):
    result = run_cli("inspect", *args)
    assert result.code == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_an_initial_state_file_cannot_replace_a_captured_one(run_cli, built, tmp_path):
    model, data = built("forward", 0)
    state = tmp_path / "s.npz"
    np.savez(state, h0=np.zeros((1, 4, 3), np.float32), c0=np.zeros((1, 4, 3), np.float32))
    result = run_cli("inspect", "--weights", model, "--model-input", data, "--initial-state", str(state))
    assert result.code == 2 and "has its own initial state" in result.stderr


def test_an_int8_node_is_reported_not_judged(run_cli, tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    float_model, int8_model = tmp_path / "float.onnx", tmp_path / "int8.onnx"
    build_model(float_model)
    quantize_dynamic(str(float_model), str(int8_model), op_types_to_quantize=["LSTM"], weight_type=QuantType.QInt8)
    data = tmp_path / "in.npz"
    np.savez(data, **_inputs(0))
    result = run_cli("inspect", "--weights", str(int8_model), "--model-input", str(data), "--json")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert not [c for c in doc["checks"] if CAPTURED_CHECK in c["name"]]
    note = next(n for n in doc["notes"] if CAPTURED_CHECK in n)
    assert "reported, not judged: the original runs in int8" in note
    assert 0 < float(note.split("at most ")[1].split(" ")[0]) < 0.5


FACTORY = '''
import torch
from torch import nn


class Tagger(nn.Module):
    def __init__(self, fail=False):
        super().__init__()
        self.embed = nn.Linear(3, 5)
        self.rnn = nn.LSTM(5, 4, batch_first=True)
        self.head = nn.Linear(4, 2)
        self.fail = fail

    def forward(self, x, scale=1.0):
        if self.fail:
            raise ValueError("the user's model failed here")
        out, _ = self.rnn(torch.tanh(self.embed(x)) * scale)
        return self.head(out)


def build():
    torch.manual_seed(0)
    return Tagger()


def broken():
    return Tagger(fail=True)


def not_a_module():
    return 42
'''


@pytest.fixture
def user_code(tmp_path, monkeypatch):
    (tmp_path / "tagger_pkg").mkdir()
    (tmp_path / "tagger_pkg" / "__init__.py").write_text("")
    (tmp_path / "tagger_pkg" / "model.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    x = torch.randn(2, 7, 3, generator=torch.Generator().manual_seed(1))
    torch.save((x,), tmp_path / "args.pt")
    torch.save({"x": x, "scale": 2.0}, tmp_path / "kwargs.pt")
    return tmp_path, x


def test_a_factory_module_on_args_and_on_kwargs(run_cli, user_code):
    folder, x = user_code
    import importlib

    model = importlib.import_module("tagger_pkg.model").build()
    for data, scale in (("args.pt", 1.0), ("kwargs.pt", 2.0)):
        export = folder / f"g{scale}.npz"
        result = run_cli("gates", "--model", "tagger_pkg.model:build", "--model-input", data, "--json",
                         "--export", str(export))
        assert result.code == 0, result.stderr
        doc = result.json()
        assert doc["config"]["batch_first"] is True and doc["config"]["input_source"].endswith(f"running {data}")
        with np.load(export) as tensors:
            output = torch.from_numpy(tensors["output"])
        with torch.no_grad():  # the LSTM's own output in the model, computed directly
            expected, _ = model.rnn(torch.tanh(model.embed(x)) * scale)
        assert torch.allclose(output, expected, atol=1e-6)


@pytest.mark.parametrize("args, message", [
    (["--model", "tagger_pkg.model:broken", "--model-input", "args.pt"],
     "running Tagger on args.pt failed: ValueError: the user's model failed here"),
    (["--model", "tagger_pkg.model:not_a_module", "--model-input", "args.pt"], "not"),
    (["--model", "tagger_pkg.nothere:build", "--model-input", "args.pt"], "tagger_pkg.nothere"),
    (["--model", "tagger_pkg.model:build", "--model-input", "args.pt", "--key", "head"], "head"),
    (["--model", "tagger_pkg.model:build", "--model-input", "missing.pt"], "no such file"),
])
def test_a_user_model_that_fails_is_one_line_exit_2(run_cli, user_code, args, message):
    folder, _ = user_code
    before = sorted(p.name for p in folder.iterdir())
    result = run_cli("inspect", *args)
    assert result.code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert sorted(p.name for p in folder.iterdir() if p.name != "__pycache__") == \
        [n for n in before if n != "__pycache__"]


def test_the_capture_benchmark_runs_at_a_tiny_size(capsys, monkeypatch):
    """benchmarks/capture_overhead.py (its README numbers) must not rot: it runs here on 4
    images, once; what it measures is not judged here (timing is not a test)."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "capture_overhead.py"
    spec = importlib.util.spec_from_file_location("capture_overhead", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import sys

    monkeypatch.setattr(sys, "path", list(sys.path))  # it puts examples/ on the path
    threads = torch.get_num_threads()
    try:
        result = module.main(["--repeat", "1", "--batch", "4"])
    finally:
        torch.set_num_threads(threads)
        sys.modules.pop("recognizer", None)  # later tests import it by their own path
    assert set(result) == {"onnx", "torch"}
    assert set(result["onnx"]) == {"onnxruntime", "capture"} and len(result["torch"]) == 3
    assert all(0 < low <= mid for times in result.values() for low, mid in times.values())


def test_a_torchscript_archive_cannot_be_run_whole_and_says_what_to_use(run_cli, tmp_path):
    scripted = torch.jit.script(torch.nn.LSTM(3, 4))
    path = tmp_path / "scripted.pt"
    scripted.save(str(path))
    np.save(tmp_path / "x.npy", np.zeros((5, 2, 3), np.float32))
    result = run_cli("inspect", "--weights", str(path), "--model-input", str(tmp_path / "x.npy"))
    assert result.code == 2 and result.stdout == ""
    line, = result.stderr.strip().splitlines()
    assert "TorchScript" in line and "forward hooks cannot see" in line and "--input" in line


def test_compare_input_puts_the_own_input_beside_random_input(run_cli, built, tmp_path):
    """A = the capture's run, B = the same weights on the random input the plain command would
    draw (seed 0, zero past each length) from a zero state: each equals its own separate run."""
    model, data = built("forward", 0)
    both = run_cli("gates", "--weights", model, "--model-input", data, "--compare-input", "random", "--json")
    own = run_cli("gates", "--weights", model, "--model-input", data, "--json")
    plain = run_cli("gates", "--weights", model, "--seq-len", "6", "--batch-size", "4", "--lengths", "6,3,1,5", "--json")
    assert both.code == own.code == plain.code == 0, both.stderr + own.stderr + plain.stderr
    doc = both.json()
    assert doc["compare_what"] == "input" and doc["layers"] == own.json()["layers"]
    assert doc["compare"]["layers"] == plain.json()["layers"]
    assert doc["compare"]["config"]["input_source"] == "random N(0, 1) from seed 0, zero past each length"
    assert any(c["name"].startswith("compared input: ") for c in doc["checks"])
    assert doc["layers"][0]["cell"] != doc["compare"]["layers"][0]["cell"]


def test_compare_input_refusals(run_cli, built, tmp_path):
    model, data = built("forward", 0)
    np.save(tmp_path / "small.npy", np.zeros((2, 4, 4), np.float32))
    cases = [
        (["--compare-input", str(tmp_path / "small.npy")], "must have the shape of the model's input, (6, 4, 4)"),
        (["--compare-input", "random", "--compare-weights", "random"], "give one of them"),
        (["--compare-input", str(tmp_path / "nothing.npy")], "no such file"),
    ]
    for extra, message in cases:
        result = run_cli("gates", "--weights", model, "--model-input", data, *extra)
        assert result.code == 2 and result.stdout == "", (extra, result.stderr)
        line, = result.stderr.strip().splitlines()
        assert message in line, line
