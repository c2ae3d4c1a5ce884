"""What the step-local check and the float64 shadow cost inside `gates` and `compare-cell`.

Runs each command's core in one process (after a warm-up run, so one-time initialisation is not
counted) at bench's preset sizes and reports, per command, the wall time and the share spent in
the step-local check and in the shadow. Issue 11 asks for no more than 10% at the large preset.

    .venv/bin/python benchmarks/verify_cost.py                     # seed, medium, large
    .venv/bin/python benchmarks/verify_cost.py large --threads 1 --device cuda
    .venv/bin/python benchmarks/verify_cost.py tiny --repeat 1   # a smoke run, not a measurement
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from lstm_cli import compare_cell, gates
from lstm_cli.gates import run as gates_run
from lstm_cli.gates_options import GatesOptions
from lstm_cli.spec import BENCH_PRESETS, SIZE_FIELDS, LSTMSpec

PRESETS = {name: dict(zip(SIZE_FIELDS, sizes)) for name, sizes in BENCH_PRESETS.items()}  # seed, medium, large
DEFAULT_PRESETS = list(PRESETS)
PRESETS["tiny"] = dict(input_size=4, hidden_size=8, num_layers=1, seq_len=5, batch_size=2)
# (module, function, label): wrapped where the commands look them up (gates.run, not the
# package that re-exports them)
TIMED = (
    (gates_run, "step_checks", "check"),
    (gates_run, "run_shadow_for", "shadow"),
    (compare_cell, "check_direction", "check"),
    (compare_cell, "run_shadow", "shadow"),
)
spent: dict[str, float] = {}


@contextlib.contextmanager
def timed():
    """Add each TIMED function's wall time to spent[label] while inside; restore them after."""
    originals = [(module, name, getattr(module, name)) for module, name, _label in TIMED]

    def wrap(inner, label):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - start

        return wrapper

    try:
        for (module, name, label), (_, _, inner) in zip(TIMED, originals):
            setattr(module, name, wrap(inner, label))
        yield
    finally:
        for module, name, inner in originals:
            setattr(module, name, inner)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, its presets checked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # No choices=: argparse would check the default list as if it were one name.
    parser.add_argument("presets", nargs="*", default=DEFAULT_PRESETS,
                        help=f"from {', '.join(PRESETS)} (default: {' '.join(DEFAULT_PRESETS)})")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=5, help="compare-cell's timing repeats (its --repeat)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.presets if name not in PRESETS]
    if unknown:
        parser.error(f"unknown preset {', '.join(unknown)}; known: {', '.join(PRESETS)}")
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    """Measure; return one row per (preset, command)."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), device {args.device}")
    rows = []
    with timed():
        for name in args.presets:
            spec = LSTMSpec(device=args.device, **PRESETS[name])
            runs = {
                "gates": lambda: gates.run_gates(spec, GatesOptions()),
                "compare-cell": lambda: compare_cell.run_compare(spec, repeat=args.repeat),
            }
            for command, run in runs.items():
                run()  # warm-up: first calls of float64 kernels initialise them
                spent.clear()
                start = time.perf_counter()
                result = run()
                total = time.perf_counter() - start
                check, shadow = spent.get("check", 0.0), spent.get("shadow", 0.0)
                what = result.shadow.description if result.shadow else result.shadow_note
                rows.append({"preset": name, "command": command, "total_s": total, "check_s": check,
                             "shadow_s": shadow, "checked": result.checked, "shadow": what})
                print(f"{command:12s} {name:6s} {total:7.2f} s: step check {check * 1e3:7.1f} ms "
                      f"({check / total:5.1%}), shadow {shadow * 1e3:7.1f} ms ({shadow / total:5.1%}); "
                      f"checked {result.checked}; shadow {what}")
    return rows


if __name__ == "__main__":
    main()
