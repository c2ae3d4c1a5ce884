"""Peak resident memory of each command against the memory guard's estimate.

Each command runs in its own subprocess (one at a time); its peak RSS comes from os.wait4's
rusage of that child alone (ru_maxrss, KiB on Linux). The estimate is what the guard computes
for the same flags: `lstm_cli.runtime.memory_estimate`, called in another subprocess so this
script itself stays free of torch.

    .venv/bin/python benchmarks/memory_peak.py --hidden-size 8000 --num-layers 1 --seq-len 2 --batch-size 1
    .venv/bin/python benchmarks/memory_peak.py --commands inspect,gates --hidden-size 4000 --dtype float64

Done when every ratio peak / estimate lies in [0.7, 1.3]. Nothing else should run meanwhile:
other processes change what is available, not the peak, but they slow the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

COMMANDS = ("inspect", "compare-cell", "gates", "gradients", "bench")
# Flags every command gets besides the sizes: no timing repeats where a command times paths.
COMMAND_FLAGS = {"compare-cell": ["--repeat", "0"], "bench": ["--repeat", "1"]}

ESTIMATE = """
import json, sys
from lstm_cli.runtime import memory_estimate
from lstm_cli.spec import LSTMSpec
args = json.loads(sys.argv[1])
spec, command = LSTMSpec(**args["flags"]), args["command"]
extra = 0  # what the command counts itself, as it passes it to the guard
if command in ("gates", "bench"):
    from lstm_cli.gates import extra_elements
    from lstm_cli.gates_options import GatesOptions
    extra = extra_elements(spec, GatesOptions())
elif command == "compare-cell":  # the loop's outputs of every layer (compare_cell.run_compare)
    extra = spec.seq_len * spec.batch_size * spec.num_layers * spec.num_directions * spec.h_out
print(memory_estimate(spec, command, extra))
"""


def peak_rss(argv: list[str]) -> tuple[int, int, float]:
    """Run argv; return (exit code, peak RSS in bytes, wall seconds)."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    stderr = child.stderr.read().decode(errors="replace").strip()
    child.stderr.close()
    if child.returncode not in (0, 1):
        print(f"  {' '.join(argv[3:])}: exit {child.returncode}: {stderr[-300:]}", file=sys.stderr)
    return child.returncode, usage.ru_maxrss * 1024, time.perf_counter() - start


def estimate(command: str, flags: dict) -> int:
    out = subprocess.run([sys.executable, "-c", ESTIMATE, json.dumps({"command": command, "flags": flags})],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", default=",".join(COMMANDS))
    parser.add_argument("--input-size", type=int, default=100)
    parser.add_argument("--hidden-size", type=int, default=8000)
    parser.add_argument("--num-layers", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--proj-size", type=int, default=0)
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    flags = {
        "input_size": args.input_size, "hidden_size": args.hidden_size, "num_layers": args.num_layers,
        "seq_len": args.seq_len, "batch_size": args.batch_size, "proj_size": args.proj_size,
        "bidirectional": args.bidirectional, "dtype": args.dtype, "device": "cpu",
    }
    cli = [f"--{name.replace('_', '-')}={value}" for name, value in flags.items() if name != "bidirectional"]
    cli += ["--bidirectional"] if args.bidirectional else []
    print(f"{'command':<14} {'peak RSS':>10} {'estimate':>10} {'peak/est':>9} {'wall':>7}  exit")
    tiny = [sys.executable, "-m", "lstm_cli", "inspect", "--hidden-size=20", "--num-layers=1", "--device=cpu"]
    print(f"{'(baseline)':<14} {peak_rss(tiny)[1] / 1e9:>8.2f}GB {'':>10} {'':>9}          "
          "interpreter and torch: MemAvailable already excludes them when the guard runs")
    for command in args.commands.split(","):
        argv = [sys.executable, "-m", "lstm_cli", command, *cli, *COMMAND_FLAGS.get(command, [])]
        expected = estimate(command, flags)
        code, peak, wall = peak_rss(argv)
        ratio = peak / expected
        print(f"{command:<14} {peak / 1e9:>8.2f}GB {expected / 1e9:>8.2f}GB {ratio:>9.2f} {wall:>6.0f}s  {code}", flush=True)


if __name__ == "__main__":
    main()
