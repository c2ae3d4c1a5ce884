"""gradients: per-step norms against an independent float64 computation, --forget-bias,
reproducibility, the vanishing definition, bad flags and --plot."""

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

    def with_nan(module, x, spec):
        norms = original(module, x, spec)
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
