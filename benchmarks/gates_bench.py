"""How much `lstm-cli gates` costs over nn.LSTM's fused forward, per capture method.

For each size: the fused forward (what `run_lstm` does), and for each capture method what the
gates command computes for its statistics: the nn.LSTM run it compares against (recompute:
every layer on the whole batch; loop: the shadowed sequences) plus the capture, and the capture
alone given that run. All timed round-robin in one process with lstm_cli.timing; medians of
the repeats are printed, with ratios to the fused forward. The machine's
other processes add noise: use several repeats and read medians.

    .venv/bin/python benchmarks/gates_bench.py                 # seed, medium, large; CPU
    .venv/bin/python benchmarks/gates_bench.py --sizes large --repeat 9 --device cuda
    .venv/bin/python benchmarks/gates_bench.py --sizes tiny --repeat 1   # a seconds-long smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from lstm_cli.gates import LoopCapture, RecomputeCapture, capture_gates
from lstm_cli.gates.reference import make_reference
from lstm_cli.gates.run import plan_capture
from lstm_cli.model import build_lstm, make_input, place, run_lstm
from lstm_cli.spec import LSTMSpec
from lstm_cli.timing import interleaved_seconds

SIZES = {  # (input, hidden, layers, seq-len, batch)
    "seed": (100, 20, 4, 10, 3),
    "medium": (128, 256, 2, 100, 32),
    "large": (512, 1024, 2, 200, 64),
    "long": (64, 128, 1, 1000, 8),
    "mid512": (256, 512, 2, 100, 64),
    "mid512b16": (256, 512, 2, 100, 16),
    "memory": (32, 256, 2, 2000, 40),  # the memory case of the README, at a tenth of its length
    "tiny": (4, 8, 1, 5, 2),  # a smoke run (tests/test_benchmarks.py), not a measurement
}
# label -> a fresh capture method (one per size)
METHODS = {
    "loop": lambda: LoopCapture(),
    "loop_addmm": lambda: LoopCapture(gemm="addmm"),
    "recompute": lambda: RecomputeCapture(),
}
DEFAULT_SIZES = "seed,medium,large"
DEFAULT_METHODS = ",".join(METHODS)


def names(value: str, known: dict, what: str, parser: argparse.ArgumentParser) -> list[str]:
    chosen = value.split(",")
    unknown = [name for name in chosen if name not in known]
    if unknown:
        parser.error(f"unknown {what} {', '.join(unknown)}; known: {', '.join(known)}")
    return chosen


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, its --sizes and --methods checked and split into lists."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help=f"comma-separated, from {', '.join(SIZES)}")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated, from {', '.join(METHODS)}")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads in this benchmark process (0: torch's default)")
    parser.add_argument("--json", action="store_true", help="one JSON line per size")
    args = parser.parse_args(argv)
    args.sizes = names(args.sizes, SIZES, "size", parser)
    args.methods = names(args.methods, METHODS, "method", parser)
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark; return one row per size (what --json prints)."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)  # this process only; lstm-cli never changes it
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    rows = []
    for name in args.sizes:
        I, H, L, T, B = SIZES[name]  # noqa: E741 (the names of the issue and DESIGN.md)
        spec = LSTMSpec(input_size=I, hidden_size=H, num_layers=L, seq_len=T, batch_size=B, device=args.device)
        placement = place(spec)
        lstm = build_lstm(spec, placement)
        x = make_input(spec, placement)
        plan = plan_capture(spec, lstm, x)
        shadowed = plan.sample.sequences[: plan.shadowed]
        methods = {label: METHODS[label]() for label in args.methods}
        runs = {"fused": lambda: run_lstm(lstm, x, spec)}
        references = {}
        for label, method in methods.items():
            kind = "recompute" if label == "recompute" else "loop"
            references[label] = make_reference(spec, lstm, x, kind, False, shadowed)

            def whole(method=method, kind=kind):
                return capture_gates(lstm, x, spec, make_reference(spec, lstm, x, kind, False, shadowed), method)

            runs[label] = whole
            runs[label + "_alone"] = lambda method=method, label=label: capture_gates(lstm, x, spec, references[label], method)
        repeat = args.repeat if T * B * H < 10_000_000 else max(3, args.repeat)
        times = interleaved_seconds(runs, placement.device, repeat=repeat, warmup=1)
        fused = statistics.median(times["fused"])
        row = {"size": name, "I": I, "H": H, "L": L, "T": T, "B": B, "repeat": repeat, "auto": plan.choice.name,
               "auto_reason": plan.choice.reason, "fused_s": fused}
        for label in runs:
            if label == "fused":
                continue
            # Median of per-round ratios: each round ran fused and this path back to back.
            row[f"{label}_s"] = statistics.median(times[label])
            row[f"{label}_paired_ratio"] = statistics.median(c / f for c, f in zip(times[label], times["fused"]))
        rows.append(row)
        if args.json:
            print(json.dumps(row))
            continue
        print(f"\n{name} (I={I}, H={H}, L={L}, T={T}, B={B}), median of {repeat}; auto picks {plan.choice.name}")
        print(f"  ({plan.choice.reason})")
        print(f"  fused nn.LSTM              {fused * 1e3:10.2f} ms")
        for label in methods:
            for key, what in ((label, "with its reference"), (label + "_alone", "capture alone")):
                c = row[f"{key}_s"]
                print(f"  {label:11s} {what:18s}{c * 1e3:10.2f} ms   {c / fused:5.2f}x "
                      f"(paired {row[f'{key}_paired_ratio']:.2f}x)")
    return rows


if __name__ == "__main__":
    main()
