"""Which --threads default loses least: each command with --threads 1 against torch's default
thread count, on models from tiny to medium, with the machine idle and with one competing busy
process (`python -c 'while True: pass'`, started here and stopped at the end).

Runs the real commands in this process (`lstm_cli.cli.main([... , "--json"])`, stdout
discarded; torch imported once), the thread counts interleaved (1, default, 1, default, ...)
so that load from other processes lands on both alike, and reports the median wall time of
each. Prints a Markdown table and, with --out FILE.json, writes every run.

    .venv/bin/python benchmarks/threads_default.py                  # everything: 40 min on a loaded 2-core machine
    .venv/bin/python benchmarks/threads_default.py --busy no --repeat 3 --commands inspect,gates
    .venv/bin/python benchmarks/threads_default.py --busy no --repeat 1 --commands inspect --models seed   # smoke
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch

from lstm_cli.cli import main as lstm_cli_main
from lstm_cli.spec import LSTMSpec
from lstm_cli.threads import step_macs

# name -> shared flags (sizes only; everything else the seed's defaults)
MODELS = {
    "seed": [],
    "h64 b16 t50": ["--hidden-size", "64", "--batch-size", "16", "--seq-len", "50", "--num-layers", "2"],
    "h128 b16 t50": ["--hidden-size", "128", "--batch-size", "16", "--seq-len", "50", "--num-layers", "2"],
    "medium": ["--input-size", "128", "--hidden-size", "256", "--seq-len", "100", "--batch-size", "32",
               "--num-layers", "2"],
    "large": ["--input-size", "512", "--hidden-size", "1024", "--seq-len", "200", "--batch-size", "64",
              "--num-layers", "2"],
}
DEFAULT_MODELS = ("seed", "h64 b16 t50", "h128 b16 t50", "medium")  # large: seconds per run, ask for it
COMMANDS = ("inspect", "gates", "gradients", "compare-cell")


def macs(flags: list[str]) -> int:
    sizes = dict(zip(flags[::2], flags[1::2]))
    names = {"--input-size": "input_size", "--hidden-size": "hidden_size", "--batch-size": "batch_size",
             "--seq-len": "seq_len", "--num-layers": "num_layers"}
    return step_macs(LSTMSpec(**{names[k]: int(v) for k, v in sizes.items()}))


def timed_run(args: list[str]) -> float:
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = lstm_cli_main(args)
    seconds = time.perf_counter() - start
    if code != 0:  # a failed run would time an error path, not the command
        raise SystemExit(f"lstm-cli {' '.join(args)} exited {code}")
    return seconds


def measure(commands, models, thread_counts, repeat) -> list[dict]:
    rows = []
    for command in commands:
        for model in models:
            base = [command, *MODELS[model], "--json"]
            for n in thread_counts:  # warm-up: first calls build kernels and caches
                timed_run([*base, "--threads", str(n)])
            runs: dict[int, list[float]] = {n: [] for n in thread_counts}
            for _ in range(repeat):
                for n in thread_counts:
                    runs[n].append(timed_run([*base, "--threads", str(n)]))
            row = {"command": command, "model": model, "step_macs": macs(MODELS[model]),
                   "load_average_1min": os.getloadavg()[0],
                   "runs": {str(n): r for n, r in runs.items()},
                   "median": {str(n): statistics.median(r) for n, r in runs.items()},
                   "fastest": {str(n): min(r) for n, r in runs.items()}}
            rows.append(row)
            print(f"  {command:12} {model:14} " + "  ".join(
                f"{n} thr {row['median'][str(n)] * 1e3:8.1f} ms" for n in thread_counts)
                + f"  (load {row['load_average_1min']:.1f})", file=sys.stderr, flush=True)
    return rows


@contextlib.contextmanager
def busy_process(on: bool):
    if not on:
        yield
        return
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        process.kill()
        process.wait()


def choices(value: str, known, what: str, parser: argparse.ArgumentParser) -> list[str]:
    chosen = value.split(",")
    unknown = [name for name in chosen if name not in known]
    if unknown:
        parser.error(f"unknown {what} {', '.join(unknown)}; known: {', '.join(known)}")
    return chosen


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, its --commands and --models checked and split into lists."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--commands", default=",".join(COMMANDS), help=f"from {', '.join(COMMANDS)}")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help=f"from {', '.join(MODELS)}")
    parser.add_argument("--busy", choices=("no", "yes", "both"), default="both")
    parser.add_argument("--out", help="write every run to this JSON file")
    args = parser.parse_args(argv)
    args.commands = choices(args.commands, COMMANDS, "command", parser)
    args.models = choices(args.models, MODELS, "model", parser)
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    """Measure; print the table (stdout) and progress (stderr); return every row (what --out holds)."""
    args = parse_args(argv)
    commands, models = args.commands, args.models
    default = torch.get_num_threads()
    counts = [1, default] if default != 1 else [1]
    conditions = {"no": [False], "yes": [True], "both": [False, True]}[args.busy]
    machine = f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} CPUs usable, torch {torch.__version__}"
    print(f"# {machine}; torch's default threads: {default}; median of {args.repeat} interleaved runs", file=sys.stderr)
    results = []
    for busy in conditions:
        print(f"busy process: {'yes' if busy else 'no'}", file=sys.stderr)
        with busy_process(busy):
            for row in measure(commands, models, counts, args.repeat):
                results.append(dict(row, busy=busy))
    print("| command | model | step MACs | busy | load | " + " | ".join(f"{n} thread(s)" for n in counts)
          + " | default/1 (medians) | default/1 (fastest runs) |")
    print("|---|---|---|---|---|" + "---|" * (len(counts) + 2))
    for row in results:
        med = row["median"]
        ratio = med[str(counts[-1])] / med["1"]
        fastest = row["fastest"][str(counts[-1])] / row["fastest"]["1"]
        print(f"| {row['command']} | {row['model']} | {row['step_macs']:,} | {'yes' if row['busy'] else 'no'} | "
              f"{row['load_average_1min']:.1f} | " + " | ".join(f"{med[str(n)] * 1e3:.0f} ms" for n in counts)
              + f" | {ratio:.2f}x | {fastest:.2f}x |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": machine, "default_threads": default, "repeat": args.repeat, "rows": results}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
