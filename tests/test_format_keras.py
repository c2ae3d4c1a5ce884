"""Keras files (issue 12): written here with h5py exactly as Keras' saving code writes them
(legacy HDF5 full models and weights-only files, .keras zips, .weights.h5), from seeded nn.LSTMs
converted to Keras' layout in this file, independently of the reader; read back, loaded into a
fresh nn.LSTM and run against the original; every hostile file refused with one sentence."""

import io
import json
import sys
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

h5py = pytest.importorskip("h5py")

from lstm_cli.formats.base import RECURRENT_ACTIVATIONS, FormatError
from lstm_cli.formats.keras import read
from lstm_cli.formats.keras.hdf5 import MAX_DEPTH

I, H = 5, 7  # different, so that a transpose cannot pass for a reshape
GATE_ORDER = "gate order i,f,c,o = PyTorch i,f,g,o: no reorder"
BATCH_FIRST = "Keras input is (batch, time, features): batch_first=True"


# -- torch -> Keras, written from Keras' documented math, not from the reader -------------------


def seeded_lstm(seed: int, input_size: int = I, bidirectional: bool = False, bias: bool = True) -> nn.LSTM:
    torch.manual_seed(seed)
    return nn.LSTM(input_size, H, bidirectional=bidirectional, bias=bias).eval()


def params(lstm: nn.LSTM, suffix: str = "") -> dict[str, np.ndarray]:
    return {k.removesuffix(suffix): v.detach().numpy().copy() for k, v in lstm.state_dict().items() if k.endswith(suffix) and (suffix or not k.endswith("_reverse"))}


def keras_weights(lstm: nn.LSTM, suffix: str = "") -> list[np.ndarray]:
    """Keras' LSTMCell computes z = x @ kernel + h @ recurrent_kernel + bias, split into gate
    blocks i, f, c, o (nn.LSTM's i, f, g, o); it has one bias, so b_ih + b_hh goes there."""
    p = params(lstm, suffix)
    weights = [p["weight_ih_l0"].T.copy(), p["weight_hh_l0"].T.copy()]
    if "bias_ih_l0" in p:
        weights.append(p["bias_ih_l0"] + p["bias_hh_l0"])
    return weights


def cudnn_weights(lstm: nn.LSTM, suffix: str = "") -> list[np.ndarray]:
    """CuDNNLSTM's layout, made from the LSTM layout by Keras' own _convert_rnn_weights
    (LSTM -> CuDNNLSTM: each input block k.T.reshape(k.shape, order='C'), each recurrent block
    transposed), with cuDNN's two biases [input | recurrent] taken from nn.LSTM's two."""
    kernel, recurrent, _ = keras_weights(lstm, suffix)
    p = params(lstm, suffix)

    def per_gate(matrix, transform):
        return np.hstack([transform(block) for block in np.hsplit(matrix, 4)])

    return [
        per_gate(kernel, lambda k: k.T.reshape(k.shape, order="C")),
        per_gate(recurrent, lambda k: k.T),
        np.concatenate([p["bias_ih_l0"], p["bias_hh_l0"]]),
    ]


def named(prefix: str, weights: list[np.ndarray]) -> list[tuple[str, np.ndarray]]:
    return list(zip([f"{prefix}kernel:0", f"{prefix}recurrent_kernel:0", f"{prefix}bias:0"], weights))


# -- legacy HDF5, as keras/saving/hdf5_format.py writes it --------------------------------------


def lstm_config(name: str, class_name: str = "LSTM", **changes) -> dict:
    """A layer entry of a tf.keras 2.4 model_config, as LSTM.get_config writes it."""
    config = {
        "name": name, "trainable": True, "dtype": "float32", "return_sequences": True,
        "return_state": False, "go_backwards": False, "stateful": False, "unroll": False,
        "time_major": False, "units": H, "activation": "tanh", "recurrent_activation": "sigmoid",
        "use_bias": True, "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
        "recurrent_initializer": {"class_name": "Orthogonal", "config": {"gain": 1.0, "seed": None}},
        "bias_initializer": {"class_name": "Zeros", "config": {}}, "unit_forget_bias": True,
        "kernel_regularizer": None, "recurrent_regularizer": None, "bias_regularizer": None,
        "activity_regularizer": None, "kernel_constraint": None, "recurrent_constraint": None,
        "bias_constraint": None, "dropout": 0.0, "recurrent_dropout": 0.0, "implementation": 2,
    }
    if class_name == "CuDNNLSTM":  # _CuDNNRNN.get_config has no activations, dropout or unroll
        for key in ("activation", "recurrent_activation", "use_bias", "dropout", "recurrent_dropout", "unroll", "time_major", "implementation"):
            config.pop(key)
    config.update(changes)
    return {"class_name": class_name, "config": config}


def sequential(*layers: dict) -> dict:
    entry = {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 6, I], "dtype": "float32", "sparse": False, "ragged": False, "name": "input_1"}}
    return {"class_name": "Sequential", "config": {"name": "sequential", "layers": [entry, *layers]}, "keras_version": "2.4.0", "backend": "tensorflow"}


def write_legacy(path, layers, model_config=None, keras_version="2.4.0", fixed_length=False):
    """save_model_to_hdf5 (model_config and model_weights) or save_weights (the weights group at
    the root): layer_names, backend, keras_version, then one group per layer, sorted by name, with
    weight_names and a dataset per weight at that (relative) path. h5py 2 stored the byte lists
    as fixed-length strings, h5py 3 as variable-length ones: both occur in real files."""

    def strings(values):
        encoded = [value.encode("utf8") for value in values]
        return np.array(encoded, dtype="S") if fixed_length and encoded else encoded

    with h5py.File(path, "w") as f:
        if model_config is not None:
            f.attrs["keras_version"] = keras_version
            f.attrs["backend"] = "tensorflow"
            f.attrs["model_config"] = json.dumps(model_config).encode("utf8")
            group = f.create_group("model_weights")
        else:
            group = f
        group.attrs["layer_names"] = strings([name for name, _ in layers])
        group.attrs["backend"] = b"tensorflow"
        group.attrs["keras_version"] = keras_version.encode("utf8")
        for name, weights in sorted(layers, key=lambda layer: layer[0]):
            layer_group = group.create_group(name)
            layer_group.attrs["weight_names"] = strings([weight_name for weight_name, _ in weights])
            for weight_name, value in weights:
                layer_group.create_dataset(weight_name, value.shape, dtype=value.dtype)[...] = value


# -- Keras 3, as keras/src/saving/saving_lib.py writes it -----------------------------------------


def keras3_lstm(name: str, **changes) -> dict:
    config = {
        "name": name, "trainable": True,
        "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": None},
        "return_sequences": True, "return_state": False, "go_backwards": False, "stateful": False,
        "unroll": False, "zero_output_for_mask": False, "units": H, "activation": "tanh",
        "recurrent_activation": "sigmoid", "use_bias": True, "unit_forget_bias": True,
        "kernel_regularizer": None, "recurrent_regularizer": None, "bias_regularizer": None,
        "activity_regularizer": None, "kernel_constraint": None, "recurrent_constraint": None,
        "bias_constraint": None, "dropout": 0.0, "recurrent_dropout": 0.0, "seed": None,
    }
    config.update(changes)
    return {"module": "keras.layers", "class_name": "LSTM", "config": config, "registered_name": None, "build_config": {"input_shape": [None, 6, I]}}


def keras3_model(*layers: dict) -> dict:
    entry = {"module": "keras.layers", "class_name": "InputLayer", "config": {"batch_shape": [None, 6, I], "dtype": "float32", "sparse": False, "name": "input_layer"}, "registered_name": None}
    return {
        "module": "keras", "class_name": "Sequential", "registered_name": None,
        "config": {"name": "sequential", "trainable": True, "layers": [entry, *layers]},
        "build_config": {"input_shape": [None, 6, I]}, "compile_config": None,
    }


def keras3_h5(groups: dict[str, list[np.ndarray]], extra=None) -> bytes:
    """model.weights.h5: each saveable's variables as vars/0, vars/1, ... under its path."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.create_group("vars")  # the model's own (none)
        for path, arrays in groups.items():
            group = f.create_group(path)
            for index, array in enumerate(arrays):
                group[str(index)] = array
        f.create_group("optimizer/vars")["0"] = np.array(0, dtype=np.int64)  # iterations
        if extra:
            extra(f)
    return buffer.getvalue()


def write_keras_zip(path, config, weights: bytes, version="3.4.1", compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": version, "date_saved": "2024-07-01@12:00:00"}))
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", weights)


class Encoders:
    """A Keras 3 Sequential: LSTM 'encoder', Bidirectional(LSTM) 'bidi', LSTM 'decoder', Dense."""

    def __init__(self):
        self.encoder = seeded_lstm(1)
        self.bidi = seeded_lstm(2, input_size=H, bidirectional=True)
        self.decoder = seeded_lstm(3, input_size=2 * H)
        self.config = keras3_model(
            keras3_lstm("encoder"),
            {"module": "keras.layers", "class_name": "Bidirectional", "registered_name": None, "config": {
                "name": "bidi", "trainable": True, "merge_mode": "concat",
                "layer": keras3_lstm("forward_lstm"), "backward_layer": keras3_lstm("backward_lstm", go_backwards=True)}},
            keras3_lstm("decoder"),
            {"module": "keras.layers", "class_name": "Dense", "config": {"name": "head", "units": 2}, "registered_name": None},
        )
        dense = [np.ones((H, 2), np.float32), np.zeros(2, np.float32)]
        self.groups = {
            "layers/lstm/cell/vars": keras_weights(self.encoder),
            "layers/bidirectional/forward_layer/cell/vars": keras_weights(self.bidi),
            "layers/bidirectional/backward_layer/cell/vars": keras_weights(self.bidi, "_reverse"),
            "layers/lstm_1/cell/vars": keras_weights(self.decoder),
            "layers/dense/vars": dense,
        }


# -- checks ------------------------------------------------------------------------------------


def assert_runs_like(found, original: nn.LSTM) -> None:
    """The converted weights in a fresh nn.LSTM(batch_first=True) compute what the original does."""
    assert found.batch_first is True and found.recurrent_activation == "sigmoid"
    fresh = nn.LSTM(
        original.input_size, H, batch_first=True, bidirectional=original.bidirectional, bias=original.bias
    )
    fresh.load_state_dict(found.state)  # strict: exactly nn.LSTM's names and shapes
    x = torch.randn(3, 6, original.input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out, (h, c) = fresh(x)
        expected_out, (expected_h, expected_c) = original(x.transpose(0, 1))
    torch.testing.assert_close(out, expected_out.transpose(0, 1))
    torch.testing.assert_close(h, expected_h)
    torch.testing.assert_close(c, expected_c)


def by_name(contents) -> dict:
    return {found.name: found for found in contents.found}


# -- legacy HDF5 -------------------------------------------------------------------------------


def test_tf_keras_full_model_converts_and_runs_like_the_original(tmp_path):
    original = seeded_lstm(0)
    path = tmp_path / "model.h5"
    config = sequential(
        {"class_name": "Dropout", "config": {"name": "dropout", "rate": 0.1}},
        lstm_config("lstm_1"),
        {"class_name": "Dense", "config": {"name": "dense", "units": 2}},
    )
    write_legacy(path, [
        ("dropout", []),
        ("lstm_1", named("lstm_1/lstm_cell/", keras_weights(original))),
        ("dense", [("dense/kernel:0", np.ones((H, 2), np.float32)), ("dense/bias:0", np.zeros(2, np.float32))]),
    ], model_config=config)

    contents = read(path)

    assert contents.format == "Keras HDF5 (full model, Keras 2.4.0)"
    assert [found.name for found in contents.found] == ["lstm_1"] and not contents.rejected
    found = contents.found[0]
    assert found.conversions == [
        "kernel (5, 28) transposed -> weight_ih_l0 (28, 5)",
        "recurrent_kernel (7, 28) transposed -> weight_hh_l0 (28, 7)",
        "bias (28,) -> bias_ih_l0; bias_hh_l0 = zeros (Keras has one bias, nn.LSTM adds bias_ih + bias_hh)",
        GATE_ORDER,
        BATCH_FIRST,
    ]
    assert found.notes == []
    assert torch.count_nonzero(found.state["bias_hh_l0"]) == 0
    assert_runs_like(found, original)  # b_ih + b_hh folded into one Keras bias still matches


@pytest.mark.parametrize(
    "version, activation, why",
    [
        ("2.2.4", "hard_sigmoid", "before Keras 2.3"),
        ("2.3.1", "sigmoid", "since Keras 2.3"),
        ("2.4.0", "sigmoid", "since Keras 2.3"),
        ("2.1.6-tf", "hard_sigmoid", "TensorFlow 1.x"),
        ("2.2.4-tf", "sigmoid", "TensorFlow 2.0-2.1"),
    ],
)
def test_weights_only_files_assume_the_default_of_the_keras_that_wrote_them(tmp_path, version, activation, why):
    original = seeded_lstm(4)
    path = tmp_path / "weights.h5"
    # Standalone Keras 2 named weights "<layer>/kernel:0"; h5py 2 wrote fixed-length strings.
    write_legacy(path, [("lstm_1", named("lstm_1/", keras_weights(original)))], keras_version=version, fixed_length=True)

    contents = read(path)

    assert contents.format == f"Keras HDF5 (weights only, Keras {version})"
    (found,) = contents.found
    assert found.name == "lstm_1" and found.recurrent_activation == activation
    assert any("assumed" in note and activation in note and why in note for note in found.notes)
    assert any("weight shapes" in note for note in found.notes)
    if activation == "sigmoid":
        assert_runs_like(found, original)


def test_bidirectional_lstm_gives_the_reverse_tensors(tmp_path):
    original = seeded_lstm(5, bidirectional=True)
    path = tmp_path / "bidi.h5"
    config = sequential({"class_name": "Bidirectional", "config": {
        "name": "bidirectional", "trainable": True, "dtype": "float32", "layer": lstm_config("lstm"), "merge_mode": "concat"}})
    weights = named("bidirectional/forward_lstm/lstm_cell_1/", keras_weights(original)) + named(
        "bidirectional/backward_lstm/lstm_cell_2/", keras_weights(original, "_reverse"))
    write_legacy(path, [("bidirectional", weights)], model_config=config)

    (found,) = read(path).found

    assert found.name == "bidirectional"
    assert set(found.state) == {f"{kind}_l0{sfx}" for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") for sfx in ("", "_reverse")}
    assert "backward kernel (5, 28) transposed -> weight_ih_l0_reverse (28, 5)" in found.conversions
    assert_runs_like(found, original)


def test_cudnn_lstm_splits_its_8h_bias_and_reads_cudnn_kernels(tmp_path):
    original = seeded_lstm(6)
    path = tmp_path / "cudnn.h5"
    write_legacy(path, [("cu_dnnlstm_1", named("cu_dnnlstm_1/", cudnn_weights(original)))],
                 model_config=sequential(lstm_config("cu_dnnlstm_1", class_name="CuDNNLSTM")), keras_version="2.2.4")

    (found,) = read(path).found

    p = params(original)
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        assert torch.equal(found.state[name], torch.from_numpy(p[name])), name  # pure data movement
    assert found.conversions[2] == (
        "bias (56,) split: [:28] input biases -> bias_ih_l0, [28:] recurrent biases -> bias_hh_l0"
    )
    assert found.notes == []  # cuDNN's gates are always sigmoid: nothing assumed
    assert_runs_like(found, original)


def test_weights_only_bidirectional_cudnn_lstm_is_recognised_by_its_8h_bias(tmp_path):
    original = seeded_lstm(7, bidirectional=True)
    path = tmp_path / "cudnn_bidi.h5"
    weights = named("bidirectional_1/forward_cu_dnnlstm_1/", cudnn_weights(original)) + named(
        "bidirectional_1/backward_cu_dnnlstm_1/", cudnn_weights(original, "_reverse"))
    write_legacy(path, [("bidirectional_1", weights)], keras_version="2.2.4")

    (found,) = read(path).found

    assert found.recurrent_activation == "sigmoid" and not any("assumed" in note for note in found.notes)
    assert_runs_like(found, original)


def test_use_bias_false_gives_no_bias_tensors(tmp_path):
    original = seeded_lstm(8, bias=False)
    path = tmp_path / "nobias.h5"
    write_legacy(path, [("lstm", named("lstm/lstm_cell/", keras_weights(original)))],
                 model_config=sequential(lstm_config("lstm", use_bias=False)))

    (found,) = read(path).found

    assert set(found.state) == {"weight_ih_l0", "weight_hh_l0"}
    assert "use_bias=False: no bias tensors (nn.LSTM(bias=False))" in found.conversions
    assert_runs_like(found, original)


def test_rnn_of_an_lstm_cell_is_an_lstm(tmp_path):
    original = seeded_lstm(18)
    cell = lstm_config("lstm_cell", class_name="LSTMCell")
    for key in ("go_backwards", "stateful", "return_sequences", "return_state", "unroll", "time_major"):
        cell["config"].pop(key)  # the RNN holds those
    rnn = {"class_name": "RNN", "config": {"name": "rnn", "cell": cell, "go_backwards": False, "stateful": False, "time_major": False}}
    write_legacy(path := tmp_path / "rnn.h5", [("rnn", named("rnn/lstm_cell/", keras_weights(original)))], model_config=sequential(rnn))

    (found,) = read(path).found

    assert found.name == "rnn"
    assert_runs_like(found, original)


def test_layer_names_split_into_chunks_are_joined(tmp_path):
    """Keras splits an attribute over 64 KB into layer_names0, layer_names1, ..."""
    first, second = seeded_lstm(9), seeded_lstm(10, input_size=H)
    path = tmp_path / "chunks.h5"
    write_legacy(path, [("lstm_a", named("lstm_a/", keras_weights(first))), ("lstm_b", named("lstm_b/", keras_weights(second)))])
    with h5py.File(path, "a") as f:
        del f.attrs["layer_names"]
        f.attrs["layer_names0"] = [b"lstm_a"]
        f.attrs["layer_names1"] = [b"lstm_b"]

    found = by_name(read(path))

    assert list(found) == ["lstm_a", "lstm_b"]
    assert_runs_like(found["lstm_a"], first)
    assert_runs_like(found["lstm_b"], second)


# -- what nn.LSTM can and cannot compute -------------------------------------------------------


def keras_numpy(x, kernel, recurrent, bias, gate):
    """Keras' LSTMCell in float64: z = x @ kernel + h @ recurrent_kernel + bias, gates i, f, c, o."""
    h = c = np.zeros((x.shape[0], recurrent.shape[0]))
    for t in range(x.shape[1]):
        z_i, z_f, z_c, z_o = np.split(x[:, t] @ kernel + h @ recurrent + bias, 4, axis=1)
        c = gate(z_f) * c + gate(z_i) * np.tanh(z_c)
        h = gate(z_o) * np.tanh(c)
    return h, c


def torch_layout_numpy(x, state, gate):
    """The same LSTM from nn.LSTM's parameters: gates = W_ih x + b_ih + W_hh h + b_hh, i, f, g, o."""
    w_ih, w_hh = (state[k].double().numpy() for k in ("weight_ih_l0", "weight_hh_l0"))
    b = state["bias_ih_l0"].double().numpy() + state["bias_hh_l0"].double().numpy()
    h = c = np.zeros((x.shape[0], w_hh.shape[1]))
    for t in range(x.shape[1]):
        g_i, g_f, g_g, g_o = np.split(x[:, t] @ w_ih.T + h @ w_hh.T + b, 4, axis=1)
        c = gate(g_f) * c + gate(g_i) * np.tanh(g_g)
        h = gate(g_o) * np.tanh(c)
    return h, c


def keras2_hard_sigmoid(z):
    """Keras 2 / tf.keras backend.hard_sigmoid: clip(0.2 z + 0.5, 0, 1)."""
    return np.clip(0.2 * z + 0.5, 0.0, 1.0)


def keras3_hard_sigmoid(z):
    """Keras 3 ops.hard_sigmoid: relu6(z + 3) / 6."""
    return np.minimum(np.maximum(z + 3.0, 0.0), 6.0) / 6.0


GATE_FOR_NAME = {"hard_sigmoid": keras2_hard_sigmoid, "hard_sigmoid_keras3": keras3_hard_sigmoid}


@pytest.mark.parametrize("version, name, keras_gate", [("2.4.0", "hard_sigmoid", keras2_hard_sigmoid), ("3.3.3", "hard_sigmoid_keras3", keras3_hard_sigmoid)])
def test_hard_sigmoid_is_reported_per_keras_version_and_matches_its_math(tmp_path, version, name, keras_gate):
    original = seeded_lstm(11)
    with torch.no_grad():
        for parameter in original.parameters():
            parameter.mul_(4.0)  # gate inputs well past the clipping points
    kernel, recurrent, bias = keras_weights(original)
    path = tmp_path / "hard.h5"
    write_legacy(path, [("lstm", named("lstm/lstm_cell/", [kernel, recurrent, bias]))],
                 model_config=sequential(lstm_config("lstm", recurrent_activation="hard_sigmoid")), keras_version=version)

    (found,) = read(path).found

    assert found.recurrent_activation == name and name in RECURRENT_ACTIVATIONS
    x = np.random.default_rng(0).normal(size=(3, 6, I))
    want = keras_numpy(x, kernel.astype(np.float64), recurrent.astype(np.float64), bias.astype(np.float64), keras_gate)
    got = torch_layout_numpy(x, found.state, GATE_FOR_NAME[found.recurrent_activation])
    np.testing.assert_allclose(got[0], want[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-9, atol=1e-12)
    assert np.mean(np.abs(x[:, 0] @ kernel + bias) > 3.0) > 0.1  # many gates past both clipping points


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"go_backwards": True}, "go_backwards=True"),
        ({"activation": "relu"}, "'relu', not tanh"),
        ({"recurrent_activation": "tanh"}, "recurrent_activation is 'tanh'"),
        ({"activation": {"module": None, "class_name": "function", "config": "my_act", "registered_name": "my_act"}}, "'custom my_act'"),
    ],
)
def test_what_nn_lstm_cannot_compute_is_rejected_naming_why(tmp_path, changes, words):
    path = tmp_path / "m.h5"
    write_legacy(path, [("lstm", named("lstm/lstm_cell/", keras_weights(seeded_lstm(12))))],
                 model_config=sequential(lstm_config("lstm", **changes)))

    contents = read(path)

    assert not contents.found
    (rejected,) = contents.rejected
    assert rejected.name == "lstm" and words in rejected.reason


def test_stateful_dropout_and_time_major_are_noted(tmp_path):
    path = tmp_path / "m.h5"
    write_legacy(path, [("lstm", named("lstm/lstm_cell/", keras_weights(seeded_lstm(13))))],
                 model_config=sequential(lstm_config("lstm", stateful=True, dropout=0.2, recurrent_dropout=0.1, time_major=True)))

    (found,) = read(path).found

    assert found.batch_first is False
    assert found.conversions[-1] == "time_major=True: Keras input is (time, batch, features): batch_first=False"
    assert any(note.startswith("stateful=True") for note in found.notes)
    assert "dropout=0.2, recurrent_dropout=0.1 act only in training; inference ignores them" in found.notes


def test_gru_simple_rnn_and_nested_lstms_are_rejected_and_the_lstm_still_found(tmp_path):
    lstm = seeded_lstm(14)
    gru = [np.zeros((I, 3 * H), np.float32), np.zeros((H, 3 * H), np.float32), np.zeros((2, 3 * H), np.float32)]
    rnn = [np.zeros((I, H), np.float32), np.zeros((H, H), np.float32), np.zeros(H, np.float32)]
    config = sequential(
        {"class_name": "GRU", "config": {"name": "gru", "units": H}},
        {"class_name": "SimpleRNN", "config": {"name": "simple_rnn", "units": H}},
        {"class_name": "Bidirectional", "config": {"name": "bidirectional", "layer": {"class_name": "CuDNNGRU", "config": {"name": "g"}}}},
        {"class_name": "Sequential", "config": {"name": "inner", "layers": [lstm_config("lstm_9")]}},
        lstm_config("lstm"),
    )
    write_legacy(path := tmp_path / "mixed.h5", [
        ("gru", named("gru/gru_cell/", gru)),
        ("simple_rnn", named("simple_rnn/simple_rnn_cell/", rnn)),
        ("bidirectional", named("bidirectional/forward_g/", gru) + named("bidirectional/backward_g/", gru)),
        ("inner", named("lstm_9/lstm_cell/", keras_weights(lstm))),
        ("lstm", named("lstm/lstm_cell/", keras_weights(lstm))),
    ], model_config=config)

    contents = read(path)

    assert [found.name for found in contents.found] == ["lstm"]
    reasons = {rejected.name: rejected.reason for rejected in contents.rejected}
    assert reasons["gru"] == "a Keras GRU layer, not an LSTM"
    assert reasons["simple_rnn"] == "a Keras SimpleRNN layer, not an LSTM"
    assert reasons["bidirectional"] == "a Keras Bidirectional(CuDNNGRU) layer, not an LSTM"
    assert reasons["inner"].startswith("a nested Keras model holding LSTM layers")


def test_weights_only_gru_is_rejected_by_its_shapes(tmp_path):
    gru = [np.zeros((I, 3 * H), np.float32), np.zeros((H, 3 * H), np.float32), np.zeros((2, 3 * H), np.float32)]
    write_legacy(path := tmp_path / "gru.h5", [("gru", named("gru/gru_cell/", gru))])

    contents = read(path)

    assert not contents.found
    assert contents.rejected[0].reason == "a Keras GRU layer, not an LSTM (judged by its weight shapes)"


# -- Keras 3 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_keras3_archive_pairs_layers_with_their_weights_and_runs_like_the_originals(tmp_path, compression):
    model = Encoders()
    path = tmp_path / "model.keras"
    write_keras_zip(path, model.config, keras3_h5(model.groups), compression=compression)

    contents = read(path)

    assert contents.format == "Keras 3 .keras archive (Keras 3.4.1)"
    found = by_name(contents)
    assert list(found) == ["encoder", "bidi", "decoder"] and not contents.rejected
    assert_runs_like(found["encoder"], model.encoder)
    assert_runs_like(found["bidi"], model.bidi)
    assert_runs_like(found["decoder"], model.decoder)
    assert all(f.notes == [] for f in contents.found)  # everything came from config.json


def test_keras3_hard_sigmoid_in_an_archive_is_keras3s(tmp_path):
    path = tmp_path / "hard.keras"
    lstm = seeded_lstm(15)
    write_keras_zip(path, keras3_model(keras3_lstm("lstm", recurrent_activation="hard_sigmoid")),
                    keras3_h5({"layers/lstm/cell/vars": keras_weights(lstm)}))

    (found,) = read(path).found

    assert found.recurrent_activation == "hard_sigmoid_keras3"


def test_keras_2_13_archive_counts_each_layer_twice(tmp_path):
    """Keras 2.13-2.15 saved layers under _layer_checkpoint_dependencies, where a layer with
    weights appears twice, so the second LSTM's group is lstm_2."""
    model = Encoders()
    groups = {
        "_layer_checkpoint_dependencies/lstm/cell/vars": keras_weights(model.encoder),
        "_layer_checkpoint_dependencies/lstm_2/cell/vars": keras_weights(model.decoder),
    }
    config = keras3_model(keras3_lstm("encoder"), keras3_lstm("decoder"))
    write_keras_zip(path := tmp_path / "old.keras", config, keras3_h5(groups), version="2.13.1")

    contents = read(path)

    assert contents.format == "Keras .keras archive (Keras 2.13.1)"
    found = by_name(contents)
    assert_runs_like(found["encoder"], model.encoder)
    assert_runs_like(found["decoder"], model.decoder)


def test_keras3_archive_reads_a_nested_model(tmp_path):
    original = seeded_lstm(19)
    inner = {"module": "keras", "class_name": "Sequential", "config": {"name": "inner", "layers": [keras3_lstm("deep")]}}
    weights = keras3_h5({"layers/sequential/layers/lstm/cell/vars": keras_weights(original)})
    write_keras_zip(path := tmp_path / "nested.keras", keras3_model(inner), weights)

    (found,) = read(path).found

    assert found.name == "inner/deep"
    assert_runs_like(found, original)


def test_keras3_layers_without_weights_to_match_are_rejected(tmp_path):
    """Two LSTMs in the config but one lstm group: which is which cannot be known."""
    weights = keras3_h5({"layers/lstm/cell/vars": keras_weights(seeded_lstm(20))})
    write_keras_zip(path := tmp_path / "unbuilt.keras", keras3_model(keras3_lstm("a"), keras3_lstm("b")), weights)

    contents = read(path)

    assert not contents.found
    assert [r.name for r in contents.rejected] == ["a", "b"]
    assert contents.rejected[0].reason.startswith("its weights could not be matched: model.weights.h5 has 1 'lstm' group(s) for 2")


def test_keras3_weights_file_is_read_by_place_and_shape(tmp_path):
    model = Encoders()
    path = tmp_path / "model.weights.h5"
    path.write_bytes(keras3_h5(model.groups))

    contents = read(path)

    assert contents.format == "Keras 3 weights file (.weights.h5)"
    found = by_name(contents)
    assert list(found) == ["bidirectional", "lstm", "lstm_1"]
    assert_runs_like(found["lstm"], model.encoder)
    assert_runs_like(found["bidirectional"], model.bidi)
    assert_runs_like(found["lstm_1"], model.decoder)
    assert any("assumed sigmoid" in note for note in found["lstm"].notes)


def test_keras3_gru_in_an_archive_is_rejected(tmp_path):
    gru = {"module": "keras.layers", "class_name": "GRU", "config": {"name": "my_gru", "units": H}}
    weights = keras3_h5({"layers/gru/cell/vars": [np.zeros((I, 3 * H), np.float32), np.zeros((H, 3 * H), np.float32), np.zeros((2, 3 * H), np.float32)]})
    write_keras_zip(path := tmp_path / "gru.keras", keras3_model(gru), weights)

    contents = read(path)

    assert contents.rejected[0].name == "my_gru" and contents.rejected[0].reason == "a Keras GRU layer, not an LSTM"


def test_keras_archive_with_npz_weights_is_refused(tmp_path):
    with zipfile.ZipFile(path := tmp_path / "npz.keras", "w") as archive:
        archive.writestr("config.json", json.dumps(keras3_model()))
        archive.writestr("model.weights.npz", b"")
    with pytest.raises(FormatError, match=r"model\.weights\.npz, which needs pickle"):
        read(path)


# -- files that are not Keras, or hostile -------------------------------------------------------


def test_hdf5_without_keras_layers_names_its_groups(tmp_path):
    with h5py.File(path := tmp_path / "data.h5", "w") as f:
        for name in ("c", "a", "b"):
            f.create_group(name)
    with pytest.raises(FormatError) as error:
        read(path)
    assert str(error.value) == "an HDF5 file without Keras layers (top-level groups: a, b, c)"


def legacy_file_with(tmp_path, change) -> object:
    """A valid weights-only Keras file whose lstm kernel dataset `change(layer_group)` replaces."""
    path = tmp_path / "hostile.h5"
    write_legacy(path, [("lstm", named("lstm/", keras_weights(seeded_lstm(16))))])
    with h5py.File(path, "a") as f:
        del f["lstm/lstm/kernel:0"]
        change(f["lstm/lstm"], tmp_path)
    return path


def test_external_link_is_refused_without_being_followed(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as other:
        other["kernel"] = np.zeros((I, 4 * H), np.float32)  # a valid target: following it would "work"

    def link(group, folder):
        group["kernel:0"] = h5py.ExternalLink("other.h5", "/kernel")

    with pytest.raises(FormatError) as error:
        read(legacy_file_with(tmp_path, link))
    assert str(error.value) == "'/lstm/lstm/kernel:0' links to another file 'other.h5'; lstm-cli reads only the given file"


def test_soft_link_is_refused(tmp_path):
    def link(group, folder):
        group["kernel:0"] = h5py.SoftLink("/lstm/lstm/recurrent_kernel:0")

    with pytest.raises(FormatError, match="is a soft link to '/lstm/lstm/recurrent_kernel:0'"):
        read(legacy_file_with(tmp_path, link))


def test_dataset_stored_in_an_external_file_is_refused(tmp_path):
    def external(group, folder):
        (folder / "raw.bin").write_bytes(np.zeros(I * 4 * H, np.float32).tobytes())
        group.create_dataset("kernel:0", shape=(I, 4 * H), dtype="f4", external=[("raw.bin", 0, I * 4 * H * 4)])

    with pytest.raises(FormatError, match="keeps its values in an external file"):
        read(legacy_file_with(tmp_path, external))


def test_huge_declared_shape_is_refused_before_reading(tmp_path):
    def huge(group, folder):  # 2**29 values declared, nothing written: the file stays small
        group.create_dataset("kernel:0", shape=(2**14, 2**15), dtype="f4", chunks=(64, 64))

    path = legacy_file_with(tmp_path, huge)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(FormatError, match=r"declares shape \(16384, 32768\) = 536,870,912 values, over lstm-cli's limit"):
        read(path)


def test_integer_weights_are_refused(tmp_path):
    def integers(group, folder):
        group["kernel:0"] = np.zeros((I, 4 * H), np.int32)

    with pytest.raises(FormatError, match="has dtype int32, not a float type"):
        read(legacy_file_with(tmp_path, integers))


def test_cycle_in_a_keras3_weights_file_ends_with_an_error(tmp_path):
    model = Encoders()

    def loop(f):
        f["layers/loop"] = f["/"]  # a hard link back to the root

    (path := tmp_path / "loop.weights.h5").write_bytes(keras3_h5(model.groups, extra=loop))
    with pytest.raises(FormatError, match=r"'/layers/loop' links back to a group already read \(an HDF5 cycle"):
        read(path)


def test_cycle_reached_through_weight_names_is_bounded(tmp_path):
    def loop(group, folder):
        group["loop"] = group  # lstm/lstm/loop is lstm/lstm itself
        group.parent.attrs["weight_names"] = [b"lstm/" + b"loop/" * (MAX_DEPTH + 1) + b"kernel:0", b"lstm/recurrent_kernel:0", b"lstm/bias:0"]

    with pytest.raises(FormatError, match=f"is nested deeper than {MAX_DEPTH} groups"):
        read(legacy_file_with(tmp_path, loop))


def test_truncated_file_is_not_readable(tmp_path):
    path = tmp_path / "cut.h5"
    write_legacy(path, [("lstm", named("lstm/", keras_weights(seeded_lstm(17))))], model_config=sequential(lstm_config("lstm")))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(FormatError, match=r"^not a readable HDF5 file \(truncated or corrupt\?\)"):
        read(path)


def test_truncated_keras_archive_is_named_as_a_zip(tmp_path):
    model = Encoders()
    write_keras_zip(path := tmp_path / "cut.keras", model.config, keras3_h5(model.groups))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match=r"^a truncated or damaged zip archive"):
        read(path)


def test_keras_1_file_is_refused(tmp_path):
    path = tmp_path / "keras1.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"lstm_1"]
        f.create_group("lstm_1").attrs["weight_names"] = [b"lstm_1_W_i"]
    with pytest.raises(FormatError, match=r"^a Keras 1 HDF5 file \(no keras_version attribute\)"):
        read(path)


def test_missing_h5py_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(FormatError) as error:
        read(tmp_path / "any.h5")
    assert str(error.value) == "reading Keras files needs h5py: pip install 'lstm-cli[keras]'"
