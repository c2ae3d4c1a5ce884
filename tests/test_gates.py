"""gates: every statistic against an independent float64 reference (a plain loop over the LSTM
equations, one sequence at a time), the verification that can fail, flags, JSON, heatmap,
export and plot."""

from __future__ import annotations

import io
import math
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from rich.console import Console

import lstm_cli.gates as gates_module
import lstm_cli.gates.kernels as gates_kernels
import lstm_cli.gates.run as gates_run
from lstm_cli import model
from lstm_cli.spec import LSTMSpec
from tests.strategies import small_specs

GATE_NAMES = ("i", "f", "g", "o")
SCALE = 4.0  # weights x4: pre-activations large enough that gates saturate


# -- the independent reference ---------------------------------------------------------------------


UNSCALED_BUILD = model.build_lstm  # the real builder, whatever a test later patches in


def scaled_builder(scale: float):
    def build(spec, placement):
        lstm = UNSCALED_BUILD(spec, placement)
        with torch.no_grad():
            for p in lstm.parameters():
                p.mul_(scale)
        return lstm

    return build


def reference_lstm(spec: LSTMSpec):
    """The module and input the command builds (same seed), with weights scaled, on the CPU."""
    placement = model.Placement(torch.device("cpu"), getattr(torch, spec.dtype))
    return scaled_builder(SCALE)(spec, placement), model.make_input(spec, placement)


def sequences(x: torch.Tensor, spec: LSTMSpec) -> list[torch.Tensor]:
    """Each sequence alone, (its length, input size), in float64."""
    x = x.detach().double()
    if spec.unbatched:
        return [x]
    lengths = spec.lengths or [spec.seq_len] * spec.batch_size
    return [(x[n] if spec.batch_first else x[:, n])[: lengths[n]] for n in range(spec.batch_size)]


def reference_capture(lstm: torch.nn.LSTM, x: torch.Tensor, spec: LSTMSpec) -> dict:
    """{(layer, direction): [per sequence: {"i": [one vector per step], ..., "c", "h"}]},
    from sigmoid/tanh, c = f*c + i*g, h = o*tanh(c) (then W_hr h), stepped in plain Python."""
    params = {name: p.detach().double() for name, p in lstm.named_parameters()}
    H = spec.hidden_size
    inputs = sequences(x, spec)
    record: dict = {}
    for layer in range(spec.num_layers):
        directions = ("forward", "backward")[: 2 if spec.bidirectional else 1]
        for direction in directions:
            suffix = f"_l{layer}" + ("_reverse" if direction == "backward" else "")
            w_ih, w_hh = params["weight_ih" + suffix], params["weight_hh" + suffix]
            bias = params["bias_ih" + suffix] + params["bias_hh" + suffix] if spec.bias else 0.0
            w_hr = params.get("weight_hr" + suffix)
            per_sequence = []
            for xs in inputs:
                steps = len(xs)
                h = torch.zeros(w_hh.shape[1], dtype=torch.float64)
                c = torch.zeros(H, dtype=torch.float64)
                out = {name: [None] * steps for name in ("i", "f", "g", "o", "c", "h")}
                order = range(steps - 1, -1, -1) if direction == "backward" else range(steps)
                for t in order:
                    z = w_ih @ xs[t] + w_hh @ h + bias
                    i = torch.sigmoid(z[:H])
                    f = torch.sigmoid(z[H : 2 * H])
                    g = torch.tanh(z[2 * H : 3 * H])
                    o = torch.sigmoid(z[3 * H :])
                    c = f * c + i * g
                    h = o * torch.tanh(c)
                    if w_hr is not None:
                        h = w_hr @ h
                    for name, value in zip(("i", "f", "g", "o", "c", "h"), (i, f, g, o, c, h)):
                        out[name][t] = value
                per_sequence.append(out)
            record[(layer, direction)] = per_sequence
        inputs = [
            torch.stack([torch.cat([record[(layer, d)][n]["h"][t] for d in directions]) for t in range(len(xs))])
            for n, xs in enumerate(inputs)
        ]
    return record


def reference_stats(per_sequence: list[dict], seq_len: int, low=0.1, high=0.9, tanh_low=-0.9, tanh_high=0.9):
    stats = {}
    for gate in GATE_NAMES:
        values = np.concatenate([np.stack([v.numpy() for v in s[gate]]).ravel() for s in per_sequence])
        lo, hi = (tanh_low, tanh_high) if gate == "g" else (low, high)
        per_step = []
        for t in range(seq_len):
            at_t = [s[gate][t].numpy() for s in per_sequence if len(s[gate]) > t]
            per_step.append(float(np.mean(np.concatenate(at_t))) if at_t else None)
        stats[gate] = {
            "mean": values.mean(), "std": values.std(), "min": values.min(), "max": values.max(),
            "left_saturated": np.mean(values < lo), "right_saturated": np.mean(values > hi),
            "per_step": per_step,
        }
    cells = np.abs(np.concatenate([np.stack([v.numpy() for v in s["c"]]).ravel() for s in per_sequence]))
    stats["cell"] = {"mean_abs": cells.mean(), "max_abs": cells.max()}
    return stats


def spec_args(spec: LSTMSpec) -> list[str]:
    args = [
        "--input-size", str(spec.input_size), "--hidden-size", str(spec.hidden_size),
        "--num-layers", str(spec.num_layers), "--seq-len", str(spec.seq_len),
        "--batch-size", str(spec.batch_size), "--proj-size", str(spec.proj_size),
        "--dtype", spec.dtype, "--device", "cpu", "--seed", str(spec.seed),
    ]
    for flag, on in (("--bidirectional", spec.bidirectional), ("--batch-first", spec.batch_first),
                     ("--unbatched", spec.unbatched), ("--no-bias", not spec.bias)):
        if on:
            args.append(flag)
    if spec.lengths:
        args += ["--lengths", ",".join(map(str, spec.lengths))]
    return args


@pytest.fixture
def scaled(monkeypatch):
    monkeypatch.setattr(model, "build_lstm", scaled_builder(SCALE))


def assert_layers_match(doc: dict, spec: LSTMSpec, tol: float, count_tol: float) -> list[float]:
    """Every statistic of every layer x direction against the reference; returns every
    saturation fraction seen, so callers can check the comparison meant something."""
    lstm, x = reference_lstm(spec)
    record = reference_capture(lstm, x, spec)
    assert [(e["layer"], e["direction"]) for e in doc["layers"]] == list(record)
    fractions = []
    for entry in doc["layers"]:
        expected = reference_stats(record[(entry["layer"], entry["direction"])], spec.seq_len)
        for gate in GATE_NAMES:
            got, want = entry["gates"][gate], expected[gate]
            for key in ("mean", "std", "min", "max"):
                assert got[key] == pytest.approx(want[key], abs=tol), (entry["layer"], entry["direction"], gate, key)
            for key in ("left_saturated", "right_saturated"):
                assert got[key] == pytest.approx(want[key], abs=count_tol), (gate, key)
                fractions.append(want[key])
            steps = entry["per_step"][gate]
            assert len(steps) == spec.seq_len
            for value, reference in zip(steps, want["per_step"]):
                assert (value is None) == (reference is None)
                if reference is not None:
                    assert value == pytest.approx(reference, abs=tol)
        assert entry["cell"]["mean_abs"] == pytest.approx(expected["cell"]["mean_abs"], abs=tol)
        assert entry["cell"]["max_abs"] == pytest.approx(expected["cell"]["max_abs"], abs=tol)
    return fractions


CASES = {
    "unidirectional": dict(),
    "bidirectional": dict(bidirectional=True),
    "proj_size": dict(proj_size=3),
    "packed": dict(lengths=(7, 3, 5)),
    "packed_bidirectional_proj_batch_first": dict(bidirectional=True, proj_size=2, lengths=(4, 7, 1), batch_first=True),
}


@pytest.mark.parametrize("method", ["loop", "recompute"])
@pytest.mark.parametrize("case", list(CASES))
def test_every_statistic_matches_the_float64_reference(run_cli, scaled, case, method):
    spec = LSTMSpec(input_size=5, hidden_size=6, num_layers=2, seq_len=7, batch_size=3, dtype="float64",
                    device="cpu", seed=3, **CASES[case])
    result = run_cli("gates", "--json", "--method", method, *spec_args(spec))
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["method"] == method
    assert all(check["passed"] for check in doc["checks"])
    fractions = assert_layers_match(doc, spec, tol=1e-9, count_tol=1e-12)
    # The scaled weights saturate some gates partly: the fraction comparison is not 0 == 0.
    assert any(0 < f < 1 for f in fractions)
    assert sum(f > 0 for f in fractions) >= 4


def test_float32_matches_the_reference_within_float32_precision(run_cli, scaled):
    spec = LSTMSpec(input_size=4, hidden_size=5, num_layers=2, seq_len=9, batch_size=2, bidirectional=True,
                    lengths=(9, 4), device="cpu", seed=11)
    for method in ("loop", "recompute"):
        result = run_cli("gates", "--json", "--method", method, *spec_args(spec))
        assert result.code == 0, result.stderr
        # one value landing on the other side of a threshold moves a fraction by 1/count
        assert_layers_match(result.json(), spec, tol=2e-5, count_tol=2 / (13 * 5))


def test_unbatched_and_no_bias_match_the_reference(run_cli, scaled):
    spec = LSTMSpec(input_size=3, hidden_size=4, num_layers=1, seq_len=6, batch_size=1, unbatched=True,
                    bias=False, dtype="float64", device="cpu")
    for method in ("loop", "recompute"):
        result = run_cli("gates", "--json", "--method", method, *spec_args(spec))
        assert result.code == 0, result.stderr
        assert_layers_match(result.json(), spec, tol=1e-9, count_tol=1e-12)


@settings(max_examples=25, deadline=None)
@given(small_specs())
def test_both_methods_verify_on_random_configurations(spec):
    """Every layout, width, length and dtype combination: the capture rebuilds nn.LSTM."""
    from lstm_cli.gates_options import GatesOptions

    for method in ("loop", "recompute"):
        result = gates_module.run_gates(spec, GatesOptions(method=method))
        assert [c.passed for c in result.checks] == [True] * (spec.num_layers * spec.num_directions), (
            method, result.checks)
        assert result.passed and all(c.worst_ratio <= 1 for c in result.checks)
        for entry in result.layers:
            for stats in entry.gates.values():
                assert 0 <= stats.left_saturated <= 1 and 0 <= stats.right_saturated <= 1
                assert stats.min - 1e-6 <= stats.mean <= stats.max + 1e-6


def test_thresholds_are_configurable(run_cli, scaled):
    spec = LSTMSpec(input_size=5, hidden_size=6, num_layers=1, seq_len=7, batch_size=3, dtype="float64", device="cpu")
    flags = ["--sat-low", "0.3", "--sat-high", "0.6", "--tanh-sat-low", "-0.5", "--tanh-sat-high", "0.2"]
    result = run_cli("gates", "--json", *flags, *spec_args(spec))
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["thresholds"] == {"low": 0.3, "high": 0.6, "tanh_low": -0.5, "tanh_high": 0.2}
    lstm, x = reference_lstm(spec)
    expected = reference_stats(reference_capture(lstm, x, spec)[(0, "forward")], spec.seq_len, 0.3, 0.6, -0.5, 0.2)
    for gate in GATE_NAMES:
        for key in ("left_saturated", "right_saturated"):
            assert doc["layers"][0]["gates"][gate][key] == pytest.approx(expected[gate][key], abs=1e-12)


def test_json_contract(run_cli):
    result = run_cli("gates", "--json", "--bidirectional", "--num-layers", "2")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["command"] == "gates"
    assert doc["config"]["bidirectional"] is True
    assert [(e["layer"], e["direction"]) for e in doc["layers"]] == [
        (0, "forward"), (0, "backward"), (1, "forward"), (1, "backward")
    ]
    for entry in doc["layers"]:
        assert set(entry["gates"]) == set(GATE_NAMES)
        for stats in entry["gates"].values():
            assert set(stats) == {"mean", "std", "min", "max", "left_saturated", "right_saturated"}
        assert set(entry["cell"]) == {"mean_abs", "max_abs"}
        assert {g: len(v) for g, v in entry["per_step"].items()} == {g: 10 for g in GATE_NAMES}
    assert len(doc["checks"]) == 4 and doc["passed"] is True
    for check in doc["checks"]:
        assert {"name", "passed", "max_abs_diff", "tolerance", "worst_ratio", "first_bad", "checked"} <= set(check)
    assert all(c["passed"] and c["max_abs_diff"] <= c["tolerance"] for c in doc["checks"])
    assert set(doc["end_to_end"]) == {"output_max_abs_diff", "h_n_max_abs_diff", "c_n_max_abs_diff", "reference",
                                      "sequences"}
    assert doc["end_to_end"]["reference"].startswith("nn.LSTM")
    assert result.stderr == ""


def test_per_step_mean_is_null_where_no_sequence_runs(run_cli):
    result = run_cli("gates", "--json", "--num-layers", "1", "--lengths", "4,6,6")
    doc = result.json()
    assert doc["layers"][0]["per_step"]["f"][6:] == [None] * 4
    assert all(v is not None for v in doc["layers"][0]["per_step"]["f"][:6])


# -- the verification must be able to fail --------------------------------------------------------


@pytest.mark.parametrize("method", ["loop", "recompute"])
def test_a_wrong_capture_fails_the_checks_and_exits_1(run_cli, monkeypatch, method):
    real = gates_run.direction_weights

    def perturbed(lstm, layer, direction):
        w = real(lstm, layer, direction)
        if layer == 0:  # a planted error: the capture sees a slightly different W_hh
            w = model.DirectionWeights(w.w_ih, w.w_hh + 0.01, w.b_ih, w.b_hh, w.w_hr)
        return w

    monkeypatch.setattr(gates_run, "direction_weights", perturbed)
    result = run_cli("gates", "--json", "--method", method)
    assert result.code == 1
    checks = result.json()["checks"]
    # Step by step only layer 0 is wrong: later layers compute right from what they were given.
    # Its first wrong step is 1: at step 0 h_(t-1) = 0 hides any error in W_hh.
    assert [c["passed"] for c in checks] == [False, True, True, True]
    assert checks[0]["first_bad"]["step"] == 1 and checks[0]["worst_ratio"] > 1
    assert "1 check(s) failed" in result.stderr


def test_nan_in_the_capture_fails_the_check(run_cli, monkeypatch):
    real = gates_kernels.rebuild_h

    def broken(c, o, w, out, raw=None):
        h = real(c, o, w, out, raw)
        h.view(-1)[0] = math.nan
        return h

    monkeypatch.setattr(gates_kernels, "rebuild_h", broken)
    result = run_cli("gates", "--json", "--method", "recompute", "--num-layers", "1")
    assert result.code == 1
    assert result.json()["checks"][0]["max_abs_diff"] is None  # NaN is written as null


# -- method choice and the MKL path --------------------------------------------------------------


def _model(spec: LSTMSpec):
    placement = model.Placement(torch.device("cpu"), torch.float32)
    return model.build_lstm(spec, placement), model.make_input(spec, placement)


def test_auto_method_is_the_faster_one_measured_here(monkeypatch):
    """auto keeps whichever method the probe measured faster (the probe's clock is faked, both
    ways round), names the timings, and measures once per shape; --method skips measuring."""
    spec = LSTMSpec(input_size=8, hidden_size=16, num_layers=2, seq_len=6, batch_size=3)
    lstm, x = _model(spec)
    calls = []
    for faster in ("loop", "recompute"):
        slower = "recompute" if faster == "loop" else "loop"
        monkeypatch.setattr(gates_module.choice, "_CHOICES", {})
        monkeypatch.setattr(gates_module.choice, "probe",
                            lambda *a, faster=faster, slower=slower: calls.append(1) or (6, {faster: 0.001, slower: 0.003}))
        choice = gates_module.choose_method(spec, lstm, x)
        assert choice.name == faster and choice.timings_s == {faster: 0.001, slower: 0.003}
        assert f"on 6 steps of layer 0: {faster} 1 ms, {slower} 3 ms" in choice.reason
        assert gates_module.choose_method(spec, lstm, x).name == faster  # cached: no second probe
    assert len(calls) == 2
    assert gates_module.choose_method(spec, lstm, x, "loop").reason == "chosen with --method"


def test_the_probe_times_both_methods_on_the_real_model():
    for bidirectional in (False, True):
        spec = LSTMSpec(input_size=8, hidden_size=16, num_layers=2, seq_len=6, batch_size=3, bidirectional=bidirectional)
        lstm, x = _model(spec)
        steps, timings = gates_module.choice.probe(spec, lstm, model.time_major(x, spec), "auto")
        assert steps == 6 and set(timings) == {"loop", "recompute"} and all(0 < t < 5 for t in timings.values())


def test_a_cheap_probe_projects_both_methods_to_the_whole_sequence(monkeypatch):
    """Under SMALL_PROBE_S, both methods also run a longer probe and the comparison is of
    t(short) + (T - short) x the per-step difference: fixed costs per call count once."""
    spec = LSTMSpec(input_size=4, hidden_size=8, num_layers=1, seq_len=100, batch_size=2)
    lstm, x = _model(spec)
    fixed = {"loop": 0.001, "recompute": 0.004}  # seconds per call
    per_step = {"loop": 2e-5, "recompute": 1e-5}
    monkeypatch.setattr(gates_module.choice, "best_seconds", lambda run, device: run())
    monkeypatch.setattr(gates_module.choice, "_probe_runs", lambda spec, lstm, x_tm, gemm, steps: {
        name: (lambda name=name: fixed[name] + steps * per_step[name]) for name in fixed})
    steps, projected = gates_module.choice.probe(spec, lstm, model.time_major(x, spec), "auto")
    assert steps == gates_module.choice.LONG_PROBE_STEPS
    assert projected == pytest.approx({name: fixed[name] + 100 * per_step[name] for name in fixed})


def test_the_layerwise_reference_is_nn_lstm_and_the_subset_is_its_rows():
    """recompute's reference (nn.LSTM one layer at a time) and the loop's (nn.LSTM on a few
    sequences) against one direct nn.LSTM call: float32 rounding apart, packed and batch_first."""
    spec = LSTMSpec(input_size=8, hidden_size=16, num_layers=3, seq_len=7, batch_size=5, bidirectional=True,
                    proj_size=4, batch_first=True, lengths=(7, 3, 5, 7, 1))
    lstm, x = _model(spec)
    whole = model.run_lstm(lstm, x, spec)
    layerwise = gates_module.layerwise_forward(lstm, x, spec)
    assert len(layerwise.layer_outputs) == 3 and layerwise.sequences is None
    for got, want in zip((layerwise.forward.output, layerwise.forward.h_n, layerwise.forward.c_n),
                         (whole.output, whole.h_n, whole.c_n)):
        assert got.shape == want.shape and torch.allclose(got, want, atol=1e-6, rtol=0)
    subset = gates_module.subset_forward(lstm, x, spec, [4, 1])
    assert subset.sequences == [4, 1] and subset.rows([1]) == [1]
    assert torch.allclose(subset.forward.output, whole.output[[4, 1]], atol=1e-6, rtol=0)
    assert torch.allclose(subset.forward.h_n, whole.h_n[:, [4, 1]], atol=1e-6, rtol=0)


def test_the_loop_reports_end_to_end_over_the_sequences_nn_lstm_ran(run_cli):
    doc = run_cli("gates", "--json", "--method", "loop", "--batch-size", "6", "--lengths", "10,4,10,7,2,9").json()
    ends = doc["end_to_end"]
    assert ends["reference"] == "nn.LSTM" and ends["sequences"] and set(ends["sequences"]) <= set(range(6))
    assert 0 <= ends["output_max_abs_diff"] < 1e-5 and ends["h_n_max_abs_diff"] < 1e-5
    recompute = run_cli("gates", "--json", "--method", "recompute").json()["end_to_end"]
    assert recompute["reference"] == "nn.LSTM, one layer at a time" and recompute["sequences"] is None


def _capture_stats(spec: LSTMSpec, gemm: str):
    lstm, x = _model(spec)
    reference = gates_module.Reference(model.run_lstm(lstm, x, spec), "nn.LSTM")
    method = gates_module.LoopCapture(gemm)
    capture = gates_module.capture_gates(lstm, x, spec, reference, method, keep_all=True)
    return capture, method


@pytest.mark.parametrize("backend", ["mkl-packed", "onednn"])
def test_every_step_gemm_backend_gives_the_captures_numbers(backend):
    """A packed batch (the tail steps run fewer rows) through each backend against addmm: the
    same gates to float32 rounding, and the backend really ran where this build has it."""
    spec = LSTMSpec(input_size=16, hidden_size=32, num_layers=2, seq_len=12, batch_size=4, lengths=(12, 12, 5, 9))
    (tried, method), (plain, _) = _capture_stats(spec, backend), _capture_stats(spec, "addmm")
    available = gates_module.step_gemm.build(backend, torch.randn(128, 32), 4) is not None
    assert all(choice.backend == (backend if available else "addmm") for choice in method.gemm_choices)
    for key, recorder in tried.recorders.items():
        for name, value in recorder.all.items():
            other = plain.recorders[key].all[name]
            assert torch.equal(value.isnan(), other.isnan())
            assert torch.allclose(value.nan_to_num(), other.nan_to_num(), atol=1e-6, rtol=0)
    assert torch.allclose(tried.h_n, plain.h_n, atol=1e-6) and torch.allclose(tried.c_n, plain.c_n, atol=1e-6)


def test_the_gemm_that_ran_is_in_json_and_verbose(run_cli):
    doc = run_cli("gates", "--method", "loop", "--hidden-size", "256", "--batch-size", "8", "--json").json()
    assert doc["gemm"]["backend"] in gates_module.step_gemm.BACKENDS and doc["gemm"]["reason"]
    assert run_cli("gates", "--method", "recompute", "--json").json()["gemm"] is None
    text = run_cli("gates", "--method", "loop", "--verbose").stdout
    assert "step GEMM: addmm (a step of" in text


# -- flags -------------------------------------------------------------------------------------


BAD_FLAGS = [
    (["--heatmap", "0"], "--heatmap takes LAYER:GATE[:DIRECTION]"),
    (["--heatmap", "0:x"], "--heatmap takes LAYER:GATE[:DIRECTION]"),
    (["--heatmap", "a:f"], "--heatmap takes LAYER:GATE[:DIRECTION]"),
    (["--heatmap", "0:f:sideways", "--bidirectional"], "--heatmap takes LAYER:GATE[:DIRECTION]"),
    (["--heatmap", "4:f"], "--heatmap layer 4 does not exist: --num-layers is 4"),
    (["--heatmap", "0:f:backward"], "--heatmap direction backward needs --bidirectional"),
    (["--sat-low", "1.5"], "--sat-low must be in [0, 1] (got 1.5)"),
    (["--sat-high", "nan"], "--sat-high must be in [0, 1]"),
    (["--sat-low", "0.9", "--sat-high", "0.1"], "--sat-low must be below --sat-high"),
    (["--tanh-sat-low", "-2"], "--tanh-sat-low must be in [-1, 1] (got -2.0)"),
    (["--tanh-sat-low", "0.5", "--tanh-sat-high", "0.5"], "--tanh-sat-low must be below --tanh-sat-high"),
    (["--sequence", "3"], "--sequence must be between 0 and 2 (got 3)"),
    (["--method", "magic"], "--method must be one of auto, loop, recompute"),
    (["--export", "gates.csv"], "--export file must end in .npz or .pt"),
    (["--export", "/no/such/dir/gates.npz"], "directory '/no/such/dir' does not exist"),
    (["--export", "/"], "--export file must end in .npz or .pt"),
    (["--plot", "gates.jpg"], "--plot file must end in .png"),
    (["--plot", "/no/such/dir/gates.png"], "directory '/no/such/dir' does not exist"),
]


@pytest.mark.parametrize("args, message", BAD_FLAGS)
def test_bad_flags_give_one_line_and_exit_2(run_cli, args, message):
    result = run_cli("gates", *args)
    assert result.code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lstm-cli: error: ") and message in lines[0]
    assert "Traceback" not in result.stderr


def test_export_to_a_directory_is_refused(run_cli, tmp_path):
    target = tmp_path / "out.npz"
    target.mkdir()
    result = run_cli("gates", "--export", str(target))
    assert result.code == 2 and "is a directory" in result.stderr


def test_plot_without_matplotlib_names_the_install_command(run_cli, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    result = run_cli("gates", "--plot", str(tmp_path / "g.png"))
    assert result.code == 2
    assert result.stderr.strip() == (
        "lstm-cli: error: --plot needs matplotlib, which is not installed: pip install 'lstm-cli[plot]'"
    )
    assert not (tmp_path / "g.png").exists()


# -- heatmap, export, plot ------------------------------------------------------------------------


def _render(result_args: list[str], width: int = 80, **kwargs) -> str:
    from lstm_cli.gates import run_gates
    from lstm_cli.gates_options import make_options
    from lstm_cli.render.gates import render_gates

    spec = LSTMSpec(device="cpu", **kwargs)
    result = run_gates(spec, make_options(spec, **dict(zip(result_args[::2], result_args[1::2]))))
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system="truecolor")
    render_gates(result, console, per_step=True)
    return console.file.getvalue(), result


def test_heatmap_fits_80_columns_and_bins_long_sequences():
    text, result = _render(["heatmap", "1:o:bwd"], seq_len=100, hidden_size=70, num_layers=2,
                           bidirectional=True, batch_size=1, input_size=8)
    plain = Text_from_ansi(text)
    assert max(len(line) for line in plain.splitlines()) <= 80
    heatmap = result.heatmap
    assert (heatmap.layer, heatmap.direction, heatmap.gate) == (1, "backward", "o")
    # 100 steps in 50 bins of 2, 70 units in 35 rows of 2: at most 64 of each, covering all
    assert heatmap.steps == [[t, t + 2] for t in range(0, 100, 2)]
    assert heatmap.units == [[u, u + 2] for u in range(0, 70, 2)]
    assert "a cell: 2 steps x 2 units (mean)" in plain
    assert "Heatmap: layer 1 backward o (output gate), sequence 0" in plain
    assert "\x1b[38;2;" in text  # coloured cells
    assert "▁▂▃▄▅▆▇█" in plain  # the legend


def Text_from_ansi(text: str) -> str:
    from rich.text import Text

    return "\n".join(Text.from_ansi(line).plain for line in text.splitlines())


def test_every_table_fits_80_columns():
    text, _ = _render(["heatmap", "0:g"], bidirectional=True, lengths=(10, 7, 3))
    assert max(len(line) for line in Text_from_ansi(text).splitlines()) <= 80


def test_heatmap_values_match_the_reference(monkeypatch):
    monkeypatch.setattr(model, "build_lstm", scaled_builder(SCALE))
    spec = LSTMSpec(input_size=4, hidden_size=5, num_layers=2, seq_len=8, batch_size=3, dtype="float64",
                    bidirectional=True, lengths=(5, 8, 2), device="cpu")
    from lstm_cli.gates_options import make_options

    result = gates_module.run_gates(spec, make_options(spec, heatmap="1:f:backward", sequence=0))
    lstm, x = reference_lstm(spec)
    f = reference_capture(lstm, x, spec)[(1, "backward")][0]["f"]  # sequence 0: 5 steps
    values = result.heatmap.values
    assert len(values) == 5 and len(values[0]) == 8
    for unit in range(5):
        assert values[unit][:5] == pytest.approx([f[t][unit].item() for t in range(5)], abs=1e-12)
        assert values[unit][5:] == [None, None, None]  # padding


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_export_holds_every_tensor_with_documented_names_and_shapes(run_cli, scaled, tmp_path, suffix):
    spec = LSTMSpec(input_size=4, hidden_size=5, num_layers=2, seq_len=6, batch_size=3, bidirectional=True,
                    proj_size=2, lengths=(6, 2, 4), batch_first=True, dtype="float64", device="cpu")
    path = tmp_path / f"gates{suffix}"
    result = run_cli("gates", "--json", "--export", str(path), *spec_args(spec))
    assert result.code == 0, result.stderr
    assert result.json()["export"] == str(path)
    if suffix == ".npz":
        with np.load(path) as data:
            tensors = {name: torch.from_numpy(data[name]) for name in data.files}
    else:
        tensors = torch.load(path)
    assert {n: list(t.shape) for n, t in tensors.items()} == gates_module.export_names(spec)
    lstm, x = reference_lstm(spec)
    record = reference_capture(lstm, x, spec)
    for (layer, direction), per_sequence in record.items():
        suffix_name = f"_l{layer}" + ("_reverse" if direction == "backward" else "")
        for name in ("i", "f", "g", "o", "c", "h"):
            got = tensors[name + suffix_name]  # batch_first: (N, L, width)
            for n, length in enumerate(spec.lengths):
                want = torch.stack(per_sequence[n][name])
                assert torch.allclose(got[n, :length], want, atol=1e-10), (name, layer, direction, n)
                assert torch.isnan(got[n, length:]).all()  # padded steps
    assert torch.equal(tensors["input"], x)
    assert tensors["lengths"].tolist() == [6, 2, 4]


def test_export_default_layout_is_time_major(tmp_path):
    spec = LSTMSpec(device="cpu", num_layers=1, hidden_size=4)
    path = tmp_path / "g.pt"
    gates_module.run_gates(spec, gates_module.GatesOptions(export=path))
    tensors = torch.load(path)
    assert tensors["f_l0"].shape == (10, 3, 4) and tensors["h_l0"].shape == (10, 3, 4)
    assert torch.allclose(tensors["h_l0"], tensors["output"], atol=1e-6)


def test_plot_writes_a_png(run_cli, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "gates.png"
    result = run_cli("gates", "--plot", str(path), "--num-layers", "2", "--bidirectional", "--lengths", "10,4,6",
                     "--sequence", "1")
    assert result.code == 0, result.stderr
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    image = matplotlib.image.imread(path)
    assert image.shape[0] > 300 and image.shape[1] > 800  # 4 rows x 5 columns of heatmaps
    assert f"plotted: {path}" in result.stdout


def test_human_output_has_the_tables_and_no_json(run_cli):
    result = run_cli("gates", "--num-layers", "1", "--per-step")
    assert result.code == 0, result.stderr
    assert "Gates: every layer, direction and step" in result.stdout
    assert "Per-step means, layer 0 forward" in result.stdout
    assert "Gate capture, step by step" in result.stdout
    assert "\x1b[" not in result.stdout  # captured output is not a terminal: no colour codes
    assert result.stderr == ""


def test_memory_guard_counts_the_kept_tensors(monkeypatch):
    from lstm_cli.gates_options import GatesOptions

    spec = LSTMSpec(seq_len=1000, batch_size=50, hidden_size=100)
    plain = gates_module.extra_elements(spec, GatesOptions())
    exported = gates_module.extra_elements(spec, GatesOptions(export="x.npz"))
    # Exporting keeps every gate, c and h of every layer: at least 4 layers x 1000 x 50 x 600.
    assert exported - plain >= 4 * 1000 * 50 * 600
    # Without it, what gates adds does not grow with layers x gates x steps.
    assert plain < 4 * 1000 * 50 * 400


def test_gates_help_does_not_import_torch():
    import subprocess

    probe = (
        "import sys\n"
        "from lstm_cli.cli import main\n"
        "code = main(['gates', '--help'])\n"
        "print('CODE', code, 'TORCH', 'torch' in sys.modules, 'MPL', 'matplotlib' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert "CODE 0 TORCH False MPL False" in result.stdout, result.stdout + result.stderr
    assert "--heatmap" in result.stdout and "--export" in result.stdout


def test_progress_hears_every_step_and_the_phases():
    spec = LSTMSpec(device="cpu", num_layers=2, bidirectional=True, seq_len=600, hidden_size=4, batch_size=2)
    heard = []
    for method, phase in (("loop", "nn.LSTM on the shadowed sequences"), ("recompute", "nn.LSTM forward, layer by layer")):
        heard = []
        gates_module.run_gates(spec, gates_module.GatesOptions(method=method),
                               progress=lambda steps, description=None: heard.append((steps, description)))
        assert heard[:2] == [(0, phase), (0, "capturing gates")]
    assert sum(steps for steps, _ in heard) == 2 * 2 * 600
    assert len(heard) > 2 * 2 * 2  # chunks of at most 256 steps: the bar moves


@pytest.mark.gpu
def test_gates_on_cuda_is_verified_with_the_measured_method(run_cli):
    result = run_cli("gates", "--device", "cuda", "--json", "--bidirectional", "--lengths", "10,7,3")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert set(doc["method_timings_ms"]) == {"loop", "recompute"} and doc["device"].startswith("cuda")
    assert doc["method"] == min(doc["method_timings_ms"], key=doc["method_timings_ms"].get)
    assert all(c["passed"] for c in doc["checks"])
    loop = run_cli("gates", "--device", "cuda", "--json", "--method", "loop")
    assert loop.code == 0 and all(c["passed"] for c in loop.json()["checks"])


def test_heatmap_bins_average_and_skip_padding():
    from lstm_cli.gates_options import HeatmapSpec

    T, H = 130, 3
    values = torch.arange(T * 4 * H, dtype=torch.float64).view(T, 4, H) / (T * 4 * H)
    values[120:] = math.nan  # padding at the end of the sequence
    kept = {"gates": values, "c": values[:, 0]}
    heatmap = gates_module.build_heatmap(HeatmapSpec(0, "o"), 0, kept)
    assert heatmap.steps[0] == [0, 3] and heatmap.steps[-1] == [129, 130] and len(heatmap.steps) == 44
    expected = values[:, 3].numpy()  # gate o, (T, H)
    for row, (u0, u1) in enumerate(heatmap.units):
        for col, (s0, s1) in enumerate(heatmap.steps):
            block = expected[s0:s1, u0:u1]
            if np.isnan(block).all():
                assert heatmap.values[row][col] is None
            else:
                assert heatmap.values[row][col] == pytest.approx(np.nanmean(block), abs=1e-12)
    assert heatmap.values[0][-1] is None and heatmap.value_range == [0.0, 1.0]
