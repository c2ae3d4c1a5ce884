"""The public Python API: `lstm_cli.watch(model)` and its `Result`s.

The capture itself (lstm_cli.insitu.torch_hooks.Watch) is unit-tested in test_insitu_torch.py;
here: what a user of `import lstm_cli` sees. The central promise (the done-when item): a
watched LSTM's `w.gates(name)` is exactly what `lstm-cli gates --json` prints for the module's
weights, the captured input, lengths and initial state given as files. Independently of both,
the gate statistics are recomputed with a plain float64 loop written here from PyTorch's
documented equations.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import lstm_cli
from lstm_cli.errors import UsageError
from tests.shipped import recognizer_images, trained_recognizer

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# -- models ------------------------------------------------------------------------------------


load_recognizer = trained_recognizer


class StatefulBatchFirst(nn.Module):
    """A batch_first 2-layer nn.LSTM started from a nonzero (h0, c0) computed from the input."""

    LAYERS, HIDDEN, IN = 2, 5, 4

    def __init__(self):
        super().__init__()
        self.init = nn.Linear(self.IN, 2 * self.LAYERS * self.HIDDEN)
        self.lstm = nn.LSTM(self.IN, self.HIDDEN, num_layers=self.LAYERS, batch_first=True)
        self.head = nn.Linear(self.HIDDEN, 2)

    def initial_state(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        s = torch.tanh(self.init(x.mean(1))) * 2.0  # (N, 2 * layers * H)
        h0, c0 = s.chunk(2, dim=1)
        shape = (n, self.LAYERS, self.HIDDEN)
        return h0.reshape(shape).transpose(0, 1).contiguous(), c0.reshape(shape).transpose(0, 1).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, L, IN)
        out, _ = self.lstm(x, self.initial_state(x))
        return self.head(out)


class PackedUnsorted(nn.Module):
    """An nn.LSTM run on a PackedSequence of unsorted lengths (enforce_sorted=False)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 4)
        self.lstm = nn.LSTM(4, 6)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:  # x (L, N, 3)
        packed = pack_padded_sequence(self.proj(x), lengths, enforce_sorted=False)
        out, _ = self.lstm(packed)
        return pad_packed_sequence(out)[0]


class CellLoop(nn.Module):
    """An nn.LSTMCell stepped in a Python loop from a nonzero state computed from the input."""

    IN, HIDDEN = 3, 5

    def __init__(self):
        super().__init__()
        self.init = nn.Linear(self.IN, 2 * self.HIDDEN)
        self.cell = nn.LSTMCell(self.IN, self.HIDDEN)

    def initial_state(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h0, c0 = torch.tanh(self.init(x[0])).chunk(2, dim=1)
        return h0.contiguous(), (3.0 * c0).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (T, N, IN)
        h, c = self.initial_state(x)
        outs = []
        for t in range(x.shape[0]):
            h, c = self.cell(x[t], (h, c))
            outs.append(h)
        return torch.stack(outs)


class OneLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 4)

    def forward(self, x):
        return self.lstm(x)[0]


class TwoLSTMs(nn.Module):
    """`first` is defined first but called second; `unused` is never called."""

    def __init__(self):
        super().__init__()
        self.first = nn.LSTM(4, 4)
        self.second = nn.LSTM(3, 4)
        self.unused = nn.LSTM(3, 4)
        self.cell = nn.LSTMCell(4, 2)

    def forward(self, x):
        y, _ = self.second(x)
        z, _ = self.first(y)
        return self.cell(z[-1])


def cell_state_dict(cell: nn.LSTMCell) -> dict[str, torch.Tensor]:
    return {
        "weight_ih_l0": cell.weight_ih.detach().clone(),
        "weight_hh_l0": cell.weight_hh.detach().clone(),
        "bias_ih_l0": cell.bias_ih.detach().clone(),
        "bias_hh_l0": cell.bias_hh.detach().clone(),
    }


# -- an independent float64 LSTM (with initial state and lengths) ------------------------------


def reference_gates(state: dict, num_layers: int, x: torch.Tensor, h0=None, c0=None, lengths=None):
    """x time-major (L, N, in). Per layer {"i","f","g","o": the valid values, "c": |c| valid values}
    as flat float64 tensors, from PyTorch's documented equations."""
    steps, n, _ = x.shape
    lengths = torch.tensor(lengths if lengths is not None else [steps] * n)
    layer_input = x.double()
    result = []
    for layer in range(num_layers):
        w_ih = state[f"weight_ih_l{layer}"].double()
        w_hh = state[f"weight_hh_l{layer}"].double()
        b = state[f"bias_ih_l{layer}"].double() + state[f"bias_hh_l{layer}"].double()
        hidden = w_hh.shape[1]
        h = h0[layer].double() if h0 is not None else torch.zeros(n, hidden, dtype=torch.float64)
        c = c0[layer].double() if c0 is not None else torch.zeros(n, hidden, dtype=torch.float64)
        values = {k: [] for k in "ifgoc"}
        out = torch.zeros(steps, n, hidden, dtype=torch.float64)
        for t in range(steps):
            z = layer_input[t] @ w_ih.T + h @ w_hh.T + b
            i, f = torch.sigmoid(z[:, :hidden]), torch.sigmoid(z[:, hidden : 2 * hidden])
            g, o = torch.tanh(z[:, 2 * hidden : 3 * hidden]), torch.sigmoid(z[:, 3 * hidden :])
            c_new = f * c + i * g
            h_new = o * torch.tanh(c_new)
            valid = t < lengths
            for name, value in zip("ifgoc", (i, f, g, o, c_new.abs())):
                values[name].append(value[valid])
            h = torch.where(valid[:, None], h_new, h)
            c = torch.where(valid[:, None], c_new, c)
            out[t] = torch.where(valid[:, None], h_new, torch.zeros_like(h_new))
        result.append({k: torch.cat(v) for k, v in values.items()})
        layer_input = out
    return result


def assert_matches_reference(layers: list[dict], reference: list[dict]) -> None:
    assert len(layers) == len(reference)
    for layer, ref in zip(layers, reference):
        for gate in "ifgo":
            got = layer["gates"][gate]
            for stat, value in (("mean", ref[gate].mean()), ("min", ref[gate].min()), ("max", ref[gate].max()),
                                ("std", ref[gate].std(unbiased=False))):
                assert got[stat] == pytest.approx(float(value), abs=2e-5), (layer["layer"], gate, stat)
        assert layer["cell"]["mean_abs"] == pytest.approx(float(ref["c"].mean()), rel=1e-5, abs=1e-5)
        assert layer["cell"]["max_abs"] == pytest.approx(float(ref["c"].max()), rel=1e-5, abs=1e-5)


# -- the CLI on the same things, given as files ------------------------------------------------


def cli_gates_for(run_cli, tmp_path: Path, captured, weights, *extra: str, key: str | None = None) -> dict:
    """`lstm-cli gates --json` on `weights` (a state_dict), the captured input and, when the model
    passed one, its initial state; --lengths and --batch-first from the capture."""
    weights_file, input_file = tmp_path / "weights.pt", tmp_path / "input.pt"
    torch.save(weights, weights_file)
    torch.save(captured.x, input_file)
    args = ["gates", "--weights", str(weights_file), "--input", str(input_file), "--json", *extra]
    if key is not None:
        args += ["--key", key]
    if captured.h0 is not None:
        state_file = tmp_path / "state.npz"
        np.savez(state_file, h0=captured.h0.numpy(), c0=captured.c0.numpy())
        args += ["--initial-state", str(state_file)]
    if captured.lengths is not None:
        args += ["--lengths", ",".join(str(n) for n in captured.lengths)]
    if captured.batch_first:
        args.append("--batch-first")
    result = run_cli(*args)
    assert result.code == 0, result.stderr + result.stdout
    return result.json()


def assert_same_as_cli(api: dict, cli: dict) -> None:
    assert api["layers"] == cli["layers"]  # the same numbers, exactly
    assert api["passed"] is True and cli["passed"] is True
    assert [c["name"] for c in api["checks"]] == [c["name"] for c in cli["checks"]]
    assert api["method"] == cli["method"]


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recognizer():
    """The trained DigitRecognizer, watched on 8 images: (model, images, plain output, watched)."""
    model = load_recognizer()
    images = recognizer_images(8)
    with torch.no_grad():
        plain = model(images)
        with lstm_cli.watch(model) as w:
            watched = model(images)
    return model, images, plain, watched, w


# -- 1. the API's results are the CLI's --------------------------------------------------------


def test_recognizer_gates_equal_the_cli(recognizer, run_cli, tmp_path):
    model, images, _, _, w = recognizer
    assert w.names == ["lstm"]
    captured = w.captured("lstm")
    # Independent: what reached the LSTM is the conv features as the model's forward lays them out.
    with torch.no_grad():
        steps = model.features(images).flatten(1, 2).permute(2, 0, 1)
    assert captured.x.shape == (48, 8, 64) and torch.allclose(captured.x, steps, atol=1e-6)
    assert captured.h0 is None and captured.lengths is None and not captured.batch_first

    result = w.gates("lstm")
    api = result.to_dict()
    cli = cli_gates_for(run_cli, tmp_path, captured, model.lstm.state_dict())
    assert_same_as_cli(api, cli)
    assert result.passed is True

    # The whole model's state_dict with --key lstm: the same numbers again.
    torch.save(model.state_dict(), tmp_path / "model.pt")
    torch.save(captured.x, tmp_path / "x.pt")
    keyed = run_cli("gates", "--weights", str(tmp_path / "model.pt"), "--key", "lstm", "--input",
                    str(tmp_path / "x.pt"), "--json")
    assert keyed.code == 0, keyed.stderr
    assert keyed.json()["layers"] == api["layers"]

    assert_matches_reference(api["layers"], reference_gates(model.lstm.state_dict(), 2, captured.x))


def test_recognizer_gates_with_options_and_flags_equal_the_cli(recognizer, run_cli, tmp_path):
    model, _, _, _, w = recognizer
    result = w.gates("lstm", flags={"dtype": "float64"}, method="loop", units=True, sat_low=0.05)
    api = result.to_dict()
    assert api["dtype"] == "float64" and api["method"] == "loop"
    cli = cli_gates_for(run_cli, tmp_path, w.captured("lstm"), model.lstm.state_dict(),
                        "--dtype", "float64", "--method", "loop", "--units", "--sat-low", "0.05")
    assert_same_as_cli(api, cli)
    assert all(layer["units"] is not None for layer in api["layers"])
    assert api["thresholds"] == cli["thresholds"] and api["thresholds"] != w.gates("lstm").to_dict()["thresholds"]


def test_batch_first_lstm_with_a_computed_initial_state_equals_the_cli(run_cli, tmp_path):
    torch.manual_seed(1)
    model = StatefulBatchFirst().eval()
    x = torch.randn(3, 7, 4)  # (N, L, in)
    with torch.no_grad(), lstm_cli.watch(model) as w:
        model(x)
        h0, c0 = model.initial_state(x)  # the same code, run again outside the LSTM
    captured = w.captured("lstm")
    assert captured.batch_first and captured.x.shape == (3, 7, 4)
    assert torch.equal(captured.x, x)  # a copy of what the model passed
    assert captured.h0.shape == (2, 3, 5) and torch.allclose(captured.h0, h0) and torch.allclose(captured.c0, c0)
    assert captured.c0.abs().max() > 0.1  # really nonzero

    result = w.gates("lstm")
    api = result.to_dict()
    assert api["source"]["captured_initial_state"] is True
    cli = cli_gates_for(run_cli, tmp_path, captured, model.lstm.state_dict())
    assert_same_as_cli(api, cli)

    reference = reference_gates(model.lstm.state_dict(), 2, x.transpose(0, 1), h0, c0)
    assert_matches_reference(api["layers"], reference)
    # ...and the initial state mattered: from zeros the statistics differ.
    zero_start = reference_gates(model.lstm.state_dict(), 2, x.transpose(0, 1))
    assert abs(api["layers"][0]["cell"]["mean_abs"] - float(zero_start[0]["c"].mean())) > 1e-3


def test_batch_first_shadow_distances_are_rounding_sized():
    """gates' float64 shadow of a batch_first LSTM (no initial state): nn.LSTM's float32 run of a
    tiny model differs from float64 by rounding only, as it does for the same LSTM time-major."""
    torch.manual_seed(11)
    lstm = nn.LSTM(4, 5, num_layers=2, batch_first=True)
    x = torch.randn(3, 7, 4)
    with torch.no_grad(), lstm_cli.watch(lstm) as w:
        lstm(x)
    shadow = w.gates().to_dict()["shadow"]
    assert shadow is not None
    for error in shadow["errors"]:
        assert error["output_max_abs_diff"] < 1e-5, error
        assert error["h_n_max_abs_diff"] < 1e-5 and error["c_n_max_abs_diff"] < 1e-5, error


def test_packed_unsorted_lengths_equal_the_cli(run_cli, tmp_path):
    torch.manual_seed(2)
    model = PackedUnsorted().eval()
    x = torch.randn(6, 4, 3)
    lengths = torch.tensor([3, 6, 2, 5])
    with torch.no_grad(), lstm_cli.watch(model) as w:
        model(x, lengths)
    captured = w.captured("lstm")
    assert captured.lengths == (3, 6, 2, 5)  # batch order, not sorted
    with torch.no_grad():
        projected = model.proj(x)
    for n, length in enumerate(lengths.tolist()):
        assert torch.allclose(captured.x[:length, n], projected[:length, n])
        assert torch.all(captured.x[length:, n] == 0)

    api = w.gates("lstm").to_dict()
    cli = cli_gates_for(run_cli, tmp_path, captured, model.lstm.state_dict())
    assert_same_as_cli(api, cli)
    assert_matches_reference(api["layers"], reference_gates(model.lstm.state_dict(), 1, captured.x,
                                                            lengths=lengths.tolist()))


def test_lstm_cell_loop_from_a_nonzero_state_equals_the_cli(run_cli, tmp_path):
    torch.manual_seed(3)
    model = CellLoop().eval()
    x = torch.randn(7, 3, 3)
    with torch.no_grad(), lstm_cli.watch(model) as w:
        model(x)
        h0, c0 = model.initial_state(x)
    assert w.names == ["cell"]
    spec = w.spec("cell")
    assert (spec.num_layers, spec.input_size, spec.hidden_size, spec.seq_len, spec.batch_size) == (1, 3, 5, 7, 3)
    captured = w.captured("cell")
    assert captured.x.shape == (7, 3, 3) and torch.equal(captured.x, x) and captured.lengths is None
    assert captured.h0.shape == (1, 3, 5)
    assert torch.allclose(captured.h0[0], h0) and torch.allclose(captured.c0[0], c0)

    api = w.gates("cell").to_dict()
    weights = cell_state_dict(model.cell)
    cli = cli_gates_for(run_cli, tmp_path, captured, weights)
    assert_same_as_cli(api, cli)
    assert_matches_reference(api["layers"], reference_gates(weights, 1, x, h0[None], c0[None]))


# -- 2. watching changes nothing and leaves nothing behind -------------------------------------


def no_hooks_left(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not getattr(m, "_forward_hooks_with_kwargs", {}) for m in model.modules())


def test_recognizer_outputs_are_bit_identical_and_hooks_removed(recognizer):
    model, _, plain, watched, _ = recognizer
    assert torch.equal(plain, watched)
    assert no_hooks_left(model)


@pytest.mark.parametrize("make", [StatefulBatchFirst, PackedUnsorted, CellLoop, TwoLSTMs])
def test_outputs_bit_identical_with_grad_and_hooks_removed(make):
    torch.manual_seed(4)
    model = make()
    if make is StatefulBatchFirst:
        args = (torch.randn(2, 5, 4),)
    elif make is PackedUnsorted:
        args = (torch.randn(5, 3, 3), torch.tensor([2, 5, 4]))
    else:
        args = (torch.randn(5, 2, 3),)
    plain = model(*args)
    with lstm_cli.watch(model) as w:
        assert not no_hooks_left(model)  # hooked while inside
        watched = model(*args)
    assert w.names
    for a, b in zip(plain if isinstance(plain, tuple) else (plain,), watched if isinstance(watched, tuple) else (watched,)):
        assert torch.equal(a, b)
        assert a.requires_grad and b.requires_grad
    assert no_hooks_left(model)


def test_hooks_removed_when_the_block_raises():
    torch.manual_seed(5)
    model = OneLayer()
    x = torch.randn(4, 2, 3)
    with pytest.raises(RuntimeError, match="planted in the block"):
        with lstm_cli.watch(model) as w:
            model(x)
            raise RuntimeError("planted in the block")
    assert no_hooks_left(model)
    assert w.names == ["lstm"]
    # An exception from inside the model's own LSTM call propagates too, and unhooks.
    with pytest.raises(RuntimeError):
        with lstm_cli.watch(model):
            model(torch.randn(4, 2, 7))  # wrong input width
    assert no_hooks_left(model)
    assert torch.equal(model(x), model(x))


def test_names_in_call_order():
    torch.manual_seed(6)
    model = TwoLSTMs()
    with torch.no_grad(), lstm_cli.watch(model) as w:
        model(torch.randn(4, 2, 3))
    assert w.names == ["second", "first", "cell"]


# -- 3. inspect and compare-cell ---------------------------------------------------------------


def test_inspect_and_compare_cell_on_the_recognizer(recognizer):
    _, _, _, _, w = recognizer
    inspected = w.inspect("lstm")
    assert inspected.passed is True
    assert inspected.to_dict()["passed"] is True
    assert w.compare_cell("lstm", repeat=0).passed is True


@pytest.mark.parametrize("make", [OneLayer, CellLoop])
def test_captured_output_checks_for_one_layer_models(make):
    torch.manual_seed(7)
    model = make().eval()
    with torch.no_grad(), lstm_cli.watch(model) as w:
        model(torch.randn(5, 2, 3))
    (name,) = w.names
    inspected = w.inspect(name)
    ran = [c for c in inspected.checks if "as the model ran it" in c.name]
    assert len(ran) >= 1, [c.name for c in inspected.checks]
    assert all(c.passed for c in ran) and inspected.passed is True
    assert w.compare_cell(name, repeat=0).passed is True


def test_inspect_catches_weights_changed_after_the_run():
    """The captured-output checks compare the module's weights now with what it returned then:
    weights changed after the run no longer reproduce the captured output."""
    torch.manual_seed(8)
    model = OneLayer().eval()
    with torch.no_grad(), lstm_cli.watch(model) as w:
        model(torch.randn(5, 2, 3))
    with torch.no_grad():
        model.lstm.weight_hh_l0.add_(0.5)
    inspected = w.inspect("lstm")
    ran = [c for c in inspected.checks if "as the model ran it" in c.name]
    assert ran and not all(c.passed for c in ran)
    assert inspected.passed is False


# -- 4. the Result -----------------------------------------------------------------------------


def test_result_text_html_and_attributes(recognizer):
    _, _, _, _, w = recognizer
    result = w.gates("lstm")
    text = str(result)
    lines = [line.rstrip() for line in text.splitlines()]
    assert "input: captured at lstm of DigitRecognizer" in lines
    assert any(line.startswith("Gates: every layer") for line in lines)
    assert any(line.startswith("0 fwd  i") for line in lines) and any(line.startswith("1 fwd  i") for line in lines)
    assert "\x1b[" not in text  # plain text, no colour codes
    html = result._repr_html_()
    assert html.lstrip().lower().startswith("<!doctype html") and "</html>" in html.lower()
    assert "captured at lstm of DigitRecognizer" in html
    assert result.passed is True
    assert isinstance(result.checks, list) and result.checks and all(c.passed for c in result.checks)
    assert len(result.layers) == 2
    assert "passed" in repr(result)
    with pytest.raises(AttributeError):
        result.no_such_field


def test_result_plot_writes_a_png(recognizer, tmp_path):
    pytest.importorskip("matplotlib")
    _, _, _, _, w = recognizer
    result = w.gates("lstm")
    path = tmp_path / "g.png"
    returned = result.plot(path)
    assert Path(returned) == path
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_result_plot_draws_its_own_capture_after_another_watch(tmp_path):
    """A Result's plot reruns the command on the capture it came from, also after the same model
    was watched again on another batch (the same words: "captured at lstm of OneLayer") and a
    command ran on that second capture."""
    torch.manual_seed(9)
    model = OneLayer().eval()
    batch1, batch2 = torch.randn(5, 2, 3), torch.randn(6, 3, 3) * 3
    with torch.no_grad(), lstm_cli.watch(model) as w1:
        model(batch1)
    with torch.no_grad(), lstm_cli.watch(model) as w2:
        model(batch2)
    r1 = w1.gates("lstm")
    before = r1.plot(str(tmp_path / "before.png"), export=str(tmp_path / "before.npz"))
    w2.gates("lstm")
    after = r1.plot(str(tmp_path / "after.png"), export=str(tmp_path / "after.npz"))
    assert Path(before).exists() and Path(after).exists()
    first, again = np.load(tmp_path / "before.npz"), np.load(tmp_path / "after.npz")
    assert np.array_equal(first["input"], batch1.numpy())  # the export holds the input that ran
    assert sorted(first.files) == sorted(again.files)
    for name in first.files:  # the same command on the same capture: the same tensors
        assert first[name].shape == again[name].shape and np.array_equal(first[name], again[name]), name


# -- 5. errors ---------------------------------------------------------------------------------


def one_line_usage_error(call, *fragments: str) -> str:
    with pytest.raises(UsageError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message.strip(), message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_unknown_and_non_lstm_names(recognizer):
    _, _, _, _, w = recognizer
    one_line_usage_error(lambda: w.gates("nope"), "nope", "lstm")
    one_line_usage_error(lambda: w.gates("head"), "head", "Linear", "lstm")
    one_line_usage_error(lambda: w.inspect("features.0"), "Conv2d")
    one_line_usage_error(lambda: w.captured("features"), "Sequential")


def test_errors_list_every_lstm_called():
    torch.manual_seed(10)
    model = TwoLSTMs()
    with torch.no_grad(), lstm_cli.watch(model) as w:
        model(torch.randn(4, 2, 3))
    one_line_usage_error(lambda: w.gates("nope"), "second", "first", "cell")
    one_line_usage_error(lambda: w.gates(), "second", "first", "cell")  # more than one: must choose
    message = one_line_usage_error(lambda: w.gates("unused"), "unused", "never called")
    assert "second" in message


def test_flags_contradicting_the_capture(recognizer):
    _, _, _, _, w = recognizer
    one_line_usage_error(lambda: w.spec("lstm", seq_len=3), "seq")
    one_line_usage_error(lambda: w.spec("lstm", batch_size=3))
    one_line_usage_error(lambda: w.gates("lstm", flags={"hidden_size": 7}))
    assert w.spec("lstm", seq_len=48, batch_size=8).seq_len == 48  # agreeing is fine
    assert w.spec("lstm", dtype="float64").dtype == "float64"


def test_unknown_flag_is_a_type_error(recognizer):
    _, _, _, _, w = recognizer
    with pytest.raises(TypeError, match="no_such_flag"):
        w.spec("lstm", no_such_flag=1)
    with pytest.raises(TypeError, match="no_such_flag"):
        w.gates("lstm", flags={"no_such_flag": 1})
    with pytest.raises(TypeError):
        w.gates("lstm", no_such_option=1)


# -- 6. import lstm_cli stays light ------------------------------------------------------------


def test_import_does_not_import_torch():
    code = "import lstm_cli, sys; assert 'torch' not in sys.modules, 'torch imported'; assert callable(lstm_cli.watch)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_units_on_a_watched_character_model_equal_the_cli(run_cli):
    """A character model in the user's own code (embedding -> the shipped 2-layer LSTM -> head)
    run on a text: w.units with that text equals `lstm-cli units --text` on the checkpoint,
    which builds the same input from the checkpoint's vocabulary and embedding."""
    state = torch.load(EXAMPLES / "char_lstm.pt", map_location="cpu", weights_only=True)
    vocab = state["vocab"]

    class CharModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(98, 32)
            self.lstm = nn.LSTM(32, 128, num_layers=2)
            self.head = nn.Linear(128, 98)

        def forward(self, ids):  # (L, 1)
            out, _ = self.lstm(self.embedding(ids))
            return self.head(out)

    model = CharModel().eval()
    model.load_state_dict({k: v for k, v in state.items() if k != "vocab"})
    text = "def f(x):\n    return x + 1\n" * 3
    ids = torch.tensor([vocab.index(ch) for ch in text]).unsqueeze(1)
    with lstm_cli.watch(model) as w, torch.no_grad():
        model(ids)
    got = w.units("lstm", text=text).to_dict()
    cli = run_cli("units", "--weights", str(EXAMPLES / "char_lstm.pt"), "--key", "lstm", "--text", text, "--json")
    assert cli.code == 0, cli.stderr
    expected = cli.json()
    assert got["features"] == expected["features"] and got["tracks"] == expected["tracks"]
    with pytest.raises(UsageError, match="give the text the model read"):
        w.units("lstm", text=text[:-1])
