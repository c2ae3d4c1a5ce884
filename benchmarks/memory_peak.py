"""Peak resident memory of each command against the memory guard's estimate.

Each command runs in its own subprocess (one at a time); its peak RSS comes from os.wait4's
rusage of that child alone (ru_maxrss, KiB on Linux). The estimate is what the guard computes
for the same flags: `lstm_cli.runtime.memory_estimate`, called in another subprocess so this
script itself stays free of torch.

    .venv/bin/python benchmarks/memory_peak.py --hidden-size 8000 --num-layers 1 --seq-len 2 --batch-size 1
    .venv/bin/python benchmarks/memory_peak.py --commands inspect,gates --hidden-size 4000 --dtype float64
    .venv/bin/python benchmarks/memory_peak.py --commands inspect --hidden-size 8 --timeout 60   # a smoke run

Done when every ratio peak / estimate lies in [0.7, 1.3]. Nothing else should run meanwhile:
other processes change what is available, not the peak, but they slow the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

COMMANDS = ("inspect", "compare-cell", "gates", "gradients", "bench")
# Flags every command gets besides the sizes: no timing repeats where a command times paths.
COMMAND_FLAGS = {"compare-cell": ["--repeat", "0"], "bench": ["--repeat", "1"]}

ESTIMATE = """
import json, sys
from lstm_cli.runtime import memory_estimate
from lstm_cli.spec import LSTMSpec
args = json.loads(sys.argv[1])
spec = LSTMSpec(**args["flags"])
estimates = {}
for command in args["commands"]:
    extra = 0  # what the command counts itself, as it passes it to the guard
    if command in ("gates", "bench"):
        from lstm_cli.gates import extra_elements
        from lstm_cli.gates_options import GatesOptions
        extra = extra_elements(spec, GatesOptions())
    elif command == "compare-cell":  # the loop's outputs of every layer (compare_cell.run_compare)
        extra = spec.seq_len * spec.batch_size * spec.num_layers * spec.num_directions * spec.h_out
    estimates[command] = memory_estimate(spec, command, extra)
print(json.dumps(estimates))
"""


def peak_rss(argv: list[str], timeout: float | None = None) -> tuple[int, int, float]:
    """Run argv; return (exit code, peak RSS in bytes, wall seconds). Past `timeout` seconds the
    child is killed (exit code -9)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a chatty child cannot block on it
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=errors)
        killer = threading.Timer(timeout, child.kill) if timeout else None
        if killer:
            killer.start()
        try:
            _pid, status, usage = os.wait4(child.pid, 0)
        finally:
            if killer:
                killer.cancel()
        child.returncode = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        stderr = errors.read().decode(errors="replace").strip()
    if child.returncode not in (0, 1):
        print(f"  {' '.join(argv[3:])}: exit {child.returncode}: {stderr[-300:]}", file=sys.stderr)
    return child.returncode, usage.ru_maxrss * 1024, time.perf_counter() - start


def estimates(commands: list[str], flags: dict, timeout: float | None = None) -> dict[str, int]:
    """The guard's estimate in bytes for each command, all from one subprocess."""
    try:
        out = subprocess.run([sys.executable, "-c", ESTIMATE, json.dumps({"commands": commands, "flags": flags})],
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"the estimate took over {timeout} s") from None
    if out.returncode != 0:
        raise SystemExit(f"the estimate failed (exit {out.returncode}): {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout)


def command_line(flags: dict) -> list[str]:
    """The lstm-cli flags for LSTMSpec fields `flags` (as main builds them)."""
    cli = [f"--{name.replace('_', '-')}={value}" for name, value in flags.items() if name != "bidirectional"]
    return cli + (["--bidirectional"] if flags.get("bidirectional") else [])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, its --commands checked and split into a list."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", default=",".join(COMMANDS), help=f"comma-separated, from {', '.join(COMMANDS)}")
    parser.add_argument("--input-size", type=int, default=100)
    parser.add_argument("--hidden-size", type=int, default=8000)
    parser.add_argument("--num-layers", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--proj-size", type=int, default=0)
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds after which a subprocess is killed (default: no limit)")
    args = parser.parse_args(argv)
    args.commands = args.commands.split(",")
    unknown = [command for command in args.commands if command not in COMMANDS]
    if unknown:
        parser.error(f"unknown command {', '.join(unknown)}; known: {', '.join(COMMANDS)}")
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the commands; return one row per command, the baseline first (command "(baseline)")."""
    args = parse_args(argv)
    commands = args.commands
    flags = {
        "input_size": args.input_size, "hidden_size": args.hidden_size, "num_layers": args.num_layers,
        "seq_len": args.seq_len, "batch_size": args.batch_size, "proj_size": args.proj_size,
        "bidirectional": args.bidirectional, "dtype": args.dtype, "device": "cpu",
    }
    cli = command_line(flags)
    expected = estimates(commands, flags, args.timeout)
    print(f"{'command':<14} {'peak RSS':>10} {'estimate':>10} {'peak/est':>9} {'wall':>7}  exit")
    tiny = [sys.executable, "-m", "lstm_cli", "inspect", "--hidden-size=20", "--num-layers=1", "--device=cpu"]
    code, peak, wall = peak_rss(tiny, args.timeout)
    rows = [{"command": "(baseline)", "peak_bytes": peak, "wall_s": wall, "exit": code}]
    print(f"{'(baseline)':<14} {peak / 1e9:>8.2f}GB {'':>10} {'':>9}          "
          "interpreter and torch: MemAvailable already excludes them when the guard runs")
    for command in commands:
        argv = [sys.executable, "-m", "lstm_cli", command, *cli, *COMMAND_FLAGS.get(command, [])]
        code, peak, wall = peak_rss(argv, args.timeout)
        ratio = peak / expected[command] if expected[command] else float("inf")
        rows.append({"command": command, "peak_bytes": peak, "estimate_bytes": expected[command], "ratio": ratio,
                     "wall_s": wall, "exit": code})
        print(f"{command:<14} {peak / 1e9:>8.2f}GB {expected[command] / 1e9:>8.2f}GB {ratio:>9.2f} {wall:>6.0f}s  "
              f"{code}", flush=True)
    return rows


if __name__ == "__main__":
    main()
