#!/usr/bin/env bash
# One prepared GPU run of lstm-cli (about 5 minutes on an H100/H200), for a machine that has CUDA
# torch, typer, rich, numpy and pytest. From the project root:
#   bash benchmarks/gpu_check.sh          # JSON and logs under $OUT (or ./gpu-out)
# It grew from the team's shared/gpu/check.sh: GPU tests, bench presets, TF32 on/off, gates and
# gradients on CUDA; plus the step-local checks on the trained and chaotic examples, and what the
# checks cost on CUDA.
set -u
out=${OUT:-gpu-out}; mkdir -p "$out"
export PYTHONPATH=. PYTHONUNBUFFERED=1
run() { echo "+ $*"; timeout 240 "$@"; echo "rc=$?"; }
cli() { name=$1; shift; echo "+ lstm-cli $*"; timeout 240 python -m lstm_cli "$@" --json > "$out/$name.json"; echo "rc=$?"; }
python -c "import torch, typer; print(torch.__version__, 'typer', typer.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(), 'cudnn.allow_tf32', torch.backends.cudnn.allow_tf32)" | tee "$out/device.txt"
run python -m pytest -m gpu -q -p no:cacheprovider 2>&1 | tail -15
for preset in seed medium large; do cli "bench-$preset" bench --preset "$preset" --device cuda; done
cli compare-cell compare-cell --device cuda --seq-len 200 --hidden-size 256 --num-layers 2
cli compare-cell-tf32 compare-cell --device cuda --seq-len 200 --hidden-size 256 --num-layers 2 --allow-tf32
cli gates gates --device cuda --seq-len 1000 --hidden-size 256 --num-layers 2 --batch-size 32
cli gates-packed gates --device cuda --bidirectional --proj-size 8 --lengths 10,7,3
cli gradients gradients --device cuda --seq-len 50
cli inspect-bf16 inspect --device cuda --dtype bfloat16
for dtype in float32 bfloat16; do
  cli "counter-cc-$dtype" compare-cell --device cuda --weights examples/counter_lstm.pt --key lstm --seq-len 1000 --dtype $dtype --repeat 1
  cli "counter-gates-$dtype" gates --device cuda --weights examples/counter_lstm.pt --key lstm --seq-len 1000 --dtype $dtype
done
cli counter-cc-tf32 compare-cell --device cuda --weights examples/counter_lstm.pt --key lstm --seq-len 1000 --allow-tf32 --repeat 1
cli chaotic-cc compare-cell --device cuda --weights examples/chaotic_lstm.pt --seq-len 200 --repeat 1
run python benchmarks/verify_cost.py seed medium large --device cuda 2>&1 | tee "$out/verify-cost.txt"

python - "$out" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
for f in sorted(out.glob("*.json")):
    try:
        d = json.loads(f.read_text())
    except Exception as e:
        print(f.name, "no JSON:", e); continue
    rows = d.get("rows") or []
    extra = "; ".join(f"fused {r.get('fused_s'):.4g}s cells x{r.get('cells_ratio', 0):.2f} gates x{r.get('gates_ratio', 0):.2f}" for r in rows)
    worst = max([c.get("worst_ratio") or 0 for c in d.get("checks", [])], default=0)
    shadow = d.get("shadow") or {}
    errors = ", ".join(f"{e['path']} {e['output_max_abs_diff']:.2g}" for e in shadow.get("errors", []))
    print(f.name, "passed" if d.get("passed", True) else "FAILED", f"worst {worst:.3f}", extra,
          f"f64: {errors}" if errors else "", "CHAOTIC" if shadow.get("chaotic") else "")
PY
