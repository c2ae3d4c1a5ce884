"""The speed budgets of issues 6 and 14, measured: wall time of whole processes, median of --repeat.

    .venv/bin/python benchmarks/speed_budget.py            # start-up: one line per command
    .venv/bin/python benchmarks/speed_budget.py --large    # gates end to end on a large model

- `lstm-cli --help` under 0.3 s (it never imports torch);
- `inspect`, `compare-cell`, `gates`, `gradients` at the defaults within 1.15x of
  `python -c "import torch"`;
- --large: `lstm-cli gates` at (I, H, L, T, B) = (512, 1024, 2, 400, 64) within 1.6x of a bare
  script that builds the same nn.LSTM and runs one forward pass (both whole processes).
Runs are interleaved (round after round) so that load from other processes lands on all of
them alike; --large also prints the median of per-round ratios.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

LSTM_CLI = str(Path(sys.executable).with_name("lstm-cli"))
RUNS = {
    "import torch": [sys.executable, "-c", "import torch"],
    "--help": [LSTM_CLI, "--help"],
    "inspect": [LSTM_CLI, "inspect"],
    "compare-cell": [LSTM_CLI, "compare-cell"],
    "gates": [LSTM_CLI, "gates"],
    "gradients": [LSTM_CLI, "gradients"],
}
LARGE = (512, 1024, 2, 400, 64)
BARE_FORWARD = (
    "import torch\n"
    "I, H, L, T, B = {}\n"
    "lstm = torch.nn.LSTM(I, H, L).eval()\n"
    "x = torch.randn(T, B, I)\n"
    "with torch.no_grad():\n"
    "    lstm(x)\n"
).format(LARGE)
LARGE_RUNS = {
    "bare forward": [sys.executable, "-c", BARE_FORWARD],
    "gates": [LSTM_CLI, "gates", "--json", *(f"--{flag}={value}" for flag, value in zip(
        ("input-size", "hidden-size", "num-layers", "seq-len", "batch-size"), LARGE))],
}


def wall_time(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--large", action="store_true", help="gates end to end at (512, 1024, 2, 400, 64) instead")
    args = parser.parse_args()
    if args.large:
        large(args.repeat)
        return
    times: dict[str, list[float]] = {name: [] for name in RUNS}
    for name, command in RUNS.items():  # warm the file cache once
        wall_time(command)
    for _ in range(args.repeat):
        for name, command in RUNS.items():
            times[name].append(wall_time(command))
    torch_s = statistics.median(times["import torch"])
    print(f"median of {args.repeat}; import torch {torch_s:.3f} s")
    for name in RUNS:
        if name == "import torch":
            continue
        median = statistics.median(times[name])
        budget = "under 0.3 s" if name == "--help" else "<= 1.15x import torch"
        ok = median < 0.3 if name == "--help" else median <= 1.15 * torch_s
        print(f"{name:13s} {median:.3f} s  {median / torch_s:.2f}x import torch   budget {budget}: {'met' if ok else 'MISSED'}")


def large(repeat: int) -> None:
    times: dict[str, list[float]] = {name: [] for name in LARGE_RUNS}
    for _ in range(repeat):
        for name, command in LARGE_RUNS.items():
            times[name].append(wall_time(command))
    bare, gates = (statistics.median(times[name]) for name in LARGE_RUNS)
    paired = statistics.median(g / b for g, b in zip(times["gates"], times["bare forward"]))
    print(f"(I, H, L, T, B) = {LARGE}, median of {repeat}: bare forward {bare:.2f} s, gates {gates:.2f} s: "
          f"{gates / bare:.2f}x (paired {paired:.2f}x)   budget <= 1.6x: {'met' if paired <= 1.6 else 'MISSED'}")


if __name__ == "__main__":
    main()
