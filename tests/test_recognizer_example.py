"""The shipped whole model (examples/recognizer.py, trained by examples/train_recognizer.py): a
conv front-end, a 2-layer LSTM and a linear head, as a state_dict, a pickled module and an ONNX
export, with held-out sample images. Each file is checked against the others and against the
model's own task, independently of the code that wrote them."""

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from lstm_cli.formats import read_file
from lstm_cli.sources import find_lstm
from tests.shipped import load_example

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
STATE_DICT = EXAMPLES / "recognizer.pt"
MODULE = EXAMPLES / "recognizer_module.pt"
ONNX = EXAMPLES / "recognizer.onnx"
SAMPLES = EXAMPLES / "recognizer_samples.npz"


@pytest.fixture(scope="module")
def recognizer():
    return load_example("recognizer")


@pytest.fixture(scope="module")
def state_dict():
    return torch.load(STATE_DICT, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def model(recognizer, state_dict):
    model = recognizer.build()
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def samples():
    with np.load(SAMPLES, allow_pickle=False) as data:
        return data["images"], [str(label) for label in data["labels"]]


def greedy_ctc(logits: torch.Tensor) -> list[str]:
    """Written here, not taken from examples/recognizer.py: best class per step, runs merged,
    blank (class 0) dropped, class k + 1 read as digit k."""
    return ["".join(str(cls - 1) for cls, _ in itertools.groupby(row) if cls != 0)
            for row in logits.argmax(-1).t().tolist()]


def test_shipped_files_are_small():
    sizes = {path.name: path.stat().st_size for path in (STATE_DICT, MODULE, ONNX, SAMPLES)}
    assert sum(sizes.values()) < 1_000_000, sizes


def test_samples_are_digit_images_of_the_documented_shape(samples):
    images, labels = samples
    assert images.dtype == np.float32 and images.shape == (32, 1, 16, 96)
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert all(label.isdigit() and 3 <= len(label) <= 6 for label in labels)
    assert len(set(labels)) > 25  # not one string repeated


def test_the_state_dict_is_a_trained_recogniser(model, samples):
    images, labels = samples
    with torch.no_grad():
        logits = model(torch.from_numpy(images))
    assert logits.shape == (48, 32, 11)
    predictions = greedy_ctc(logits)
    correct = sum(p == want for p, want in zip(predictions, labels))
    assert correct >= 0.9 * len(labels), list(zip(predictions, labels))
    # An untrained copy reads nothing: the accuracy above is the training's.
    torch.manual_seed(0)
    untrained = load_example("recognizer").build().eval()
    with torch.no_grad():
        assert sum(p == want for p, want in zip(greedy_ctc(untrained(torch.from_numpy(images))), labels)) == 0


def test_onnxruntime_runs_the_export_to_the_torch_models_logits(model, samples):
    onnxruntime = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    assert [node.op_type for node in onnx.load(str(ONNX)).graph.node].count("LSTM") == 2
    images, _ = samples
    session = onnxruntime.InferenceSession(str(ONNX), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    for batch in (images, images[5:8]):  # the exported batch and another size: the batch is dynamic
        got = session.run(None, {"images": batch})[0]
        with torch.no_grad():
            expected = model(torch.from_numpy(batch)).numpy()
        assert got.shape == expected.shape == (48, len(batch), 11)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_the_pickled_module_is_read_without_importing_it_and_holds_the_same_lstm(state_dict, run_cli):
    group = find_lstm(str(MODULE), None)  # trust=False: the safe reader imports nothing
    assert (group.prefix, group.input_size, group.hidden_size, group.num_layers) == ("lstm", 64, 48, 2)
    assert not group.bidirectional
    lstm = {name[len("lstm."):]: value for name, value in state_dict.items() if name.startswith("lstm.")}
    assert sorted(group.state) == sorted(lstm)
    for name, value in lstm.items():
        assert torch.equal(group.state[name], value), name
    result = run_cli("inspect", "--weights", str(MODULE), "--json")
    assert result.code == 0, result.stderr
    assert result.json()["source"]["key"] == "lstm"
    assert result.json()["config"]["trust_checkpoint"] is False


def test_each_onnx_lstm_node_holds_its_layer_and_runs_the_models_own_features(model, state_dict, samples):
    pytest.importorskip("onnxruntime")
    found = read_file(ONNX).found
    assert [f.name for f in found] == ["/lstm/LSTM", "/lstm/LSTM_1"]
    for layer, node in enumerate(found):
        assert sorted(node.state) == ["bias_hh_l0", "bias_ih_l0", "weight_hh_l0", "weight_ih_l0"]
        for name, value in node.state.items():
            assert torch.equal(value, state_dict[f"lstm.{name.replace('_l0', f'_l{layer}')}"]), (node.name, name)
    # On what reaches the LSTM in the model itself (the conv features of the sample images), the
    # two nodes run by onnxruntime in turn give nn.LSTM's output.
    images, _ = samples
    with torch.no_grad():
        maps = model.features(torch.from_numpy(images))
        steps = maps.flatten(1, 2).permute(2, 0, 1).contiguous()
        expected = model.lstm(steps)[0]
    assert steps.shape == (48, 32, 64)
    got = found[1].run_original(found[0].run_original(steps)[0])[0]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("command", ["inspect", "gates"])
def test_the_cli_runs_on_each_lstm_node_of_the_export(command, run_cli):
    pytest.importorskip("onnxruntime")
    names = [f.name for f in read_file(ONNX).found]
    assert len(names) == 2
    for name in names:
        result = run_cli(command, "--weights", str(ONNX), "--key", name, "--json")
        assert result.code == 0, (name, result.stderr)
        report = result.json()
        assert report["source"]["key"] == name
        assert report["config"]["input_size"] == (64 if name == names[0] else 48)
        assert report["config"]["hidden_size"] == 48
        if command == "inspect":
            assert all(check["passed"] for check in report["checks"]), report["checks"]
