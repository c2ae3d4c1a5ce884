"""bench: the FLOP formula by hand, presets and sweeps, the JSON contract, bad flags."""

import pytest

from lstm_cli.bench import bench_specs, forward_flops
from lstm_cli.spec import LSTMSpec


def test_flops_by_hand():
    # Seed example: per step and sequence 8*20*(100+20) for layer 0, 8*20*(20+20) for 3 more.
    assert forward_flops(LSTMSpec()) == 3 * 10 * (8 * 20 * 120 + 3 * 8 * 20 * 40)
    # The formula, per direction: 8*B*T*H*((I+H) + (L-1)*(D*H+H)).
    spec = LSTMSpec(input_size=7, hidden_size=5, num_layers=3, seq_len=4, batch_size=2, bidirectional=True)
    assert forward_flops(spec) == 2 * 8 * 2 * 4 * 5 * ((7 + 5) + 2 * (2 * 5 + 5))
    # proj_size 3: W_hh is (4H, 3), later layers take 2*3 inputs, and each layer adds 2*3*5.
    projected = LSTMSpec(input_size=7, hidden_size=5, num_layers=2, seq_len=4, batch_size=2, proj_size=3)
    assert forward_flops(projected) == 2 * 4 * ((8 * 5 * (7 + 3) + 30) + (8 * 5 * (3 + 3) + 30))
    assert forward_flops(LSTMSpec(unbatched=True)) == forward_flops(LSTMSpec(batch_size=1))


def test_presets_and_sweeps_expand_to_rows():
    (large,) = bench_specs(LSTMSpec(dtype="float64"), "large", None)
    assert (large.input_size, large.hidden_size, large.num_layers, large.seq_len, large.batch_size) == (512, 1024, 2, 200, 64)
    assert large.dtype == "float64"
    rows = bench_specs(LSTMSpec(), "medium", ("seq_len", [10, 1000]))
    assert [(r.seq_len, r.hidden_size) for r in rows] == [(10, 256), (1000, 256)]


def test_json_contract(run_cli):
    result = run_cli("bench", "--sweep", "seq-len=3,6", "--hidden-size", "8", "--num-layers", "2",
                     "--repeat", "2", "--json")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["command"] == "bench" and doc["device"] == "cpu" and doc["config"]["hidden_size"] == 8
    assert [row["seq_len"] for row in doc["rows"]] == [3, 6]
    for row in doc["rows"]:
        assert row["fused_s"] > 0 and row["cells_s"] > 0 and row["gates_s"] > 0
        assert row["cells_ratio"] == pytest.approx(row["cells_s"] / row["fused_s"])
        assert row["gates_ratio"] == pytest.approx(row["gates_s"] / row["fused_s"])
        spec = LSTMSpec(hidden_size=8, num_layers=2, seq_len=row["seq_len"])
        assert row["gflop"] == pytest.approx(forward_flops(spec) / 1e9)
        assert row["fused_gflops"] == pytest.approx(row["gflop"] / row["fused_s"])
        assert row["gates_method"] in ("loop", "recompute") and row["repeat"] == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "huge"], "--preset must be one of seed, medium, large"),
        (["--preset", "seed", "--seq-len", "5"], "--seq-len is set by --preset/--sweep here"),
        (["--sweep", "seq-len=5", "--seq-len", "5"], "--seq-len is set by --preset/--sweep here"),
        (["--sweep", "depth=3"], "--sweep takes NAME=V1,V2,..."),
        (["--sweep", "seq-len"], "--sweep takes NAME=V1,V2,..."),
        (["--sweep", "batch-size=2,0"], "--sweep values must be at least 1"),
        (["--sweep", "seq-len=" + ",".join(["1"] * 21)], "at most 20 values"),
        (["--repeat", "0"], "--repeat must be between 1 and 1000"),
        (["--method", "fast"], "--method must be auto, loop or recompute"),
        (["--save-weights", "w.pt"], "bench times several models and saves none"),
        (["--sweep", "batch-size=2,4", "--lengths", "10,7,3"], "--lengths has 3 values but --batch-size is 2"),
    ],
)
def test_bad_flags(run_cli, args, message):
    result = run_cli("bench", *args)
    assert result.code == 2
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1
    assert message in result.stderr


def test_weights_fix_the_architecture(run_cli, tmp_path):
    import torch

    torch.save(torch.nn.LSTM(4, 6).state_dict(), tmp_path / "w.pt")
    result = run_cli("bench", "--weights", str(tmp_path / "w.pt"), "--sweep", "hidden-size=8,16")
    assert result.code == 2 and "--weights fixes the model's sizes" in result.stderr
    doc = run_cli("bench", "--weights", str(tmp_path / "w.pt"), "--sweep", "seq-len=2,4", "--repeat", "1", "--json").json()
    assert [(r["hidden_size"], r["seq_len"]) for r in doc["rows"]] == [(6, 2), (6, 4)]
