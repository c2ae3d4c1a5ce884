"""compare-cell: the LSTMCell loop against nn.LSTM and against an independent float64 LSTM."""

import pytest
import torch

from lstm_cli import cells
from lstm_cli.checks import max_abs_diff
from lstm_cli.compare_cell import run_compare
from lstm_cli.model import Placement, build_lstm, make_input, run_lstm, time_major
from lstm_cli.spec import LSTMSpec
from tests.reference import reference_lstm

MIRROR_CASES = {
    "seed": {},
    "one layer": {"num_layers": 1},
    "two layers": {"num_layers": 2},
    "three layers": {"num_layers": 3},
    "bidirectional": {"bidirectional": True},
    "proj_size": {"proj_size": 7},
    "batch_first": {"batch_first": True},
    "packed": {"lengths": (10, 7, 3)},
    "no bias": {"bias": False},
    "everything": {"bidirectional": True, "proj_size": 5, "batch_first": True, "lengths": (4, 10, 1), "bias": False},
    "unbatched": {"unbatched": True, "bidirectional": True},
    "dropout (eval)": {"dropout": 0.3},
}


@pytest.mark.parametrize("changes", MIRROR_CASES.values(), ids=MIRROR_CASES.keys())
def test_mirror_matches_nn_lstm_and_reports_true_numbers(changes):
    spec = LSTMSpec(device="cpu", **changes)
    result = run_compare(spec, repeat=0)
    assert result.passed and 0 < result.tolerance < 1e-4
    assert all(c.worst_ratio <= 1 and c.max_abs_diff <= 1e-5 for c in result.checks)

    # Recompute the reported differences here, from the same two paths run again.
    place = Placement(torch.device("cpu"), torch.float32)
    lstm = build_lstm(spec, place)
    x = make_input(spec, place)
    fused = run_lstm(lstm, x, spec)
    looped = cells.run_cells(cells.cells_from_lstm(lstm), x, spec)
    assert result.output_max_abs_diff == max_abs_diff(looped.output, fused.output)
    for k, layer in enumerate(result.layers):
        assert layer.h_n_max_abs_diff == max_abs_diff(looped.finals[k][0], fused.h_n[k])
        assert layer.c_n_max_abs_diff == max_abs_diff(looped.finals[k][1], fused.c_n[k])
    assert len(result.layers) == spec.num_layers * spec.num_directions

    # And the loop itself against the independent float64 LSTM.
    xs = time_major(x, spec)
    ref_out, ref_h, ref_c, _ = reference_lstm(lstm, xs if not spec.unbatched else xs, spec.lengths)
    assert max_abs_diff(time_major(looped.output, spec), ref_out) < 1e-5
    got_h = torch.stack([h for h, _ in looped.finals]).reshape(ref_h.shape)
    got_c = torch.stack([c for _, c in looped.finals]).reshape(ref_c.shape)
    assert max_abs_diff(got_h, ref_h) < 1e-5 and max_abs_diff(got_c, ref_c) < 1e-5


def test_float64_long_sequence_within_1e_10():
    spec = LSTMSpec(dtype="float64", seq_len=200, bidirectional=True, proj_size=6, device="cpu")
    result = run_compare(spec, repeat=0)
    assert result.rule["dtype"] == "float64" and result.tolerance < 1e-12
    assert result.passed
    assert result.output_max_abs_diff <= 1e-10
    place = Placement(torch.device("cpu"), torch.float64)
    lstm = build_lstm(spec, place)
    looped = cells.run_cells(cells.cells_from_lstm(lstm), make_input(spec, place), spec)
    ref_out, *_ = reference_lstm(lstm, make_input(spec, place), None)
    assert max_abs_diff(looped.output, ref_out) < 1e-12


def test_planted_mismatch_fails_with_exit_1(run_cli, monkeypatch):
    original = cells.cells_from_lstm

    def perturbed(lstm):
        stack = original(lstm)
        with torch.no_grad():
            stack.cells[2][0].weight_hh[5, 3] += 0.05  # one copied weight, layer 2, gate i
        return stack

    monkeypatch.setattr(cells, "cells_from_lstm", perturbed)
    result = run_cli("compare-cell", "--json", "--repeat", "0")
    assert result.code == 1
    doc = result.json()
    assert doc["passed"] is False
    by_layer = {d["layer"]: d for d in doc["layers"]}
    # end to end, layers before the change still match; the changed layer does not
    assert by_layer[0]["h_n_max_abs_diff"] <= 1e-5 and by_layer[1]["c_n_max_abs_diff"] <= 1e-5
    assert by_layer[2]["h_n_max_abs_diff"] > 1e-5
    # step by step, only layer 2 is wrong (layer 3 is right about the input layer 2 gave it),
    # first at step 1: at step 0, h_(t-1) = 0 hides any error in W_hh
    failed = [c for c in doc["checks"] if not c["passed"]]
    assert [c["name"].split(":")[0] for c in failed] == ["layer 2 forward"]
    assert failed[0]["first_bad"]["step"] == 1 and failed[0]["worst_ratio"] > 1
    assert "check(s) failed" in result.stderr


def test_json_contract(run_cli):
    result = run_cli("compare-cell", "--json", "--bidirectional", "--repeat", "2", "--steps")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["command"] == "compare-cell" and doc["config"]["bidirectional"] is True
    assert [(d["layer"], d["direction"]) for d in doc["layers"]] == [
        (layer, direction) for layer in range(4) for direction in ("forward", "backward")
    ]
    assert {"h_n_max_abs_diff", "c_n_max_abs_diff"} <= set(doc["layers"][0])
    assert 0 < doc["tolerance"] < 1e-4 and doc["passed"] is True
    assert doc["rule"]["dtype"] == "float32" and doc["checked"] == "every sequence, every step"
    assert [e["path"] for e in doc["shadow"]["errors"]] == ["nn.LSTM", "LSTMCell loop"]
    timing = doc["timing"]
    assert timing["fused_s"] > 0 and timing["cells_s"] > 0
    assert timing["ratio"] == pytest.approx(timing["cells_s"] / timing["fused_s"])
    assert len(doc["step_max_abs_diff"]) == 10
    assert max(doc["step_max_abs_diff"]) == pytest.approx(doc["output_max_abs_diff"], rel=1e-12)
    assert doc["tf32"] is False


def test_free_form_stack_is_the_seeds_two_layer_example(run_cli):
    result = run_cli("compare-cell", "--hidden-sizes", "30,20", "--json", "--repeat", "0")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["mode"] == "free-form"
    assert [
        (s["layer"], s["input_size"], s["hidden_size"], s["h_shape"], s["c_shape"], s["parameters"])
        for s in doc["stack"]
    ] == [
        (0, 100, 30, [3, 30], [3, 30], 4 * 30 * (100 + 30) + 8 * 30),
        (1, 30, 20, [3, 20], [3, 20], 4 * 20 * (30 + 20) + 8 * 20),
    ]
    assert doc["output_shape"] == [10, 3, 20]
    assert doc["passed"] and len(doc["layers"]) == 2


def test_free_form_loop_equals_the_seed_code_and_per_layer_lstms():
    spec = LSTMSpec(device="cpu")
    place = Placement(torch.device("cpu"), torch.float32)
    stack = cells.free_form_cells(spec, (30, 20), place.device, place.dtype)
    x = make_input(spec, place)
    cell1, cell2 = stack.cells[0][0], stack.cells[1][0]
    with torch.no_grad():  # the seed's code, verbatim apart from names
        h1, c1 = torch.zeros(3, 30), torch.zeros(3, 30)
        h2, c2 = torch.zeros(3, 20), torch.zeros(3, 20)
        for xt in x:
            h1, c1 = cell1(xt, [h1, c1])
            h2, c2 = cell2(h1, [h2, c2])
    run = cells.run_cells(stack, x, spec)
    # The same operations on the same values, but run_cells feeds layer 2 slices of a stacked
    # tensor where the seed feeds fresh ones: on some CPUs (AMD EPYC, AVX-512) the GEMM's
    # blocking, and so its last bit, follows the memory alignment (2.2e-8 measured there).
    # 1e-6 is 16 ulps of values below 1 after 10 steps; any real difference is far larger.
    assert max_abs_diff(run.finals[1][0], h2) <= 1e-6 and max_abs_diff(run.finals[1][1], c2) <= 1e-6
    lstm = torch.nn.LSTM(30, 20)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(lstm, name + "_l0").copy_(getattr(cell2, name))
        layer0 = torch.nn.LSTM(100, 30)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(layer0, name + "_l0").copy_(getattr(cell1, name))
        out, (h, _) = lstm(layer0(x)[0])
    assert max_abs_diff(h[0], h2) < 1e-5
    assert run_compare(spec, (30, 20), repeat=0).passed


def test_atol_overrides_the_default(run_cli):
    doc = run_cli("compare-cell", "--json", "--repeat", "0", "--atol", "1e-3").json()
    assert doc["tolerance"] == 1e-3 and doc["passed"] and doc["rule"]["atol"] == 1e-3
    # Each float32 step differs from its float64 recomputation by some rounding: a zero bound fails.
    result = run_cli("compare-cell", "--json", "--repeat", "0", "--atol", "0")
    doc = result.json()
    assert result.code == 1 and doc["tolerance"] == 0 and not doc["passed"]
    assert all(c["max_abs_diff"] > 0 for c in doc["checks"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--hidden-sizes", "30,x"], "--hidden-sizes takes whole numbers"),
        (["--hidden-sizes", "30,0"], "--hidden-sizes values must be at least 1 (got 0)"),
        (["--hidden-sizes", "30,20", "--bidirectional"], "drop --bidirectional"),
        (["--hidden-sizes", "30,20", "--proj-size", "4"], "drop --proj-size"),
        (["--hidden-sizes", "30,20", "--num-layers", "2"], "drop --num-layers"),
        (["--hidden-sizes", "30,20", "--hidden-size", "30"], "drop --hidden-size"),
        (["--hidden-sizes", "30,20", "--dropout", "0.2"], "drop --dropout"),
        (["--atol", "-1"], "--atol must be a finite number >= 0"),
        (["--atol", "nan"], "--atol must be a finite number >= 0"),
        (["--rtol", "inf"], "--rtol must be a finite number >= 0"),
        (["--repeat", "-1"], "--repeat must be between 0 and 10000"),
    ],
)
def test_bad_flags(run_cli, args, message):
    result = run_cli("compare-cell", *args)
    assert result.code == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr


def test_table_output(run_cli):
    result = run_cli("compare-cell", "--proj-size", "5", "--repeat", "1")
    assert result.code == 0
    lines = result.stdout.splitlines()
    row = next(line for line in lines if line.startswith("│ 1 "))
    # layer 1 cell: input 5 (the projected h), hidden 20, h is the projected (3, 5), c stays (3, 20)
    # parameters: nn.LSTM's own for that layer, not the zero columns that pad W_hh for LSTMCell
    # (one direction: the layer column is the layer alone; with two it says 1 fwd / 1 bwd)
    lstm = torch.nn.LSTM(100, 20, num_layers=4, proj_size=5)
    real = sum(p.numel() for name, p in lstm.named_parameters() if name.endswith("_l1"))
    assert [cell.strip() for cell in row.split("│")[1:-1]] == [
        "1", "5", "20", "(3, 5)", "(3, 5)", "(3, 20)", f"{real:,}"
    ]
    assert "ratio" in lines[-1]


@pytest.mark.gpu
def test_cuda_matches_without_tf32_and_reports_it():
    spec = LSTMSpec(device="cuda", input_size=512, hidden_size=512, num_layers=2, seq_len=50, batch_size=32)
    strict = run_compare(spec, repeat=1)
    assert strict.passed and strict.tf32 is False and strict.rule["tf32"] is False
    assert all(c.worst_ratio <= 1 for c in strict.checks)
    loose = run_compare(spec, repeat=1, allow_tf32=True)
    assert loose.tf32 is True and loose.rule["tf32"] is True and loose.passed
    # TF32 rounds the matmul inputs to 10 bits: its steps are further from float64
    assert max(c.max_abs_diff for c in loose.checks) > max(c.max_abs_diff for c in strict.checks)
