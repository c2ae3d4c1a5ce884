"""The speed budget of issue 6, measured: wall time of whole processes, median of --repeat.

    .venv/bin/python benchmarks/speed_budget.py            # prints one line per check

- `lstm-cli --help` under 0.3 s (it never imports torch);
- `inspect`, `compare-cell`, `gates`, `gradients` at the defaults within 1.2x of
  `python -c "import torch"`.
Runs are interleaved (torch, then each command, round after round) so that load from other
processes lands on all of them alike.
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


def wall_time(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
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
        budget = "under 0.3 s" if name == "--help" else "<= 1.2x import torch"
        ok = median < 0.3 if name == "--help" else median <= 1.2 * torch_s
        print(f"{name:13s} {median:.3f} s  {median / torch_s:.2f}x import torch   budget {budget}: {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
