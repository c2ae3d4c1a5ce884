"""The speed budgets of issues 6 and 14, measured: wall time of whole processes, median of --repeat.

    .venv/bin/python benchmarks/speed_budget.py            # start-up: one line per command
    .venv/bin/python benchmarks/speed_budget.py --large    # gates end to end on a large model
    .venv/bin/python benchmarks/speed_budget.py --commands=--help --repeat 1 --warmup 0   # a smoke run

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
BASELINE = "import torch"
RUNS = {
    BASELINE: [sys.executable, "-c", "import torch"],
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
)


def large_runs(size: tuple[int, int, int, int, int] = LARGE) -> dict[str, list[str]]:
    """The bare forward and `lstm-cli gates` at (I, H, L, T, B) = size."""
    return {
        "bare forward": [sys.executable, "-c", BARE_FORWARD.format(tuple(size))],
        "gates": [LSTM_CLI, "gates", "--json", *(f"--{flag}={value}" for flag, value in zip(
            ("input-size", "hidden-size", "num-layers", "seq-len", "batch-size"), size))],
    }


def wall_time(command: list[str], timeout: float | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=timeout)
    return time.perf_counter() - start


def sizes(value: str) -> tuple[int, int, int, int, int]:
    numbers = tuple(int(v) for v in value.split(","))
    if len(numbers) != 5 or min(numbers) < 1:
        raise argparse.ArgumentTypeError("five positive integers I,H,L,T,B")
    return numbers


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, its --commands checked and split into a list."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--large", action="store_true", help="gates end to end at (512, 1024, 2, 400, 64) instead")
    parser.add_argument("--large-size", type=sizes, default=LARGE, metavar="I,H,L,T,B",
                        help="the model of --large (default %(default)s)")
    others = [name for name in RUNS if name != BASELINE]
    parser.add_argument("--commands", default=",".join(others),
                        help=f"comma-separated, from {', '.join(others)} (write --commands=--help); "
                             f"`{BASELINE}` always runs")
    parser.add_argument("--warmup", type=int, default=1, help="rounds run first and not counted")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per process (default: no limit)")
    args = parser.parse_args(argv)
    args.commands = args.commands.split(",")
    unknown = [name for name in args.commands if name not in others]
    if unknown:
        parser.error(f"unknown command {', '.join(unknown)}; known: {', '.join(others)}")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the budget checks; return the medians (and with --large the paired ratio)."""
    args = parse_args(argv)
    if args.large:
        return large(args.repeat, args.large_size, args.timeout)
    runs = {name: command for name, command in RUNS.items() if name == BASELINE or name in args.commands}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.warmup):  # warm the file cache
        for name, command in runs.items():
            wall_time(command, args.timeout)
    for _ in range(args.repeat):
        for name, command in runs.items():
            times[name].append(wall_time(command, args.timeout))
    torch_s = statistics.median(times[BASELINE])
    print(f"median of {args.repeat}; import torch {torch_s:.3f} s")
    result = {"repeat": args.repeat, "median_s": {BASELINE: torch_s}, "met": {}}
    for name in runs:
        if name == BASELINE:
            continue
        median = statistics.median(times[name])
        budget = "under 0.3 s" if name == "--help" else "<= 1.15x import torch"
        ok = median < 0.3 if name == "--help" else median <= 1.15 * torch_s
        result["median_s"][name], result["met"][name] = median, ok
        print(f"{name:13s} {median:.3f} s  {median / torch_s:.2f}x import torch   budget {budget}: {'met' if ok else 'MISSED'}")
    return result


def large(repeat: int, size: tuple[int, int, int, int, int] = LARGE, timeout: float | None = None) -> dict:
    runs = large_runs(size)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, command in runs.items():
            times[name].append(wall_time(command, timeout))
    bare, gates = (statistics.median(times[name]) for name in runs)
    paired = statistics.median(g / b for g, b in zip(times["gates"], times["bare forward"]))
    print(f"(I, H, L, T, B) = {tuple(size)}, median of {repeat}: bare forward {bare:.2f} s, gates {gates:.2f} s: "
          f"{gates / bare:.2f}x (paired {paired:.2f}x)   budget <= 1.6x: {'met' if paired <= 1.6 else 'MISSED'}")
    return {"size": tuple(size), "repeat": repeat, "median_s": {"bare forward": bare, "gates": gates},
            "paired_ratio": paired, "met": paired <= 1.6}


if __name__ == "__main__":
    main()
