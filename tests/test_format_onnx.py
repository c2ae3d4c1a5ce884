"""The ONNX reader: models built here from seeded nn.LSTMs (the torch -> ONNX conversion is
written in this file, independently of the reader), read back, loaded into a fresh nn.LSTM and
checked against the original module and against onnxruntime running the file itself; every
node nn.LSTM cannot be, and every hostile file, refused in one sentence."""

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

# The onnx extra is optional: without it these tests skip instead of breaking collection.
onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from lstm_cli.formats.base import FormatError, Rejected
from lstm_cli.formats.onnx_model import read

# nn.LSTM against onnxruntime on the same float32 weights: two float32 implementations summing
# in different orders over a few steps, a few ulps of O(1) values apart.
CLOSE = {"rtol": 1e-5, "atol": 1e-6}
REORDER = "gate blocks reordered i,o,f,c -> i,f,g,o"


# -- torch -> ONNX, written here on its own -----------------------------------------------------


def onnx_gates(t: torch.Tensor, hidden: int) -> np.ndarray:
    """nn.LSTM rows stacked i, f, g, o restacked as ONNX's i, o, f, c."""
    i, f, g, o = t.detach().split(hidden)
    return torch.cat([i, o, f, g]).numpy()


def torch_gates(a: np.ndarray) -> torch.Tensor:
    """The inverse: ONNX's i, o, f, c rows as nn.LSTM's i, f, g, o."""
    i, o, f, c = np.split(a, 4)
    return torch.from_numpy(np.concatenate([i, f, c, o]))


def onnx_weights(lstm: nn.LSTM) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """W [D, 4H, I], R [D, 4H, H], B [D, 8H] of an nn.LSTM (B None without bias)."""
    hidden, state = lstm.hidden_size, lstm.state_dict()
    suffixes = ("", "_reverse") if lstm.bidirectional else ("",)
    w = np.stack([onnx_gates(state[f"weight_ih_l0{s}"], hidden) for s in suffixes])
    r = np.stack([onnx_gates(state[f"weight_hh_l0{s}"], hidden) for s in suffixes])
    if not lstm.bias:
        return w, r, None
    b = np.stack(
        [np.concatenate([onnx_gates(state[f"bias_ih_l0{s}"], hidden), onnx_gates(state[f"bias_hh_l0{s}"], hidden)]) for s in suffixes]
    )
    return w, r, b


def outputs(*names: str) -> list:
    return [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in names]


def save(path, nodes, inputs, outs, initializers=(), opset=17, microsoft=False):
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("com.microsoft", 1)] if microsoft else [])
    graph = helper.make_graph(nodes, "test", inputs, outs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=opsets, producer_name="lstm-cli tests")
    model.ir_version = 8  # opset 17's IR version; onnx's newest may be past what onnxruntime reads
    onnx.save(model, str(path))
    return path


def x_input(features: int, batch_major: bool = False):
    dims = ["N", "L", features] if batch_major else ["L", "N", features]
    return helper.make_tensor_value_info("X", TensorProto.FLOAT, dims)


def assert_original_run_matches(found, original: nn.LSTM, x: torch.Tensor) -> None:
    """The found LSTM's run of the file as it stands (onnxruntime) gives nn.LSTM's output."""
    with torch.no_grad():
        expected, _ = original(x)
    torch.testing.assert_close(found.run_original(x)[0], expected, **CLOSE)


def lstm_file(path, lstm: nn.LSTM, *, name="lstm", layout=0, extra_inputs=(), extra_initializers=(), **attrs):
    """A file holding one LSTM node with `lstm`'s weights as initializers."""
    w, r, b = onnx_weights(lstm)
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(r, "R")]
    if b is not None:
        inits.append(numpy_helper.from_array(b, "B"))
    node_inputs = ["X", "W", "R", "B" if b is not None else "", *extra_inputs]
    while node_inputs[-1] == "":
        node_inputs.pop()
    if lstm.bidirectional:
        attrs.setdefault("direction", "bidirectional")
    if layout:
        attrs["layout"] = layout
    node = helper.make_node("LSTM", node_inputs, ["Y", "Y_h", "Y_c"], name=name, hidden_size=lstm.hidden_size, **attrs)
    return save(path, [node], [x_input(lstm.input_size, bool(layout))], outputs("Y", "Y_h", "Y_c"), [*inits, *extra_initializers])


def run_file(path, **feeds) -> list[np.ndarray]:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {name: np.asarray(value) for name, value in feeds.items()})


def torch_layout(y: np.ndarray) -> torch.Tensor:
    """ONNX's Y [L, D, N, H] as nn.LSTM's output (L, N, D*H)."""
    steps, directions, batch, hidden = y.shape
    return torch.from_numpy(np.ascontiguousarray(y.transpose(0, 2, 1, 3)).reshape(steps, batch, directions * hidden))


def fresh(found, **config) -> nn.LSTM:
    """A new nn.LSTM with the Found's weights, loaded strictly (no missing or extra names)."""
    lstm = nn.LSTM(**config)
    lstm.load_state_dict(found.state)
    return lstm.eval()


# -- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional,layout", [(False, 0), (True, 0), (False, 1), (True, 1)])
def test_round_trip_matches_the_module_and_onnxruntime(tmp_path, bidirectional, layout):
    torch.manual_seed(10)
    original = nn.LSTM(5, 7, bidirectional=bidirectional).eval()
    # The defaults written out explicitly are accepted like the defaults left out.
    attrs = {"activations": ["Sigmoid", "Tanh", "Tanh"] * 2} if bidirectional else {}
    path = lstm_file(tmp_path / "m.onnx", original, layout=layout, **attrs)

    contents = read(path)
    assert contents.format == "ONNX model"
    assert contents.notes == ["opset 17, produced by lstm-cli tests"]
    assert contents.rejected == []
    [found] = contents.found
    assert found.name == "lstm" and found.batch_first is (layout == 1)
    d = 2 if bidirectional else 1
    ih = "weight_ih_l0, weight_ih_l0_reverse" if bidirectional else "weight_ih_l0"
    hh = "weight_hh_l0, weight_hh_l0_reverse" if bidirectional else "weight_hh_l0"
    bih = "bias_ih_l0, bias_ih_l0_reverse" if bidirectional else "bias_ih_l0"
    bhh = "bias_hh_l0, bias_hh_l0_reverse" if bidirectional else "bias_hh_l0"
    split = "split by direction" if bidirectional else "direction axis dropped"
    assert found.conversions == [
        f"W ({d}, 28, 5) -> {ih}: {split}, {REORDER}",
        f"R ({d}, 28, 7) -> {hh}: {split}, {REORDER}",
        f"B ({d}, 56) split into {bih} (first 4H: Wb) and {bhh} (last 4H: Rb), {REORDER}",
        *(["layout=1 (X is [N, L, I]): batch_first=True"] if layout else []),
    ]
    assert found.notes == (
        ["onnxruntime runs only layout=0: its check runs this node with layout=0 on time-major input, the same computation"]
        if layout else []
    )
    assert found.run_original_name == f"onnxruntime {onnxruntime.__version__} running node 'lstm'"

    # The same numbers in the same places: the loaded module is the original, bit for bit.
    loaded = fresh(found, input_size=5, hidden_size=7, bidirectional=bidirectional)
    for name, value in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name

    x = torch.randn(6, 3, 5)
    with torch.no_grad():
        expected, (h, c) = original(x)
        got, (got_h, got_c) = loaded(x)
    torch.testing.assert_close(got, expected, **CLOSE)
    torch.testing.assert_close((got_h, got_c), (h, c), **CLOSE)
    # The file run by an ONNX runtime in its own layout agrees: the test's conversion is right.
    if layout:
        # onnxruntime's CPU LSTM refuses layout=1; ONNX's reference implementation runs it.
        feed = np.ascontiguousarray(x.transpose(0, 1).numpy())
        y, y_h, y_c = ReferenceEvaluator(str(path)).run(None, {"X": feed})
        y, y_h, y_c = y.transpose(1, 2, 0, 3), y_h.transpose(1, 0, 2), y_c.transpose(1, 0, 2)
    else:
        y, y_h, y_c = run_file(path, X=x.numpy())
    torch.testing.assert_close(torch_layout(y), expected, **CLOSE)
    torch.testing.assert_close(torch.from_numpy(np.ascontiguousarray(y_c)), c, **CLOSE)
    # And the reader's own onnxruntime run of the node, time-major in and out.
    run_out, run_h, run_c = found.run_original(x)
    assert run_out.shape == (6, 3, 7 * d) and run_h.shape == (d, 3, 7)
    torch.testing.assert_close(run_out, expected, **CLOSE)
    torch.testing.assert_close((run_h, run_c), (h, c), **CLOSE)


def test_no_b_is_an_lstm_without_bias(tmp_path):
    torch.manual_seed(11)
    original = nn.LSTM(4, 6, bias=False).eval()
    path = lstm_file(tmp_path / "nobias.onnx", original)
    [found] = read(path).found
    assert set(found.state) == {"weight_ih_l0", "weight_hh_l0"}
    assert "no B input: nn.LSTM with bias=False (no bias_* tensors), the exact equivalent of ONNX's zero default" in found.conversions
    loaded = fresh(found, input_size=4, hidden_size=6, bias=False)
    x = torch.randn(5, 2, 4)
    with torch.no_grad():
        expected, _ = original(x)
        got, _ = loaded(x)
    torch.testing.assert_close(got, expected, **CLOSE)
    torch.testing.assert_close(torch_layout(run_file(path, X=x.numpy())[0]), expected, **CLOSE)
    torch.testing.assert_close(found.run_original(x)[0], expected, **CLOSE)


def constant(name: str, array: np.ndarray):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.ascontiguousarray(array), name))


def test_lstms_inside_an_if_with_weights_folded_from_constants(tmp_path):
    """then_branch computes W, R and B from Constant nodes (Add, Transpose, Mul, Concat,
    Unsqueeze), else_branch holds a second LSTM; the whole If runs on the outer X."""
    torch.manual_seed(12)
    first, second = nn.LSTM(3, 5).eval(), nn.LSTM(3, 5).eval()
    w, r, b = onnx_weights(first)
    half = np.float32(0.5)
    # Halving and doubling are exact in binary floating point, so the folded weights are the
    # original ones bit for bit.
    then_nodes = [
        constant("w_half", w * half),
        helper.make_node("Add", ["w_half", "w_half"], ["W1"]),
        constant("r_twice_t", np.ascontiguousarray((r * 2).transpose(0, 2, 1))),
        helper.make_node("Transpose", ["r_twice_t"], ["r_twice"], perm=[0, 2, 1]),
        constant("half", np.array(half)),
        helper.make_node("Mul", ["r_twice", "half"], ["R1"]),
        constant("wb", b[0, :20]),
        constant("rb", b[0, 20:]),
        helper.make_node("Concat", ["wb", "rb"], ["b_flat"], axis=0),
        constant("axes", np.array([0], dtype=np.int64)),
        helper.make_node("Unsqueeze", ["b_flat", "axes"], ["B1"]),
        helper.make_node("LSTM", ["X", "W1", "R1", "B1"], ["Y1", "h_then", "c1"], name="then_lstm", hidden_size=5),
    ]
    w2, r2, b2 = onnx_weights(second)
    else_nodes = [
        constant("W2", w2), constant("R2", r2), constant("B2", b2),
        helper.make_node("LSTM", ["X", "W2", "R2", "B2"], ["Y2", "h_else", "c2"], name="else_lstm", hidden_size=5),
    ]
    then_graph = helper.make_graph(then_nodes, "then", [], outputs("h_then"))
    else_graph = helper.make_graph(else_nodes, "else", [], outputs("h_else"))
    branch = helper.make_node("If", ["cond"], ["h"], name="branch", then_branch=then_graph, else_branch=else_graph)
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    path = save(tmp_path / "if.onnx", [branch], [x_input(3), cond], outputs("h"))

    contents = read(path)
    # In the order of the If's attributes, which onnx keeps sorted by name.
    assert [f.name for f in contents.found] == ["else_lstm", "then_lstm"]
    else_found, then_found = contents.found
    assert then_found.notes == ["inside If node 'branch' (then_branch)"]
    assert else_found.notes == ["inside If node 'branch' (else_branch)"]
    assert then_found.conversions[:3] == [
        "W folded to a constant from 1 node(s): Add",
        "R folded to a constant from 2 node(s): Transpose, Mul",
        "B folded to a constant from 2 node(s): Concat, Unsqueeze",
    ]
    x = torch.randn(4, 2, 3)
    for found, module, flag in ((then_found, first, True), (else_found, second, False)):
        for name, value in module.state_dict().items():
            assert torch.equal(found.state[name], value), (found.name, name)
        with torch.no_grad():
            expected, (h, _) = module(x)
        [h_file] = run_file(path, X=x.numpy(), cond=np.array(flag))
        torch.testing.assert_close(torch.from_numpy(h_file), h, **CLOSE)
        got, got_h, _ = found.run_original(x)
        torch.testing.assert_close(got, expected, **CLOSE)
        torch.testing.assert_close(got_h, h, **CLOSE)


def test_two_lstm_nodes_are_two_founds_and_an_unnamed_one_gets_a_name(tmp_path):
    torch.manual_seed(13)
    encoder, decoder = nn.LSTM(4, 6).eval(), nn.LSTM(6, 3).eval()
    inits = []
    for prefix, module in (("e", encoder), ("d", decoder)):
        w, r, b = onnx_weights(module)
        inits += [numpy_helper.from_array(w, f"{prefix}W"), numpy_helper.from_array(r, f"{prefix}R"), numpy_helper.from_array(b, f"{prefix}B")]
    nodes = [
        helper.make_node("LSTM", ["X", "eW", "eR", "eB"], ["Y1", "", ""], name="encoder", hidden_size=6),
        helper.make_node("Squeeze", ["Y1", "axis1"], ["mid"]),
        helper.make_node("LSTM", ["mid", "dW", "dR", "dB"], ["Y2", "", ""], hidden_size=3),
    ]
    inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"))
    path = save(tmp_path / "two.onnx", nodes, [x_input(4)], outputs("Y2"), inits)

    contents = read(path)
    assert [f.name for f in contents.found] == ["encoder", "LSTM#2"]
    assert contents.found[1].notes == ["the node has no name: called 'LSTM#2' here (LSTM node number 2 in the file)"]
    x = torch.randn(5, 2, 4)
    enc = fresh(contents.found[0], input_size=4, hidden_size=6)
    dec = fresh(contents.found[1], input_size=6, hidden_size=3)
    with torch.no_grad():
        expected = decoder(encoder(x)[0])[0]
        got = dec(enc(x)[0])[0]
    torch.testing.assert_close(got, expected, **CLOSE)
    torch.testing.assert_close(torch_layout(run_file(path, X=x.numpy())[0]), expected, **CLOSE)


def test_a_torch_onnx_export_reads_back_as_its_layers(tmp_path):
    """What PyTorch's own exporter writes: one bidirectional LSTM node per layer, the initial
    state as zeros expanded to the batch size at run time."""
    torch.manual_seed(19)
    original = nn.LSTM(5, 7, num_layers=2, bidirectional=True).eval()

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = original

        def forward(self, x):
            return self.rnn(x)[0]

    x = torch.randn(4, 2, 5)
    path = tmp_path / "exported.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        try:
            torch.onnx.export(Wrapper().eval(), (x,), str(path), dynamo=False, opset_version=17, input_names=["x"])
        except Exception as exc:  # noqa: BLE001 - a torch without this exporter is not the reader's failure
            pytest.skip(f"torch.onnx.export(dynamo=False) is not available: {exc}")
    contents = read(path)
    assert [f.name for f in contents.found] == ["/rnn/LSTM", "/rnn/LSTM_1"]
    layers = []
    for layer, found in enumerate(contents.found):
        assert found.notes == [
            "initial_h is zeros shaped at run time: a zero state, the same as lstm-cli's",
            "initial_c is zeros shaped at run time: a zero state, the same as lstm-cli's",
        ]
        for name, value in found.state.items():
            assert torch.equal(value, original.state_dict()[name.replace("_l0", f"_l{layer}")]), (found.name, name)
        layers.append(fresh(found, input_size=5 if layer == 0 else 14, hidden_size=7, bidirectional=True))
    with torch.no_grad():
        expected = original(x)[0]
        got = layers[1](layers[0](x)[0])[0]
    torch.testing.assert_close(got, expected, **CLOSE)
    torch.testing.assert_close(contents.found[1].run_original(layers[0](x)[0].detach())[0], expected, **CLOSE)
    torch.testing.assert_close(torch.from_numpy(run_file(path, x=x.numpy())[0]), expected, **CLOSE)


# -- DynamicQuantizeLSTM ------------------------------------------------------------------------


def test_dynamic_quantize_lstm_is_dequantized_exactly_and_runs_close_to_int8(tmp_path):
    torch.manual_seed(14)
    original = nn.LSTM(6, 8, bidirectional=True).eval()
    w, r, b = onnx_weights(original)
    # Weights use 7 of int8's bits, as onnxruntime's quantizer does with reduce_range: x86 CPUs
    # without VNNI (AVX2-only AMD EPYC, older Intel) multiply uint8 x int8 with pmaddubsw,
    # whose int16 pair sums saturate for full-range weights (measured on an AVX2 EPYC: output
    # off by 0.07 with [-127, 127] weights, within 0.01 with [-63, 63]).
    # W: symmetric, one scale per output column (per gate row of W [D, 4H, I]).
    w_scale = (np.abs(w).max(axis=2) / 63).astype(np.float32)  # [D, 4H]
    w_zero = np.zeros_like(w_scale, dtype=np.int8)
    w_q = np.clip(np.round(w / w_scale[:, :, None]), -63, 63).astype(np.int8).transpose(0, 2, 1)  # [D, I, 4H]
    # R: asymmetric, one scale and zero point per direction (onnxruntime wants W and R of
    # one integer type).
    low, high = r.min(axis=(1, 2)), r.max(axis=(1, 2))
    r_scale = ((high - low) / 127).astype(np.float32)  # [D]
    r_zero = np.clip(np.round(-64 - low / r_scale), -64, 63).astype(np.int8)
    r_q = np.clip(np.round(r / r_scale[:, None, None]) + r_zero[:, None, None], -64, 63).astype(np.int8).transpose(0, 2, 1)
    inits = [
        numpy_helper.from_array(np.ascontiguousarray(w_q), "Wq"), numpy_helper.from_array(np.ascontiguousarray(r_q), "Rq"),
        numpy_helper.from_array(b, "B"),
        numpy_helper.from_array(w_scale, "w_scale"), numpy_helper.from_array(w_zero, "w_zero"),
        numpy_helper.from_array(r_scale, "r_scale"), numpy_helper.from_array(r_zero, "r_zero"),
    ]
    node = helper.make_node(
        "DynamicQuantizeLSTM",
        ["X", "Wq", "Rq", "B", "", "", "", "", "w_scale", "w_zero", "r_scale", "r_zero"],
        ["Y", "Y_h", "Y_c"], name="qlstm", domain="com.microsoft", hidden_size=8, direction="bidirectional",
    )
    path = save(tmp_path / "q.onnx", [node], [x_input(6)], outputs("Y", "Y_h", "Y_c"), inits, microsoft=True)

    [found] = read(path).found
    assert found.name == "qlstm"
    assert found.conversions[:4] == [
        "W int8 (2, 6, 32) dequantized to float32 as (W - W_zero_point) * W_scale, per output column",
        "W (2, 6, 32) transposed to (2, 32, 6)",
        "R int8 (2, 8, 32) dequantized to float32 as (R - R_zero_point) * R_scale, per direction",
        "R (2, 8, 32) transposed to (2, 32, 8)",
    ]
    assert "dequantized from int8: this run approximates the int8 model (onnxruntime also quantizes activations dynamically)" in found.notes
    # The dequantized values, computed here from the stored integers: the same float32 formula,
    # so equal exactly.
    w_deq = ((w_q.astype(np.float32) - w_zero[:, None, :]) * w_scale[:, None, :]).transpose(0, 2, 1)
    r_deq = ((r_q.astype(np.float32) - r_zero[:, None, None].astype(np.float32)) * r_scale[:, None, None]).transpose(0, 2, 1)
    for d, suffix in enumerate(("", "_reverse")):
        assert torch.equal(found.state[f"weight_ih_l0{suffix}"], torch_gates(w_deq[d]))
        assert torch.equal(found.state[f"weight_hh_l0{suffix}"], torch_gates(r_deq[d]))
        assert torch.equal(found.state[f"bias_ih_l0{suffix}"], torch_gates(b[d, :32]))
    # The quantization really changed the weights (else the test below would prove nothing).
    assert not torch.equal(found.state["weight_ih_l0"], original.weight_ih_l0.detach())

    x = torch.rand(7, 3, 6) * 2 - 1
    loaded = fresh(found, input_size=6, hidden_size=8, bidirectional=True)
    with torch.no_grad():
        expected, (h, _) = loaded(x)
    y_file, h_file, c_file = run_file(path, X=x.numpy())
    # onnxruntime quantizes X and h to uint8 per tensor at every step (a step of 2/255 for
    # values in [-1, 1]), so its gate inputs are off by a few 1e-3 and the outputs by less:
    # over 20 seeds of this test the largest difference was 0.0018. 0.01 leaves room for
    # other CPUs' integer kernels and is still far below what a wrong gate order, scale or
    # zero point gives (0.1 and more).
    torch.testing.assert_close(torch_layout(y_file), expected, rtol=0, atol=0.01)
    torch.testing.assert_close(torch.from_numpy(h_file), h, rtol=0, atol=0.01)
    # The reader's rebuilt node is the file's node: the same int8 run, to float rounding.
    got, got_h, got_c = found.run_original(x)
    torch.testing.assert_close(got, torch_layout(y_file), **CLOSE)
    torch.testing.assert_close((got_h, got_c), (torch.from_numpy(h_file), torch.from_numpy(c_file)), **CLOSE)


# -- what nn.LSTM cannot be -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "attrs,reason",
    [
        ({"clip": 5.0}, "clip=5: nn.LSTM does not clip its gate inputs"),
        ({"input_forget": 1}, "input_forget=1 couples the input and forget gates, which nn.LSTM does not do"),
        ({"activations": ["Sigmoid", "Relu", "Tanh"]}, "activations Sigmoid, Relu, Tanh: nn.LSTM computes only Sigmoid, Tanh, Tanh"),
        ({"activations": ["HardSigmoid", "Tanh", "Tanh"], "activation_alpha": [0.2]}, "activations HardSigmoid, Tanh, Tanh: nn.LSTM computes only Sigmoid, Tanh, Tanh"),
        ({"activation_alpha": [1.0]}, "activation_alpha/activation_beta are given: nn.LSTM's activations take no parameters"),
        ({"direction": "reverse"}, "direction=reverse: nn.LSTM has no reverse-only layer"),
    ],
)
def test_attributes_nn_lstm_lacks_are_rejected(tmp_path, attrs, reason):
    path = lstm_file(tmp_path / "bad.onnx", nn.LSTM(3, 4), **attrs)
    contents = read(path)
    assert contents.found == [] and contents.rejected == [Rejected("lstm", reason)]


def test_unknown_attributes_are_noted_and_mistyped_ones_rejected(tmp_path):
    torch.manual_seed(18)
    original = nn.LSTM(3, 4).eval()
    path = lstm_file(tmp_path / "odd.onnx", original, flavour="spicy")
    [found] = read(path).found
    assert found.notes == ["attribute 'flavour' is not an ONNX LSTM attribute: ignored"]
    assert_original_run_matches(found, original, torch.randn(4, 2, 3))

    model = onnx.load(str(path))
    attrs = model.graph.node[0].attribute
    index = next(k for k, a in enumerate(attrs) if a.name == "hidden_size")
    attrs[index].CopyFrom(helper.make_attribute("hidden_size", "4"))
    onnx.save(model, str(path))
    assert read(path).rejected == [Rejected("lstm", "attribute hidden_size is of type STRING, not INT")]


def test_peepholes_zero_are_dropped_and_nonzero_kept(tmp_path):
    """Nonzero peepholes are kept for lstm-cli's own loop (tests/test_peephole.py runs them)."""
    torch.manual_seed(15)
    original = nn.LSTM(3, 4).eval()
    zero = numpy_helper.from_array(np.zeros((1, 12), np.float32), "P")
    path = lstm_file(tmp_path / "p0.onnx", original, extra_inputs=["", "", "", "P"], extra_initializers=[zero])
    [found] = read(path).found
    assert found.notes == ["peephole weights P are all zero: dropped"]
    assert_original_run_matches(found, original, torch.randn(4, 2, 3))

    nonzero = np.zeros((1, 12), np.float32)
    nonzero[0, 5] = 0.25
    path = lstm_file(tmp_path / "p1.onnx", original, extra_inputs=["", "", "", "P"],
                     extra_initializers=[numpy_helper.from_array(nonzero, "P")])
    [found] = read(path).found
    assert found.peepholes["peephole_l0"][2, 1] == 0.25  # ONNX's o block (5 = H + 1) -> row o, unit 1
    assert found.peepholes["peephole_l0"].abs().sum() == 0.25


def test_run_time_state_and_lengths_are_notes_and_the_checks_start_from_zero(tmp_path):
    torch.manual_seed(16)
    original = nn.LSTM(3, 4).eval()
    lens = numpy_helper.from_array(np.array([5, 3], np.int32), "lens")
    c0 = numpy_helper.from_array(np.full((1, 2, 4), 0.5, np.float32), "c0")
    w, r, b = onnx_weights(original)
    node = helper.make_node("LSTM", ["X", "W", "R", "B", "lens", "h0", "c0"], ["Y", "Y_h", "Y_c"], name="lstm", hidden_size=4)
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(r, "R"), numpy_helper.from_array(b, "B"), lens, c0]
    h0 = helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, 2, 4])
    path = save(tmp_path / "state.onnx", [node], [x_input(3), h0], outputs("Y", "Y_h", "Y_c"), inits)
    [found] = read(path).found
    assert found.notes == [
        "sequence_lens is the constant 5,3: lstm-cli runs full-length sequences unless given --lengths 5,3",
        "initial_h comes from 'h0' at run time: lstm-cli and the onnxruntime check start from zero state",
        (
            "initial_c is a nonzero constant (1, 2, 4): lstm-cli and the onnxruntime check start from zero state, "
            "so their outputs differ from this graph's"
        ),
    ]
    assert_original_run_matches(found, original, torch.randn(5, 2, 3))


def test_weights_known_only_at_run_time_are_rejected(tmp_path):
    w, r, b = onnx_weights(nn.LSTM(3, 4))
    inits = [numpy_helper.from_array(r, "R"), numpy_helper.from_array(b, "B"), numpy_helper.from_array(w, "w0")]
    scale = helper.make_tensor_value_info("scale", TensorProto.FLOAT, [])
    nodes = [
        helper.make_node("Mul", ["w0", "scale"], ["W"]),
        helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y"], name="scaled", hidden_size=4),
        helper.make_node("LSTM", ["X", "Wx", "R", "B"], ["Y2"], name="direct", hidden_size=4),
        helper.make_node("MatMul", ["w0", "m"], ["Wm"]),
        helper.make_node("LSTM", ["X", "Wm", "R", "B"], ["Y3"], name="matmul", hidden_size=4),
    ]
    inits.append(numpy_helper.from_array(np.eye(3, dtype=np.float32), "m"))
    wx = helper.make_tensor_value_info("Wx", TensorProto.FLOAT, [1, 16, 3])
    path = save(tmp_path / "runtime.onnx", nodes, [x_input(3), scale, wx], outputs("Y", "Y2", "Y3"), inits)
    assert read(path).rejected == [
        Rejected("scaled", "W is computed from graph input 'scale' at run time"),
        Rejected("direct", "W is graph input 'Wx', given at run time"),
        Rejected("matmul", "W is computed by a MatMul node, which lstm-cli does not fold to a constant"),
    ]


def test_weights_from_a_loop_body_input_are_rejected(tmp_path):
    r, b = onnx_weights(nn.LSTM(3, 4))[1:]
    body = helper.make_graph(
        [helper.make_node("LSTM", ["X", "w_in", "R", "B"], ["Y", "h", "c"], name="step", hidden_size=4),
         helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Identity", ["w_in"], ["w_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("w_in", TensorProto.FLOAT, [1, 16, 3])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("w_out", TensorProto.FLOAT, None),
         *outputs("h")],
    )
    loop = helper.make_node("Loop", ["trips", "", "w0"], ["w_final", "hs"], name="steps", body=body)
    inits = [
        numpy_helper.from_array(np.array(2, np.int64), "trips"), numpy_helper.from_array(onnx_weights(nn.LSTM(3, 4))[0], "w0"),
        numpy_helper.from_array(r, "R"), numpy_helper.from_array(b, "B"),
    ]
    path = save(tmp_path / "loop.onnx", [loop], [x_input(3)], outputs("hs"), inits)
    assert read(path).rejected == [
        Rejected("step", "W is 'w_in', an input of the subgraph of Loop node 'steps' (body), given at run time")
    ]


def test_float64_weights_stay_float64_without_an_onnxruntime_run(tmp_path):
    torch.manual_seed(17)
    original = nn.LSTM(3, 4).double().eval()
    w, r, b = onnx_weights(original)
    node = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y"], name="lstm", hidden_size=4)
    x64 = helper.make_tensor_value_info("X", TensorProto.DOUBLE, ["L", "N", 3])
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(r, "R"), numpy_helper.from_array(b, "B")]
    path = save(tmp_path / "f64.onnx", [node], [x64], [helper.make_tensor_value_info("Y", TensorProto.DOUBLE, None)], inits)
    [found] = read(path).found
    assert {t.dtype for t in found.state.values()} == {torch.float64}
    assert found.run_original is None
    assert found.notes == ["onnxruntime's CPU LSTM does not run float64: there is no onnxruntime run to compare with"]
    loaded = fresh(found, input_size=3, hidden_size=4, dtype=torch.float64)
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0], original(x)[0], rtol=1e-12, atol=1e-12)


def test_gru_and_rnn_nodes_are_rejected_by_name(tmp_path):
    gru = helper.make_node("GRU", ["X", "W", "R"], ["Y"], name="gru", hidden_size=4)
    rnn = helper.make_node("RNN", ["X", "W2", "R2"], ["Y2"], hidden_size=4)
    inits = [
        numpy_helper.from_array(np.zeros((1, 12, 3), np.float32), "W"), numpy_helper.from_array(np.zeros((1, 12, 4), np.float32), "R"),
        numpy_helper.from_array(np.zeros((1, 4, 3), np.float32), "W2"), numpy_helper.from_array(np.zeros((1, 4, 4), np.float32), "R2"),
    ]
    path = save(tmp_path / "gru.onnx", [gru, rnn], [x_input(3)], outputs("Y", "Y2"), inits)
    contents = read(path)
    assert contents.found == []
    assert contents.rejected == [Rejected("gru", "an ONNX GRU node, not an LSTM"), Rejected("RNN#1", "an ONNX RNN node, not an LSTM")]


# -- hostile and broken files ---------------------------------------------------------------------


def test_external_data_is_refused_without_opening_it(tmp_path):
    path = lstm_file(tmp_path / "ext.onnx", nn.LSTM(3, 4))
    model = onnx.load(str(path))
    w = next(t for t in model.graph.initializer if t.name == "W")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value="weights.bin")
    onnx.save(model, str(path))
    # weights.bin does not exist: opening it would raise FileNotFoundError, not this.
    with pytest.raises(FormatError) as error:
        read(path)
    assert str(error.value) == "tensor 'W' is stored in an external file ('weights.bin'); lstm-cli reads only the given file"


def test_huge_or_mismatched_tensors_are_refused_before_allocation(tmp_path):
    base = lstm_file(tmp_path / "base.onnx", nn.LSTM(3, 4))
    model = onnx.load(str(base))
    w = next(t for t in model.graph.initializer if t.name == "W")
    w.raw_data = b"\0" * 16
    onnx.save(model, str(tmp_path / "short.onnx"))
    with pytest.raises(FormatError, match=r"^tensor 'W' declares shape \(1, 16, 3\) \(192 bytes\) but stores 16 bytes$"):
        read(tmp_path / "short.onnx")
    del w.dims[:]
    w.dims.extend([1, 2**20, 2**10])
    onnx.save(model, str(tmp_path / "huge.onnx"))
    with pytest.raises(FormatError, match=r"^tensor 'W' declares shape \(1, 1048576, 1024\), 1073741824 values, over lstm-cli's limit of 268435456$"):
        read(tmp_path / "huge.onnx")

    # Small constants that broadcast to 2**29 values: refused before numpy allocates them.
    r, b = onnx_weights(nn.LSTM(3, 4))[1:]
    inits = [
        numpy_helper.from_array(np.zeros((2**15, 1), np.float32), "a"), numpy_helper.from_array(np.zeros((1, 2**14), np.float32), "c"),
        numpy_helper.from_array(r, "R"), numpy_helper.from_array(b, "B"),
    ]
    nodes = [
        helper.make_node("Add", ["a", "c"], ["W"]),
        helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y"], name="lstm", hidden_size=4),
    ]
    path = save(tmp_path / "broadcast.onnx", nodes, [x_input(3)], outputs("Y"), inits)
    with pytest.raises(FormatError, match=r"^tensor 'W' would hold 536870912 values, over lstm-cli's limit of 268435456$"):
        read(path)


def test_a_cycle_of_nodes_ends_at_the_fold_limit(tmp_path):
    r, b = onnx_weights(nn.LSTM(3, 4))[1:]
    nodes = [
        helper.make_node("Add", ["V", "c"], ["W"]),
        helper.make_node("Add", ["W", "c"], ["V"]),
        helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y"], name="loop", hidden_size=4),
    ]
    inits = [numpy_helper.from_array(np.ones((1, 16, 3), np.float32), "c"), numpy_helper.from_array(r, "R"), numpy_helper.from_array(b, "B")]
    graph = helper.make_graph(nodes, "cycle", [x_input(3)], outputs("Y"), initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    (tmp_path / "cycle.onnx").write_bytes(model.SerializeToString())  # onnx.save would not check it either
    assert read(tmp_path / "cycle.onnx").rejected == [
        Rejected("loop", "W is computed by more than 200 nodes; lstm-cli folds at most that many")
    ]


def test_deeply_nested_subgraphs_are_refused(tmp_path):
    leaf = helper.make_graph([helper.make_node("Relu", ["X"], ["Z"])], "leaf", [], outputs("Z"))
    graph = leaf
    for level in range(20):
        node = helper.make_node("If", ["cond"], ["Z"], then_branch=graph, else_branch=leaf)
        graph = helper.make_graph([node], f"level{level}", [], outputs("Z"))
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    model = helper.make_model(helper.make_graph(graph.node, "top", [x_input(3), cond], outputs("Z")))
    (tmp_path / "deep.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(FormatError, match=r"^its subgraphs are nested more than 16 levels deep$"):
        read(tmp_path / "deep.onnx")


def test_truncated_foreign_and_lstm_free_files_are_refused(tmp_path):
    data = lstm_file(tmp_path / "whole.onnx", nn.LSTM(3, 4)).read_bytes()
    (tmp_path / "half.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match=r"^not a readable ONNX model: "):
        read(tmp_path / "half.onnx")
    (tmp_path / "text.onnx").write_bytes(b"this is not a model\n")
    with pytest.raises(FormatError, match=r"^not a readable ONNX model"):
        read(tmp_path / "text.onnx")
    path = save(tmp_path / "relu.onnx", [helper.make_node("Relu", ["X"], ["Y"])], [x_input(3)], outputs("Y"))
    with pytest.raises(FormatError, match=r"^no LSTM node in this ONNX model \(its ops: Relu\)$"):
        read(path)


def test_without_onnx_the_message_says_what_to_install(tmp_path, monkeypatch):
    path = lstm_file(tmp_path / "m.onnx", nn.LSTM(3, 4))
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    with pytest.raises(FormatError) as error:
        read(path)
    assert str(error.value) == "reading ONNX needs the onnx package: pip install 'lstm-cli[onnx]'"


def test_without_onnxruntime_there_is_no_original_run(tmp_path, monkeypatch):
    path = lstm_file(tmp_path / "m.onnx", nn.LSTM(3, 4))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    [found] = read(path).found
    assert found.run_original is None and found.run_original_name is None
    assert set(found.state) == {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"}


# -- through the command line: provenance, every command, the onnxruntime step check -------------


def test_an_onnx_lstm_runs_in_every_command_and_onnxruntime_checks_it(tmp_path, run_cli):
    torch.manual_seed(30)
    path = lstm_file(tmp_path / "model.pt", nn.LSTM(6, 9, bidirectional=True), name="encoder")  # named .pt
    doc = run_cli("inspect", "--weights", str(path), "--json", "--seq-len", "40").json()
    assert doc["passed"] and doc["source"]["format"] == "ONNX model" and doc["source"]["key"] == "encoder"
    assert any(REORDER in line for line in doc["source"]["conversions"])
    original = [c for c in doc["checks"] if c["name"].startswith("onnxruntime")]
    assert len(original) == 2 and all(c["passed"] and c["worst_ratio"] < 1 for c in original)
    for command in ("gates", "compare-cell"):
        result = run_cli(command, "--weights", str(path), "--json")
        assert result.code == 0 and result.json()["passed"], (command, result.stderr)


def test_a_wrong_gate_order_fails_the_onnxruntime_check(tmp_path, run_cli, monkeypatch):
    from lstm_cli.formats.onnx_model import convert

    torch.manual_seed(31)
    path = lstm_file(tmp_path / "model.onnx", nn.LSTM(6, 9))
    monkeypatch.setattr(convert, "ONNX_BLOCK_FOR_TORCH", (0, 1, 2, 3))  # no reorder: the classic bug
    result = run_cli("inspect", "--weights", str(path), "--json")
    assert result.code == 1
    [failed] = [c for c in result.json()["checks"] if not c["passed"]]
    assert failed["name"].startswith("onnxruntime") and failed["worst_ratio"] > 1000


def test_a_trained_lstm_exported_to_onnx_passes_on_its_own_input(tmp_path, run_cli):
    """The counter model's first layer (|c| in the hundreds on its task input) as an ONNX node:
    large states and saturated gates, where approximate activations show first."""
    root = Path(__file__).resolve().parent.parent / "examples"
    state = torch.load(root / "counter_lstm.pt", weights_only=True)
    layer = nn.LSTM(4, 32).eval()
    layer.load_state_dict({k.removeprefix("lstm."): v for k, v in state.items() if k.startswith("lstm.") and k.endswith("_l0")})
    path = lstm_file(tmp_path / "counter.onnx", layer)
    doc = run_cli("inspect", "--weights", str(path), "--input", str(root / "counter_input.npy"), "--json").json()
    original = [c for c in doc["checks"] if c["name"].startswith("onnxruntime")]
    assert doc["passed"] and original and original[0]["worst_ratio"] < 1


def test_an_int8_node_is_compared_and_reported_not_judged(tmp_path, run_cli):
    torch.manual_seed(32)
    original = nn.LSTM(6, 8).eval()
    w, r, b = onnx_weights(original)
    # 7-bit weights (reduce_range), as above: full-range int8 saturates on x86 without VNNI.
    scale = (np.abs(w).max(axis=2) / 63).astype(np.float32)
    w_q = np.clip(np.round(w / scale[:, :, None]), -63, 63).astype(np.int8).transpose(0, 2, 1)
    r_scale = (np.abs(r).max(axis=(1, 2)) / 63).astype(np.float32)
    r_q = np.clip(np.round(r / r_scale[:, None, None]), -63, 63).astype(np.int8).transpose(0, 2, 1)
    inits = [
        numpy_helper.from_array(np.ascontiguousarray(w_q), "Wq"), numpy_helper.from_array(np.ascontiguousarray(r_q), "Rq"),
        numpy_helper.from_array(b, "B"), numpy_helper.from_array(scale, "ws"),
        numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), "wz"), numpy_helper.from_array(r_scale, "rs"),
        numpy_helper.from_array(np.zeros(1, dtype=np.int8), "rz"),
    ]
    node = helper.make_node("DynamicQuantizeLSTM", ["X", "Wq", "Rq", "B", "", "", "", "", "ws", "wz", "rs", "rz"],
                            ["Y", "Y_h", "Y_c"], name="qlstm", domain="com.microsoft", hidden_size=8)
    path = save(tmp_path / "q.onnx", [node], [x_input(6)], outputs("Y", "Y_h", "Y_c"), inits, microsoft=True)
    result = run_cli("inspect", "--weights", str(path), "--json")
    doc = result.json()
    assert result.code == 0 and doc["passed"]
    assert not any(c["name"].startswith("onnxruntime") for c in doc["checks"])
    [note] = [n for n in doc["notes"] if "reported, not judged: the original runs in int8" in n]
    assert float(note.split("at most ")[1].split(" ")[0]) < 0.05  # close to int8, not a wrong conversion
