"""What the step-local check and the float64 shadow cost inside `gates` and `compare-cell`.

Runs each command's core in one process (after a warm-up run, so one-time initialisation is not
counted) at bench's preset sizes and reports, per command, the wall time and the share spent in
the step-local check and in the shadow. Issue 11 asks for no more than 10% at the large preset.

    .venv/bin/python benchmarks/verify_cost.py [seed medium large] [--threads N] [--device cuda]
"""

import argparse
import time

import torch

from lstm_cli import compare_cell, gates
from lstm_cli.gates import run as gates_run
from lstm_cli.gates_options import GatesOptions
from lstm_cli.spec import LSTMSpec

PRESETS = {
    "seed": dict(),
    "medium": dict(input_size=128, hidden_size=256, num_layers=2, seq_len=100, batch_size=32),
    "large": dict(input_size=512, hidden_size=1024, num_layers=2, seq_len=200, batch_size=64),
}
spent: dict[str, float] = {}


def timed(module, name: str, label: str) -> None:
    inner = getattr(module, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0.0) + time.perf_counter() - start

    setattr(module, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("presets", nargs="*", default=list(PRESETS))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # Wrapped where run_gates looks them up: gates.run, not the package that re-exports them.
    timed(gates_run, "step_checks", "check")
    timed(gates_run, "run_shadow_for", "shadow")
    timed(compare_cell, "check_direction", "check")
    timed(compare_cell, "run_shadow", "shadow")
    print(f"torch {torch.__version__}, {args.threads} thread(s), device {args.device}")
    for name in args.presets:
        spec = LSTMSpec(device=args.device, **PRESETS[name])
        runs = {
            "gates": lambda: gates.run_gates(spec, GatesOptions()),
            "compare-cell": lambda: compare_cell.run_compare(spec, repeat=5),
        }
        for command, run in runs.items():
            run()  # warm-up: first calls of float64 kernels initialise them
            spent.clear()
            start = time.perf_counter()
            result = run()
            total = time.perf_counter() - start
            check, shadow = spent.get("check", 0.0), spent.get("shadow", 0.0)
            what = result.shadow.description if result.shadow else result.shadow_note
            print(f"{command:12s} {name:6s} {total:7.2f} s: step check {check * 1e3:7.1f} ms "
                  f"({check / total:5.1%}), shadow {shadow * 1e3:7.1f} ms ({shadow / total:5.1%}); "
                  f"checked {result.checked}; shadow {what}")


if __name__ == "__main__":
    main()
