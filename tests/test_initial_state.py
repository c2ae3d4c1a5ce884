"""--initial-state: every command starts from (h_0, c_0) read from a file instead of zeros.

Each number is checked against something computed here: nn.LSTM called directly with hx, or a
float64 LSTM loop written in this file that starts from h_0/c_0 (a packed batch's backward
sequences start from them at their own last valid step). Planted mistakes (a capture or a cell
loop that drops the initial state) must be caught by the step-local checks, at each sequence's
first step. Bad files exit 2 with one line naming the problem."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CHAR = str(EXAMPLES / "char_lstm.pt")

NP_DTYPES = {"float32": np.float32, "float64": np.float64}
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


# -- an independent float64 LSTM that starts from (h_0, c_0) --------------------------------------


def loop64(state: dict[str, torch.Tensor], num_layers: int, bidirectional: bool, x: torch.Tensor,
           h0: torch.Tensor, c0: torch.Tensor, lengths: list[int] | None = None):
    """x time-major (L, N, I); h0 (D*layers, N, H_out), c0 (D*layers, N, H), any float dtype.
    Returns output (L, N, D*H_out) (0 past each length), h_n, c_n and per (layer, suffix) the
    dict i, f, g, o, c (L, N, H) and h (L, N, H_out) with NaN past each length. A backward
    sequence starts from h0/c0 at its own last valid step."""
    L, N, _ = x.shape
    lens = torch.tensor(lengths if lengths is not None else [L] * N)
    inp = x.double()
    D = 2 if bidirectional else 1
    h_n, c_n, gates = [], [], {}
    for layer in range(num_layers):
        outs = []
        for d in range(D):
            suffix = f"_l{layer}" + ("_reverse" if d == 1 else "")
            w_ih = state["weight_ih" + suffix].double()
            w_hh = state["weight_hh" + suffix].double()
            b = state["bias_ih" + suffix].double() + state["bias_hh" + suffix].double()
            w_hr = state.get("weight_hr" + suffix)
            H = w_hh.shape[0] // 4
            h = h0[layer * D + d].double().clone()
            c = c0[layer * D + d].double().clone()
            out = torch.zeros(L, N, w_hh.shape[1], dtype=torch.float64)
            rec = {k: torch.full((L, N, H), torch.nan, dtype=torch.float64) for k in "ifgoc"}
            rec["h"] = torch.full((L, N, w_hh.shape[1]), torch.nan, dtype=torch.float64)
            for t in (range(L - 1, -1, -1) if d == 1 else range(L)):
                z = inp[t] @ w_ih.T + h @ w_hh.T + b
                i, f = torch.sigmoid(z[:, :H]), torch.sigmoid(z[:, H:2 * H])
                g, o = torch.tanh(z[:, 2 * H:3 * H]), torch.sigmoid(z[:, 3 * H:])
                c_new = f * c + i * g
                h_new = o * torch.tanh(c_new)
                if w_hr is not None:
                    h_new = h_new @ w_hr.double().T
                valid = (t < lens).unsqueeze(1)
                h, c = torch.where(valid, h_new, h), torch.where(valid, c_new, c)
                out[t] = torch.where(valid, h_new, torch.zeros_like(h_new))
                for name, value in zip("ifgoch", (i, f, g, o, c_new, h_new)):
                    rec[name][t] = torch.where(valid, value, torch.full_like(value, torch.nan))
            outs.append(out)
            h_n.append(h)
            c_n.append(c)
            gates[suffix] = rec
        inp = torch.cat(outs, dim=2)
    return inp, torch.stack(h_n), torch.stack(c_n), gates


# -- configurations --------------------------------------------------------------------------------


@dataclass
class Config:
    name: str
    input_size: int = 6
    hidden: int = 5
    layers: int = 2
    seq_len: int = 8
    batch: int = 3
    bidirectional: bool = False
    proj: int = 0
    batch_first: bool = False
    unbatched: bool = False
    lengths: list[int] | None = None

    @property
    def D(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def h_out(self) -> int:
        return self.proj or self.hidden

    def flags(self) -> list[str]:
        out = []
        if self.batch_first:
            out.append("--batch-first")
        if self.lengths is not None:
            out += ["--lengths", ",".join(map(str, self.lengths))]
        return out


CONFIGS = [
    Config("plain"),
    Config("bidirectional", bidirectional=True),
    Config("packed-bidirectional", seq_len=10, bidirectional=True, lengths=[10, 4, 7]),
    Config("proj", hidden=6, proj=4),
    Config("batch-first", batch_first=True),
    Config("unbatched", unbatched=True),
]


def make_case(tmp_path: Path, cfg: Config, dtype: str, seed: int = 0, state_format: str = "npz",
              only_sequence: int | None = None):
    """Weights (a state_dict file), input (.npy) and initial state (.npz or .pt) written here.
    The state is large (|c0| ~ 3, |h0| ~ 0.8); with `only_sequence`, zero except that sequence."""
    torch.manual_seed(seed)
    module = nn.LSTM(cfg.input_size, cfg.hidden, num_layers=cfg.layers, bidirectional=cfg.bidirectional,
                     proj_size=cfg.proj)
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(2.0)  # livelier gates than PyTorch's init
    state = {k: v.detach().to(TORCH_DTYPES[dtype]).clone() for k, v in module.state_dict().items()}
    weights = tmp_path / f"w_{cfg.name}_{dtype}.pt"
    torch.save(state, weights)

    rng = np.random.default_rng(seed + 1)
    x_tm = rng.normal(size=(cfg.seq_len, cfg.batch, cfg.input_size))
    h0 = np.tanh(rng.normal(size=(cfg.D * cfg.layers, cfg.batch, cfg.h_out)) * 1.5)
    c0 = 3.0 * rng.normal(size=(cfg.D * cfg.layers, cfg.batch, cfg.hidden))
    if only_sequence is not None:
        keep = np.zeros((1, cfg.batch, 1))
        keep[0, only_sequence] = 1.0
        h0, c0 = h0 * keep, c0 * keep
    # padding past each length is garbage on purpose: packed nn.LSTM never reads it
    if cfg.unbatched:
        x_file, h0_file, c0_file = x_tm[:, 0], h0[:, 0], c0[:, 0]
    elif cfg.batch_first:
        x_file, h0_file, c0_file = x_tm.transpose(1, 0, 2), h0, c0
    else:
        x_file, h0_file, c0_file = x_tm, h0, c0
    np_dtype = NP_DTYPES[dtype]
    x_file, h0_file, c0_file = (a.astype(np_dtype) for a in (x_file, h0_file, c0_file))
    x_path = tmp_path / f"x_{cfg.name}_{dtype}.npy"
    np.save(x_path, x_file)
    if state_format == "npz":
        s_path = tmp_path / f"s_{cfg.name}_{dtype}.npz"
        np.savez(s_path, h0=h0_file, c0=c0_file)
    elif state_format == "pt-tuple":
        s_path = tmp_path / f"s_{cfg.name}_{dtype}.pt"
        torch.save((torch.from_numpy(h0_file), torch.from_numpy(c0_file)), s_path)
    else:
        s_path = tmp_path / f"s_{cfg.name}_{dtype}.pt"
        torch.save({"h0": torch.from_numpy(h0_file), "c0": torch.from_numpy(c0_file)}, s_path)
    # what the tool actually runs: values as stored in its dtype
    x_run = torch.from_numpy(x_file).to(TORCH_DTYPES[dtype])
    h0_run = torch.from_numpy(h0_file).to(TORCH_DTYPES[dtype])
    c0_run = torch.from_numpy(c0_file).to(TORCH_DTYPES[dtype])
    return dict(state=state, weights=str(weights), x_path=str(x_path), s_path=str(s_path),
                x=x_run, h0=h0_run, c0=c0_run)


def time_major_np(a: np.ndarray, cfg: Config) -> np.ndarray:
    if cfg.unbatched:
        return a[:, None]
    return a.transpose(1, 0, *range(2, a.ndim)) if cfg.batch_first else a


def batched_state(t: torch.Tensor, cfg: Config) -> torch.Tensor:
    return t.unsqueeze(1) if cfg.unbatched else t


def direct_nn_lstm(cfg: Config, case: dict, dtype: str):
    """nn.LSTM built and called here with hx = (h0, c0): output in the input's layout, h_n, c_n."""
    module = nn.LSTM(cfg.input_size, cfg.hidden, num_layers=cfg.layers, bidirectional=cfg.bidirectional,
                     proj_size=cfg.proj, batch_first=cfg.batch_first, dtype=TORCH_DTYPES[dtype])
    module.load_state_dict(case["state"])
    module.eval()
    with torch.no_grad():
        if cfg.lengths is None:
            out, (h_n, c_n) = module(case["x"], (case["h0"], case["c0"]))
        else:
            packed = pack_padded_sequence(case["x"], torch.tensor(cfg.lengths), batch_first=cfg.batch_first,
                                          enforce_sorted=False)
            out_p, (h_n, c_n) = module(packed, (case["h0"], case["c0"]))
            out, _ = pad_packed_sequence(out_p, batch_first=cfg.batch_first, total_length=cfg.seq_len)
    return out.double().numpy(), h_n.double().numpy(), c_n.double().numpy()


def valid_mask(cfg: Config) -> np.ndarray:
    """(L, N) True at each sequence's valid steps."""
    lengths = cfg.lengths or [cfg.seq_len] * (1 if cfg.unbatched else cfg.batch)
    return np.arange(cfg.seq_len)[:, None] < np.array(lengths)[None, :]


def assert_close(actual, expected, atol, rtol, what):
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    diff = np.abs(actual - expected)
    bound = atol + rtol * np.abs(expected)
    assert np.all(diff <= bound), f"{what}: max |diff| {diff.max():.3g} (bound {bound.max():.3g})"


TOL = {"float64": (1e-10, 1e-10), "float32": (5e-5, 5e-5)}


# -- 1: gates --export against nn.LSTM(x, (h0, c0)) and a float64 loop -----------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("method", ["loop", "recompute"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_gates_export_starts_from_the_initial_state(tmp_path, run_cli, cfg, method, dtype):
    fmt = {"plain": "npz", "bidirectional": "pt-tuple", "proj": "pt-dict"}.get(cfg.name, "npz")
    case = make_case(tmp_path, cfg, dtype, state_format=fmt)
    export = tmp_path / "gates.npz"
    result = run_cli("gates", "--weights", case["weights"], "--input", case["x_path"],
                     "--initial-state", case["s_path"], "--method", method, "--dtype", dtype,
                     "--export", str(export), "--json", *cfg.flags())
    assert result.code == 0, result.stderr + result.stdout[-2000:]
    doc = result.json()
    assert doc["passed"] is True
    assert doc["method"] == method
    assert doc["checks"] and all(check["passed"] for check in doc["checks"])
    assert doc["config"]["initial_state"] == case["s_path"]
    assert doc["config"]["initial_state_source"] == f"file {case['s_path']}"

    # the float64 shadow ran nn.LSTM in float64 from the same state: nn.LSTM's distance from it
    # is rounding, not a different trajectory
    shadow_tol = 1e-10 if dtype == "float64" else 1e-4
    assert doc["shadow"] is not None, doc["shadow_note"]
    for path in doc["shadow"]["errors"]:
        for key in ("output_max_abs_diff", "h_n_max_abs_diff", "c_n_max_abs_diff"):
            assert path[key] < shadow_tol, (path["path"], key, path[key])

    saved = np.load(export)
    atol, rtol = TOL[dtype]
    # nn.LSTM's own results, against nn.LSTM called here with hx
    out, h_n, c_n = direct_nn_lstm(cfg, case, dtype)
    mask = valid_mask(cfg)
    out_tm, exported_out_tm = time_major_np(out, cfg), time_major_np(saved["output"].astype(np.float64), cfg)
    assert_close(exported_out_tm[mask], out_tm[mask], atol, rtol, "output")
    assert_close(saved["h_n"], h_n, atol, rtol, "h_n")
    assert_close(saved["c_n"], c_n, atol, rtol, "c_n")

    # every captured gate, c and h against the float64 loop from (h0, c0)
    x_tm = case["x"] if not cfg.unbatched else case["x"].unsqueeze(1)
    if cfg.batch_first:
        x_tm = x_tm.transpose(0, 1)
    h0, c0 = batched_state(case["h0"], cfg), batched_state(case["c0"], cfg)
    ref_out, ref_hn, ref_cn, ref = loop64(case["state"], cfg.layers, cfg.bidirectional, x_tm, h0, c0, cfg.lengths)
    g_atol, g_rtol = (1e-10, 1e-10) if dtype == "float64" else (2e-4, 1e-4)
    for suffix, quantities in ref.items():
        for name, expected in quantities.items():
            got = time_major_np(saved[name + suffix].astype(np.float64), cfg)
            assert np.isnan(got[~mask]).all(), f"{name}{suffix}: padded steps should be NaN"
            assert_close(got[mask], expected.numpy()[mask], g_atol, g_rtol, name + suffix)
    assert_close(exported_out_tm[mask], ref_out.numpy()[mask], g_atol, g_rtol, "output vs float64 loop")
    loop_hn, loop_cn = (ref_hn[:, 0], ref_cn[:, 0]) if cfg.unbatched else (ref_hn, ref_cn)
    assert_close(saved["h_n"], loop_hn.numpy(), g_atol, g_rtol, "h_n vs float64 loop")
    assert_close(saved["c_n"], loop_cn.numpy(), g_atol, g_rtol, "c_n vs float64 loop")

    # the test itself can tell: from zeros the first steps' c differ by far more than the tolerance
    _, _, _, zero = loop64(case["state"], cfg.layers, cfg.bidirectional, x_tm, torch.zeros_like(h0),
                           torch.zeros_like(c0), cfg.lengths)
    first = time_major_np(saved["c_l0"].astype(np.float64), cfg)[0]
    assert np.abs(first - zero["_l0"]["c"].numpy()[0]).max() > 0.1


# -- 2: a capture that ignores the initial state is caught at each sequence's first step ----------


def _drop_initial(original):
    def run(self, *args, h0=None, c0=None, **kwargs):
        return original(self, *args, **kwargs)
    return run


PLANTED = [
    (Config("plain"), None),
    (Config("bidirectional", bidirectional=True), None),
    (Config("packed-bidirectional", seq_len=10, bidirectional=True, lengths=[10, 4, 7]), 0),
    (Config("packed-bidirectional", seq_len=10, bidirectional=True, lengths=[10, 4, 7]), 1),
    (Config("packed-bidirectional", seq_len=10, bidirectional=True, lengths=[10, 4, 7]), 2),
]


@pytest.mark.parametrize("method", ["loop", "recompute"])
@pytest.mark.parametrize("cfg, only", PLANTED, ids=lambda v: v.name if isinstance(v, Config) else f"seq{v}")
def test_a_capture_that_drops_the_initial_state_fails_at_the_first_step(tmp_path, run_cli, monkeypatch, cfg,
                                                                         only, method):
    from lstm_cli.gates import kernels

    case = make_case(tmp_path, cfg, "float64", only_sequence=only)
    args = ("gates", "--weights", case["weights"], "--input", case["x_path"], "--initial-state", case["s_path"],
            "--method", method, "--dtype", "float64", "--json", *cfg.flags())
    good = run_cli(*args)
    assert good.code == 0, good.stderr
    assert good.json()["passed"] is True

    cls = kernels.LoopCapture if method == "loop" else kernels.RecomputeCapture
    monkeypatch.setattr(cls, "run", _drop_initial(cls.run))
    bad = run_cli(*args)
    assert bad.code == 1, bad.stderr
    doc = bad.json()
    assert doc["passed"] is False
    lengths = cfg.lengths or [cfg.seq_len] * cfg.batch
    sequences = [only] if only is not None else list(range(cfg.batch))
    step_checks = [c for c in doc["checks"] if c["name"].startswith("layer ")]
    assert len(step_checks) == cfg.layers * cfg.D
    for check in step_checks:
        assert check["passed"] is False, check["name"]
        first = check["first_bad"]
        assert first is not None, check["name"]
        if "backward" in check["name"]:
            # the first sequence processed backward starts at its own last valid step
            expected = {(lengths[n] - 1, n) for n in sequences}
            assert (first["step"], first["sequence"]) in expected, (check["name"], first)
            if only is not None:
                assert (first["step"], first["sequence"]) == (lengths[only] - 1, only)
        else:
            assert first["step"] == 0, (check["name"], first)
            assert first["sequence"] in sequences, (check["name"], first)


# -- 3: compare-cell -----------------------------------------------------------------------------


COMPARE_CONFIGS = [
    Config("plain"),
    Config("packed-bidirectional-proj", hidden=6, proj=4, seq_len=10, bidirectional=True, lengths=[10, 4, 7]),
    Config("unbatched", unbatched=True),
]


@pytest.mark.parametrize("cfg", COMPARE_CONFIGS, ids=lambda c: c.name)
def test_compare_cell_starts_its_cell_loop_from_the_initial_state(tmp_path, run_cli, monkeypatch, cfg):
    from lstm_cli import cells

    case = make_case(tmp_path, cfg, "float64")
    args = ("compare-cell", "--weights", case["weights"], "--input", case["x_path"],
            "--initial-state", case["s_path"], "--dtype", "float64", "--json", "--repeat", "0", *cfg.flags())
    good = run_cli(*args)
    assert good.code == 0, good.stderr
    doc = good.json()
    assert doc["passed"] is True
    assert doc["config"]["initial_state_source"] == f"file {case['s_path']}"
    # nn.LSTM and the loop agree end to end only if both started from the same state
    assert doc["output_max_abs_diff"] < 1e-10

    original = cells._run_direction

    def dropped(*a, h0=None, c0=None, **kw):
        return original(*a, **kw)

    monkeypatch.setattr(cells, "_run_direction", dropped)
    bad = run_cli(*args)
    assert bad.code == 1, bad.stderr
    doc = bad.json()
    assert doc["passed"] is False
    step_checks = [c for c in doc["checks"] if c["name"].startswith("layer ")]
    assert step_checks and all(not c["passed"] for c in step_checks)
    lengths = cfg.lengths or [cfg.seq_len] * cfg.batch
    for check in step_checks:
        first = check["first_bad"]
        if "backward" in check["name"]:
            assert first["step"] == lengths[first["sequence"]] - 1, (check["name"], first)
        else:
            assert first["step"] == 0, (check["name"], first)


# -- 4: inspect ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [Config("plain"), CONFIGS[2], Config("batch-first-proj", hidden=6, proj=4,
                                                                      batch_first=True)],
                         ids=lambda c: c.name)
def test_inspect_with_an_initial_state(tmp_path, run_cli, cfg):
    case = make_case(tmp_path, cfg, "float32")
    args = ("inspect", "--weights", case["weights"], "--input", case["x_path"], "--initial-state", case["s_path"],
            *cfg.flags())
    result = run_cli(*args, "--json")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["passed"] is True
    names = [c["name"] for c in doc["checks"]]
    assert all(c["passed"] for c in doc["checks"]), names
    assert any("h_n[-1]" in name for name in names)
    if cfg.bidirectional:
        assert any("h_n[-2]" in name for name in names)
    assert doc["config"]["initial_state"] == case["s_path"]
    assert doc["config"]["initial_state_source"] == f"file {case['s_path']}"

    human = run_cli(*args)
    assert human.code == 0, human.stderr
    # the header may wrap a long path: compare with whitespace removed
    squeezed = "".join(human.stdout.split())
    assert "".join(f"initial state (h_0, c_0): file {case['s_path']}".split()) in squeezed
    assert "initial state (h_0, c_0): file" in human.stdout

    plain = run_cli("inspect", "--weights", case["weights"], "--input", case["x_path"], "--json", *cfg.flags())
    assert plain.code == 0
    assert plain.json()["config"]["initial_state"] is None
    assert plain.json()["config"]["initial_state_source"] == "zeros"


# -- 5: gradients ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cfg", [Config("plain"), Config("proj-batch-first", hidden=6, proj=4, batch_first=True),
                                 Config("unbatched", unbatched=True)], ids=lambda c: c.name)
def test_gradients_of_the_lstm_start_from_the_initial_state(tmp_path, run_cli, cfg, dtype):
    case = make_case(tmp_path, cfg, dtype)
    base = ("gradients", "--weights", case["weights"], "--input", case["x_path"], "--dtype", dtype, "--json",
            "--cells", "rnn,gru,lstm",
            *cfg.flags())
    result = run_cli(*base, "--initial-state", case["s_path"])
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["passed"] is True
    lstm = next(m for m in doc["models"] if m["cell"] == "lstm")

    # independent: autograd through nn.LSTM(x, (h0, c0)), loss = h_n[-1].sum()
    module = nn.LSTM(cfg.input_size, cfg.hidden, num_layers=cfg.layers, proj_size=cfg.proj,
                     batch_first=cfg.batch_first, dtype=TORCH_DTYPES[dtype])
    module.load_state_dict(case["state"])
    x = case["x"].clone().requires_grad_(True)
    _, (h_n, _) = module(x, (case["h0"], case["c0"]))
    (grad,) = torch.autograd.grad(h_n[-1].sum(), x)
    grad = grad.double()
    if cfg.unbatched:
        grad = grad.unsqueeze(1)
    elif cfg.batch_first:
        grad = grad.transpose(0, 1)
    expected = grad.flatten(1).norm(dim=1).numpy()
    atol, rtol = (1e-12, 1e-9) if dtype == "float64" else (1e-7, 1e-4)
    assert_close(lstm["grad_norms"], expected, atol, rtol, "grad_norms")
    assert lstm["last_step_norm"] == pytest.approx(expected[-1], rel=rtol, abs=atol)

    zeros = run_cli(*base)
    assert zeros.code == 0, zeros.stderr
    zero_norms = np.array(next(m for m in zeros.json()["models"] if m["cell"] == "lstm")["grad_norms"])
    assert np.max(np.abs(zero_norms - expected) / expected) > 1e-2
    # nn.RNN / nn.GRU start from zeros: the same with and without the state
    for cell in ("rnn", "gru"):
        with_state = next(m for m in doc["models"] if m["cell"] == cell)["grad_norms"]
        without = next(m for m in zeros.json()["models"] if m["cell"] == cell)["grad_norms"]
        assert with_state == pytest.approx(without, rel=1e-12)


# -- 6: units and trace on the character model ------------------------------------------------------


TEXT = "def f(x):\n    return [x + 1, 'a b']  # done\n"


def char_reference(text: str, h0: torch.Tensor, c0: torch.Tensor):
    checkpoint = torch.load(CHAR, weights_only=True)
    vocab = checkpoint["vocab"]
    rows = torch.tensor([vocab.index(ch) for ch in text])
    x = checkpoint["embedding.weight"].double()[rows].unsqueeze(1)  # (L, 1, 32)
    state = {k.removeprefix("lstm."): v for k, v in checkpoint.items() if k.startswith("lstm.")}
    _, _, _, gates = loop64(state, 2, False, x, h0, c0)
    return {int(suffix[2]): {k: v[:, 0].numpy() for k, v in q.items()} for suffix, q in gates.items()}


@pytest.fixture(scope="module")
def char_state(tmp_path_factory):
    rng = np.random.default_rng(7)
    h0 = np.tanh(rng.normal(size=(2, 1, 128))).astype(np.float32)
    c0 = (3.0 * rng.normal(size=(2, 1, 128))).astype(np.float32)
    path = tmp_path_factory.mktemp("char") / "state.npz"
    np.savez(path, h0=h0, c0=c0)
    h0_t, c0_t = torch.from_numpy(h0), torch.from_numpy(c0)
    return str(path), char_reference(TEXT, h0_t, c0_t), char_reference(TEXT, 0 * h0_t, 0 * c0_t)


@pytest.mark.parametrize("unit, layer, index, quantity", [
    ("1:59", 1, 59, "c"), ("0:5", 0, 5, "c"), ("1:100:h", 1, 100, "h"), ("0:7:f", 0, 7, "f"),
])
def test_trace_values_start_from_the_initial_state(run_cli, char_state, unit, layer, index, quantity):
    path, reference, from_zeros = char_state
    result = run_cli("trace", "--weights", CHAR, "--key", "lstm", "--text", TEXT, "--initial-state", path,
                     "--unit", unit, "--top", "3", "--json")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["config"]["initial_state_source"] == f"file {path}"
    assert doc["unit"] == {"layer": layer, "unit": index, "quantity": quantity, "direction": "forward"}
    expected = reference[layer][quantity][:, index]
    assert_close(doc["values"], expected, 1e-9, 1e-9, f"trace {unit}")
    assert np.abs(expected - from_zeros[layer][quantity][:, index]).max() > 1e-2  # the state matters
    assert len(doc["top"]) == 3
    for entry in doc["top"]:
        got = np.array(entry["values"])
        want = reference[entry["layer"]][entry["quantity"]][:, entry["unit"]]
        assert_close(got, want, 1e-9, 1e-9, f"top unit {entry['unit']}")
        assert entry["std"] == pytest.approx(want.std(), rel=1e-6, abs=1e-12)


def test_units_correlations_use_the_states_from_the_initial_state(run_cli, char_state):
    path, reference, _ = char_state
    result = run_cli("units", "--weights", CHAR, "--key", "lstm", "--text", TEXT, "--initial-state", path,
                     "--top", "3", "--json")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["config"]["initial_state_source"] == f"file {path}"
    feature = np.array([1.0 if ch.isspace() else 0.0 for ch in TEXT])
    best = doc["features"]["is_space"]["best"]
    assert best
    for entry in best:
        assert entry["direction"] == "forward"
        values = reference[entry["layer"]][entry["quantity"]][:, entry["unit"]]
        r = np.corrcoef(values, feature)[0, 1]
        assert entry["r"] == pytest.approx(r, abs=1e-6)
    # the best unit is the best over every c and h computed here
    all_r = [abs(np.corrcoef(reference[layer][q][:, u], feature)[0, 1])
             for layer in (0, 1) for q in ("c", "h") for u in range(128)
             if np.std(reference[layer][q][:, u]) > 0]
    assert abs(best[0]["r"]) == pytest.approx(max(all_r), abs=1e-6)


# -- 7: bad files ------------------------------------------------------------------------------------


SMALL = ("--input-size", "6", "--hidden-size", "5", "--num-layers", "2", "--seq-len", "7", "--batch-size", "3")


def _bad_files(tmp_path: Path) -> dict[str, tuple[str, list[str]]]:
    good_h = np.zeros((2, 3, 5), np.float32)
    good_c = np.ones((2, 3, 5), np.float32)
    out: dict[str, tuple[str, list[str]]] = {}
    out["missing"] = (str(tmp_path / "nope.npz"), ["nope.npz"])
    p = tmp_path / "no_c0.npz"
    np.savez(p, h0=good_h)
    out["no c0"] = (str(p), ["c0"])
    p = tmp_path / "shape.npz"
    np.savez(p, h0=good_h, c0=np.zeros((2, 3, 4), np.float32))
    out["wrong shape"] = (str(p), ["c0", "(2, 3, 4)", "(2, 3, 5)"])
    p = tmp_path / "nan.npz"
    h = good_h.copy()
    h[1, 2, 3] = np.nan
    np.savez(p, h0=h, c0=good_c)
    out["nan"] = (str(p), ["h0", "NaN"])
    p = tmp_path / "int.pt"
    torch.save((torch.zeros(2, 3, 5, dtype=torch.int64), torch.zeros(2, 3, 5, dtype=torch.int64)), p)
    out["int tensor"] = (str(p), ["h0", "int64"])
    p = tmp_path / "int.npz"
    np.savez(p, h0=good_h, c0=np.ones((2, 3, 5), np.int32))
    out["int npz"] = (str(p), ["c0", "int32"])
    p = tmp_path / "single.pt"
    torch.save(torch.zeros(2, 3, 5), p)
    out["single tensor"] = (str(p), ["Tensor"])
    p = tmp_path / "state.npy"
    np.save(p, good_h)
    out["npy"] = (str(p), ["state.npy", ".npz"])
    d = tmp_path / "a_directory"
    d.mkdir()
    out["directory"] = (str(d), ["a_directory", "directory"])
    return out


BAD = ["missing", "no c0", "wrong shape", "nan", "int tensor", "int npz", "single tensor", "npy", "directory"]


@pytest.mark.parametrize("command", ["inspect", "gates", "compare-cell"])
@pytest.mark.parametrize("which", BAD)
def test_a_bad_initial_state_file_exits_2_with_one_line(tmp_path, run_cli, which, command):
    path, words = _bad_files(tmp_path)[which]
    result = run_cli(command, *SMALL, "--initial-state", path)
    assert result.code == 2, (result.code, result.stderr, result.stdout[-500:])
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "--initial-state" in lines[0]
    for word in words:
        assert word.lower() in lines[0].lower(), (word, lines[0])


def test_a_state_for_another_batch_or_layers_is_refused_with_the_expected_shape(tmp_path, run_cli):
    p = tmp_path / "s.npz"
    np.savez(p, h0=np.zeros((2, 3, 5), np.float32), c0=np.zeros((2, 3, 5), np.float32))
    for extra, want in ((("--batch-size", "4"), "(2, 4, 5)"), (("--num-layers", "3"), "(3, 3, 5)"),
                        (("--bidirectional",), "(4, 3, 5)")):
        flags = list(SMALL)
        for k in range(0, len(extra), 2):
            if extra[k] in flags:
                flags[flags.index(extra[k]) + 1] = extra[k + 1]
            else:
                flags.append(extra[k])
        result = run_cli("gates", *flags, "--initial-state", str(p), "--json")
        assert result.code == 2, (extra, result.stderr)
        assert json.loads(result.stdout)["exit"] == 2  # --json: the error as a JSON object
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and want in lines[0], (extra, result.stderr)


# -- 8: bench ---------------------------------------------------------------------------------------


def test_bench_runs_from_the_initial_state(tmp_path, run_cli):
    rng = np.random.default_rng(3)
    p = tmp_path / "seed_state.npz"
    np.savez(p, h0=np.tanh(rng.normal(size=(4, 3, 20))).astype(np.float32),
             c0=(3 * rng.normal(size=(4, 3, 20))).astype(np.float32))
    result = run_cli("bench", "--initial-state", str(p), "--preset", "seed", "--repeat", "1", "--json")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["config"]["initial_state_source"] == f"file {p}"
    (row,) = doc["rows"]
    assert (row["input_size"], row["hidden_size"], row["num_layers"], row["seq_len"], row["batch_size"]) == \
        (100, 20, 4, 10, 3)
    assert row["repeat"] == 1
    for path in ("fused", "cells", "gates"):
        assert len(row[f"{path}_runs_s"]) == 1 and row[f"{path}_s"] > 0
