"""Every PyTorch-side checkpoint format: nn.LSTMCell state_dicts and stacks of cells,
TorchScript archives, numpy pickles, whole pickled modules (--trust-checkpoint), GRU and RNN
named as what they are, and files named by what their bytes are. Each loaded model is checked
against the original module run directly."""

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lstm_cli.cli import spec_from_flags
from lstm_cli.formats.detect import detect
from lstm_cli.model import prepare, run_lstm
from tests.test_sources import flags

TOL = dict(rtol=1e-5, atol=1e-6)  # float32, different kernels: never bit-exact


def cell_loop(cells: list[nn.LSTMCell], x: torch.Tensor) -> tuple[torch.Tensor, list]:
    """The seed's loop over the original cells: time-major x (L, N, I)."""
    finals, layer_input = [], x
    for cell in cells:
        h = c = x.new_zeros(x.shape[1], cell.hidden_size)
        outputs = []
        for xt in layer_input:
            h, c = cell(xt, (h, c))
            outputs.append(h)
        layer_input = torch.stack(outputs)
        finals.append((h, c))
    return layer_input, finals


class TwoCells(nn.Module):
    """Two separately named cells, as a TorchScript model in the wild holds them."""

    def __init__(self):
        super().__init__()
        self.cell1 = nn.LSTMCell(5, 8)
        self.cell2 = nn.LSTMCell(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, c = self.cell1(x)
        return self.cell2(h)[0]


class CellStack(nn.Module):
    def __init__(self, widths):
        super().__init__()
        inputs = [5, *widths[:-1]]
        self.cells = nn.ModuleList(nn.LSTMCell(i, h) for i, h in zip(inputs, widths))


class Seq2Seq(nn.Module):
    """A whole model saved with torch.save(model): only --trust-checkpoint loads it."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.LSTM(5, 8, batch_first=True)
        self.head = nn.Linear(8, 2)


def loaded_run(path: Path, **changes):
    spec = spec_from_flags(flags(weights=str(path), device="cpu", **changes))
    prepared = prepare(spec)
    return spec, prepared, run_lstm(prepared.lstm, prepared.x, spec)


def test_an_lstm_cell_state_dict_is_a_one_layer_lstm(tmp_path, run_cli):
    torch.manual_seed(3)
    cell = nn.LSTMCell(5, 8)
    torch.save({f"lstm_cell.{k}": v for k, v in cell.state_dict().items()}, tmp_path / "cell.pt")
    spec, prepared, got = loaded_run(tmp_path / "cell.pt")
    assert (spec.input_size, spec.hidden_size, spec.num_layers, spec.key) == (5, 8, 1, "lstm_cell")
    with torch.no_grad():
        expected, [(h, c)] = cell_loop([cell], prepared.x)
    torch.testing.assert_close(got.output, expected, **TOL)
    torch.testing.assert_close(got.c_n[0], c, **TOL)
    doc = run_cli("inspect", "--weights", str(tmp_path / "cell.pt"), "--json").json()
    assert doc["passed"] and doc["source"]["format"] == "PyTorch state_dict (torch.save)"
    assert doc["source"]["key"] == "lstm_cell" and "nn.LSTMCell 'lstm_cell'" in doc["source"]["conversions"][0]
    assert "source" not in doc["config"]


def test_a_stack_of_equal_cells_is_a_multi_layer_lstm(tmp_path):
    torch.manual_seed(4)
    model = CellStack([8, 8, 8])
    torch.save(model.state_dict(), tmp_path / "stack.pt")
    spec, prepared, got = loaded_run(tmp_path / "stack.pt")
    assert (spec.num_layers, spec.hidden_size, spec.stack_widths) == (3, 8, None)
    with torch.no_grad():
        expected, finals = cell_loop(list(model.cells), prepared.x)
    torch.testing.assert_close(got.output, expected, **TOL)
    torch.testing.assert_close(got.h_n, torch.stack([h for h, _ in finals]), **TOL)


def test_a_stack_of_cells_of_different_widths_runs_in_compare_cell_only(tmp_path, run_cli):
    torch.manual_seed(5)
    model = CellStack([8, 6, 4])
    path = tmp_path / "free.pt"
    torch.save(model.state_dict(), path)
    spec = spec_from_flags(flags(weights=str(path), device="cpu"))
    assert spec.stack_widths == (8, 6, 4)

    from lstm_cli.cells import free_form_cells, run_cells
    from lstm_cli.model import make_input, place

    placement = place(spec)
    stack = free_form_cells(spec, spec.stack_widths, placement.device, placement.dtype)
    x = make_input(spec, placement)
    with torch.no_grad():
        expected, _ = cell_loop(list(model.cells), x)
    torch.testing.assert_close(run_cells(stack, x, spec).output, expected, **TOL)

    doc = run_cli("compare-cell", "--weights", str(path), "--json", "--repeat", "0").json()
    assert doc["passed"] and doc["mode"] == "free-form" and doc["config"]["hidden_sizes"] == [8, 6, 4]
    for command in ("inspect", "gates", "gradients", "bench"):
        result = run_cli(command, "--weights", str(path))
        assert result.code == 2 and "compare-cell runs it" in result.stderr, command
        assert len(result.stderr.splitlines()) == 1


def test_torchscript_cells_are_read_without_running_the_model(tmp_path, run_cli):
    torch.manual_seed(6)
    model = TwoCells()
    path = tmp_path / "scripted.pt"
    torch.jit.script(model).save(str(path))
    result = run_cli("inspect", "--weights", str(path))
    assert result.code == 2 and "holds 2 LSTMs; pick one with --key: 'cell1'" in result.stderr
    spec, prepared, got = loaded_run(path, key="cell2", input_size=8)
    with torch.no_grad():
        expected, _ = cell_loop([model.cell2], prepared.x)
    torch.testing.assert_close(got.output, expected, **TOL)
    doc = run_cli("gates", "--weights", str(path), "--key", "cell1", "--json").json()
    assert doc["passed"] and doc["source"]["format"] == "TorchScript archive (torch.jit.save)"


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(5, 8, num_layers=2, bidirectional=True, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


def test_a_scripted_lstm_loads_as_itself_with_its_layout(tmp_path):
    torch.manual_seed(7)
    model = Tagger().eval()
    lstm = model.rnn
    path = tmp_path / "lstm.ts"
    torch.jit.script(model).save(str(path))
    spec, prepared, got = loaded_run(path)
    assert spec.bidirectional and spec.num_layers == 2 and spec.batch_first
    with torch.no_grad():
        expected, (h, c) = lstm(prepared.x)
    torch.testing.assert_close(got.output, expected, **TOL)
    torch.testing.assert_close(got.c_n, c, **TOL)


@pytest.mark.parametrize("module, name", [
    (nn.GRU(5, 4), "nn.GRU with hidden size 4"),  # 3H = 12 rows: a multiple of 4
    (nn.GRU(5, 256, num_layers=2), "nn.GRU with hidden size 256"),
    (nn.RNN(5, 8), "nn.RNN with hidden size 8"),
    (nn.GRUCell(5, 256), "nn.GRUCell with hidden size 256"),
    (nn.RNNCell(5, 12), "nn.RNNCell with hidden size 12"),
])
def test_gru_and_rnn_are_named_for_every_hidden_size(tmp_path, run_cli, module, name):
    path = tmp_path / "model.pt"
    torch.save({f"net.rnn.{k}": v for k, v in module.state_dict().items()}, path)
    result = run_cli("inspect", "--weights", str(path))
    assert result.code == 2 and f"'net.rnn' is an {name}, not an LSTM" in result.stderr, result.stderr
    result = run_cli("inspect", "--weights", str(path), "--key", "net.rnn")
    assert result.code == 2 and name in result.stderr


def test_a_pickle_of_numpy_arrays_loads_and_a_hostile_one_never_runs(tmp_path, run_cli):
    torch.manual_seed(8)
    lstm = nn.LSTM(5, 8).eval()
    path = tmp_path / "arrays.pkl"
    with open(path, "wb") as handle:
        pickle.dump({k: v.numpy() for k, v in lstm.state_dict().items()}, handle, protocol=2)
    _, prepared, got = loaded_run(path)
    with torch.no_grad():
        expected, _ = lstm(prepared.x)
    torch.testing.assert_close(got.output, expected, **TOL)

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pkl"
    with open(evil, "wb") as handle:
        pickle.dump({"weight_ih_l0": np.zeros(3), "x": Exploit()}, handle)
    result = run_cli("inspect", "--weights", str(evil))
    assert result.code == 2 and "np.savez" in result.stderr and "system" in result.stderr
    assert "trust" not in result.stderr  # a plain pickle is refused with advice that fits it
    assert not marker.exists()


def test_a_whole_pickled_module_reads_without_running_code_and_with_trust_alike(tmp_path, run_cli):
    torch.manual_seed(9)
    model = Seq2Seq().eval()
    path = tmp_path / "model.pt"
    torch.save(model, path)
    result = run_cli("inspect", "--weights", str(path), "--json")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["passed"] and doc["source"]["key"] == "encoder" and doc["config"]["batch_first"] is True
    [note] = [n for n in doc["source"]["notes"] if "inert stand-ins" in n]
    assert "tests.test_formats.Seq2Seq" in note
    result = run_cli("inspect", "--weights", str(path), "--trust-checkpoint", "--json")
    assert result.code == 0 and "warning: --trust-checkpoint" in result.stderr
    doc = result.json()
    assert doc["config"]["batch_first"] is True and doc["source"]["key"] == "encoder"
    spec, prepared, got = loaded_run(path, trust_checkpoint=True)
    assert spec.batch_first
    with torch.no_grad():
        expected, _ = model.encoder(prepared.x)
    torch.testing.assert_close(got.output, expected, **TOL)
    result = run_cli("inspect", "--trust-checkpoint")
    assert result.code == 2 and "give --weights too" in result.stderr


def _protobuf_field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (small numbers and lengths only)."""
    key = number << 3 | 2
    key_bytes = bytes([key]) if key < 128 else bytes([key & 0x7F | 0x80, key >> 7])
    return key_bytes + bytes([len(payload)]) + payload


def test_files_are_named_by_their_bytes_not_their_names(tmp_path, run_cli):
    torch.save(nn.LSTM(3, 2).state_dict(), tmp_path / "real.h5")
    torch.save(nn.LSTM(3, 2).state_dict(), tmp_path / "legacy.npz", _use_new_zipfile_serialization=False)
    np.savez(tmp_path / "arrays.npz", **{k: v.numpy() for k, v in nn.LSTM(3, 2).state_dict().items()})
    os.rename(tmp_path / "arrays.npz", tmp_path / "arrays.pt")
    (tmp_path / "dynet.pt").write_text("#Parameter# /lstm/_0 {8,3} 96 ZERO_GRAD\n0.1 0.2\n")
    np.save(tmp_path / "one.npy", np.zeros((4, 3), np.float32))
    os.rename(tmp_path / "one.npy", tmp_path / "one.pt")
    (tmp_path / "config.pt").write_text('{"class_name": "Sequential"}')
    # A CoreML Model: specificationVersion (field 1), description (2), neuralNetwork (500).
    coreml = b"\x08\x04" + _protobuf_field(2, b"\x0a\x00") + _protobuf_field(500, b"\x0a\x00")
    (tmp_path / "model.onnx").write_bytes(coreml)
    expected = {
        "real.h5": ("torch", None),
        "legacy.npz": ("torch", None),
        "arrays.pt": ("npz", None),
        "dynet.pt": (None, "a DyNet text model: not supported"),
        "one.pt": ("npy", "a single numpy array (.npy), not named weights"),
        "config.pt": (None, "a JSON text file"),
        "model.onnx": (None, "a CoreML model: not supported"),
    }
    for name, (kind, what) in expected.items():
        found = detect(tmp_path / name)
        assert found.kind == kind, (name, found)
        if what is not None:
            assert what in found.what
            result = run_cli("inspect", "--weights", str(tmp_path / name))
            assert result.code == 2 and what in result.stderr and "pickle" not in result.stderr, result.stderr
    assert run_cli("inspect", "--weights", str(tmp_path / "real.h5"), "--json").json()["passed"]
    assert run_cli("inspect", "--weights", str(tmp_path / "legacy.npz"), "--json").json()["passed"]
    assert run_cli("inspect", "--weights", str(tmp_path / "arrays.pt"), "--json").json()["passed"]


def test_an_unknown_binary_is_never_called_a_pickle(tmp_path, run_cli):
    (tmp_path / "blob.bin").write_bytes(struct.pack("<8f", *range(8)) + b"\x00\xff" * 40)
    result = run_cli("inspect", "--weights", str(tmp_path / "blob.bin"))
    assert result.code == 2 and "unrecognised binary file" in result.stderr and "pickle" not in result.stderr


def every_format(lstm: nn.LSTM, folder: Path) -> dict[str, Path]:
    """The same one-layer LSTM in every format lstm-cli reads, each file named .bin: the bytes,
    not the name, must tell them apart."""
    from safetensors.torch import save_file

    from tests.test_format_keras import keras_weights, lstm_config, named, sequential, write_legacy
    from tests.test_format_onnx import lstm_file

    state = lstm.state_dict()
    files = {name: folder / f"{name}.bin" for name in (
        "torch", "legacy", "torchscript", "safetensors", "npz", "pickle", "cell", "onnx", "keras")}
    torch.save(state, files["torch"])
    torch.save(state, files["legacy"], _use_new_zipfile_serialization=False)
    torch.jit.script(lstm).save(str(files["torchscript"]))
    save_file({k: v.contiguous() for k, v in state.items()}, str(files["safetensors"]))
    with open(files["npz"], "wb") as handle:
        np.savez(handle, **{k: v.numpy() for k, v in state.items()})
    with open(files["pickle"], "wb") as handle:
        pickle.dump({k: v.numpy() for k, v in state.items()}, handle)
    torch.save({k.removesuffix("_l0"): v for k, v in state.items()}, files["cell"])
    lstm_file(files["onnx"], lstm)
    # Keras has one bias: b_ih + b_hh (the reader gives it back as bias_ih, with bias_hh = 0).
    write_legacy(files["keras"], [("lstm", named("lstm/lstm_cell/", keras_weights(lstm)))],
                 model_config=sequential(lstm_config("lstm")))
    return files


FORMAT_NAMES = {
    "torch": "PyTorch state_dict (torch.save)", "legacy": "PyTorch state_dict (torch.save)",
    "torchscript": "TorchScript archive (torch.jit.save)", "safetensors": "safetensors",
    "npz": "numpy .npz archive", "pickle": "Python pickle of numpy arrays (read without running code)",
    "cell": "PyTorch state_dict (torch.save)", "onnx": "ONNX model", "keras": "Keras HDF5 (full model, Keras 2.4.0)",
}


def test_every_format_runs_in_every_command_and_says_what_it_loaded(tmp_path, run_cli):
    torch.manual_seed(40)
    lstm = nn.LSTM(5, 7).eval()  # input 5 and hidden 7, as the Keras test helpers write
    files = every_format(lstm, tmp_path)
    x = torch.randn(6, 2, 5)
    np.save(tmp_path / "x.npy", x.numpy())
    with torch.no_grad():
        expected, _ = lstm(x)
    for name, path in files.items():
        batch_first = name == "keras"
        layout = ["--input", str(tmp_path / ("xb.npy" if batch_first else "x.npy"))]
        if batch_first:
            np.save(tmp_path / "xb.npy", x.transpose(0, 1).numpy())
        for command in ("inspect", "gates", "compare-cell"):
            result = run_cli(command, "--weights", str(path), *layout, "--json")
            assert result.code == 0, (name, command, result.stderr)
            doc = result.json()
            assert doc["passed"] and doc["source"]["format"] == FORMAT_NAMES[name], (name, command)
            assert doc["source"]["file"] == str(path) and doc["config"]["batch_first"] is batch_first
        export = tmp_path / f"{name}.npz"
        assert run_cli("gates", "--weights", str(path), *layout, "--export", str(export)).code == 0
        with np.load(export) as data:
            output = torch.from_numpy(data["output"])
        torch.testing.assert_close(output.transpose(0, 1) if batch_first else output, expected, **TOL)


def test_a_trusted_plain_pickle_of_a_module_loads(tmp_path, run_cli):
    torch.manual_seed(41)
    model = Seq2Seq().eval()
    path = tmp_path / "model.pkl"
    with open(path, "wb") as handle:
        pickle.dump(model, handle)
    doc = run_cli("inspect", "--weights", str(path), "--json").json()  # read without running code
    assert doc["passed"] and doc["source"]["key"] == "encoder" and doc["config"]["batch_first"] is True
    assert any("tests.test_formats.Seq2Seq" in n for n in doc["source"]["notes"])
    doc = run_cli("inspect", "--weights", str(path), "--trust-checkpoint", "--json").json()
    assert doc["passed"] and doc["source"]["key"] == "encoder" and doc["config"]["batch_first"] is True
