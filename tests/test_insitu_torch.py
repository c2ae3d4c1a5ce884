"""Capturing what reaches an nn.LSTM / nn.LSTMCell inside a user's whole PyTorch model
(lstm_cli.insitu.torch_hooks) and loading such a model from the command line
(lstm_cli.insitu.torch_module).

Every expected value is computed here, independently of the capture: by calling the model's
submodules directly, by keeping what a loop saw, or by running nn.LSTM again."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lstm_cli.errors import UsageError
from lstm_cli.insitu.torch_hooks import Watch
from tests.shipped import recognizer_images, trained_recognizer
from lstm_cli.insitu.torch_module import capture_module, load_factory_module, load_model_input, load_state_into

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def one_line_error(call, *words: str) -> str:
    """`call()` raises a one-line UsageError containing every one of `words`."""
    with pytest.raises(UsageError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and message.strip() == message and message
    for word in words:
        assert word in message, (word, message)
    return message


def no_hooks_left(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_hooks_with_kwargs for m in model.modules())


# --- the shipped whole model: conv front-end -> nn.LSTM -> linear head ---------------------------


@pytest.fixture(scope="module")
def recognizer():
    return trained_recognizer(), recognizer_images(8)


def test_recognizer_capture_is_the_conv_output_and_the_lstm_result(recognizer):
    model, images = recognizer
    with torch.no_grad():
        plain = model(images)
        with Watch(model) as watch:
            watched = model(images)
        # The front-end by hand, one submodule at a time (recognizer.py: conv, relu, pool, conv,
        # relu, pool), then column t of the (N, C, 4, T) maps as step t's C * 4 features.
        maps = images
        for layer in model.features:
            maps = layer(maps)
        n, channels, rows, steps = maps.shape
        expected_x = torch.stack([maps[:, :, :, t].reshape(n, channels * rows) for t in range(steps)])
        out, (h_n, c_n) = model.lstm(expected_x)
    assert torch.equal(plain, watched)  # the hooks changed nothing
    assert no_hooks_left(model)
    assert watch.names == ["lstm"]
    assert watch.module("lstm") is model.lstm
    captured = watch.captured("lstm")
    assert captured.x.shape == (48, 8, 64)
    assert torch.equal(captured.x, expected_x)
    assert captured.lengths is None and captured.h0 is None and captured.c0 is None
    assert captured.batch_first is False and not captured.unbatched
    torch.testing.assert_close(captured.output, out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(captured.h_n, h_n, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(captured.c_n, c_n, rtol=1e-5, atol=1e-6)
    assert captured.where == "captured at lstm of DigitRecognizer"
    assert captured.notes == ()


# --- hooks come off ------------------------------------------------------------------------------


class Tiny(nn.Module):
    def __init__(self, batch_first=False):
        super().__init__()
        torch.manual_seed(0)
        self.lstm = nn.LSTM(3, 4, batch_first=batch_first)
        self.head = nn.Linear(4, 2)

    def forward(self, x, hx=None):
        out, _ = self.lstm(x, hx)
        return self.head(out)


def test_hooks_removed_when_the_body_raises():
    model = Tiny()
    with pytest.raises(ValueError, match="boom"):
        with Watch(model):
            assert len(model.lstm._forward_hooks_with_kwargs) == 1  # they were on
            model(torch.randn(5, 2, 3))
            raise ValueError("boom")
    assert no_hooks_left(model)
    with pytest.raises(RuntimeError):  # the model itself raising (wrong feature size)
        with Watch(model):
            model(torch.randn(5, 2, 7))
    assert no_hooks_left(model)


def test_capture_is_a_copy_of_what_the_lstm_saw():
    model = Tiny()
    x = torch.randn(5, 2, 3)
    seen = x.clone()
    with torch.no_grad(), Watch(model) as watch:
        model(x)
    x.add_(1.0)  # the user's code changing its tensor in place afterwards
    assert torch.equal(watch.captured().x, seen)


def test_gradients_unchanged_under_watch():
    model = Tiny()
    x = torch.randn(5, 2, 3)
    grads = []
    for watched in (False, True):
        model.zero_grad()
        if watched:
            with Watch(model):
                model(x).square().sum().backward()
        else:
            model(x).square().sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_a_failing_capture_never_breaks_the_run(monkeypatch):
    from lstm_cli.insitu import torch_hooks

    def broken(self, args, kwargs, result):
        raise IndexError("planted\nsecond line")

    monkeypatch.setattr(torch_hooks._LSTMRecord, "add", broken)
    model = Tiny()
    x = torch.randn(5, 2, 3)
    with torch.no_grad():
        plain = model(x)
        with Watch(model) as watch:
            watched = model(x)
    assert torch.equal(plain, watched) and watch.names == ["lstm"]
    one_line_error(lambda: watch.captured("lstm"), "could not be captured", "IndexError: planted")


def test_torch_compile_wrapper_is_watched_by_the_original_names():
    model = Tiny()
    compiled = torch.compile(model, backend="eager")  # no C compiler needed; hooks fire the same
    x = torch.randn(5, 2, 3)
    with torch.no_grad(), Watch(compiled) as watch:
        compiled(x)
    assert watch.names == ["lstm"] and torch.equal(watch.captured().x, x)
    assert watch.captured().where == "captured at lstm of Tiny"
    assert no_hooks_left(model)


# --- packed input, hx by keyword -----------------------------------------------------------------


class Packed(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.lstm = nn.LSTM(3, 5, num_layers=2, bidirectional=True)

    def forward(self, x, lengths, h0, c0):
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        out, (h_n, c_n) = self.lstm(packed, hx=(h0, c0))  # hx by keyword: with_kwargs hooks see it
        padded, _ = pad_packed_sequence(out)
        return padded, h_n, c_n


def test_packed_input_unsorted_lengths_and_state():
    model = Packed().eval()
    torch.manual_seed(2)
    lengths = [4, 7, 2]  # unsorted: the pack reorders, the capture must not
    x = torch.randn(7, 3, 3)
    h0, c0 = torch.randn(4, 3, 5), torch.randn(4, 3, 5)
    with torch.no_grad():
        plain = model(x, lengths, h0, c0)
        with Watch(model) as watch:
            watched = model(x, lengths, h0, c0)
    assert all(torch.equal(a, b) for a, b in zip(plain, watched))
    captured = watch.captured("lstm")
    expected_x = x.clone()
    for row, length in enumerate(lengths):
        expected_x[length:, row] = 0.0  # padding past each length is zeros
    assert torch.equal(captured.x, expected_x)
    assert captured.lengths == (4, 7, 2)
    assert torch.equal(captured.h0, h0) and torch.equal(captured.c0, c0)
    assert torch.equal(captured.output, plain[0])  # what the model got back, padded
    assert torch.equal(captured.h_n, plain[1]) and torch.equal(captured.c_n, plain[2])
    # nn.LSTM rerun on the capture reproduces the capture's outputs.
    with torch.no_grad():
        out, (h_n, c_n) = model.lstm(pack_padded_sequence(captured.x, list(captured.lengths), enforce_sorted=False),
                                     (captured.h0, captured.c0))
    torch.testing.assert_close(pad_packed_sequence(out)[0], captured.output, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h_n, captured.h_n, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c_n, captured.c_n, rtol=1e-5, atol=1e-6)


# --- several calls of one nn.LSTM ----------------------------------------------------------------


def test_several_calls_merge_along_the_batch():
    model = Tiny(batch_first=True)
    torch.manual_seed(3)
    first, second = torch.randn(2, 5, 3), torch.randn(3, 2, 3)
    state = (torch.randn(1, 3, 4), torch.randn(1, 3, 4))
    with torch.no_grad():
        out1, (h1, c1) = model.lstm(first)
        out2, (h2, c2) = model.lstm(second, state)
        with Watch(model) as watch:
            model(first)
            model(second, state)
    captured = watch.captured("lstm")
    assert captured.batch_first and captured.x.shape == (5, 5, 3)
    assert captured.lengths == (5, 5, 2, 2, 2)
    assert torch.equal(captured.x[:2], first)
    assert torch.equal(captured.x[2:, :2], second) and not captured.x[2:, 2:].any()
    assert torch.equal(captured.output[:2], out1)
    assert torch.equal(captured.output[2:, :2], out2) and not captured.output[2:, 2:].any()
    assert torch.equal(captured.h_n, torch.cat([h1, h2], 1)) and torch.equal(captured.c_n, torch.cat([c1, c2], 1))
    # the first call passed no state: zeros, as nn.LSTM reads hx=None
    assert torch.equal(captured.h0, torch.cat([torch.zeros(1, 2, 4), state[0]], 1))
    assert torch.equal(captured.c0, torch.cat([torch.zeros(1, 2, 4), state[1]], 1))
    assert any("2 calls" in note for note in captured.notes)


def test_max_sequences_caps_and_says_so():
    model = Tiny()
    torch.manual_seed(4)
    batches = [torch.randn(6, 3, 3) for _ in range(3)]
    with torch.no_grad(), Watch(model, max_sequences=4) as watch:
        for batch in batches:
            model(batch)
    captured = watch.captured("lstm")
    assert captured.x.shape == (6, 4, 3) and captured.h_n.shape == (1, 4, 4)
    assert torch.equal(captured.x, torch.cat([batches[0], batches[1][:, :1]], 1))
    assert "kept the first 4 of 9 sequences (max_sequences)" in captured.notes


def test_unbatched_calls():
    lstm = nn.LSTM(3, 4)
    torch.manual_seed(5)
    x = torch.randn(6, 3)
    with torch.no_grad():
        out, (h_n, c_n) = lstm(x)
        with Watch(lstm) as watch:
            lstm(x)
    assert watch.names == ["LSTM"]  # the model itself is named by its class
    captured = watch.captured()
    assert captured.unbatched and torch.equal(captured.x, x)
    assert torch.equal(captured.output, out) and torch.equal(captured.h_n, h_n) and torch.equal(captured.c_n, c_n)
    with torch.no_grad(), Watch(lstm) as watch:  # mixed: the unbatched call becomes a batch of one
        lstm(x)
        lstm(torch.zeros(6, 2, 3))
    captured = watch.captured("")
    assert captured.x.shape == (6, 3, 3) and torch.equal(captured.x[:, 0], x)
    assert torch.equal(captured.h_n[:, 0], h_n)


# --- nn.LSTMCell loops ---------------------------------------------------------------------------


class CellLoop(nn.Module):
    """The seed walk-through's loop: one nn.LSTMCell over time, state passed back in. `clone`:
    the loop copies its state between steps (the value rule must still chain them)."""

    def __init__(self, clone=False):
        super().__init__()
        torch.manual_seed(6)
        self.cell = nn.LSTMCell(3, 4)
        self.clone = clone
        self.seen = []  # (x_t, h_t, c_t) as the loop saw them

    def forward(self, xs, state=None):
        for x in xs:
            h, c = self.cell(x, state)
            self.seen.append((x.clone(), h.clone(), c.clone()))
            state = (h.clone(), c.clone()) if self.clone else (h, c)
        return state


@pytest.mark.parametrize("clone", [False, True])
def test_cell_loop_is_one_sequence(clone):
    model = CellLoop(clone)
    torch.manual_seed(7)
    xs = torch.randn(5, 2, 3)
    h0, c0 = torch.randn(2, 4), torch.randn(2, 4)
    with torch.no_grad(), Watch(model) as watch:
        model(xs, (h0, c0))
    captured = watch.captured("cell")
    assert captured.x.shape == (5, 2, 3) and captured.lengths is None
    assert torch.equal(captured.x, torch.stack([x for x, _, _ in model.seen]))
    assert torch.equal(captured.h0, h0[None]) and torch.equal(captured.c0, c0[None])
    assert torch.equal(captured.output, torch.stack([h for _, h, _ in model.seen]))
    assert torch.equal(captured.h_n, model.seen[-1][1][None]) and torch.equal(captured.c_n, model.seen[-1][2][None])
    # The same steps through nn.LSTM with the cell's weights.
    lstm = nn.LSTM(3, 4)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(lstm, f"{name}_l0").copy_(getattr(model.cell, name))
        out, _ = lstm(captured.x, (captured.h0, captured.c0))
    torch.testing.assert_close(out, captured.output, rtol=1e-5, atol=1e-6)


def test_two_cell_loops_are_two_sequences():
    model = CellLoop()
    torch.manual_seed(8)
    first, second = torch.randn(5, 2, 3), torch.randn(3, 2, 3)
    fresh = (torch.randn(2, 4), torch.randn(2, 4))  # a new state, not what the first loop ended with
    with torch.no_grad(), Watch(model) as watch:
        model(first)  # starts from hx=None
        model(second, fresh)
    captured = watch.captured("cell")
    seen = torch.stack([h for _, h, _ in model.seen])
    assert captured.x.shape == (5, 4, 3) and captured.lengths == (5, 5, 3, 3)
    assert torch.equal(captured.x[:, :2], first)
    assert torch.equal(captured.x[:3, 2:], second) and not captured.x[3:, 2:].any()
    assert torch.equal(captured.output[:, :2], seen[:5]) and torch.equal(captured.output[:3, 2:], seen[5:])
    assert not captured.output[3:, 2:].any()
    assert torch.equal(captured.h0[0], torch.cat([torch.zeros(2, 4), fresh[0]]))
    assert torch.equal(captured.c0[0], torch.cat([torch.zeros(2, 4), fresh[1]]))
    assert torch.equal(captured.h_n[0], torch.cat([seen[4], seen[7]]))
    assert any("8 nn.LSTMCell calls chained into 2 sequences" in note for note in captured.notes)


def test_a_loop_resumed_from_the_last_state_is_one_sequence():
    model = CellLoop()
    torch.manual_seed(9)
    first, second = torch.randn(5, 2, 3), torch.randn(3, 2, 3)
    with torch.no_grad(), Watch(model) as watch:
        state = model(first)
        model(second, state)  # the rule: hx is what the previous call returned -> continues
    captured = watch.captured("cell")
    assert captured.x.shape == (8, 2, 3) and torch.equal(captured.x, torch.cat([first, second]))
    assert captured.h0 is None and captured.c0 is None


def test_a_state_changed_in_place_starts_a_new_sequence():
    """The same tensor objects passed back, but halved in place after step 3: steps 4-5 are no
    longer the cell's own recurrence, so they form a second sequence starting from that state."""
    torch.manual_seed(13)
    cell = nn.LSTMCell(3, 4)
    xs = torch.randn(5, 2, 3)
    starts = []
    with torch.no_grad(), Watch(cell) as watch:
        state = None
        for t, x in enumerate(xs):
            state = cell(x, state)
            if t == 2:
                state[0].mul_(0.5)
                state[1].mul_(0.5)
                starts = [state[0].clone(), state[1].clone()]
    captured = watch.captured()
    assert captured.lengths == (3, 3, 2, 2)
    assert torch.equal(captured.x[:, :2], xs[:3]) and torch.equal(captured.x[:2, 2:], xs[3:])
    assert torch.equal(captured.h0[0], torch.cat([torch.zeros(2, 4), starts[0]]))
    assert torch.equal(captured.c0[0], torch.cat([torch.zeros(2, 4), starts[1]]))


def test_stacked_cells_and_unbatched_steps_and_max_steps():
    torch.manual_seed(10)
    lower, upper = nn.LSTMCell(3, 4), nn.LSTMCell(4, 2)
    model = nn.ModuleDict({"lower": lower, "upper": upper})
    xs = torch.randn(6, 3)  # unbatched: (in,) per step
    seen_upper = []
    with torch.no_grad(), Watch(model, max_steps=4) as watch:
        s1 = s2 = None
        for x in xs:
            s1 = lower(x, s1)
            s2 = upper(s1[0], s2)
            seen_upper.append(s2[0].clone())
    assert watch.names == ["lower", "upper"]
    captured = watch.captured("upper")
    assert captured.x.shape == (4, 1, 4)  # batch of one; 4 calls kept of 6
    assert torch.equal(captured.output[:, 0], torch.stack(seen_upper[:4]))
    assert "kept the first 4 of 6 calls (max_steps)" in captured.notes
    assert torch.equal(watch.captured("lower").x[:, 0], xs[:4])


# --- TorchScript ---------------------------------------------------------------------------------


class Scriptable(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lstm = nn.LSTM(3, 4)

    def forward(self, x):
        out, _ = self.lstm(x)
        return out


torchscript_warnings = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")


@torchscript_warnings
def test_traced_module_hooks_do_not_fire():
    """The finding behind the refusal: a traced model's LSTM runs inside the compiled graph, so a
    hook on it never fires (and a scripted one refuses register_forward_hook outright)."""
    model = Scriptable().eval()
    x = torch.randn(5, 2, 3)
    traced = torch.jit.trace(model, (x,))
    fired = []
    traced.lstm.register_forward_hook(lambda *a: fired.append(1))
    traced(x)
    assert fired == []
    with pytest.raises(RuntimeError, match="not supported on ScriptModules"):
        torch.jit.script(model).lstm.register_forward_hook(lambda *a: None)


@torchscript_warnings
def test_torchscript_is_refused_in_one_line():
    model = Scriptable().eval()
    x = torch.randn(5, 2, 3)
    one_line_error(lambda: Watch(torch.jit.trace(model, (x,))), "TorchScript", "traced", "eager")
    one_line_error(lambda: Watch(torch.jit.script(model)), "TorchScript", "eager")

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = torch.jit.script(nn.LSTM(3, 4))

    one_line_error(lambda: Watch(Wrapper()), "TorchScript", "'inner'")
    one_line_error(lambda: capture_module(torch.jit.script(model), (x,), {}, None, "x.pt"), "TorchScript")


# --- torch_module: the CLI's loaders -------------------------------------------------------------

MODEL_SOURCE = '''
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x, hx=None):
        out, _ = self.lstm(x, hx)
        return self.head(out)

class Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.LSTM(3, 4)
        self.dec = nn.LSTMCell(4, 4)
        self.unused = nn.LSTM(3, 4)

    def forward(self, x):
        out, _ = self.enc(x)
        return self.dec(out[-1])

class Boom(nn.Module):
    def forward(self, x):
        raise ValueError("bad input shape\\nsecond line")

def build():
    return Net()

def two():
    return Two()

def boom():
    return Boom()

def needs_args(size):
    return Net()

def raises():
    raise KeyError("no config")

def not_a_module():
    return {"a": 1}

NUMBER = 3
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module file in tmp_path (the current folder) under a name no other test uses."""
    name = f"usermodel_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(MODEL_SOURCE)
    (tmp_path / f"{name}_broken.py").write_text("import not_installed_anywhere_xyz\n")
    (tmp_path / f"{name}_syntax.py").write_text("def (:\n")
    monkeypatch.chdir(tmp_path)
    yield name
    for suffix in ("", "_broken", "_syntax"):
        sys.modules.pop(name + suffix, None)


def test_factory_loads_and_restores_sys_path(user_module):
    before = list(sys.path)
    model = load_factory_module(f"{user_module}:build")
    assert sys.path == before
    assert isinstance(model, nn.Module) and type(model).__name__ == "Net"
    assert isinstance(model.lstm, nn.LSTM)


def test_factory_errors_are_one_line(user_module):
    before = list(sys.path)
    one_line_error(lambda: load_factory_module("no_colon_here"), "MODULE:FACTORY")
    one_line_error(lambda: load_factory_module("a:b:c"), "MODULE:FACTORY")
    one_line_error(lambda: load_factory_module(f"{user_module}:"), "MODULE:FACTORY")
    one_line_error(lambda: load_factory_module("nowhere_module_xyz:build"), "no module named 'nowhere_module_xyz'")
    one_line_error(lambda: load_factory_module(f"{user_module}_broken:build"),
                   f"importing {user_module}_broken failed", "ModuleNotFoundError", "not_installed_anywhere_xyz")
    one_line_error(lambda: load_factory_module(f"{user_module}_syntax:build"), "SyntaxError")
    one_line_error(lambda: load_factory_module(f"{user_module}:missing"), "no attribute 'missing'")
    one_line_error(lambda: load_factory_module(f"{user_module}:NUMBER"), "int", "not a function")
    one_line_error(lambda: load_factory_module(f"{user_module}:raises"), "raises() failed", "KeyError", "no config")
    one_line_error(lambda: load_factory_module(f"{user_module}:needs_args"), "needs_args() failed", "TypeError")
    one_line_error(lambda: load_factory_module(f"{user_module}:not_a_module"), "returned a dict", "nn.Module")
    assert sys.path == before


def test_load_state_into(user_module, tmp_path):
    torch.manual_seed(11)
    source = load_factory_module(f"{user_module}:build")
    saved = {k: v.clone() for k, v in source.state_dict().items()}
    for i, wrap in enumerate([lambda s: s, lambda s: {"state_dict": s, "epoch": 3}, lambda s: {"model": s}]):
        torch.save(wrap(saved), tmp_path / f"w{i}.pt")
        target = load_factory_module(f"{user_module}:build")
        load_state_into(target, tmp_path / f"w{i}.pt")
        assert all(torch.equal(target.state_dict()[k], v) for k, v in saved.items())
    target = load_factory_module(f"{user_module}:build")
    partial = {k: v for k, v in saved.items() if k != "head.bias"} | {"extra.weight": torch.zeros(2)}
    torch.save(partial, tmp_path / "partial.pt")
    one_line_error(lambda: load_state_into(target, tmp_path / "partial.pt"),
                   "does not fit Net", "missing head.bias (2)", "unexpected extra.weight (2)")
    torch.save(saved | {"head.bias": torch.zeros(5)}, tmp_path / "shape.pt")
    one_line_error(lambda: load_state_into(target, tmp_path / "shape.pt"), "head.bias is (5) in the file, (2) in the model")
    torch.save([1, 2], tmp_path / "list.pt")
    one_line_error(lambda: load_state_into(target, tmp_path / "list.pt"), "expected a state_dict", "list")
    torch.save(nn.Linear(2, 2), tmp_path / "pickled.pt")  # a whole pickled module: refused, no code runs
    one_line_error(lambda: load_state_into(target, tmp_path / "pickled.pt"), "pickled.pt", "refuses")
    one_line_error(lambda: load_state_into(target, tmp_path / "absent.pt"), "--weights", "no such file")


def test_load_model_input(tmp_path):
    t = torch.randn(4, 2, 3)
    torch.save(t, tmp_path / "t.pt")
    args, kwargs = load_model_input(tmp_path / "t.pt")
    assert len(args) == 1 and torch.equal(args[0], t) and kwargs == {}
    torch.save((t, 5), tmp_path / "tuple.pt")
    args, kwargs = load_model_input(tmp_path / "tuple.pt")
    assert len(args) == 2 and torch.equal(args[0], t) and args[1] == 5 and kwargs == {}
    torch.save([t], tmp_path / "list.pt")
    args, _ = load_model_input(tmp_path / "list.pt")
    assert len(args) == 1 and torch.equal(args[0], t)
    torch.save({"x": t}, tmp_path / "dict.pt")
    args, kwargs = load_model_input(tmp_path / "dict.pt")
    assert args == () and list(kwargs) == ["x"] and torch.equal(kwargs["x"], t)
    array = np.arange(24, dtype=np.float32).reshape(4, 2, 3)
    np.save(tmp_path / "a.npy", array)
    args, kwargs = load_model_input(tmp_path / "a.npy")
    assert len(args) == 1 and np.array_equal(args[0].numpy(), array) and args[0].dtype == torch.float32
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    one_line_error(lambda: load_model_input(tmp_path / "objects.npy"), "--model-input", ".npy")
    torch.save(7, tmp_path / "int.pt")
    one_line_error(lambda: load_model_input(tmp_path / "int.pt"), "holds an int")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file at all")
    one_line_error(lambda: load_model_input(tmp_path / "junk.pt"), "--model-input")
    one_line_error(lambda: load_model_input(tmp_path / "absent.npy"), "--model-input", "no such file")


def test_capture_module(user_module):
    model = load_factory_module(f"{user_module}:build").train()
    torch.manual_seed(12)
    x = torch.randn(5, 2, 3)
    captured, lstm = capture_module(model, (x,), {}, None, "input.pt")
    assert lstm is model.lstm and not model.training
    assert torch.equal(captured.x, x) and captured.h0 is None
    with torch.no_grad():
        out, (h_n, _) = model.lstm(x)
    assert torch.equal(captured.output, out) and torch.equal(captured.h_n, h_n)
    assert captured.where == "captured at lstm of Net running input.pt"
    state = (torch.randn(1, 2, 4), torch.randn(1, 2, 4))
    captured, _ = capture_module(model, (x,), {"hx": state}, "lstm", "input.pt")
    assert torch.equal(captured.h0, state[0]) and torch.equal(captured.c0, state[1])


def test_capture_module_errors(user_module):
    two = load_factory_module(f"{user_module}:two")
    x = torch.randn(5, 2, 3)
    one_line_error(lambda: capture_module(two, (x,), {}, None, "in.pt"), "called 2 LSTMs: enc, dec")
    one_line_error(lambda: capture_module(two, (x,), {}, "nope", "in.pt"), "'nope'", "enc, dec")
    one_line_error(lambda: capture_module(two, (x,), {}, "unused", "in.pt"), "'unused'", "never called", "enc, dec")
    net = load_factory_module(f"{user_module}:build")
    one_line_error(lambda: capture_module(net, (x,), {}, "head", "in.pt"), "'head' is a Linear", "lstm")
    captured, cell = capture_module(two, (x,), {}, "dec", "in.pt")
    assert cell is two.dec and captured.x.shape == (1, 2, 4)
    boom = load_factory_module(f"{user_module}:boom")
    one_line_error(lambda: capture_module(boom, (x,), {}, None, "in.pt"),
                   "running Boom on in.pt failed: ValueError: bad input shape")
    assert no_hooks_left(boom)
    one_line_error(lambda: capture_module(nn.Sequential(nn.Linear(3, 3)), (x,), {}, None, "in.pt"),
                   "called no nn.LSTM")
