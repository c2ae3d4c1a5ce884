"""The memory guard (issue 21): each command's estimate lists every copy of the weights it makes,
and a run that does not fit is refused in one line, exit 2, before anything is allocated.

The expected numbers are counted here by hand for a model small enough to count: input 3,
hidden 5, one layer, 2 steps, batch 1. Its parameters: W_ih 4*5*3 = 60, W_hh 4*5*5 = 100, two
biases of 20: P = 200 (the largest tensor is W_hh, 100). One forward's activations, as the spec
counts them: input 2*1*3 twice (float32 draw and cast copy) = 12, output 2*5 = 10, one layer's
gates 2*4*5 = 40, states 4*5 = 20: 82 elements.
"""

import re

import pytest
import torch

import lstm_cli.runtime as runtime
from lstm_cli.runtime import memory_copies, memory_estimate
from lstm_cli.spec import LSTMSpec

P, ACTIVATIONS, W_HH = 200, 82, 100
SMALL = dict(input_size=3, hidden_size=5, num_layers=1, seq_len=2, batch_size=1, device="cpu")


def small(**changes) -> LSTMSpec:
    return LSTMSpec(**(SMALL | changes))


def test_small_model_is_counted_as_by_hand():
    spec = small()
    assert spec.parameter_count() == P
    assert spec.memory_estimate_bytes() == 4 * (P + ACTIVATIONS)


def test_inspect_is_the_model_plus_the_forwards_copy():
    # weights + activations held; oneDNN's copy of the (only) layer during the forward
    assert memory_estimate(small(), "inspect") == 4 * (P + ACTIVATIONS) + 4 * P


def test_compare_cell_counts_cells_step_check_and_shadow():
    spec = small()
    held = 4 * (P + ACTIVATIONS) + 4 * P  # the model and the LSTMCell copy
    forward = 4 * P
    step_check = 8 * P + 4 * P  # one layer x direction in float64, |W| in float32
    shadow = 8 * P + 4 * W_HH  # float64 copy of everything, plus the deepcopy of W_hh being cast
    assert memory_estimate(spec, "compare-cell") == held + max(forward, step_check, shadow)
    # what the command counts itself comes on top, in the run's dtype
    assert memory_estimate(spec, "compare-cell", extra_elements=10) == held + 40 + max(forward, step_check, shadow)


def test_gates_phases_are_not_added_up():
    spec = small(hidden_size=50)  # P = 4*50*(3+50) + 400 = 11000; W_hh 10000
    p, w_hh = 11_000, 10_000
    assert spec.parameter_count() == p
    held = spec.memory_estimate_bytes()  # weights and one forward's activations, float32
    phases = {
        "forward": 4 * p,  # oneDNN's copy of the layer
        "probe": 2 * 4 * p,  # layer 0 as its own nn.LSTM, and its forward's copy
        "reference": 2 * 4 * p,  # recompute: the same for every layer
        "capture": 4 * w_hh,  # the packed W_hh
        "step check": 12 * p,  # float64 weights and float32 |W|
        "shadow": 8 * p + 4 * w_hh,  # float64 model, and the deepcopy's W_hh while it is cast
    }
    counted: dict[str, int] = {}
    for copy in memory_copies(spec, "gates"):
        if copy.phase:
            counted[copy.phase] = counted.get(copy.phase, 0) + copy.bytes
    assert counted == phases
    assert memory_estimate(spec, "gates") == held + max(phases.values())


def test_float64_has_no_onednn_copy_and_a_float32_draw():
    spec = small(dtype="float64")
    held = 8 * (P + ACTIVATIONS)
    # random weights are drawn in float32 and cast one tensor at a time: at most W_hh in float32
    # beside the float64 model; nn.LSTM in float64 copies nothing
    assert memory_estimate(spec, "inspect") == held + 4 * W_HH
    # the shadow is float64 whatever the run's dtype: 8 bytes a parameter (here the deepcopy
    # itself, its cast to float64 copies nothing); float32 adds the cast tensor's float32 copy
    shadow = [c for c in memory_copies(spec, "gates") if c.phase == "shadow"]
    assert sum(c.bytes for c in shadow) == 8 * P
    shadow = [c for c in memory_copies(small(), "gates") if c.phase == "shadow"]
    assert sum(c.bytes for c in shadow) == 8 * P + 4 * W_HH
    # the step check's weights are the model's own float64 tensors; |W| is cast, then taken
    check = [c for c in memory_copies(spec, "gates") if c.phase == "step check"]
    assert sum(c.bytes for c in check) == (4 + 4) * P


def test_half_precision_weights_take_two_bytes():
    spec = small(dtype="bfloat16")
    copies = {c.what: c.bytes for c in memory_copies(spec, "inspect")}
    assert copies["the model's weights"] == 2 * P
    # drawn in float32 (4P) while the cast is under way: 4P - 2P, plus one tensor's cast
    assert copies["float32 weights before the cast"] == 4 * P - 2 * P + 2 * W_HH


def test_bidirectional_two_layers_and_projection():
    spec = small(bidirectional=True, num_layers=2, proj_size=2)
    # layer 0 direction: 4*5*3 + 4*5*2 + 40 + 2*5 = 150; layer 1 direction: 4*5*4 + 40 + 40 + 10 = 170
    assert spec.parameter_count() == 2 * (150 + 170)
    copies = {c.what: c.bytes for c in memory_copies(spec, "compare-cell")}
    # projections run PyTorch's own kernel: no oneDNN copy
    assert copies["nn.LSTM's copy of one layer x direction"] == 0
    # the cells' W_hh is padded to 5 columns (4*5*3 more each) and W_hr is not copied (-10 each)
    assert copies["the LSTMCell stack's weights"] == 4 * (640 + 4 * (60 - 10))
    assert copies["step check: one layer x direction in float64, |W| in float32"] == 12 * 170


def test_gradients_counts_the_models_it_builds():
    spec = small(hidden_size=50)
    p = 11_000
    lstm_only = memory_estimate(spec, "gradients", cells=("lstm",))
    rnn_only = memory_estimate(spec, "gradients", cells=("rnn",))
    activations_lstm = 2 * 1 * 6 * 50 * 4  # steps x batch x (4 gates + 2 states) x H, float32
    inputs = 2 * 1 * 3 * (4 + 3 * 4)
    # the model, oneDNN's copy and its weight gradients
    assert lstm_only == inputs + 3 * 4 * p + activations_lstm
    # nn.RNN's weights are a quarter of the LSTM's; PyTorch's own kernel copies nothing
    assert rnn_only == inputs + 4 * p // 4 + 2 * 1 * 3 * 50 * 4
    # all three: the LSTM's phase is the largest, building it beside the GRU is not
    assert memory_estimate(spec, "gradients") == lstm_only


def test_gradients_in_float64_peaks_while_building():
    # PyTorch's own float64 kernels copy no weights and compute no weight gradients for
    # d loss / d x; building the model (drawn in float32, cast one tensor at a time) is the peak
    spec = small(hidden_size=50, dtype="float64")
    p, w_hh = 11_000, 10_000
    inputs = 2 * 1 * 3 * (4 + 3 * 8)
    assert memory_estimate(spec, "gradients", cells=("lstm",)) == inputs + 8 * p + 4 * w_hh
    # after the GRU (3/4 of the LSTM's weights), the LSTM is built beside it
    assert memory_estimate(spec, "gradients") == inputs + 8 * p * 3 // 4 + 8 * p + 4 * w_hh


def test_loaded_weights_count_the_cached_file_and_the_second_read():
    spec = small(weights="model.pt")
    copies = {c.what: (c.bytes, c.phase) for c in memory_copies(spec, "inspect")}
    assert copies["the file's tensors, cached"] == (4 * P, None)
    # a new state dict from find_lstm (4P) and two bool masks of W_hh while it is checked
    assert copies["find_lstm's state and finiteness masks"] == (4 * P + 2 * W_HH, "build")
    assert memory_estimate(spec, "inspect") == 4 * (P + ACTIVATIONS) + 4 * P + 4 * P + 2 * W_HH


def test_free_form_stack_counts_its_own_widths_not_the_spec_model():
    # --hidden-sizes 5,2 on input 3: cells of 4*5*(3+5) + 40 = 200 and 4*2*(5+2) + 16 = 72
    spec = small(num_layers=4, hidden_size=500)  # what the spec says otherwise is not built
    held = 2 * 1 * 3 * (4 + 4) + 2 * 4 * 272  # input (draw, cast); the cells and the nn.LSTMs
    assert memory_estimate(spec, "compare-cell", widths=(5, 2)) == held + 12 * 200  # the check
    assert memory_estimate(spec, "compare-cell", 7, widths=(5, 2)) == held + 4 * 7 + 12 * 200


def test_unknown_command_is_a_programming_error():
    with pytest.raises(ValueError, match="no memory estimate"):
        memory_estimate(small(), "train")


def test_the_issues_configuration_is_refused_with_the_issues_free_memory():
    # gates --hidden-size 30000 --num-layers 1 --seq-len 2 --batch-size 1 passed the old guard
    # (14.5 GB against 22.7 GiB free) and was killed: the float64 shadow alone is 28.9 GB.
    spec = LSTMSpec(hidden_size=30_000, num_layers=1, seq_len=2, batch_size=1, device="cpu")
    assert memory_estimate(spec, "gates") > 22.7 * 2**30
    assert memory_estimate(spec, "gates") > 8 * spec.parameter_count()


@pytest.mark.parametrize("command", ["inspect", "gates", "compare-cell", "gradients", "bench"])
def test_guard_refuses_in_one_line_before_allocating(run_cli, monkeypatch, command):
    monkeypatch.setattr(runtime, "available_bytes", lambda device: 100 * 1024**2)
    # any model built would crash: the guard must act before
    monkeypatch.setattr(torch.nn, "LSTM", None)
    monkeypatch.setattr(torch.nn, "LSTMCell", None)
    monkeypatch.setattr(torch.nn, "GRU", None)
    monkeypatch.setattr(torch.nn, "RNN", None)
    result = run_cli(command, "--hidden-size", "3000", "--num-layers", "1", "--seq-len", "2", "--batch-size", "1",
                     "--device", "cpu")
    assert result.code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    found = re.fullmatch(
        rf"lstm-cli: error: {command} with this configuration needs about ([\d.]+) (MiB|GiB) but cpu has "
        r"100\.0 MiB available; use smaller sizes", lines[0])
    assert found
    spec = LSTMSpec(hidden_size=3000, num_layers=1, seq_len=2, batch_size=1, device="cpu")
    shown = float(found.group(1)) * (2**30 if found.group(2) == "GiB" else 2**20)
    assert shown == pytest.approx(memory_estimate(spec, "gradients" if command == "gradients" else command,
                                                  **({} if command in ("inspect", "gradients") else
                                                     {"extra_elements": _command_extra(spec, command)})), rel=0.01)


def _command_extra(spec: LSTMSpec, command: str) -> int:
    """What the command counts itself (its buffers), as it passes it to the guard."""
    from lstm_cli.gates import extra_elements
    from lstm_cli.gates_options import GatesOptions

    if command == "compare-cell":
        return spec.seq_len * spec.batch_size * spec.num_layers * spec.h_out
    return extra_elements(spec, GatesOptions())


def test_guard_lets_a_run_that_fits_go(run_cli, monkeypatch):
    spec = LSTMSpec(hidden_size=64, num_layers=1, seq_len=2, batch_size=1, device="cpu")
    needed = memory_estimate(spec, "inspect")
    monkeypatch.setattr(runtime, "available_bytes", lambda device: needed + 1)
    result = run_cli("inspect", "--hidden-size", "64", "--num-layers", "1", "--seq-len", "2", "--batch-size", "1",
                     "--device", "cpu", "--json")
    assert result.code == 0, result.stderr
    monkeypatch.setattr(runtime, "available_bytes", lambda device: needed - 1)
    assert run_cli("inspect", "--hidden-size", "64", "--num-layers", "1", "--seq-len", "2", "--batch-size", "1",
                   "--device", "cpu", "--json").code == 2


def test_a_cgroup_limit_counts_as_the_memory_available(tmp_path, monkeypatch):
    limit, usage, stat = tmp_path / "memory.max", tmp_path / "memory.current", tmp_path / "memory.stat"
    limit.write_text("2147483648\n")  # a container allowed 2 GiB
    usage.write_text(str(1536 * 2**20))  # using 1.5 GiB, of which 256 MiB droppable page cache
    stat.write_text(f"anon 1073741824\ninactive_file {256 * 2**20}\n")
    monkeypatch.setattr(runtime, "_CGROUP_FILES", ((str(limit), str(usage), str(stat), "inactive_file"),))
    assert runtime.cgroup_room() == (2048 - 1536 + 256) * 2**20
    assert runtime.available_bytes(torch.device("cpu")) == (2048 - 1536 + 256) * 2**20
    limit.write_text("max\n")
    assert runtime.cgroup_room() is None
    monkeypatch.setattr(runtime, "_CGROUP_FILES", ((str(tmp_path / "none"), str(usage), str(stat), "x"),))
    assert runtime.cgroup_room() is None
