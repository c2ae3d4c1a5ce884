"""--weights, --key, --input, --save-weights: real modules saved every supported way, loaded
back and checked against running the original module directly; every bad file refused."""

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lstm_cli.cli import spec_from_flags
from lstm_cli.model import prepare, run_lstm
from lstm_cli.spec import LSTMSpec


def flags(**changes):
    defaults = {name: field.default for name, field in LSTMSpec.__dataclass_fields__.items()}
    return {**defaults, "lengths": None, **changes}


class EncoderDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(5, 16)
        self.encoder = nn.LSTM(16, 32, num_layers=2)
        self.decoder = nn.LSTM(32, 24, batch_first=True)
        self.head = nn.Linear(24, 3)


class Tagger(nn.Module):
    """A bidirectional, projected LSTM without bias inside a larger model."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(7, 12), nn.Tanh())
        self.rnn = nn.LSTM(12, 10, num_layers=3, bidirectional=True, proj_size=4, bias=False)


def save_every_way(module: nn.Module, folder: Path) -> dict[str, Path]:
    from safetensors.torch import save_file

    state = module.state_dict()
    paths = {
        "state_dict": folder / "plain.pt",
        "lightning": folder / "lightning.ckpt",
        "prefixed": folder / "prefixed.pth",
        "safetensors": folder / "model.safetensors",
        "npz": folder / "model.npz",
    }
    torch.save(state, paths["state_dict"])
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 3}, paths["lightning"])
    torch.save({f"net.{k}": v for k, v in state.items()}, paths["prefixed"])
    save_file({k: v.contiguous() for k, v in state.items()}, str(paths["safetensors"]))
    np.savez(paths["npz"], **{k: v.numpy() for k, v in state.items()})
    return paths


PREFIX_OF = {"state_dict": "", "lightning": "state_dict.model.", "prefixed": "net.", "safetensors": "", "npz": ""}


@pytest.mark.parametrize("way", list(PREFIX_OF))
def test_tagger_loads_every_way_and_matches_the_original(tmp_path, way):
    torch.manual_seed(1)
    tagger = Tagger().eval()
    path = save_every_way(tagger, tmp_path)[way]
    spec = spec_from_flags(flags(weights=str(path), device="cpu"))
    assert (spec.input_size, spec.hidden_size, spec.num_layers) == (12, 10, 3)
    assert spec.bidirectional and spec.proj_size == 4 and not spec.bias
    assert spec.key == PREFIX_OF[way] + "rnn"
    prepared = prepare(spec)
    with torch.no_grad():
        expected_out, (expected_h, expected_c) = tagger.rnn(prepared.x)
    got = run_lstm(prepared.lstm, prepared.x, spec)
    # The same weights in other buffers: equal up to the GEMM's last bit, which on some CPUs
    # follows memory alignment (the weights themselves are compared exactly).
    assert all(torch.equal(prepared.lstm.state_dict()[k], v) for k, v in tagger.rnn.state_dict().items())
    torch.testing.assert_close((got.output, got.h_n, got.c_n), (expected_out, expected_h, expected_c), rtol=1e-6, atol=1e-7)


def test_two_lstms_need_a_key_and_each_key_picks_the_right_one(tmp_path, run_cli):
    torch.manual_seed(2)
    model = EncoderDecoder().eval()
    path = save_every_way(model, tmp_path)["lightning"]
    result = run_cli("inspect", "--weights", str(path))
    assert result.code == 2
    assert result.stderr.splitlines() == [
        f"lstm-cli: error: --weights {path} holds 2 LSTMs; pick one with --key: "
        "'state_dict.model.encoder': input 16, hidden 32, 2 layer(s); "
        "'state_dict.model.decoder': input 32, hidden 24, 1 layer(s)"
    ]
    for key, module in (("state_dict.model.encoder", model.encoder), ("state_dict.model.decoder", model.decoder)):
        doc = run_cli("inspect", "--weights", str(path), "--key", key, "--json").json()
        assert doc["config"]["key"] == key
        assert doc["total_parameters"] == sum(p.numel() for p in module.parameters())
        assert [p["shape"] for p in doc["parameters"]] == [list(p.shape) for p in module.parameters()]


def test_compare_cell_runs_on_a_loaded_model(tmp_path, run_cli):
    torch.manual_seed(3)
    path = save_every_way(Tagger(), tmp_path)["safetensors"]
    doc = run_cli("compare-cell", "--weights", str(path), "--json", "--repeat", "0").json()
    assert doc["passed"] and doc["config"]["hidden_size"] == 10
    assert len(doc["layers"]) == 6


def test_flags_that_contradict_the_file_are_errors(tmp_path, run_cli):
    path = tmp_path / "dec.pt"
    torch.save(nn.LSTM(8, 24).state_dict(), path)
    for args, message in (
        (["--hidden-size", "99"], "--hidden-size 99 contradicts --weights"),
        (["--num-layers", "2"], "--num-layers 2 contradicts"),
        (["--bidirectional"], "--bidirectional on contradicts"),
        (["--no-bias"], "--bias off contradicts"),
        (["--input-size", "9"], "--input-size 9 contradicts"),
    ):
        result = run_cli("inspect", "--weights", str(path), *args)
        assert result.code == 2 and message in result.stderr, (args, result.stderr)
    # The same values given explicitly are fine.
    assert run_cli("inspect", "--weights", str(path), "--hidden-size", "24", "--json").code == 0


def test_dtype_follows_the_file_unless_given(tmp_path, run_cli):
    path = tmp_path / "double.pt"
    torch.save(nn.LSTM(4, 3).double().state_dict(), path)
    assert run_cli("inspect", "--weights", str(path), "--json").json()["dtype"] == "float64"
    assert run_cli("inspect", "--weights", str(path), "--dtype", "float32", "--json").json()["dtype"] == "float32"


def test_input_file_sets_shapes_and_is_what_runs(tmp_path, run_cli):
    torch.manual_seed(4)
    x = torch.randn(6, 2, 100)
    np.save(tmp_path / "x.npy", x.numpy())
    torch.save(x.transpose(0, 1).clone(), tmp_path / "xbf.pt")
    doc = run_cli("inspect", "--input", str(tmp_path / "x.npy"), "--json").json()
    assert doc["tensors"]["input"]["shape"] == [6, 2, 100] and doc["tensors"]["output"]["shape"] == [6, 2, 20]
    assert (doc["config"]["seq_len"], doc["config"]["batch_size"]) == (6, 2)
    doc = run_cli("inspect", "--input", str(tmp_path / "xbf.pt"), "--batch-first", "--json").json()
    assert doc["tensors"]["input"]["shape"] == [2, 6, 100]
    torch.save(x[:, 0].clone(), tmp_path / "x2d.pt")
    doc = run_cli("inspect", "--input", str(tmp_path / "x2d.pt"), "--json").json()
    assert doc["config"]["unbatched"] is True and doc["tensors"]["h_n"]["shape"] == [4, 20]

    spec = spec_from_flags(flags(input=str(tmp_path / "x.npy"), device="cpu"))
    prepared = prepare(spec)
    assert torch.equal(prepared.x, x)
    with torch.no_grad():
        expected, _ = prepared.lstm(x)
    torch.testing.assert_close(run_lstm(prepared.lstm, prepared.x, spec).output, expected, rtol=1e-6, atol=1e-7)


def test_saved_weights_rerun_to_the_same_numbers(tmp_path, run_cli):
    for suffix in (".pt", ".npz", ".safetensors"):
        path = tmp_path / f"run{suffix}"
        first = run_cli("compare-cell", "--bidirectional", "--proj-size", "3", "--seed", "11",
                        "--save-weights", str(path), "--json", "--repeat", "0")
        assert first.code == 0 and path.exists()
        again = run_cli("compare-cell", "--weights", str(path), "--seed", "11", "--json", "--repeat", "0")
        a, b = first.json(), again.json()
        assert a["layers"] == b["layers"] and a["output_max_abs_diff"] == b["output_max_abs_diff"]
    saved = torch.load(tmp_path / "run.pt", weights_only=True)
    random_lstm = prepare(LSTMSpec(seed=11, device="cpu", bidirectional=True, proj_size=3)).lstm
    assert saved.keys() == random_lstm.state_dict().keys()
    assert all(torch.equal(saved[k], v) for k, v in random_lstm.state_dict().items())


def test_a_hostile_pickle_never_runs(tmp_path, run_cli):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"weight_ih_l0": Exploit()}, path)
    for flag in ("--weights", "--input"):
        result = run_cli("inspect", flag, str(path))
        assert result.code == 2
        assert "could run code, so lstm-cli refuses" in result.stderr and "system" in result.stderr
        assert ("--trust-checkpoint" in result.stderr) == (flag == "--weights")
        assert len(result.stderr.splitlines()) == 1
    assert not marker.exists()


def _bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    cases = {}

    def case(name, path, message):
        cases[name] = (path, message)

    case("missing", folder / "nope.pt", "no such file")
    (folder / "empty.pt").write_bytes(b"")
    case("empty", folder / "empty.pt", "the file is empty")
    (folder / "text.pt").write_text("hello, not a checkpoint")
    case("not a checkpoint", folder / "text.pt", "a text file, not model weights")
    torch.save(nn.LSTM(3, 2).state_dict(), folder / "whole.pt")
    data = (folder / "whole.pt").read_bytes()
    (folder / "truncated.pt").write_bytes(data[: len(data) // 2])
    case("truncated zip", folder / "truncated.pt", "a truncated or damaged zip archive")
    torch.save(nn.Linear(3, 2).state_dict(), folder / "linear.pt")
    case("no LSTM", folder / "linear.pt", "PyTorch state_dict (torch.save) with no LSTM in it")
    partial = nn.LSTM(3, 2, num_layers=2).state_dict()
    del partial["weight_hh_l1"]
    torch.save(partial, folder / "partial.pt")
    case("partial LSTM", folder / "partial.pt", "is missing weight_hh_l1")
    mixed = nn.LSTM(3, 2, num_layers=2).state_dict()
    mixed["weight_ih_l1"] = torch.zeros(8, 5)
    torch.save(mixed, folder / "mixed.pt")
    case("mismatched layers", folder / "mixed.pt", "weight_ih_l1 is (8, 5) but this LSTM needs (8, 2)")
    torch.save(nn.GRU(3, 2).state_dict(), folder / "gru.pt")
    case("a GRU", folder / "gru.pt", "the state_dict is an nn.GRU with hidden size 2, not an LSTM")
    nan = nn.LSTM(3, 2).state_dict()
    nan["bias_hh_l0"][1] = float("nan")
    torch.save(nan, folder / "nan.pt")
    case("NaN weights", folder / "nan.pt", "bias_hh_l0 has 1 NaN/Inf value(s)")
    (folder / "broken.npz").write_bytes(b"PK\x03\x04 broken")
    case("broken npz", folder / "broken.npz", "a truncated or damaged zip archive")
    case("a directory", folder, "is a directory")
    return cases


def test_every_bad_weights_file_is_one_line_exit_2(tmp_path, run_cli):
    for name, (path, message) in _bad_files(tmp_path).items():
        result = run_cli("inspect", "--weights", str(path))
        assert result.code == 2, name
        assert result.stdout == "" and len(result.stderr.splitlines()) == 1, (name, result.stderr)
        assert message in result.stderr, (name, result.stderr)
        assert "Traceback" not in result.stderr


def test_bad_inputs(tmp_path, run_cli):
    torch.save(nn.LSTM(3, 2).state_dict(), tmp_path / "small.pt")
    np.save(tmp_path / "rank4.npy", np.zeros((2, 2, 2, 3), dtype=np.float32))
    np.save(tmp_path / "ints.npy", np.zeros((4, 2, 3), dtype=np.int64))
    np.save(tmp_path / "wide.npy", np.zeros((4, 2, 5), dtype=np.float32))
    bad = np.zeros((4, 2, 3), dtype=np.float32)
    bad[2, 1, 0] = np.inf
    np.save(tmp_path / "inf.npy", bad)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    torch.save({"x": torch.zeros(3)}, tmp_path / "dict.pt")
    weights = ["--weights", str(tmp_path / "small.pt")]
    for args, message in (
        (["--input", str(tmp_path / "rank4.npy")], "has shape (2, 2, 2, 3); expected (L, N, input)"),
        (["--input", str(tmp_path / "ints.npy")], "has dtype int64"),
        ([*weights, "--input", str(tmp_path / "wide.npy")], "has 5 features per step but the model takes input_size 3"),
        (["--input", str(tmp_path / "inf.npy")], "has 1 NaN/Inf value(s) (first at [2, 1, 0])"),
        (["--input", str(tmp_path / "objects.npy")], "refusing to load it"),
        (["--input", str(tmp_path / "dict.pt")], "holds a dict, not a single tensor"),
        (["--input", str(tmp_path / "wide.npy"), "--seq-len", "9"], "--seq-len 9 contradicts --input"),
        (["--input", str(tmp_path / "wide.npy"), "--lengths", "4,2,1"], "--lengths has 3 values but --batch-size is 2"),
        (["--key", "rnn"], "--key picks an LSTM inside --weights; give --weights too"),
        ([*weights, "--key", "encoder"], "--key 'encoder': no LSTM of that name"),
        (["--save-weights", str(tmp_path / "out.txt")], "--save-weights file must end in .pt or .pth or .safetensors or .npz"),
        (["--save-weights", str(tmp_path / "no" / "out.pt")], "does not exist"),
    ):
        result = run_cli("inspect", *args)
        assert result.code == 2, (args, result.stderr)
        assert len(result.stderr.splitlines()) == 1 and message in result.stderr, (args, result.stderr)


def test_safetensors_missing_says_how_to_install(tmp_path, run_cli, monkeypatch):
    import builtins

    path = tmp_path / "m.safetensors"
    path.write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    real_import = builtins.__import__

    def no_safetensors(name, *args, **kwargs):
        if name.startswith("safetensors"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_safetensors)
    result = run_cli("inspect", "--weights", str(path))
    assert result.code == 2
    assert "pip install 'lstm-cli[safetensors]'" in result.stderr


def test_free_form_refuses_weights(tmp_path, run_cli):
    torch.save(nn.LSTM(100, 20).state_dict(), tmp_path / "w.pt")
    result = run_cli("compare-cell", "--hidden-sizes", "30,20", "--weights", str(tmp_path / "w.pt"))
    assert result.code == 2 and "drop --weights" in result.stderr


def test_npz_with_pickled_objects_is_refused(tmp_path, run_cli):
    path = tmp_path / "objects.npz"
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open("weight_ih_l0.npy", "w") as member:
            np.save(member, np.array([object()], dtype=object), allow_pickle=True)
    result = run_cli("inspect", "--weights", str(path))
    assert result.code == 2 and "pickled Python objects inside, refused" in result.stderr
