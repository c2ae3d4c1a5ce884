"""The verification rule (lstm_cli.verify): the float64 reference step, the tightness and safety of
the bound on random, trained and chaotic models, planted mistakes, the float64 shadow and the
chaos sentence. References here are direct nn.LSTM calls and tests/reference.py."""

from pathlib import Path

import pytest
import torch
from torch import nn

from lstm_cli import cells
from lstm_cli import gates as gates_module
from lstm_cli.gates import kernels as gates_kernels
from lstm_cli.gates import run as gates_run
from lstm_cli import model
from lstm_cli.model import direction_weights
from lstm_cli.verify import step as step_module
from lstm_cli.verify.rule import Rule
from lstm_cli.verify.step import PathRecord, Sample, Weights64, check_direction, choose_sample, reference_step
from tests.reference import reference_lstm

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
COUNTER = ["--weights", str(EXAMPLES / "counter_lstm.pt"), "--key", "lstm"]
CHAOTIC = ["--weights", str(EXAMPLES / "chaotic_lstm.pt")]


def counter_lstm() -> nn.LSTM:
    state = torch.load(EXAMPLES / "counter_lstm.pt", weights_only=True)
    lstm = nn.LSTM(4, 32, 2)
    lstm.load_state_dict({k.removeprefix("lstm."): v for k, v in state.items() if k.startswith("lstm.")})
    return lstm.eval()


# -- the reference step ---------------------------------------------------------------------------


@pytest.mark.parametrize("proj_size, bias", [(0, True), (3, True), (0, False)])
def test_reference_step_is_nn_lstm_one_step_in_float64(proj_size, bias):
    torch.manual_seed(0)
    lstm = nn.LSTM(5, 6, proj_size=proj_size, bias=bias, dtype=torch.float64)
    x = torch.randn(7, 5, dtype=torch.float64)
    h0 = torch.randn(7, proj_size or 6, dtype=torch.float64)
    c0 = 3 * torch.randn(7, 6, dtype=torch.float64)
    with torch.no_grad():
        _, (h1, c1) = lstm(x.unsqueeze(0), (h0.unsqueeze(0), c0.unsqueeze(0)))
    ref = reference_step(Weights64.of(direction_weights(lstm, 0, "forward"), torch.device("cpu")), x, h0, c0, Rule("float32"))
    assert torch.allclose(ref.h, h1[0], atol=1e-14) and torch.allclose(ref.c, c1[0], atol=1e-14)
    # gates against the independent reference, run one step from zero state
    _, _, _, gates = reference_lstm(lstm, x.unsqueeze(0))
    ref0 = reference_step(Weights64.of(direction_weights(lstm, 0, "forward"), torch.device("cpu")), x,
                          torch.zeros_like(h0), torch.zeros_like(c0), Rule("float32"))
    for k, name in enumerate("ifgo"):
        assert torch.allclose(ref0.gates[:, k], gates[(0, "forward")][name][0], atol=1e-14)


def loop_records(lstm: nn.LSTM, x: torch.Tensor) -> list[PathRecord]:
    """An LSTMCell loop written here (not lstm_cli's), keeping every state, layer by layer."""
    records, inp = [], x
    for layer in range(lstm.num_layers):
        w = direction_weights(lstm, layer, "forward")
        cell = nn.LSTMCell(w.w_ih.shape[1], lstm.hidden_size, dtype=x.dtype)
        with torch.no_grad():
            for name, value in (("weight_ih", w.w_ih), ("weight_hh", w.w_hh), ("bias_ih", w.b_ih), ("bias_hh", w.b_hh)):
                getattr(cell, name).copy_(value)
            h = c = x.new_zeros(x.shape[1], lstm.hidden_size)
            hs, cs = [], []
            for t in range(x.shape[0]):
                h, c = cell(inp[t].clone(), (h, c))
                hs.append(h)
                cs.append(c)
        hs, cs = torch.stack(hs), torch.stack(cs)
        records.append(PathRecord(list(range(x.shape[0])), inp, hs, cs, hs, None))
        inp = hs
    return records


def worst_ratios(lstm: nn.LSTM, x: torch.Tensor, dtype: str) -> list[float]:
    T, B = x.shape[:2]
    sample = Sample(list(range(B)), 1, B, T)
    checks = [check_direction(f"l{k}", lstm, k, "forward", rec, sample, Rule(dtype))
              for k, rec in enumerate(loop_records(lstm, x))]
    assert all(c.passed for c in checks), checks
    return [c.worst_ratio for c in checks]


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_bound_is_safe_and_tight_on_random_and_trained_models(dtype):
    """Each step's real error uses a sizeable share of its bound, never all of it: the bound is
    neither cried wolf on nor vacuous (README's table comes from the same measurement)."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    torch_dtype = getattr(torch, dtype)
    random = nn.LSTM(100, 20, 2).eval().to(torch_dtype)
    ratios = worst_ratios(random, torch.randn(50, 3, 100, generator=generator).to(torch_dtype), dtype)
    trained = counter_lstm().to(torch_dtype)
    x = torch.from_numpy(__import__("numpy").load(EXAMPLES / "counter_input.npy"))[:300].to(torch_dtype)
    ratios += worst_ratios(trained, x, dtype)
    assert max(ratios) <= 1 and max(ratios) >= 0.05, ratios


def test_counter_model_has_the_large_cell_states_the_tests_need():
    """Checked with nn.LSTM itself, in float64: |c| passes 50 within 200 steps of random input."""
    lstm = counter_lstm().double()
    x = torch.randn(200, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        _, (_, c_n) = lstm(x)
    assert c_n.abs().max() > 50


# -- trained and chaotic models through the commands ---------------------------------------------


@pytest.mark.parametrize("seq_len", [10, 200, 1000])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_trained_large_cell_states_pass_every_dtype(run_cli, seq_len, dtype):
    for command in (["compare-cell", "--repeat", "0"], ["gates"]):
        result = run_cli(*command, *COUNTER, "--seq-len", str(seq_len), "--batch-size", "2", "--dtype", dtype, "--json")
        assert result.code == 0, (command, result.stderr)
        doc = result.json()
        assert doc["passed"] and all(c["worst_ratio"] <= 1 for c in doc["checks"])
        if command[0] == "gates" and seq_len >= 200:
            assert max(layer["cell"]["max_abs"] for layer in doc["layers"]) > 50


def test_chaotic_model_passes_and_says_why_the_end_to_end_difference_is_large(run_cli):
    result = run_cli("compare-cell", *CHAOTIC, "--seq-len", "200", "--repeat", "0", "--json")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["output_max_abs_diff"] > 1e-2  # the two float32 paths really do drift apart
    shadow = doc["shadow"]
    assert shadow["chaotic"] and "chaotic" in shadow["sentence"]
    # The growth it reports, recomputed here with nn.LSTM in float64 over the same steps.
    lstm = nn.LSTM(32, 64, 2, dtype=torch.float64)
    lstm.load_state_dict(torch.load(EXAMPLES / "chaotic_lstm.pt", weights_only=True))
    x = model.make_input(model_spec(seq_len=200, input_size=32), model.Placement(torch.device("cpu"), torch.float32))
    n, steps = shadow["sequences"][0], shadow["steps"]
    xs = x[:steps, n : n + 1].double()
    with torch.no_grad():
        a, _ = lstm(xs)
        b, _ = lstm(xs * (1 + 1e-7))
    growth = (a - b).abs().amax(dim=(1, 2))
    assert max(shadow["growth"]) >= growth.max().item() * 0.5 and max(growth) > 1e-2
    human = run_cli("compare-cell", *CHAOTIC, "--seq-len", "200", "--repeat", "0")
    assert "This model is chaotic on this input" in " ".join(human.stdout.split())


def model_spec(**changes):
    from lstm_cli.spec import LSTMSpec

    return LSTMSpec(device="cpu", **changes)


def test_shadow_errors_are_each_paths_distance_from_float64(run_cli):
    result = run_cli("compare-cell", "--seq-len", "30", "--repeat", "0", "--json")
    doc = result.json()
    spec = model_spec(seq_len=30)
    place = model.Placement(torch.device("cpu"), torch.float32)
    lstm, x = model.build_lstm(spec, place), model.make_input(spec, place)
    with torch.no_grad():
        out32, _ = lstm(x)
        out64, (h64, c64) = lstm.double()(x.double())
    seqs = doc["shadow"]["sequences"]
    error = (out32[:, seqs].double() - out64[:, seqs]).abs().max().item()
    assert doc["shadow"]["errors"][0]["path"] == "nn.LSTM"
    assert doc["shadow"]["errors"][0]["output_max_abs_diff"] == pytest.approx(error, rel=1e-9, abs=1e-15)
    assert doc["shadow"]["complete"] and doc["shadow"]["errors"][1]["c_n_max_abs_diff"] > 0


# -- planted mistakes -----------------------------------------------------------------------------


def plant(kind: str):
    """A function that spoils a CellStack the way `kind` says (mirror mode, after the copy)."""

    def spoil(stack: cells.CellStack) -> cells.CellStack:
        with torch.no_grad():
            if kind == "weight":  # the largest weight of layer 0's W_ih, 1e-3 relative
                w = stack.cells[0][0].weight_ih
                k = int(w.abs().argmax())
                w.view(-1)[k] *= 1 + 1e-3
            elif kind == "swap":  # i and f rows swapped in layer 1
                cell = stack.cells[1][0]
                H = cell.hidden_size
                for p in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh):
                    p[: 2 * H] = torch.cat([p[H : 2 * H].clone(), p[:H].clone()])
            elif kind == "bias":  # b_hh dropped in layer 0
                stack.cells[0][0].bias_hh.zero_()
            elif kind == "projection":  # layer 0 keeps the first P units instead of projecting
                P, H = stack.projections[0][0].shape
                stack.projections[0][0] = torch.eye(P, H, dtype=stack.projections[0][0].dtype)
        return stack

    return spoil


PLANTS = {
    # kind: (extra flags, failing check (layer direction), its first bad step)
    "weight": ([], "layer 0 forward", 0),
    "swap": ([], "layer 1 forward", 0),
    "bias": ([], "layer 0 forward", 0),
    "projection": (["--proj-size", "4"], "layer 0 forward", 0),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("weights", ["random", "trained"])
@pytest.mark.parametrize("kind", list(PLANTS))
def test_planted_mistakes_in_the_loop_fail_with_their_location(run_cli, monkeypatch, kind, weights, dtype):
    flags, where, step = PLANTS[kind]
    if weights == "trained":
        if kind == "projection":
            pytest.skip("the trained example has no projection")
        flags = [*flags, *COUNTER, "--seq-len", "200"]
    original = cells.cells_from_lstm
    monkeypatch.setattr(cells, "cells_from_lstm", lambda lstm: plant(kind)(original(lstm)))
    result = run_cli("compare-cell", "--json", "--repeat", "0", "--dtype", dtype, *flags)
    assert result.code == 1, result.stderr
    failed = [c for c in result.json()["checks"] if not c["passed"]]
    assert failed and failed[0]["name"].startswith(where), failed
    assert failed[0]["first_bad"]["step"] == step
    assert "FAILED" not in result.stdout  # JSON only on stdout


@pytest.fixture
def trained_bidirectional(tmp_path) -> list[str]:
    """Trained weights in both directions: the counter's second layer (|c| grows past 50) as a
    one-layer bidirectional LSTM(32, 32)."""
    trained = counter_lstm()
    lstm = nn.LSTM(32, 32, bidirectional=True)
    with torch.no_grad():
        for suffix in ("", "_reverse"):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(lstm, f"{name}_l0{suffix}").copy_(getattr(trained, f"{name}_l1"))
    path = tmp_path / "bidirectional_counter.pt"
    torch.save(lstm.state_dict(), path)
    return ["--weights", str(path)]


@pytest.mark.parametrize("weights", ["random", "trained"])
def test_backward_direction_run_forward_fails(run_cli, monkeypatch, weights, trained_bidirectional):
    real = cells._run_direction
    monkeypatch.setattr(cells, "_run_direction",
                        lambda cell, w_hr, xs, valid, reverse, recorder=None, **state: real(cell, w_hr, xs, valid, False, recorder, **state))
    flags = ["--bidirectional"] + (trained_bidirectional if weights == "trained" else [])
    result = run_cli("compare-cell", "--json", "--repeat", "0", *flags)
    assert result.code == 1
    failed = [c for c in result.json()["checks"] if not c["passed"]]
    assert failed[0]["name"].startswith("layer 0 backward")
    assert failed[0]["first_bad"]["step"] == 9  # its first step in its own order: the last one


@pytest.mark.parametrize("weights", ["random", "trained"])
def test_padding_leaking_into_a_packed_sequence_fails(run_cli, monkeypatch, weights, trained_bidirectional):
    real = cells._run_direction

    def leaky(cell, w_hr, xs, valid, reverse, recorder=None, **state):
        out, h, c = real(cell, w_hr, xs, None, reverse, recorder, **state)  # runs over the padding too
        return (out if valid is None else out * valid), h, c

    monkeypatch.setattr(cells, "_run_direction", leaky)
    flags = ["--bidirectional", "--lengths", "10,4,7"] + (trained_bidirectional if weights == "trained" else [])
    result = run_cli("compare-cell", "--json", "--repeat", "0", *flags)
    assert result.code == 1
    failed = [c for c in result.json()["checks"] if not c["passed"]]
    names = [c["name"] for c in failed]
    # the backward pass must start at each sequence's own end; the shortest ends at step 3
    backward = next(c for c in failed if c["name"].startswith("layer 0 backward"))
    assert backward["first_bad"]["step"] == 6 and backward["first_bad"]["sequence"] == 2
    assert any("last valid step" in n for n in names)


def spoil_weights(w: model.DirectionWeights, kind: str) -> model.DirectionWeights:
    w_ih, w_hh, b_ih, b_hh = (t.clone() for t in (w.w_ih, w.w_hh, w.b_ih, w.b_hh))
    H = w_hh.shape[0] // 4
    if kind == "weight":
        w_ih.view(-1)[int(w_ih.abs().argmax())] *= 1 + 1e-3
    elif kind == "swap":
        for p in (w_ih, w_hh, b_ih, b_hh):
            p[: 2 * H] = torch.cat([p[H : 2 * H].clone(), p[:H].clone()])
    else:
        b_hh.zero_()
    return model.DirectionWeights(w_ih, w_hh, b_ih, b_hh, w.w_hr)


CAPTURE_PLANTS = {
    # kind: (flags, failing check, its first bad step); random weights use the seed's sizes
    "weight": ([], "layer 0 forward", 0),
    "swap": ([], "layer 0 forward", 0),
    "bias": ([], "layer 0 forward", 0),
    "projection": (["--proj-size", "4"], "layer 0 forward", 0),
    "backward": (["--bidirectional"], "layer 0 backward", None),  # None: the sequence's last step
    # backward order meets sequence 2 (length 7) at its last step, 6, before sequence 1 (length 4)
    "padding": (["--bidirectional", "--lengths", "{T},4,7"], "layer 0 backward", 6),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("weights", ["random", "trained"])
@pytest.mark.parametrize("method", ["loop", "recompute"])
@pytest.mark.parametrize("kind", list(CAPTURE_PLANTS))
def test_planted_mistakes_in_the_capture_fail(run_cli, monkeypatch, trained_bidirectional, kind, method, weights, dtype):
    flags, where, step = CAPTURE_PLANTS[kind]
    if kind == "padding" and method == "recompute":
        pytest.skip("recompute reads nn.LSTM's own padded output; the loop is what can leak")
    if weights == "trained":
        if kind == "projection":
            pytest.skip("the trained examples have no projection")
        bidirectional = "--bidirectional" in flags
        flags = [*flags, *(trained_bidirectional if bidirectional else [*COUNTER]), "--seq-len", "50"]
    T = int(flags[flags.index("--seq-len") + 1]) if "--seq-len" in flags else 10
    flags = [f.replace("{T}", str(T)) for f in flags]
    if kind in ("weight", "swap", "bias"):
        real = gates_run.direction_weights
        monkeypatch.setattr(gates_run, "direction_weights",
                            lambda lstm, layer, d: spoil_weights(real(lstm, layer, d), kind) if layer == 0 else real(lstm, layer, d))
    elif kind == "projection":  # keep the first P units instead of projecting
        real_rebuild = gates_kernels.rebuild_h

        def truncating(c, o, w, out, raw=None):
            P, H = w.w_hr.shape
            return real_rebuild(c, o, model.DirectionWeights(w.w_ih, w.w_hh, w.b_ih, w.b_hh, torch.eye(P, H, dtype=c.dtype)), out, raw)

        monkeypatch.setattr(gates_kernels, "rebuild_h", truncating)
    elif kind == "backward":
        for capture in (gates_module.LoopCapture, gates_module.RecomputeCapture):
            real_run = capture.run
            monkeypatch.setattr(capture, "run", lambda self, x, h, w, reverse, b, n, h_out=None, real_run=real_run, **state: real_run(self, x, h, w, False, b, n, h_out, **state))
    else:  # every row runs at every step: padding flows into the states of short sequences
        monkeypatch.setattr(gates_module.WorkingBatch, "size_at", lambda self, t: self.B)
    result = run_cli("gates", "--json", "--method", method, "--dtype", dtype, *flags)
    assert result.code == 1, result.stderr
    failed = [c for c in result.json()["checks"] if not c["passed"]]
    assert failed[0]["name"].startswith(where), failed
    assert failed[0]["first_bad"]["step"] == (T - 1 if step is None else step)


def test_overrides_mean_the_same_on_every_command(run_cli):
    """--atol/--rtol: |diff| <= atol + rtol |reference|, element by element, everywhere."""
    for command in (["inspect"], ["compare-cell", "--repeat", "0"], ["gates"]):
        doc = run_cli(*command, "--json", "--atol", "1", "--rtol", "0.5").json()
        assert doc["rule"]["atol"] == 1 and doc["rule"]["rtol"] == 0.5 and doc["passed"]
        bad = run_cli(*command, "--atol", "-1")
        assert bad.code == 2 and "--atol must be a finite number >= 0" in bad.stderr
    # gates against float64 with a zero bound: float32 rounding makes it fail
    assert run_cli("gates", "--json", "--atol", "0").code == 1


def test_sample_is_everything_when_cheap_and_spread_when_not(monkeypatch):
    small = choose_sample(3, 10, 10_000)
    assert small.sequences == [0, 1, 2] and small.stride == 1
    big = choose_sample(64, 200, 14_000_000, lengths=tuple([200] * 63 + [5]))
    assert len(big.sequences) < 64 and 63 in big.sequences  # the shortest is always checked
    steps = big.steps(200, reverse=False)
    assert steps[0] == 0 and steps[-1] == 199
    assert big.steps(200, reverse=True)[0] == 199


def test_a_sampled_check_still_catches_a_planted_mistake(run_cli, monkeypatch):
    monkeypatch.setattr(step_module, "CHECK_FREE_MACS", 1)  # force sampling at the seed's size
    original = cells.cells_from_lstm
    monkeypatch.setattr(cells, "cells_from_lstm", lambda lstm: plant("bias")(original(lstm)))
    doc = run_cli("compare-cell", "--json", "--repeat", "0", "--batch-size", "8").json()
    assert doc["checked"] != "every sequence, every step"
    assert not doc["passed"] and doc["checks"][0]["first_bad"]["step"] == 0


@pytest.mark.gpu
@pytest.mark.parametrize("tf32", [False, True])
def test_trained_model_on_cuda_passes_and_a_planted_mistake_fails(run_cli, monkeypatch, tf32):
    flags = [*COUNTER, "--device", "cuda", "--seq-len", "1000", "--json"]
    cc = run_cli("compare-cell", "--repeat", "1", *flags, *(["--allow-tf32"] if tf32 else []))
    assert cc.code == 0, cc.stderr
    assert cc.json()["rule"]["tf32"] is tf32
    assert run_cli("gates", *flags).code == 0
    original = cells.cells_from_lstm
    monkeypatch.setattr(cells, "cells_from_lstm", lambda lstm: plant("swap")(original(lstm)))
    bad = run_cli("compare-cell", "--repeat", "0", *flags, *(["--allow-tf32"] if tf32 else []))
    failed = [c for c in bad.json()["checks"] if not c["passed"]]
    assert bad.code == 1 and failed[0]["name"].startswith("layer 1 forward") and failed[0]["first_bad"]["step"] == 0
