"""How tight and how safe the step-local bound is (README: How a check decides).

1. One GEMM element: the largest error of a float32 matmul, against float64, in units of
   u (S + sqrt(K) |z|), for inner sizes K = 8..4096 and data with random, same, offset and sparse
   signs, batched (256 rows) and single-row. GEMM_ULPS in lstm_cli/verify/rule.py must exceed it.
2. Whole steps: for random, trained and chaotic models in every dtype, the largest
   |error| / bound of any element (gates, c, h) that compare-cell's LSTMCell loop and gates'
   two capture methods produce, over every step of every sequence. Below 1 passes; the closer
   to 1, the tighter the bound.

    .venv/bin/python benchmarks/step_error.py           # about a minute on 2 CPU cores
    .venv/bin/python benchmarks/step_error.py --ks 8 --dtypes float32 --seq-len 3   # a smoke run
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace
from pathlib import Path

import torch

from lstm_cli.compare_cell import run_compare
from lstm_cli.gates import run_gates
from lstm_cli.gates_options import GatesOptions
from lstm_cli.spec import LSTMSpec
from lstm_cli.verify import step

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
U = 2.0**-24
KS = (8, 16, 64, 256, 1024, 4096)
KINDS = ("random", "same sign", "offset", "sparse")
DTYPES = ("float32", "float64", "float16", "bfloat16")


def gemm_table(ks=KS) -> dict[int, dict[str, tuple[float, float]]]:
    """Print table 1; return {K: {kind: (batched, single-row) largest ratio}}."""
    print("1. float32 GEMM error / (u (S + sqrt(K) |z|)), max over 512 x 256 (batched) or 4 x 512 (rows)")
    generator = torch.Generator().manual_seed(0)
    kinds = KINDS
    print(f"{'K':>6} " + " ".join(f"{k:>20}" for k in kinds))
    table: dict[int, dict[str, tuple[float, float]]] = {}
    for K in ks:
        cells = []
        table[K] = {}
        for kind in kinds:
            W = torch.randn(512, K, generator=generator) / math.sqrt(K)
            X = torch.randn(256, K, generator=generator)
            if kind == "same sign":
                W, X = W.abs(), X.abs()
            elif kind == "offset":
                X = X + 3.0
            elif kind == "sparse":
                X = X * (torch.rand(256, K, generator=generator) < 0.05)
            exact = X.double() @ W.double().T
            bound = U * (X.double().abs() @ W.double().abs().T + math.sqrt(K) * exact.abs())
            ratios = []
            for got in (X @ W.T, torch.stack([torch.nn.functional.linear(X[i], W) for i in range(4)])):
                n = got.shape[0]
                r = (got.double() - exact[:n]).abs() / bound[:n]
                ratios.append(torch.nan_to_num(r, nan=0.0).max().item())
            cells.append(f"{ratios[0]:9.2f} / {ratios[1]:<9.2f}")
            table[K][kind] = (ratios[0], ratios[1])
        print(f"{K:>6} " + " ".join(f"{c:>20}" for c in cells))
    return table


# name (for --models) -> (label printed, the model's LSTMSpec flags)
MODELS = {
    "random": ("random (100, 20, 4 layers)", dict()),
    "random-256": ("random (128, 256, 2 layers)", dict(input_size=128, hidden_size=256, num_layers=2)),
    "counter": ("trained counter, |c| to 120", dict(weights=str(EXAMPLES / "counter_lstm.pt"), key="lstm",
                                                    input_size=4, hidden_size=32, num_layers=2)),
    "chaotic": ("chaotic (W_hh x 8)", dict(weights=str(EXAMPLES / "chaotic_lstm.pt"), input_size=32, hidden_size=64,
                                           num_layers=2)),
}


def steps_table(models=tuple(MODELS), dtypes=DTYPES, seq_len: int = 200, batch_size: int = 4) -> list[dict]:
    """Print table 2; return one row per (model, dtype)."""
    free = step.CHECK_FREE_MACS
    step.CHECK_FREE_MACS = 1 << 40  # every step of every sequence
    try:
        return _steps_table(models, dtypes, seq_len, batch_size)
    finally:
        step.CHECK_FREE_MACS = free


def _steps_table(models, dtypes, seq_len: int, batch_size: int) -> list[dict]:
    print(f"\n2. largest |error| / bound over every element of every step (seq-len {seq_len}, batch {batch_size})")
    print(f"{'model':30s} {'dtype':9s} {'LSTMCell loop':>14s} {'gates loop':>11s} {'recompute':>10s} {'max |c|':>8s}")
    rows = []
    for name in models:
        label, flags = MODELS[name]
        for dtype in dtypes:
            spec = LSTMSpec(device="cpu", seq_len=seq_len, batch_size=batch_size, dtype=dtype, **flags)
            row = [max(c.worst_ratio for c in run_compare(spec, repeat=0).checks)]
            cell_max = 0.0
            for method in ("loop", "recompute"):
                result = run_gates(replace(spec), GatesOptions(method=method))
                row.append(max(c.worst_ratio for c in result.checks))
                cell_max = max(cell_max, max(layer.cell.max_abs for layer in result.layers))
            print(f"{label:30s} {dtype:9s} {row[0]:14.3f} {row[1]:11.3f} {row[2]:10.3f} {cell_max:8.3g}")
            rows.append({"model": name, "dtype": dtype, "cell_loop": row[0], "gates_loop": row[1],
                         "recompute": row[2], "max_abs_c": cell_max})
    return rows


def choices(value: str, known, what: str, parser: argparse.ArgumentParser) -> list[str]:
    chosen = value.split(",")
    unknown = [name for name in chosen if name not in known]
    if unknown:
        parser.error(f"unknown {what} {', '.join(unknown)}; known: {', '.join(known)}")
    return chosen


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, its lists checked and split."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", default=",".join(map(str, KS)), help="table 1's inner sizes K, comma-separated")
    parser.add_argument("--models", default=",".join(MODELS), help=f"table 2's models, from {', '.join(MODELS)}")
    parser.add_argument("--dtypes", default=",".join(DTYPES), help=f"table 2's dtypes, from {', '.join(DTYPES)}")
    parser.add_argument("--seq-len", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args(argv)
    try:
        args.ks = [int(k) for k in args.ks.split(",")]
    except ValueError:
        parser.error(f"--ks takes comma-separated integers (got {args.ks!r})")
    args.models = choices(args.models, MODELS, "model", parser)
    args.dtypes = choices(args.dtypes, DTYPES, "dtype", parser)
    return args


def main(argv: list[str] | None = None) -> dict:
    """Print both tables; return {"gemm": gemm_table's dict, "steps": steps_table's rows}."""
    args = parse_args(argv)
    torch.set_num_threads(1)
    return {"gemm": gemm_table(args.ks), "steps": steps_table(args.models, args.dtypes, args.seq_len, args.batch_size)}


if __name__ == "__main__":
    main()
