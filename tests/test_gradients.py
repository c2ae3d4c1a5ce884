"""gradients: per-step norms against an independent float64 computation, --forget-bias,
reproducibility, the vanishing definition, bad flags and --plot; the forget-gate bias as it
ran (loaded, random or set), underflow to 0 and a plot that keeps every step."""

import math
import os
import re
import subprocess
import sys

import pytest
import torch

import lstm_cli.gradients as gradients
from lstm_cli.gradients import build_model, run_gradients, set_forget_bias, vanishing_step
from lstm_cli.model import Placement
from lstm_cli.render.common import sparkline
from lstm_cli.spec import LSTMSpec
from tests.reference import reference_lstm

SMALL = {"input_size": 5, "hidden_size": 4, "num_layers": 2, "seq_len": 6, "batch_size": 2}
SMALL_FLAGS = ["--input-size", "5", "--hidden-size", "4", "--num-layers", "2", "--seq-len", "6", "--batch-size", "2"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# -- an independent computation: weights drawn here, equations written out, float64 ----------


def seeded_module(cell: str, spec: LSTMSpec) -> torch.nn.Module:
    """The documented init, done here: U(-1/sqrt(H), 1/sqrt(H)) for every parameter in order,
    from a generator seeded with seed + 2**32."""
    kind = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell]
    extra = {"proj_size": spec.proj_size} if cell == "lstm" else {}
    module = kind(spec.input_size, spec.hidden_size, spec.num_layers, bias=spec.bias, **extra)
    generator = torch.Generator().manual_seed(spec.seed + 2**32)
    bound = 1 / math.sqrt(spec.hidden_size)
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-bound, bound, generator=generator)
    return module


def reference_recurrent(module, x: torch.Tensor, cell: str) -> torch.Tensor:
    """Final hidden state of the last layer, (N, H), from the equations in PyTorch's docs.
    x is time-major (L, N, H_in) float64."""
    layer_input = x
    H = module.hidden_size
    for layer in range(module.num_layers):
        w_ih = getattr(module, f"weight_ih_l{layer}").double()
        w_hh = getattr(module, f"weight_hh_l{layer}").double()
        if module.bias:
            b_ih = getattr(module, f"bias_ih_l{layer}").double()
            b_hh = getattr(module, f"bias_hh_l{layer}").double()
        else:
            b_ih = b_hh = torch.zeros(w_ih.shape[0], dtype=torch.float64)
        h = torch.zeros(x.shape[1], H, dtype=torch.float64)
        outputs = []
        for x_t in layer_input:
            a, b = x_t @ w_ih.T + b_ih, h @ w_hh.T + b_hh
            if cell == "rnn":
                h = torch.tanh(a + b)
            else:  # gru: rows r | z | n
                r = torch.sigmoid(a[:, :H] + b[:, :H])
                z = torch.sigmoid(a[:, H : 2 * H] + b[:, H : 2 * H])
                n = torch.tanh(a[:, 2 * H :] + r * b[:, 2 * H :])
                h = (1 - z) * n + z * h
            outputs.append(h)
        layer_input = torch.stack(outputs)
    return layer_input[-1]


def reference_norms(cell: str, spec: LSTMSpec, forget_bias=None) -> list[float]:
    module = seeded_module(cell, spec)
    if forget_bias is not None:
        H = spec.hidden_size
        with torch.no_grad():
            for layer in range(spec.num_layers):
                getattr(module, f"bias_ih_l{layer}")[H : 2 * H] = forget_bias
                getattr(module, f"bias_hh_l{layer}")[H : 2 * H] = 0.0
    # the documented input: torch.randn in the user's layout from a generator seeded with seed
    shape = [spec.seq_len, spec.input_size] if spec.unbatched else (
        [spec.batch_size, spec.seq_len, spec.input_size] if spec.batch_first
        else [spec.seq_len, spec.batch_size, spec.input_size]
    )
    x = torch.randn(shape, generator=torch.Generator().manual_seed(spec.seed)).double()
    x_tm = x.unsqueeze(1) if spec.unbatched else (x.transpose(0, 1) if spec.batch_first else x)
    x_tm = x_tm.detach().requires_grad_(True)
    if cell == "lstm":
        _, h_n, _, _ = reference_lstm(module, x_tm)
        final = h_n[-1]
    else:
        final = reference_recurrent(module, x_tm, cell)
    (grad,) = torch.autograd.grad(final.sum(), x_tm)
    return [grad[t].norm().item() for t in range(spec.seq_len)]


CASES = {
    "rnn": ("rnn", {}, None),
    "gru": ("gru", {}, None),
    "lstm": ("lstm", {}, None),
    "lstm forget bias 1.5": ("lstm", {}, 1.5),
    "lstm proj_size": ("lstm", {"proj_size": 3}, None),
    "gru batch_first": ("gru", {"batch_first": True}, None),
    "rnn unbatched, no bias": ("rnn", {"unbatched": True, "bias": False}, None),
    "lstm one layer, seed 9": ("lstm", {"num_layers": 1, "seed": 9}, -2.0),
}


@pytest.mark.parametrize("cell, changes, bias", CASES.values(), ids=CASES.keys())
def test_norms_equal_an_independent_autograd_computation(cell, changes, bias):
    spec = LSTMSpec(**(SMALL | changes), dtype="float64", device="cpu")
    result = run_gradients(spec, (cell,), forget_bias=bias)
    (model,) = result.models
    expected = reference_norms(cell, spec, bias)
    assert model.grad_norms == pytest.approx(expected, rel=1e-10, abs=0)
    assert model.first_to_last_ratio == pytest.approx(expected[0] / expected[-1], rel=1e-10)
    assert model.forget_bias == bias


def test_float32_norms_agree_with_the_float64_reference():
    spec = LSTMSpec(**SMALL, device="cpu")
    result = run_gradients(spec)
    for model in result.models:
        assert model.grad_norms == pytest.approx(reference_norms(model.cell, spec), rel=1e-4)


# -- --forget-bias ---------------------------------------------------------------------------


@pytest.mark.parametrize("changes", [{}, {"proj_size": 2, "num_layers": 3}], ids=["plain", "proj_size"])
def test_forget_bias_changes_only_the_forget_rows(changes):
    spec = LSTMSpec(**(SMALL | changes), device="cpu")
    place = Placement(torch.device("cpu"), torch.float32)
    before = dict(build_model("lstm", spec, place).named_parameters())
    lstm = build_model("lstm", spec, place)
    set_forget_bias(lstm, 1.25)
    after = dict(lstm.named_parameters())
    assert after.keys() == before.keys()
    H = spec.hidden_size
    changed = set()
    for name, old in before.items():
        new = after[name]
        if name.startswith(("bias_ih", "bias_hh")):
            value = 1.25 if name.startswith("bias_ih") else 0.0
            assert torch.equal(new[H : 2 * H], torch.full((H,), value))
            assert torch.equal(new[:H], old[:H]) and torch.equal(new[2 * H :], old[2 * H :])
            changed.add(name)
        else:
            assert torch.equal(new, old), name
    assert changed == {f"bias_{k}_l{layer}" for k in ("ih", "hh") for layer in range(spec.num_layers)}
    # the forget gate's pre-activation bias is exactly B; the random init had something else
    for layer in range(spec.num_layers):
        total = getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")
        assert torch.equal(total[H : 2 * H], torch.full((H,), 1.25))


def test_forget_bias_moves_the_lstm_only(run_cli):
    plain = run_cli("gradients", *SMALL_FLAGS, "--json").json()
    biased = run_cli("gradients", *SMALL_FLAGS, "--forget-bias", "1", "--json").json()
    by_cell = lambda doc: {m["cell"]: m for m in doc["models"]}  # noqa: E731
    assert by_cell(plain)["rnn"]["grad_norms"] == by_cell(biased)["rnn"]["grad_norms"]
    assert by_cell(plain)["gru"]["grad_norms"] == by_cell(biased)["gru"]["grad_norms"]
    assert by_cell(plain)["lstm"]["grad_norms"] != by_cell(biased)["lstm"]["grad_norms"]
    assert biased["config"]["forget_bias"] == 1.0 and by_cell(biased)["lstm"]["forget_bias"] == 1.0
    assert plain["config"]["forget_bias"] is None


# -- reproducibility and the JSON contract ---------------------------------------------------


def test_same_flags_and_seed_give_the_same_numbers(run_cli):
    first = run_cli("gradients", "--seed", "3", "--json")
    second = run_cli("gradients", "--seed", "3", "--json")
    assert first.code == second.code == 0
    assert first.json() == second.json()
    other = run_cli("gradients", "--seed", "4", "--json").json()
    for a, b in zip(first.json()["models"], other["models"]):
        assert a["cell"] == b["cell"] and a["grad_norms"] != b["grad_norms"]


def test_json_contract_and_the_vanishing_definition(run_cli):
    result = run_cli("gradients", "--seq-len", "40", "--cells", "lstm,rnn", "--json")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["command"] == "gradients" and doc["config"]["seq_len"] == 40
    assert doc["config"]["cells"] == ["lstm", "rnn"] and [m["cell"] for m in doc["models"]] == ["lstm", "rnn"]
    assert doc["passed"] is True and doc["vanish_fraction"] == 1e-3
    assert [c["passed"] for c in doc["checks"]] == [True, True]
    for model in doc["models"]:
        norms = model["grad_norms"]
        assert len(norms) == 40 and all(v > 0 for v in norms)
        assert model["first_to_last_ratio"] == pytest.approx(norms[0] / norms[-1], rel=1e-12)
        assert (model["first_step_norm"], model["last_step_norm"]) == (norms[0], norms[-1])
        k = model["vanishes_at_step"]
        threshold = 1e-3 * norms[-1]
        # at the seed's 4 layers and 40 steps both models lose 3 orders of magnitude
        assert k is not None and model["vanishes_at_t"] == 39 - k
        assert norms[39 - k] < threshold
        assert all(v >= threshold for v in norms[40 - k :])


def test_vanishing_step_definition():
    assert vanishing_step([1e-5, 1e-4, 2e-3, 0.5, 1.0]) == 3  # 0.5, 2e-3 no; 1e-4 < 1e-3 yes
    assert vanishing_step([1e-9, 1e-4, 0.9, 1.0]) == 2  # the first one walking back counts
    assert vanishing_step([1.0, 1e-4, 0.9, 1.0]) == 2  # even if an earlier step recovers
    assert vanishing_step([1e-3, 1.0]) is None  # "below", not "at"
    assert vanishing_step([0.5, 2.0, 1.0]) is None
    assert vanishing_step([1.0]) is None  # one step: nothing to walk back to
    assert vanishing_step([1.0, 0.0]) is None  # no last-step gradient to compare with
    assert vanishing_step([0.0, 1.0]) == 1  # an underflowed gradient has vanished


def test_a_non_finite_gradient_fails_the_check_with_exit_1(run_cli, monkeypatch):
    original = gradients.step_grad_norms

    def with_nan(module, x, spec, initial=None):
        norms = original(module, x, spec, initial)
        return [math.nan] + norms[1:] if isinstance(module, torch.nn.GRU) else norms

    monkeypatch.setattr(gradients, "step_grad_norms", with_nan)
    result = run_cli("gradients", *SMALL_FLAGS, "--json")
    assert result.code == 1
    doc = result.json()
    assert [c["passed"] for c in doc["checks"]] == [True, False, True]
    assert doc["models"][1]["grad_norms"][0] is None and doc["passed"] is False
    assert "1 check(s) failed" in result.stderr


def test_dropout_is_not_applied_and_says_so(run_cli):
    plain = run_cli("gradients", *SMALL_FLAGS, "--json")
    dropped = run_cli("gradients", *SMALL_FLAGS, "--dropout", "0.5", "--json")
    assert dropped.code == 0
    assert [m["grad_norms"] for m in dropped.json()["models"]] == [m["grad_norms"] for m in plain.json()["models"]]
    assert dropped.stderr.splitlines() == [
        "note: gradients are measured without dropout (as in eval mode): --dropout 0.5 is not applied"
    ]


def test_table_shows_each_models_numbers_and_sparkline(run_cli):
    args = ("gradients", "--seq-len", "30", "--num-layers", "1", "--forget-bias", "3")
    doc = run_cli(*args, "--json").json()
    table = run_cli(*args)
    assert table.code == 0
    logs = [[math.log10(v) for v in m["grad_norms"]] for m in doc["models"]]
    low, high = min(map(min, logs)), max(map(max, logs))
    lines = table.stdout.splitlines()
    for model, row in zip(doc["models"], logs):
        (table_row,) = [line for line in lines if line.startswith(f"│ {model['module']} ")]
        (spark_row,) = [line for line in lines if line.startswith(f"{model['module']} ")]
        assert spark_row.endswith("  " + sparkline(row, low, high))  # one shared log scale
        k = model["vanishes_at_step"]
        assert ("never" if k is None else f"{k} step{'s' if k > 1 else ''} back (t={29 - k})") in table_row
        cells = [c.strip() for c in table_row.split("│")[2:5]]
        assert cells == [f"{v:.3g}" for v in (model["grad_norms"][0], model["grad_norms"][-1], model["first_to_last_ratio"])]
    # with forget bias 3 the one-layer LSTM keeps its gradient over 30 steps; the RNN does not
    by_cell = {m["cell"]: m for m in doc["models"]}
    assert by_cell["lstm"]["vanishes_at_step"] is None and by_cell["rnn"]["vanishes_at_step"] is not None
    assert by_cell["lstm"]["vanishes"] == "never" and by_cell["rnn"]["vanishes"] == "at_step"


# -- bad flags and --plot ------------------------------------------------------------------


BAD_FLAGS = [
    (["--cells", ""], "--cells needs at least one of rnn, gru, lstm"),
    (["--cells", "rnn,tree"], "--cells: unknown cell 'tree' (choose from rnn, gru, lstm)"),
    (["--cells", "lstm,rnn,lstm"], "--cells lists lstm more than once"),
    (["--forget-bias", "nan"], "--forget-bias must be a finite number"),
    (["--forget-bias", "inf"], "--forget-bias must be a finite number"),
    (["--forget-bias", "1", "--cells", "rnn,gru"], "add lstm to --cells"),
    (["--forget-bias", "1", "--no-bias"], "--forget-bias needs the LSTM's biases: drop --no-bias"),
    (["--bidirectional"], "drop --bidirectional"),
    (["--lengths", "10,7,3"], "drop --lengths"),
    (["--forget-bias", "one"], "'one' is not a valid float"),
    (["--plot", "norms.jpg"], "--plot file must end in .png"),
    (["--plot", "/no/such/dir/norms.png"], "directory '/no/such/dir' does not exist"),
]


@pytest.mark.parametrize("args, message", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flags_give_one_line_and_exit_2(run_cli, args, message):
    result = run_cli("gradients", *args)
    assert result.code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lstm-cli: error: "), result.stderr
    assert message in lines[0]


def test_bidirectional_file_is_refused_without_flag_advice(run_cli, tmp_path):
    """The layout came from --weights: there is no --bidirectional to drop."""
    path = tmp_path / "bi.pt"
    torch.save(torch.nn.LSTM(5, 4, bidirectional=True).state_dict(), path)
    for extra in ([], ["--bidirectional"]):
        result = run_cli("gradients", "--weights", str(path), *extra)
        assert result.code == 2 and result.stdout == ""
        (line,) = result.stderr.splitlines()
        assert line == (
            f"lstm-cli: error: gradients counts steps back from one final step, but --weights {path} holds a "
            "bidirectional LSTM, whose backward direction ends at step 0: gradients measures one-directional "
            "LSTMs only"
        )


def test_plot_onto_a_directory_is_refused(run_cli, tmp_path):
    (tmp_path / "d.png").mkdir()
    result = run_cli("gradients", "--plot", str(tmp_path / "d.png"))
    assert result.code == 2 and result.stderr.splitlines() == [f"lstm-cli: error: --plot {tmp_path / 'd.png'}: is a directory"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")
def test_plot_into_a_read_only_directory_is_refused_before_any_work(run_cli, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    monkeypatch.setattr(gradients, "run_gradients", None)  # running would crash: the check acts first
    result = run_cli("gradients", "--plot", str(locked / "norms.png"))
    assert result.code == 2
    assert result.stderr.splitlines() == [f"lstm-cli: error: --plot {locked / 'norms.png'}: not writable"]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_plot_where_even_root_cannot_write_is_refused(run_cli):
    result = run_cli("gradients", *SMALL_FLAGS, "--plot", "/proc/self/norms.png")
    assert result.code == 2 and result.stdout == ""
    assert result.stderr.splitlines() == ["lstm-cli: error: --plot /proc/self/norms.png: not writable"]


def test_plot_that_fails_while_writing_is_one_line(run_cli, tmp_path, monkeypatch):
    matplotlib_figure = pytest.importorskip("matplotlib.figure")

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(matplotlib_figure.Figure, "savefig", disk_full)
    target = tmp_path / "norms.png"
    result = run_cli("gradients", *SMALL_FLAGS, "--plot", str(target))
    assert result.code == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [f"lstm-cli: error: --plot {target}: cannot write: No space left on device"]


def test_plot_writes_a_png(run_cli, tmp_path):
    pytest.importorskip("matplotlib")
    target = tmp_path / "norms.png"
    result = run_cli("gradients", *SMALL_FLAGS, "--plot", str(target), "--json")
    assert result.code == 0, result.stderr
    assert result.json()["plot"] == str(target)
    data = target.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000


def test_plot_without_matplotlib_names_the_install_command(run_cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    monkeypatch.setattr(gradients, "run_gradients", None)  # and it is found out before any work
    target = tmp_path / "norms.png"
    result = run_cli("gradients", "--plot", str(target))
    assert result.code == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "lstm-cli: error: --plot needs matplotlib, which is not installed: pip install 'lstm-cli[plot]'"
    ]
    assert not target.exists()


def test_help_names_the_flags_and_defines_vanishing(run_cli):
    result = run_cli("gradients", "--help")
    text = re.sub(r"[\s│]+", " ", result.stdout)
    assert result.code == 0
    for needle in ("--cells", "--forget-bias", "--plot", "pip install 'lstm-cli[plot]'",
                   "below 1e-3 x the last step's", "b_if + b_hf = B"):
        assert needle in text, needle


@pytest.mark.gpu
def test_cuda_matches_cpu_in_float64():
    """cuDNN runs an RNN backward only in train mode: the command must work there too."""
    cpu = run_gradients(LSTMSpec(**SMALL, dtype="float64", device="cpu"), forget_bias=1.0)
    cuda = run_gradients(LSTMSpec(**SMALL, dtype="float64", device="cuda"), forget_bias=1.0)
    assert cuda.device.startswith("cuda")
    for a, b in zip(cpu.models, cuda.models):
        assert b.grad_norms == pytest.approx(a.grad_norms, rel=1e-9)


def test_gradients_help_imports_neither_torch_nor_matplotlib():
    probe = (
        "import sys\n"
        "from lstm_cli.cli import main\n"
        "code = main(['gradients', '--help'])\n"
        "print('CODE', code, 'HEAVY', sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert "CODE 0 HEAVY []" in result.stdout, result.stdout + result.stderr


def test_weights_run_the_loaded_lstm_alone_unless_cells_are_asked(run_cli, tmp_path):
    torch.manual_seed(5)
    lstm = torch.nn.LSTM(3, 4)
    path = tmp_path / "w.pt"
    torch.save(lstm.state_dict(), path)
    doc = run_cli("gradients", "--weights", str(path), "--seq-len", "6", "--batch-size", "2", "--json").json()
    assert [m["cell"] for m in doc["models"]] == ["lstm"]
    x = torch.randn(6, 2, 3, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    _, (h, _) = lstm(x)
    (grad,) = torch.autograd.grad(h[-1].sum(), x)
    expected = [grad[t].norm().item() for t in range(6)]
    assert doc["models"][0]["grad_norms"] == pytest.approx(expected, rel=1e-5)
    doc = run_cli("gradients", "--weights", str(path), "--cells", "rnn,lstm", "--json").json()
    assert [m["cell"] for m in doc["models"]] == ["rnn", "lstm"]


def test_save_weights_keeps_the_lstm_that_ran_forget_bias_included(run_cli, tmp_path):
    path = tmp_path / "ran.pt"
    first = run_cli("gradients", "--seq-len", "6", "--forget-bias", "1", "--save-weights", str(path), "--json")
    assert first.code == 0, first.stderr
    state = torch.load(path, weights_only=True)
    H = 20
    assert torch.all(state["bias_ih_l0"][H : 2 * H] == 1) and torch.all(state["bias_hh_l0"][H : 2 * H] == 0)
    again = run_cli("gradients", "--seq-len", "6", "--weights", str(path), "--json")
    lstm_first = next(m for m in first.json()["models"] if m["cell"] == "lstm")
    assert again.json()["models"][0]["grad_norms"] == lstm_first["grad_norms"]
    refused = run_cli("gradients", "--cells", "rnn", "--save-weights", str(path))
    assert refused.code == 2 and "add lstm to --cells" in refused.stderr


# -- the forget-gate bias as it ran: loaded, random or set -----------------------------------


def forget_sums(state: dict, hidden_size: int) -> torch.Tensor:
    """b_if + b_hf of every layer, straight from a state_dict, in float64."""
    H = hidden_size
    layers = sorted(name.removeprefix("bias_ih") for name in state if name.startswith("bias_ih"))
    return torch.cat([state[f"bias_ih{s}"][H : 2 * H].double() + state[f"bias_hh{s}"][H : 2 * H].double() for s in layers])


def flat(text: str) -> str:
    """Rich output with its line breaks and table borders turned into single spaces."""
    return re.sub(r"[\s│]+", " ", text)


def test_loaded_weights_report_their_own_forget_bias(run_cli, tmp_path):
    torch.manual_seed(11)
    lstm = torch.nn.LSTM(3, 4, num_layers=2)
    with torch.no_grad():  # a trained-looking forget bias: b_if = 1.1, b_hf as initialised
        lstm.bias_ih_l0[4:8] = 1.1
        lstm.bias_ih_l1[4:8] = 1.1
    path = tmp_path / "trained.pt"
    torch.save(lstm.state_dict(), path)
    sums = forget_sums(torch.load(path, weights_only=True), 4)
    assert abs(sums.mean().item() - 1.1) < 0.5 and sums.min() < sums.max()  # not the random init's ~0

    args = ("gradients", "--weights", str(path), "--seq-len", "6", "--batch-size", "2")
    doc = run_cli(*args, "--json").json()
    stats = doc["models"][0]["forget_bias_stats"]
    assert stats == pytest.approx({"mean": sums.mean().item(), "min": sums.min().item(), "max": sums.max().item()},
                                  rel=1e-12)
    text = flat(run_cli(*args).stdout)
    assert (f"LSTM forget-gate bias b_if + b_hf, loaded from {path}: mean {sums.mean().item():.3g}, "
            f"min {sums.min().item():.3g}, max {sums.max().item():.3g}") in text
    assert "random init" not in text


def test_forget_bias_stats_for_random_set_and_saved_weights(run_cli, tmp_path):
    saved = tmp_path / "ran.pt"
    random_run = run_cli("gradients", *SMALL_FLAGS, "--seed", "4", "--save-weights", str(saved), "--json")
    lstm_entry = random_run.json()["models"][2]
    # the random init, drawn independently here, is what ran and what was saved
    spec = LSTMSpec(**SMALL, seed=4)
    expected = forget_sums(dict(seeded_module("lstm", spec).named_parameters()), 4)
    assert torch.equal(expected, forget_sums(torch.load(saved, weights_only=True), 4))
    assert lstm_entry["forget_bias_stats"] == pytest.approx(
        {"mean": expected.mean().item(), "min": expected.min().item(), "max": expected.max().item()}, rel=1e-12)
    assert [m["forget_bias_stats"] for m in random_run.json()["models"][:2]] == [None, None]  # rnn, gru
    text = flat(run_cli("gradients", *SMALL_FLAGS, "--seed", "4").stdout)
    assert f"PyTorch's random init (seed 4): mean {expected.mean().item():.3g}, min {expected.min().item():.3g}" in text

    # loading what was saved reports the same numbers
    loaded = run_cli("gradients", *SMALL_FLAGS, "--weights", str(saved), "--json").json()
    assert loaded["models"][0]["forget_bias_stats"] == lstm_entry["forget_bias_stats"]

    set_run = run_cli("gradients", *SMALL_FLAGS, "--forget-bias", "1.5", "--json").json()
    assert set_run["models"][2]["forget_bias_stats"] == {"mean": 1.5, "min": 1.5, "max": 1.5}
    no_bias = run_cli("gradients", *SMALL_FLAGS, "--no-bias", "--json").json()
    assert no_bias["models"][2]["forget_bias_stats"] is None
    assert "LSTM forget-gate bias: none (--no-bias)" in run_cli("gradients", *SMALL_FLAGS, "--no-bias").stdout


def test_random_references_beside_a_loaded_lstm_are_named_in_a_note(run_cli, tmp_path):
    torch.manual_seed(5)
    path = tmp_path / "w.pt"
    torch.save(torch.nn.LSTM(3, 4).state_dict(), path)
    sizes = ("--seq-len", "6", "--batch-size", "2", "--seed", "2")
    both = run_cli("gradients", "--weights", str(path), "--cells", "rnn,gru,lstm", *sizes, "--json")
    assert both.code == 0
    assert both.stderr.splitlines() == [
        f"note: nn.RNN (tanh) and nn.GRU have random weights (PyTorch's init, seed 2); only the LSTM is loaded from {path}"
    ]
    # and they really are the seed-2 random init at the loaded LSTM's sizes
    spec = LSTMSpec(input_size=3, hidden_size=4, num_layers=1, seq_len=6, batch_size=2, seed=2, dtype="float64")
    for model in both.json()["models"][:2]:
        assert model["grad_norms"] == pytest.approx(reference_norms(model["cell"], spec), rel=1e-4)
    one = run_cli("gradients", "--weights", str(path), "--cells", "gru,lstm", *sizes)
    assert one.stderr.splitlines() == [
        f"note: nn.GRU has random weights (PyTorch's init, seed 2); only the LSTM is loaded from {path}"
    ]
    assert run_cli("gradients", "--weights", str(path), *sizes).stderr == ""  # the LSTM alone
    assert run_cli("gradients", "--cells", "rnn,gru,lstm", *sizes).stderr == ""  # nothing loaded


# -- underflow: a norm of exactly 0 -----------------------------------------------------------

DEEP = {"input_size": 4, "hidden_size": 4, "num_layers": 100, "seq_len": 10, "batch_size": 1}
DEEP_FLAGS = ["--input-size", "4", "--hidden-size", "4", "--num-layers", "100", "--seq-len", "10", "--batch-size", "1"]
LONG = {"input_size": 4, "hidden_size": 4, "num_layers": 1, "seq_len": 400, "batch_size": 1}
LONG_FLAGS = ["--input-size", "4", "--hidden-size", "4", "--num-layers", "1", "--seq-len", "400", "--batch-size", "1"]


def float32_step_grads(cell: str, spec: LSTMSpec, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """d loss / d x, (L, N, H_in), from the torch module itself (float32 unless told): the
    documented init and input, time-major, no lstm-cli code."""
    module = seeded_module(cell, spec).to(dtype)
    shape = (spec.seq_len, spec.batch_size, spec.input_size)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(spec.seed)).to(dtype).requires_grad_(True)
    _, state = module(x)
    h_n = state[0] if cell == "lstm" else state
    (grad,) = torch.autograd.grad(h_n[-1].sum(), x)
    return grad


def table_cell(stdout: str, module: str, column: int) -> str:
    """One cell of the table row that starts with `module`, its wrapped lines joined."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"│ {module} "))
    parts = [lines[start].split("│")[column + 1].strip()]
    for line in lines[start + 1 :]:
        cells = line.split("│")
        if len(cells) < 3 or cells[1].strip():  # the next row or the table's end
            break
        parts.append(cells[column + 1].strip())
    return " ".join(p for p in parts if p)


def test_100_layers_in_float32_underflow_to_exactly_0(run_cli):
    result = run_cli("gradients", *DEEP_FLAGS, "--json")
    assert result.code == 0
    doc = result.json()
    spec = LSTMSpec(**DEEP)
    by_cell = {m["cell"]: m for m in doc["models"]}
    for cell, model in by_cell.items():
        grad = float32_step_grads(cell, spec)
        zero = [bool((grad[t] == 0).all()) for t in range(10)]
        assert [v == 0 for v in model["grad_norms"]] == zero, cell
        assert model["grad_norms"] == pytest.approx([grad[t].double().norm().item() for t in range(10)], rel=1e-6)
        assert model["underflow_steps"] == sum(zero)
        # in float64 none of them is 0: the zeros are underflow, not a gradient that is truly 0
        grad64 = float32_step_grads(cell, spec, torch.float64)
        assert all(0 < grad64[t].norm().item() < 1e-30 for t in range(10))
    # independently: float32 rounds every LSTM and GRU step to 0, and the RNN's last step too
    lstm, rnn = by_cell["lstm"], by_cell["rnn"]
    assert lstm["grad_norms"] == [0.0] * 10 and by_cell["gru"]["grad_norms"] == [0.0] * 10
    assert lstm["underflow_steps"] == 10 and lstm["last_step_norm"] == 0
    assert lstm["vanishes_at_step"] is None and lstm["first_to_last_ratio"] is None  # no ratio to a 0
    # null there means "vanished everywhere", not "never": the field says which
    assert lstm["vanishes"] == "every_step" and by_cell["gru"]["vanishes"] == "every_step"
    assert doc["smallest_subnormal"] == pytest.approx(2.0 ** -149)  # float32's
    note = result.stderr.splitlines()[0]
    assert note.startswith("note: gradient norms exactly 0, the gradient underflowed: every element of "
                           "d loss / d x_t at that step rounded to 0, as a float32 result does at or below 7.0e-46 "
                           "(half its smallest subnormal, 1.4e-45)")
    assert '"vanishes": "every_step"' in note
    # the RNN underflows at some steps only; whether its last step is among them depends on
    # denormals, which the tool leaves as the user's program has them (PyTorch's own run decides)
    rnn_zero = [bool((float32_step_grads("rnn", spec)[t] == 0).all()) for t in range(10)]
    assert rnn["underflow_steps"] == sum(rnn_zero) < 10
    assert (rnn["last_step_norm"] == 0) == rnn_zero[-1]
    assert "nn.GRU at 10 of 10 steps, nn.LSTM at 10 of 10 steps" in note
    assert ("nn.RNN (tanh) at" in note) == any(rnn_zero)
    assert "--dtype float64" in note

    table = run_cli("gradients", *DEEP_FLAGS).stdout
    assert table_cell(table, "nn.LSTM", 4) == "vanished: 0 (underflow)"
    assert table_cell(table, "nn.GRU", 4) == "vanished: 0 (underflow)"
    if rnn_zero[-1]:
        assert table_cell(table, "nn.RNN (tanh)", 4) == "undefined: last step is 0 (underflow)"


def test_vanishes_says_which_null_it_is():
    """vanishes_at_step is null for "never", "every step underflowed" and "no ratio": the
    vanishes field tells them apart, and the note states the underflow test's threshold."""
    from torch import nn

    from lstm_cli.gradients import smallest_positive, summarise, underflow_note

    rnn = nn.RNN(2, 3)
    cases = {
        "never": [0.5, 1.0], "at_step": [1e-9, 1.0], "every_step": [0.0, 0.0], "undefined": [1.0, 0.0],
    }
    for expected, norms in cases.items():
        model = summarise("rnn", rnn, norms, None)
        assert model.vanishes == expected, norms
        assert (model.vanishes_at_step is None) == (expected != "at_step")
    every = summarise("lstm", nn.LSTM(2, 3), [0.0, 0.0], None)
    note = underflow_note([every, summarise("rnn", rnn, [1.0, 0.0], None)], "float32", smallest_positive(torch.float32))
    assert "as a float32 result does at or below 7.0e-46 (half its smallest subnormal, 1.4e-45)" in note
    assert '"vanishes": "every_step"' in note and "a last step of 0 leaves no ratio" in note
    assert "at or below 2.5e-324 (half its smallest subnormal, 4.9e-324)" in underflow_note([every], "float64", smallest_positive(torch.float64))


def test_float64_does_not_underflow_at_100_layers(run_cli):
    result = run_cli("gradients", *DEEP_FLAGS, "--cells", "lstm", "--dtype", "float64", "--json")
    (model,) = result.json()["models"]
    grad = float32_step_grads("lstm", LSTMSpec(**DEEP), torch.float64)  # torch itself, in float64
    expected = [grad[t].norm().item() for t in range(10)]
    assert model["grad_norms"] == pytest.approx(expected, rel=1e-9)
    assert model["underflow_steps"] == 0 and all(v > 0 for v in model["grad_norms"])
    assert result.stderr == ""


def test_steps_that_underflow_count_as_vanished_when_the_last_is_positive(run_cli):
    doc = run_cli("gradients", *LONG_FLAGS, "--cells", "rnn", "--json").json()
    (model,) = doc["models"]
    grad = float32_step_grads("rnn", LSTMSpec(**LONG))
    norms = [grad[t].double().norm().item() for t in range(400)]
    zeros = [t for t in range(400) if norms[t] == 0]
    assert norms[-1] > 0 and len(zeros) > 100  # underflow long before the last step
    assert model["grad_norms"] == pytest.approx(norms, rel=1e-6) and model["underflow_steps"] == len(zeros)
    k = next(k for k in range(1, 400) if norms[-1 - k] < 1e-3 * norms[-1])  # by hand
    assert (model["vanishes_at_step"], model["vanishes_at_t"]) == (k, 399 - k)


def test_a_vanishing_step_of_exactly_0_is_named_in_the_table(run_cli, monkeypatch):
    # the last step 3e-44 (float32 holds it) and before it 0: 0 < 1e-3 x 3e-44, one step back
    monkeypatch.setattr(gradients, "step_grad_norms", lambda module, x, spec, initial=None: [0.0, 0.0, 3e-44])
    args = ("gradients", "--seq-len", "3", "--cells", "rnn")
    (model,) = run_cli(*args, "--json").json()["models"]
    assert (model["vanishes_at_step"], model["vanishes_at_t"], model["underflow_steps"]) == (1, 1, 2)
    assert model["first_to_last_ratio"] == 0
    table = run_cli(*args).stdout
    assert table_cell(table, "nn.RNN (tanh)", 4) == "1 step back (t=1), 0 (underflow)"


def test_vanishing_step_with_zeros():
    assert vanishing_step([0.0, 0.0, 1e-44]) == 1  # 0 is below any positive threshold
    assert vanishing_step([0.0, 1.0, 1.0]) == 2
    assert vanishing_step([1.0, 0.0, 0.0]) is None  # the last step is 0: no ratio
    assert vanishing_step([0.0, 0.0]) is None


# -- --plot keeps every step, zeros included ------------------------------------------------


def test_plot_spans_every_step_and_marks_the_zeros():
    pytest.importorskip("matplotlib")
    from lstm_cli.render.gradients_plot import gradients_figure

    spec = LSTMSpec(**LONG, device="cpu")
    result = run_gradients(spec, ("rnn", "lstm"))
    axes = gradients_figure(result).axes[0]
    low, high = axes.get_xlim()
    assert -20 < low <= 0 and 399 <= high < 420  # every step 0 .. 399, not from the first nonzero one
    assert axes.get_yscale() == "log"
    lines = {line.get_label(): line for line in axes.get_lines()}
    bottom = axes.get_ylim()[0]
    for cell, module in (("rnn", "nn.RNN (tanh)"), ("lstm", "nn.LSTM")):
        grad = float32_step_grads(cell, spec)
        zeros = [t for t in range(400) if (grad[t] == 0).all()]
        positive = [grad[t].double().norm().item() for t in range(400) if t not in zeros]
        assert zeros and zeros[0] == 0
        line = lines[module]
        assert list(line.get_xdata()) == list(range(400))
        assert [t for t, v in enumerate(line.get_ydata()) if math.isnan(v)] == zeros  # a gap, not a value
        marks = lines[f"{module}: 0 at {len(zeros)} step(s)"]
        assert list(marks.get_xdata()) == zeros
        assert all(0 < y < 0.15 for y in marks.get_ydata())  # axes fraction: the bottom band
        assert bottom < min(positive)  # the band sits below every positive norm
    assert any(text.get_text().startswith("0 (underflow)") for text in axes.texts)


def test_plot_of_norms_that_are_all_0_still_spans_every_step(run_cli, tmp_path):
    pytest.importorskip("matplotlib")
    from lstm_cli.render.gradients_plot import gradients_figure

    result = run_gradients(LSTMSpec(**DEEP, device="cpu"), ("lstm",))
    assert result.models[0].grad_norms == [0.0] * 10  # as test_100_layers_... confirms independently
    axes = gradients_figure(result).axes[0]
    low, high = axes.get_xlim()
    assert low <= 0 and high >= 9
    assert list(next(l for l in axes.get_lines() if l.get_label().endswith("0 at 10 step(s)")).get_xdata()) == list(range(10))
    target = tmp_path / "zeros.png"
    written = run_cli("gradients", *DEEP_FLAGS, "--cells", "lstm", "--plot", str(target))
    assert written.code == 0 and target.read_bytes().startswith(PNG_SIGNATURE)
