"""How tight and how safe the step-local bound is (README: How a check decides).

1. One GEMM element: the largest error of a float32 matmul, against float64, in units of
   u (S + sqrt(K) |z|), for inner sizes K = 8..4096 and data with random, same, offset and sparse
   signs, batched (256 rows) and single-row. GEMM_ULPS in lstm_cli/verify/rule.py must exceed it.
2. Whole steps: for random, trained and chaotic models in every dtype, the largest
   |error| / bound of any element (gates, c, h) that compare-cell's LSTMCell loop and gates'
   two capture methods produce, over every step of every sequence. Below 1 passes; the closer
   to 1, the tighter the bound.

    .venv/bin/python benchmarks/step_error.py           # about a minute on 2 CPU cores
"""

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


def gemm_table() -> None:
    print("1. float32 GEMM error / (u (S + sqrt(K) |z|)), max over 512 x 256 (batched) or 4 x 512 (rows)")
    generator = torch.Generator().manual_seed(0)
    kinds = ("random", "same sign", "offset", "sparse")
    print(f"{'K':>6} " + " ".join(f"{k:>20}" for k in kinds))
    for K in (8, 16, 64, 256, 1024, 4096):
        cells = []
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
        print(f"{K:>6} " + " ".join(f"{c:>20}" for c in cells))


MODELS = {
    "random (100, 20, 4 layers)": dict(),
    "random (128, 256, 2 layers)": dict(input_size=128, hidden_size=256, num_layers=2),
    "trained counter, |c| to 120": dict(weights=str(EXAMPLES / "counter_lstm.pt"), key="lstm", input_size=4,
                                        hidden_size=32, num_layers=2),
    "chaotic (W_hh x 8)": dict(weights=str(EXAMPLES / "chaotic_lstm.pt"), input_size=32, hidden_size=64, num_layers=2),
}


def steps_table() -> None:
    step.CHECK_FREE_MACS = 1 << 40  # every step of every sequence
    print("\n2. largest |error| / bound over every element of every step (seq-len 200, batch 4)")
    print(f"{'model':30s} {'dtype':9s} {'LSTMCell loop':>14s} {'gates loop':>11s} {'recompute':>10s} {'max |c|':>8s}")
    for label, flags in MODELS.items():
        for dtype in ("float32", "float64", "float16", "bfloat16"):
            spec = LSTMSpec(device="cpu", seq_len=200, batch_size=4, dtype=dtype, **flags)
            row = [max(c.worst_ratio for c in run_compare(spec, repeat=0).checks)]
            cell_max = 0.0
            for method in ("loop", "recompute"):
                result = run_gates(replace(spec), GatesOptions(method=method))
                row.append(max(c.worst_ratio for c in result.checks))
                cell_max = max(cell_max, max(layer.cell.max_abs for layer in result.layers))
            print(f"{label:30s} {dtype:9s} {row[0]:14.3f} {row[1]:11.3f} {row[2]:10.3f} {cell_max:8.3g}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    gemm_table()
    steps_table()
