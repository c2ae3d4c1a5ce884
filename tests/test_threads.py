"""--threads on every command that computes: validated alike, set only while the command runs
(the thread count in effect is recorded inside the computation), restored after, reported in
the header and JSON config; the default rule (one thread for a small model). No timings."""

import pytest
import torch

from lstm_cli import threads as threads_module
from lstm_cli.spec import LSTMSpec
from lstm_cli.threads import SMALL_STEP_MACS, ThreadChoice, choose_threads, step_macs, thread_scope

from tests.test_text_input import char_model

# Every command that computes, with the least it needs to run quickly on the seed example.
SMALL = ["--hidden-size", "8", "--num-layers", "1", "--seq-len", "3"]
COMMANDS = {
    "inspect": ("lstm_cli.inspect", "run_inspect", ["inspect", *SMALL]),
    "compare-cell": ("lstm_cli.compare_cell", "run_compare", ["compare-cell", *SMALL, "--repeat", "1"]),
    "gates": ("lstm_cli.gates", "run_gates", ["gates", *SMALL]),
    "gradients": ("lstm_cli.gradients", "run_gradients", ["gradients", *SMALL]),
    "bench": ("lstm_cli.bench", "run_bench", ["bench", *SMALL, "--repeat", "1"]),
    "units": ("lstm_cli.text.units", "run_units", ["units"]),
    "trace": ("lstm_cli.text.trace", "run_trace", ["trace"]),
}
TEXT_COMMANDS = ("units", "trace")


@pytest.fixture
def four_cpus(monkeypatch):
    """As if this process could use 4 CPUs, so that the tests do not depend on the machine
    (torch runs 3 or 4 threads on fewer cores, only slower)."""
    monkeypatch.setattr(threads_module, "usable_cpus", lambda: 4)


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def command_args(name: str, tmp_path) -> list[str]:
    args = list(COMMANDS[name][2])
    if name in TEXT_COMMANDS:
        path, _ = char_model(tmp_path)
        args += ["--weights", str(path), "--key", "rnn", "--text", "ab (cd)"]
    return args


def spy_threads(monkeypatch, name: str) -> list[int]:
    """Record torch.get_num_threads() inside the command's computation."""
    import importlib

    module_name, function, _ = COMMANDS[name]
    module = importlib.import_module(module_name)
    real, seen = getattr(module, function), []

    def spied(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(module, function, spied)
    return seen


@pytest.mark.parametrize("name", list(COMMANDS))
def test_explicit_threads_run_the_computation_and_are_restored(run_cli, monkeypatch, tmp_path, four_cpus,
                                                               restore_threads, name):
    torch.set_num_threads(1)
    seen = spy_threads(monkeypatch, name)
    result = run_cli(*command_args(name, tmp_path), "--threads", "3", "--json")
    assert result.code == 0, result.stderr
    assert seen == [3]  # in effect while the command computed
    assert torch.get_num_threads() == 1  # and put back after
    config = result.json()["config"]
    assert (config["threads"], config["threads_chosen_by"]) == (3, "--threads")


@pytest.mark.parametrize("name", list(COMMANDS))
@pytest.mark.parametrize("value", ["0", "-2", "5", "many"])
def test_threads_out_of_range_is_one_line_exit_2(run_cli, tmp_path, four_cpus, name, value):
    result = run_cli(*command_args(name, tmp_path), "--threads", value)
    assert result.code == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    if value == "many":
        assert line == "lstm-cli: error: Invalid value for '--threads': 'many' is not a valid int."
    else:
        assert line == f"lstm-cli: error: --threads must be between 1 and 4, the CPUs this process may use (got {value})"


def test_the_limit_is_the_cpus_this_process_may_use(monkeypatch):
    monkeypatch.setattr(threads_module.os, "sched_getaffinity", lambda pid: {0, 5}, raising=False)
    assert threads_module.usable_cpus() == 2
    from lstm_cli.errors import UsageError

    with pytest.raises(UsageError, match="between 1 and 2"):
        threads_module.check_threads(3)


def test_small_model_runs_one_thread_by_default_and_torch_count_is_restored(run_cli, monkeypatch, four_cpus,
                                                                           restore_threads):
    torch.set_num_threads(2)  # the user's own setting, as in a program that calls the CLI
    calls = []
    real_set = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), real_set(n)))
    seen = spy_threads(monkeypatch, "inspect")
    result = run_cli("inspect", "--json")
    assert result.code == 0, result.stderr
    assert seen == [1] and calls == [1, 2] and torch.get_num_threads() == 2
    config = result.json()["config"]
    assert (config["threads"], config["threads_chosen_by"]) == (1, "default: 1 for a small model")
    header = run_cli("inspect").stdout.splitlines()[0]
    assert "float32 on cpu, 1 thread, seed 0" in " ".join(run_cli("inspect").stdout.split()), header


def test_large_model_keeps_torch_threads_by_default(run_cli, monkeypatch, restore_threads):
    torch.set_num_threads(2)
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(n))
    seen = spy_threads(monkeypatch, "inspect")
    # step GEMM 64 x 4*256 x (256 + 256) = 33.5M multiply-adds: above the limit
    result = run_cli("inspect", "--input-size", "256", "--hidden-size", "256", "--num-layers", "1",
                     "--seq-len", "2", "--batch-size", "64", "--json")
    assert result.code == 0, result.stderr
    assert seen == [2] and calls == []  # torch's count, never touched
    assert result.json()["config"]["threads_chosen_by"] == "default: torch's"


def test_bench_keeps_torch_threads_by_default(run_cli, monkeypatch, restore_threads):
    """bench measures torch's own behaviour: no small-model default there."""
    torch.set_num_threads(2)
    seen = spy_threads(monkeypatch, "bench")
    doc = run_cli("bench", *SMALL, "--repeat", "1", "--json").json()
    assert seen == [2] and doc["threads"] == 2 and doc["threads_flag"] is None


def test_threads_restored_when_the_command_fails_inside(run_cli, four_cpus, restore_threads):
    torch.set_num_threads(1)
    result = run_cli("gates", "--threads", "3", "--heatmap", "9:f")  # refused inside the command
    assert result.code == 2 and "--heatmap layer 9 does not exist" in result.stderr
    assert torch.get_num_threads() == 1


def test_choose_threads_rule():
    seed = LSTMSpec()
    assert step_macs(seed) == 3 * 4 * 20 * (100 + 20)  # batch x 4H x (input + hidden), layer 0
    medium = LSTMSpec(input_size=128, hidden_size=256, num_layers=2, seq_len=100, batch_size=32)
    assert step_macs(medium) == 32 * 4 * 256 * (256 + 256)  # layer 1 is the widest
    assert step_macs(LSTMSpec(bidirectional=True, proj_size=5)) == 3 * 4 * 20 * (100 + 5)  # h is P wide
    assert step_macs(LSTMSpec(input_size=4, bidirectional=True)) == 3 * 4 * 20 * (2 * 20 + 20)  # layer 1
    assert step_macs(LSTMSpec(unbatched=True)) == 4 * 20 * 120
    assert choose_threads(None, seed) == ThreadChoice(None, 1, "default: 1 for a small model")
    assert choose_threads(None, medium) == ThreadChoice(None, 1, "default: 1 for a small model")
    large = LSTMSpec(input_size=512, hidden_size=1024, num_layers=2, seq_len=200, batch_size=64)
    assert step_macs(large) > SMALL_STEP_MACS
    assert choose_threads(None, large) == ThreadChoice(None, None, "default: torch's")
    assert choose_threads(None, seed, small_model_default=False).count is None
    assert choose_threads(2, medium) == ThreadChoice(2, 2, "--threads")


def test_scope_is_exact_about_what_it_touches(restore_threads, monkeypatch):
    torch.set_num_threads(1)
    calls = []
    real_set = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), real_set(n)))
    with thread_scope(ThreadChoice(None, None, "default: torch's")) as effect:
        assert effect.count == 1 and threads_module.active_threads() == effect
    with thread_scope(ThreadChoice(None, 1, "default: 1 for a small model")):
        pass
    assert calls == []  # nothing to change, nothing set
    assert threads_module.active_threads() is None
    with pytest.raises(RuntimeError):
        with thread_scope(ThreadChoice(2, 2, "--threads")):
            assert torch.get_num_threads() == 2
            raise RuntimeError
    assert calls == [2, 1] and torch.get_num_threads() == 1
