"""One small LSTM written in every format lstm-cli reads, so that the formats can be compared
number for number (issue 24): every file below holds the same weights, and lstm-cli, reading any
of them, runs the same nn.LSTM on the same input.

The source model is `source_model()`: nn.LSTM(8, 6, num_layers=2, bidirectional=True) with
PyTorch's default initialisation from torch.manual_seed(SEED), not trained (the weights are
seeded random numbers: for comparing formats, what the numbers are does not matter, only that
every file holds the same ones). Bidirectional and two layers, so that the `_reverse` names,
Keras' Bidirectional layout and ONNX's per-direction blocks and one-node-per-layer export are all
exercised. The input is `source_input()`: (L=5, N=2, 8) float32 from numpy's default_rng(SEED).

    .venv/bin/python examples/make_formats.py              # writes examples/formats/
    .venv/bin/python examples/make_formats.py --out DIR    # somewhere else (the tests do this)

writes, into examples/formats/ (each reader's docstring in lstm_cli/formats/ says the same):

    input.npy              the input, time-major (L, N, 8) = (5, 2, 8): for every file but Keras'
    input_batch_first.npy  the same input as (N, L, 8) = (2, 5, 8): Keras feeds (batch, time,
                           features) and lstm-cli takes batch_first=True from a Keras file
    lstm_state_dict.pt     torch.save(model.state_dict()): weight_ih_l0 (24, 8), weight_hh_l0
                           (24, 6), bias_ih_l0, bias_hh_l0 (24,), the same with _reverse, and
                           layer 1 with weight_ih_l1 (24, 12). lstm-cli reads it as it is.
    lstm.safetensors       safetensors.torch.save_file of the same state_dict. Read as it is.
    lstm.npz               np.savez of the same state_dict as float32 arrays. Read as it is.
    lstm_torchscript.pt    torch.jit.save(torch.jit.script(model)): lstm-cli reads the scripted
                           module's parameters (its state_dict, the same names) and batch_first
                           from the scripted nn.LSTM; it never runs the scripted code.
    lstm.onnx              torch.onnx.export (the TorchScript exporter, dynamo=False, opset 17):
                           one ONNX LSTM node per layer, '/LSTM' (input 8) and '/LSTM_1' (input 12,
                           layer 0's output), each direction=bidirectional with W [2, 24, I],
                           R [2, 24, 6], B [2, 48] = [Wb | Rb], gate blocks i, o, f, c; initial_h
                           and initial_c are zeros shaped at run time. lstm-cli reads one node per
                           --key as a one-layer bidirectional nn.LSTM: W and R split by direction,
                           blocks reordered to i, f, g, o, B split into bias_ih (Wb) and bias_hh (Rb).
                           Layer 1 is compared with the source's layer 1 on the source's layer-0
                           output.
    lstm_int8.onnx         onnxruntime.quantization.quantize_dynamic(lstm.onnx, weight_type=QInt8,
                           reduce_range=True): each LSTM node becomes com.microsoft
                           DynamicQuantizeLSTM ('/LSTM_quant', '/LSTM_1_quant') with W and R int8,
                           transposed to [D, I, 4H] and [D, H, 4H], one scale and zero point per
                           direction; B stays float. lstm-cli dequantizes W and R as
                           (q - zero_point) * scale and transposes them back, so its nn.LSTM runs
                           weights within scale/2 of the source's; onnxruntime's own int8 run also
                           quantizes the activations, and its difference is reported, not judged.
                           reduce_range keeps the weights in 7 bits: on x86 CPUs without VNNI
                           (this AVX2 AMD EPYC) onnxruntime's uint8 x int8 kernel saturates with
                           full-range weights (measured here, `inspect`'s note on its
                           random input: onnxruntime's int8 run 0.105 off nn.LSTM with
                           reduce_range=False, 0.011 with it).
    keras2_bidirectional.h5
                           a Keras 2 (tf.keras 2.4 layout) full model in HDF5, written with h5py:
                           root attributes model_config (a Sequential: InputLayer,
                           Bidirectional 'bidirectional' of LSTM(6), Bidirectional
                           'bidirectional_1' of LSTM(6), return_sequences, merge_mode concat),
                           keras_version, backend; group model_weights with one group per layer
                           whose weight_names list 'bidirectional/forward_lstm/lstm_cell_1/kernel:0'
                           and so on. Per direction, Keras' kernel (I, 24) = weight_ih.T,
                           recurrent_kernel (6, 24) = weight_hh.T, and its one bias (24,) =
                           bias_ih + bias_hh; Keras' gate order i, f, c, o is PyTorch's i, f, g, o.
                           lstm-cli transposes back, puts the bias in bias_ih with bias_hh = 0,
                           and maps the forward layer to weight_*_l0 and the backward layer to
                           weight_*_l0_reverse; each Bidirectional layer is one --key.
    keras3.keras           a Keras 3 .keras zip (metadata.json, config.json, model.weights.h5), the
                           same two Bidirectional(LSTM) layers: Keras 3 keeps Bidirectional, so it
                           is used here too. model.weights.h5 holds each cell's variables as
                           layers/bidirectional/forward_layer/cell/vars/0..2 (kernel,
                           recurrent_kernel, bias; backward_layer likewise, bidirectional_1 for
                           layer 1). Converted back exactly as the Keras 2 file.
    lstmcells.pt           torch.save of a state_dict of two nn.LSTMCell(8, 6): 'forward_cell'
                           holds the source's layer-0 forward direction, 'backward_cell' its
                           layer-0 backward direction (weight_ih, weight_hh, bias_ih, bias_hh).
                           lstm-cli reads each cell (--key) as a one-layer nn.LSTM (names + _l0);
                           the backward cell, run on the time-reversed input, gives the source's
                           backward direction reversed.
    lstmcell_stack.pt      a stack of cells as an nn.ModuleList saves it ('cells.0', 'cells.1'):
                           cell 0 is the source's layer-0 forward direction (8 -> 6), cell 1 a
                           seeded nn.LSTMCell(6, 4) of its own (layer 1 of this bidirectional
                           source reads 2H = 12 values, which no stack of cells feeds it). Widths
                           differ: lstm-cli reads a free-form stack, which compare-cell runs.

Every file but lstm_torchscript.pt is written byte for byte the same by every run with the same
package versions (MADE_WITH): torch.save, numpy and the zip writer here use fixed timestamps, h5py
and the ONNX writers store none. TorchScript archives are not reproducible: the order of the
scripted module's constants follows Python's string hashing (PYTHONHASHSEED), the archive's
serialization_id hashes that order, and its debug info records the absolute path of torch's own
rnn.py. Its tensors are the same every run.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
FORMATS = HERE / "formats"

SEED = 24
INPUT_SIZE, HIDDEN_SIZE, NUM_LAYERS = 8, 6, 2
SEQ_LEN, BATCH = 5, 2
SUFFIXES = ("", "_reverse")
# The package versions that wrote the shipped files (the ONNX files' bytes depend on them).
MADE_WITH = {"torch": "2.13.0", "onnx": "1.23.2", "onnxruntime": "1.32.0", "h5py": "3.16.0", "safetensors": "0.8.0", "numpy": "2.4.6"}

# What each file holds, and the --key of every LSTM in it (None: the file holds one).
FILES = {
    "lstm_state_dict.pt": [None],
    "lstm.safetensors": [None],
    "lstm.npz": [None],
    "lstm_torchscript.pt": [None],
    "lstm.onnx": ["/LSTM", "/LSTM_1"],
    "lstm_int8.onnx": ["/LSTM_quant", "/LSTM_1_quant"],
    "keras2_bidirectional.h5": ["bidirectional", "bidirectional_1"],
    "keras3.keras": ["bidirectional", "bidirectional_1"],
    "lstmcells.pt": ["forward_cell", "backward_cell"],
    "lstmcell_stack.pt": [None],
}
STACK_WIDTHS = (HIDDEN_SIZE, 4)  # lstmcell_stack.pt: cells 8 -> 6 -> 4
INPUTS = ("input.npy", "input_batch_first.npy")
NOT_REPRODUCIBLE = {"lstm_torchscript.pt"}  # see the module docstring
KERAS_FILES = {"keras2_bidirectional.h5", "keras3.keras"}  # their input is (N, L, features)
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the zip format's earliest date: no timestamp


def source_model() -> nn.LSTM:
    torch.manual_seed(SEED)
    return nn.LSTM(INPUT_SIZE, HIDDEN_SIZE, num_layers=NUM_LAYERS, bidirectional=True).eval()


def source_input() -> np.ndarray:
    """(L, N, input) float32, time-major."""
    return np.random.default_rng(SEED).standard_normal((SEQ_LEN, BATCH, INPUT_SIZE), dtype=np.float32)


def layer_model(model: nn.LSTM, layer: int) -> nn.LSTM:
    """Layer `layer` of `model` alone, as a one-layer bidirectional nn.LSTM (names _l0)."""
    state = model.state_dict()
    width = INPUT_SIZE if layer == 0 else 2 * HIDDEN_SIZE
    single = nn.LSTM(width, HIDDEN_SIZE, bidirectional=True).eval()
    single.load_state_dict({name.replace(f"_l{layer}", "_l0"): t for name, t in state.items() if f"_l{layer}" in name})
    return single


def numpy_state(model: nn.LSTM) -> dict[str, np.ndarray]:
    return {name: t.detach().numpy().copy() for name, t in model.state_dict().items()}


# -- torch, safetensors, numpy -----------------------------------------------------------------


def write_torch(model: nn.LSTM, out: Path) -> None:
    torch.save(model.state_dict(), out / "lstm_state_dict.pt")
    from safetensors.torch import save_file

    save_file({name: t.contiguous() for name, t in model.state_dict().items()}, str(out / "lstm.safetensors"))
    write_npz(out / "lstm.npz", numpy_state(model))
    torch.jit.save(torch.jit.script(model), str(out / "lstm_torchscript.pt"))


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez's layout (one NAME.npy per array, stored uncompressed) with fixed timestamps."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", ZIP_TIME), buffer.getvalue())


def write_cells(model: nn.LSTM, out: Path) -> None:
    """Layer 0's two directions as two nn.LSTMCell state_dicts, under forward_cell / backward_cell."""
    state = model.state_dict()
    cells = {}
    for prefix, suffix in (("forward_cell", ""), ("backward_cell", "_reverse")):
        cell = nn.LSTMCell(INPUT_SIZE, HIDDEN_SIZE)
        cell.load_state_dict({kind: state[f"{kind}_l0{suffix}"] for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
        cells.update({f"{prefix}.{name}": t for name, t in cell.state_dict().items()})
    torch.save(cells, out / "lstmcells.pt")


def write_stack(model: nn.LSTM, out: Path) -> None:
    """A free-form stack of nn.LSTMCells under cells.0, cells.1 (a ModuleList's names): cell 0
    is the source's layer-0 forward direction (8 -> 6), cell 1 a seeded nn.LSTMCell(6, 4) of
    its own (the source's layer 1 reads 12 values, both directions, which no stack feeds it).
    Widths differ, so lstm-cli runs it in compare-cell, as --hidden-sizes 6,4 does."""
    state = model.state_dict()
    first = nn.LSTMCell(INPUT_SIZE, STACK_WIDTHS[0])
    first.load_state_dict({kind: state[f"{kind}_l0"] for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    torch.manual_seed(SEED + 1)
    second = nn.LSTMCell(STACK_WIDTHS[0], STACK_WIDTHS[1])
    stack = nn.ModuleList([first, second])
    torch.save({f"cells.{name}": t for name, t in stack.state_dict().items()}, out / "lstmcell_stack.pt")


# -- ONNX ----------------------------------------------------------------------------------------


def write_onnx(model: nn.LSTM, x: np.ndarray, out: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(
            model, (torch.from_numpy(x),), str(out / "lstm.onnx"), dynamo=False, opset_version=17,
            input_names=["input"], output_names=["output", "h_n", "c_n"],
            dynamic_axes={"input": {0: "L", 1: "N"}, "output": {0: "L", 1: "N"}, "h_n": {1: "N"}, "c_n": {1: "N"}},
        )
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger("root").setLevel(logging.ERROR)  # the quantizer's "consider pre-processing" advice
    quantize_dynamic(str(out / "lstm.onnx"), str(out / "lstm_int8.onnx"), weight_type=QuantType.QInt8, reduce_range=True)


# -- Keras ---------------------------------------------------------------------------------------


def keras_weights(model: nn.LSTM, layer: int, suffix: str) -> list[np.ndarray]:
    """Keras' LSTMCell computes z = x @ kernel + h @ recurrent_kernel + bias with the gate blocks
    i, f, c, o (nn.LSTM's i, f, g, o): kernel (I, 4H), recurrent_kernel (H, 4H) and one bias,
    which gets bias_ih + bias_hh."""
    p = numpy_state(model)
    k = f"_l{layer}{suffix}"
    return [
        np.ascontiguousarray(p[f"weight_ih{k}"].T),
        np.ascontiguousarray(p[f"weight_hh{k}"].T),
        p[f"bias_ih{k}"] + p[f"bias_hh{k}"],
    ]


def keras2_lstm(name: str, **changes) -> dict:
    """An LSTM's config as tf.keras 2.4's LSTM.get_config writes it."""
    config = {
        "name": name, "trainable": True, "dtype": "float32", "return_sequences": True,
        "return_state": False, "go_backwards": False, "stateful": False, "unroll": False,
        "time_major": False, "units": HIDDEN_SIZE, "activation": "tanh", "recurrent_activation": "sigmoid",
        "use_bias": True, "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
        "recurrent_initializer": {"class_name": "Orthogonal", "config": {"gain": 1.0, "seed": None}},
        "bias_initializer": {"class_name": "Zeros", "config": {}}, "unit_forget_bias": True,
        "kernel_regularizer": None, "recurrent_regularizer": None, "bias_regularizer": None,
        "activity_regularizer": None, "kernel_constraint": None, "recurrent_constraint": None,
        "bias_constraint": None, "dropout": 0.0, "recurrent_dropout": 0.0, "implementation": 2,
    }
    config.update(changes)
    return {"class_name": "LSTM", "config": config}


def keras2_model_config() -> dict:
    layers = [{"class_name": "InputLayer", "config": {
        "batch_input_shape": [None, None, INPUT_SIZE], "dtype": "float32", "sparse": False, "ragged": False, "name": "input_1"}}]
    for layer in range(NUM_LAYERS):
        tail = f"_{layer}" if layer else ""
        layers.append({"class_name": "Bidirectional", "config": {
            "name": f"bidirectional{tail}", "trainable": True, "dtype": "float32",
            "layer": keras2_lstm(f"forward_lstm{tail}"), "merge_mode": "concat",
            "backward_layer": keras2_lstm(f"backward_lstm{tail}", go_backwards=True)}})
    return {"class_name": "Sequential", "config": {"name": "sequential", "layers": layers},
            "keras_version": "2.4.0", "backend": "tensorflow"}


def write_keras2(model: nn.LSTM, path: Path) -> None:
    """save_model_to_hdf5's layout (keras/saving/hdf5_format.py): root attributes
    keras_version, backend, model_config; group model_weights with layer_names and one group per
    layer, whose weight_names attribute lists its datasets, stored at those (relative) paths."""
    import h5py

    layers = []
    cell = 1  # tf.keras numbers the cells of a Sequential's Bidirectional layers lstm_cell_1, _2, ...
    for layer in range(NUM_LAYERS):
        tail = f"_{layer}" if layer else ""
        weights = []
        for direction, suffix in (("forward", ""), ("backward", "_reverse")):
            where = f"bidirectional{tail}/{direction}_lstm{tail}/lstm_cell_{cell}/"
            cell += 1
            names = [f"{where}kernel:0", f"{where}recurrent_kernel:0", f"{where}bias:0"]
            weights += list(zip(names, keras_weights(model, layer, suffix)))
        layers.append((f"bidirectional{tail}", weights))
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.4.0"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps(keras2_model_config()).encode("utf8")
        group = f.create_group("model_weights")
        group.attrs["layer_names"] = [name.encode("utf8") for name, _ in layers]
        group.attrs["backend"] = b"tensorflow"
        group.attrs["keras_version"] = b"2.4.0"
        for name, weights in layers:
            layer_group = group.create_group(name)
            layer_group.attrs["weight_names"] = [weight_name.encode("utf8") for weight_name, _ in weights]
            for weight_name, value in weights:
                layer_group.create_dataset(weight_name, value.shape, dtype=value.dtype)[...] = value


def keras3_lstm(name: str, **changes) -> dict:
    """An LSTM's config as Keras 3's serialize_keras_object writes it."""
    config = {
        "name": name, "trainable": True,
        "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": None},
        "return_sequences": True, "return_state": False, "go_backwards": False, "stateful": False,
        "unroll": False, "zero_output_for_mask": False, "units": HIDDEN_SIZE, "activation": "tanh",
        "recurrent_activation": "sigmoid", "use_bias": True, "unit_forget_bias": True,
        "kernel_regularizer": None, "recurrent_regularizer": None, "bias_regularizer": None,
        "activity_regularizer": None, "kernel_constraint": None, "recurrent_constraint": None,
        "bias_constraint": None, "dropout": 0.0, "recurrent_dropout": 0.0, "seed": None,
    }
    config.update(changes)
    return {"module": "keras.layers", "class_name": "LSTM", "config": config, "registered_name": None}


def keras3_config() -> dict:
    layers = [{"module": "keras.layers", "class_name": "InputLayer", "registered_name": None, "config": {
        "batch_shape": [None, None, INPUT_SIZE], "dtype": "float32", "sparse": False, "name": "input_layer"}}]
    for layer in range(NUM_LAYERS):
        tail = f"_{layer}" if layer else ""
        width = INPUT_SIZE if layer == 0 else 2 * HIDDEN_SIZE
        layers.append({"module": "keras.layers", "class_name": "Bidirectional", "registered_name": None, "config": {
            "name": f"bidirectional{tail}", "trainable": True, "merge_mode": "concat",
            "layer": keras3_lstm(f"forward_lstm{tail}"),
            "backward_layer": keras3_lstm(f"backward_lstm{tail}", go_backwards=True)},
            "build_config": {"input_shape": [None, None, width]}})
    return {"module": "keras", "class_name": "Sequential", "registered_name": None,
            "config": {"name": "sequential", "trainable": True, "layers": layers},
            "build_config": {"input_shape": [None, None, INPUT_SIZE]}, "compile_config": None}


def write_keras3(model: nn.LSTM, path: Path) -> None:
    """saving_lib's layout (keras/src/saving/saving_lib.py): a zip of metadata.json, config.json
    and model.weights.h5, whose groups hold each layer's variables as vars/0, vars/1, ...
    (an LSTM's under cell/, a Bidirectional's under forward_layer/ and backward_layer/)."""
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.create_group("vars")  # the model's own variables (none)
        for layer in range(NUM_LAYERS):
            tail = f"_{layer}" if layer else ""
            for direction, suffix in (("forward_layer", ""), ("backward_layer", "_reverse")):
                group = f.create_group(f"layers/bidirectional{tail}/{direction}/cell/vars")
                for index, array in enumerate(keras_weights(model, layer, suffix)):
                    group[str(index)] = array
    metadata = {"keras_version": "3.4.1", "date_saved": "2025-01-01@00:00:00"}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(zipfile.ZipInfo("metadata.json", ZIP_TIME), json.dumps(metadata))
        archive.writestr(zipfile.ZipInfo("config.json", ZIP_TIME), json.dumps(keras3_config()))
        archive.writestr(zipfile.ZipInfo("model.weights.h5", ZIP_TIME), buffer.getvalue())


# -- all -----------------------------------------------------------------------------------------


def make(out: Path) -> list[Path]:
    """Write every file into `out`; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    model, x = source_model(), source_input()
    np.save(out / "input.npy", x)
    np.save(out / "input_batch_first.npy", np.ascontiguousarray(x.transpose(1, 0, 2)))
    write_torch(model, out)
    write_cells(model, out)
    write_stack(model, out)
    write_onnx(model, x, out)
    write_keras2(model, out / "keras2_bidirectional.h5")
    write_keras3(model, out / "keras3.keras")
    return [out / name for name in (*INPUTS, *FILES)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=FORMATS, help="folder to write into (default: examples/formats)")
    args = parser.parse_args()
    for path in make(args.out):
        print(f"{path.stat().st_size:>7,} B  {path}")


if __name__ == "__main__":
    main()
