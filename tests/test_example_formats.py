"""examples/formats/ (issue 24): one source nn.LSTM written by examples/make_formats.py in every
format lstm-cli reads. The shipped files are what the script writes; lstm-cli reads from each of
them the source's weights (exactly, where the format is lossless) and, run through the CLI on the
shipped input, computes the source's output, h_n and c_n number for number; every file passes
`inspect`, the ONNX files with onnxruntime's own run of each node checked (float) or reported
(int8)."""

import importlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from lstm_cli.sources import find_lstm
from tests.shipped import EXAMPLES, load_example

make = load_example("make_formats")
FORMATS = EXAMPLES / "formats"
H = make.HIDDEN_SIZE
# nn.LSTM run on the same weights by lstm-cli and here: the same float32 kernels, so equal in
# practice; the bound allows a different summation order (a few ulps of O(1) values). The Keras
# files hold b_ih + b_hh as one bias, which rounds the gate inputs once more.
CLOSE = {"rtol": 1e-5, "atol": 1e-6}
# The int8 file's weights are dequantized int8 (7 bits with reduce_range: one step is about
# max|w| / 63). Measured (torch 2.13 CPU): nn.LSTM on the dequantized weights is at most 0.0029
# (layer 0: output, h_n, c_n) and 0.0043 (layer 1) off the source's on the shipped input; the
# bound 0.02 leaves room and is still far below what a wrong gate order, scale or zero point
# gives (0.1 and more). Every other file: measured 0, exactly the source's numbers.
INT8_ATOL = 0.02
NEEDS = {".onnx": ("onnx", "onnxruntime"), ".h5": ("h5py",), ".keras": ("h5py",), ".safetensors": ("safetensors",)}

STACK = "lstmcell_stack.pt"  # a free-form stack of cells: its own tests below (compare-cell only)
CASES = [(name, key) for name, keys in make.FILES.items() for key in keys if name != STACK]
IDS = [f"{name}-{key}" if key else name for name, key in CASES]


def needs(name: str) -> None:
    for module in NEEDS.get("." + name.rsplit(".", 1)[1], ()):
        pytest.importorskip(module)


def layer_of(key: str | None) -> int | None:
    """The source layer a --key holds (None: the whole model; cells: layer 0)."""
    if key is None:
        return None
    return 1 if key in ("/LSTM_1", "/LSTM_1_quant", "bidirectional_1") else 0


# -- what the source computes --------------------------------------------------------------------


@pytest.fixture(scope="module")
def source():
    return make.source_model()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.from_numpy(np.load(FORMATS / "input.npy"))


def run(lstm, inputs):
    with torch.no_grad():
        out, (h, c) = lstm(inputs)
    return out, h, c


def expected_state(source, name: str, key: str | None) -> dict[str, torch.Tensor]:
    """The source's parameters as lstm-cli should read them from `name` under `key`, in
    nn.LSTM's names (a per-layer key: that layer alone, as layer 0)."""
    state = source.state_dict()
    layer = layer_of(key)
    if layer is None:
        return dict(state)
    if key in ("forward_cell", "backward_cell"):
        suffix = "_reverse" if key == "backward_cell" else ""
        return {f"{kind}_l0": state[f"{kind}_l0{suffix}"] for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    single = make.layer_model(source, layer).state_dict()
    if name in make.KERAS_FILES:  # Keras' one bias = b_ih + b_hh, in bias_ih; bias_hh zeros
        for suffix in ("", "_reverse"):
            single[f"bias_ih_l0{suffix}"] = single[f"bias_ih_l0{suffix}"] + single[f"bias_hh_l0{suffix}"]
            single[f"bias_hh_l0{suffix}"] = torch.zeros_like(single[f"bias_hh_l0{suffix}"])
    return dict(single)


def layer_input(source, x, layer: int) -> torch.Tensor:
    """What layer `layer` of the source reads: the input, or layer 0's output."""
    return x if layer == 0 else run(make.layer_model(source, 0), x)[0]


def case_input_and_expected(source, x, name: str, key: str | None):
    """(input as the file's LSTM takes it, time-major; expected output, h_n, c_n time-major)."""
    layer = layer_of(key)
    if layer is None:
        return x, run(source, x)
    inputs = layer_input(source, x, layer)
    out, h, c = run(make.layer_model(source, layer), inputs)
    if key == "forward_cell":
        return inputs, (out[..., :H], h[:1], c[:1])
    if key == "backward_cell":  # the backward direction: a forward cell on the reversed input
        return inputs.flip(0), (out[..., H:].flip(0), h[1:], c[1:])
    return inputs, (out, h, c)


def cli_args(tmp_path, source, x, name: str, key: str | None) -> list[str]:
    """--weights, --key and --input for one case; the input written where it is not shipped."""
    inputs, _ = case_input_and_expected(source, x, name, key)
    batch_first = name in make.KERAS_FILES
    if inputs is x:
        input_file = FORMATS / ("input_batch_first.npy" if batch_first else "input.npy")
    else:
        input_file = tmp_path / "input.npy"
        np.save(input_file, (inputs.transpose(0, 1) if batch_first else inputs).contiguous().numpy())
    return ["--weights", str(FORMATS / name), *(["--key", key] if key else []), "--input", str(input_file)]


# -- the shipped files are what the script writes ------------------------------------------------


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    for module in ("onnx", "onnxruntime", "h5py", "safetensors"):
        pytest.importorskip(module)
    out = tmp_path_factory.mktemp("formats")
    done = subprocess.run([sys.executable, str(EXAMPLES / "make_formats.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def versions_match() -> bool:
    """The ONNX files' bytes depend on the exporter's and quantizer's versions."""
    return all(
        importlib.import_module(module).__version__.split("+")[0] == version
        for module, version in make.MADE_WITH.items() if module in ("torch", "onnx", "onnxruntime")
    )


def test_the_folder_holds_exactly_what_the_script_writes(written):
    expected = {*make.INPUTS, *make.FILES}
    assert {p.name for p in FORMATS.iterdir()} == expected
    assert {p.name for p in written.iterdir()} == expected
    for path in FORMATS.iterdir():
        assert path.stat().st_size < 64_000, f"{path.name} is not tiny"


@pytest.mark.parametrize("name", [*make.INPUTS, *make.FILES])
def test_shipped_file_is_what_the_script_writes(written, name):
    shipped, fresh = (FORMATS / name).read_bytes(), (written / name).read_bytes()
    if name in make.INPUTS:
        assert shipped == fresh
        return
    for key in make.FILES[name]:
        ours, theirs = find_lstm(str(FORMATS / name), key).state, find_lstm(str(written / name), key).state
        assert ours.keys() == theirs.keys()
        for tensor in ours:
            assert torch.equal(ours[tensor], theirs[tensor]), f"{name} {key} {tensor}"
    if name in make.NOT_REPRODUCIBLE:
        return  # tensors only (see make_formats' docstring)
    if name.endswith(".onnx") and not versions_match():
        pytest.skip(f"tensors equal; bytes not compared: {name} was written with {make.MADE_WITH}")
    assert shipped == fresh, f"examples/formats/{name} differs from what examples/make_formats.py writes: rerun it"


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_torchscript_archive_holds_the_source_module(source):
    scripted = torch.jit.load(str(FORMATS / "lstm_torchscript.pt"), map_location="cpu")
    assert scripted.original_name == "LSTM" and scripted.batch_first is False
    state = scripted.state_dict()
    assert state.keys() == source.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in source.state_dict().items())


def test_shipped_input_is_the_source_input():
    x = np.load(FORMATS / "input.npy")
    assert x.dtype == np.float32 and x.shape == (make.SEQ_LEN, make.BATCH, make.INPUT_SIZE)
    assert np.array_equal(x, make.source_input())
    assert np.array_equal(np.load(FORMATS / "input_batch_first.npy"), x.transpose(1, 0, 2))


# -- the same weights in every file ----------------------------------------------------------------


@pytest.mark.parametrize("name,key", CASES, ids=IDS)
def test_lstm_cli_reads_the_source_weights(source, name, key):
    needs(name)
    group = find_lstm(str(FORMATS / name), key)
    want = expected_state(source, name, key)
    assert group.state.keys() == want.keys()
    if name == "lstm_int8.onnx":
        for tensor, value in want.items():
            got = group.state[tensor]
            if tensor.startswith("bias"):
                assert torch.equal(got, value), tensor  # biases stay float
            else:  # within one int8 step of 7 bits (max|w| / 63) of the source
                step = value.abs().max() / 63
                assert (got - value).abs().max() <= step, tensor
                assert not torch.equal(got, value), f"{tensor}: not quantized?"
        return
    for tensor, value in want.items():  # lossless: every value exactly the source's
        assert torch.equal(group.state[tensor], value), f"{name} {key} {tensor}"


@pytest.mark.parametrize("name", sorted(make.KERAS_FILES))
def test_keras_bidirectional_directions_are_the_source_directions(source, name):
    needs(name)
    state = source.state_dict()
    for layer, key in enumerate(make.FILES[name]):
        group = find_lstm(str(FORMATS / name), key)
        assert group.bidirectional and group.num_layers == 1
        for kind in ("weight_ih", "weight_hh"):
            assert torch.equal(group.state[f"{kind}_l0"], state[f"{kind}_l{layer}"])  # forward layer
            assert torch.equal(group.state[f"{kind}_l0_reverse"], state[f"{kind}_l{layer}_reverse"])  # backward layer
        for suffix in ("", "_reverse"):
            combined = state[f"bias_ih_l{layer}{suffix}"] + state[f"bias_hh_l{layer}{suffix}"]
            assert torch.equal(group.state[f"bias_ih_l0{suffix}"], combined)
        conversions = group.found.conversions
        assert "backward kernel (%d, 24) transposed -> weight_ih_l0_reverse (24, %d)" % ((8, 8) if layer == 0 else (12, 12)) in conversions
        assert group.found.batch_first is True


def test_per_layer_keys_compose_to_the_source_model(source, x):
    """Layer 1 run on layer 0's output is the source model: the per-layer comparisons below
    compare with the source itself."""
    out0, h0, c0 = run(make.layer_model(source, 0), x)
    out1, h1, c1 = run(make.layer_model(source, 1), out0)
    out, h, c = run(source, x)
    torch.testing.assert_close(out1, out, **CLOSE)
    torch.testing.assert_close(torch.cat([h0, h1]), h, **CLOSE)
    torch.testing.assert_close(torch.cat([c0, c1]), c, **CLOSE)


def test_files_with_several_lstms_list_the_keys(run_cli):
    for name, keys in make.FILES.items():
        if len(keys) < 2:
            continue
        needs(name)
        result = run_cli("inspect", "--weights", str(FORMATS / name))
        assert result.code == 2, name
        assert all(f"'{key}'" in result.stderr for key in keys), result.stderr


# -- the CLI on the shipped files ---------------------------------------------------------------


@pytest.mark.parametrize("name,key", CASES, ids=IDS)
def test_inspect_passes(run_cli, tmp_path, source, x, name, key):
    needs(name)
    result = run_cli("inspect", *cli_args(tmp_path, source, x, name, key), "--json")
    assert result.code == 0, result.stderr
    report = result.json()
    assert report["passed"] and all(check["passed"] for check in report["checks"])
    assert report["source"]["key"] == (key or "")
    onnxruntime_checks = [check for check in report["checks"] if check["name"].startswith("onnxruntime")]
    if name == "lstm.onnx":  # onnxruntime ran each direction of the node step by step
        assert len(onnxruntime_checks) == 2
    if name == "lstm_int8.onnx":  # the int8 node computes something else: reported, not judged
        assert not onnxruntime_checks
        assert any("reported, not judged" in note for note in report["notes"]), report["notes"]


@pytest.mark.parametrize("name,key", CASES, ids=IDS)
def test_number_for_number(run_cli, tmp_path, source, x, name, key):
    """`gates --export` writes the output, h_n and c_n of lstm-cli's nn.LSTM on the file's
    weights: the source's, on the same input."""
    needs(name)
    export = tmp_path / "run.npz"
    result = run_cli("gates", *cli_args(tmp_path, source, x, name, key), "--export", str(export))
    assert result.code == 0, result.stderr
    _, expected = case_input_and_expected(source, x, name, key)
    with np.load(export) as got:
        out, h, c = (torch.from_numpy(got[k]) for k in ("output", "h_n", "c_n"))
    if name in make.KERAS_FILES:
        out = out.transpose(0, 1)  # batch_first=True, read from the Keras file
    tolerance = {"rtol": 0, "atol": INT8_ATOL} if name == "lstm_int8.onnx" else CLOSE
    for label, got_value, want in zip(("output", "h_n", "c_n"), (out, h, c), expected):
        assert got_value.shape == want.shape, label
        torch.testing.assert_close(got_value, want, **tolerance, msg=lambda m, label=label: f"{name} {key} {label}: {m}")


def test_the_lstmcell_stack_is_read_as_a_free_form_stack_and_compare_cell_runs_it(run_cli, source):
    """cells.0 is the source's layer-0 forward direction (8 -> 6), cells.1 an LSTMCell(6, 4):
    widths differ, so only compare-cell runs it; its cell 0 holds the source's weights exactly."""
    group = find_lstm(str(FORMATS / STACK), None)
    assert group.stack_widths == make.STACK_WIDTHS and group.input_size == 8
    state = source.state_dict()
    for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        assert torch.equal(group.state[f"{kind}_l0"], state[f"{kind}_l0"]), kind
    assert group.state["weight_hh_l1"].shape == (16, 4)
    result = run_cli("compare-cell", "--weights", str(FORMATS / STACK), "--input", str(FORMATS / "input.npy"),
                     "--repeat", "0", "--json")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["mode"] == "free-form" and doc["passed"] and len(doc["checks"]) == 2
    refused = run_cli("gates", "--weights", str(FORMATS / STACK))
    assert refused.code == 2 and "compare-cell runs it" in refused.stderr

