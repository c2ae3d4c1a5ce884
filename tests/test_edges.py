"""Help and edge messages: -h, listed choices, help text that re-wraps, no empty error line, a
full disk, Ctrl-C under a real terminal, inputs of the wrong kind, flags that would do nothing."""

import os
import select
import signal
import subprocess
import sys
import time

import numpy as np

CLI = [sys.executable, "-m", "lstm_cli"]


def test_dash_h_is_help_everywhere(run_cli):
    for args in ([], ["inspect"], ["gates"], ["bench"]):
        result = run_cli(*args, "-h")
        assert result.code == 0 and "Usage: lstm-cli" in result.stdout, args


def test_choices_are_listed_in_help(run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # wide enough that no choice list wraps
    inspect = run_cli("inspect", "-h").stdout
    assert "[float32|float64|float16|bfloat16]" in inspect and "[auto|cpu|cuda|cuda:N|mps]" in inspect
    assert "[auto|loop|recompute]" in run_cli("gates", "-h").stdout


def test_help_text_rewraps_at_the_terminal_width(run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    text = run_cli("compare-cell", "-h").stdout
    # One paragraph of the docstring, on one line at 200 columns (the source breaks it in three).
    assert "one nn.LSTMCell per layer and direction and steps through time as the seed does" in text


def test_no_command_prints_help_and_no_empty_error_line():
    result = subprocess.run(CLI, capture_output=True, text=True)
    assert result.returncode == 2 and "Usage: lstm-cli" in result.stdout
    assert "error" not in result.stderr


def test_a_full_disk_is_one_line_and_exit_2():
    for args in (["inspect"], ["inspect", "--json"]):
        with open("/dev/full", "w") as full:
            result = subprocess.run([*CLI, *args], stdout=full, stderr=subprocess.PIPE, text=True)
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines() == ["lstm-cli: error: cannot write the output: No space left on device"]


def test_ctrl_c_under_a_terminal_restores_the_cursor_and_ends_with_interrupted():
    main, child = os.openpty()
    proc = subprocess.Popen(
        [*CLI, "compare-cell", "--hidden-size", "4", "--num-layers", "1", "--seq-len", "20000", "--repeat", "20"],
        stdin=child, stdout=child, stderr=child, env=dict(os.environ, COLUMNS="80"),
    )
    os.close(child)
    seen = b""
    deadline = time.monotonic() + 60
    interrupted = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        if not interrupted and b"LSTMCell loop" in seen and b"steps" in seen:
            proc.send_signal(signal.SIGINT)
            interrupted = True
        if proc.poll() is not None and not ready:
            break
    proc.wait(timeout=30)
    os.close(main)
    assert interrupted, seen[-500:]
    assert proc.returncode == 130
    hide, show = seen.rfind(b"\x1b[?25l"), seen.rfind(b"\x1b[?25h")
    assert hide != -1 and show > hide  # the cursor is shown again after the bar hid it
    tail = seen[seen.rfind(b"lstm-cli: interrupted"):]
    assert tail.strip() == b"lstm-cli: interrupted"  # nothing redrawn after it


def test_inputs_of_the_wrong_kind_are_named(tmp_path, run_cli):
    np.savez(tmp_path / "x.npz", a=np.zeros((4, 3, 100), np.float32))
    result = run_cli("inspect", "--input", str(tmp_path / "x.npz"))
    assert result.code == 2 and "a numpy .npz archive; --input takes a .pt file" in result.stderr

    np.save(tmp_path / "x64.npy", np.random.default_rng(0).standard_normal((5, 2, 100)))
    result = run_cli("inspect", "--input", str(tmp_path / "x64.npy"))
    assert result.code == 0 and "holds float64 values; they run rounded to float32" in result.stderr
    result = run_cli("inspect", "--input", str(tmp_path / "x64.npy"), "--dtype", "float64")
    assert result.code == 0 and "rounded" not in result.stderr


def test_flags_that_would_do_nothing_or_mean_nothing(run_cli):
    result = run_cli("gates", "--sequence", "2", "--json")
    assert result.code == 0 and any("--sequence 2 picks what --heatmap and --plot draw" in n for n in result.json()["notes"])
    result = run_cli("inspect", "--lengths", "")
    assert result.code == 2 and "--lengths takes whole numbers" in result.stderr
    explained = run_cli("inspect", "--explain", "--no-bias").stdout.split("At every step")[1]
    assert "W_ii x_t + W_hi h_(t-1))" in explained and "+ b_" not in explained
    assert "+ b_ii" in run_cli("inspect", "--explain").stdout
