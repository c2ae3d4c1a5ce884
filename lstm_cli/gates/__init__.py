"""`lstm-cli gates`: every gate of an nn.LSTM at every step, captured, verified and summarised.

nn.LSTM computes i, f, g, o inside a fused kernel and returns none of them. This package
recomputes them (`loop` or `recompute`), compares the h rebuilt from them with nn.LSTM's own
output, h_n and c_n, and summarises them chunk by chunk. One module per job:

- `kernels`: the capture kernels, the two methods and the chunks of steps they yield;
- `step_gemm`: the loop's per-step GEMM backend, chosen by measurement;
- `choice`: `auto`'s method, chosen by measuring both methods on the model;
- `reference`: what the capture is compared with (nn.LSTM layer by layer, or on a few rows);
- `stats`: statistics accumulated chunk by chunk, and the per-layer result types;
- `batch`: packing of variable-length batches (--lengths) into working order;
- `heatmap`: --heatmap, one gate as units x time;
- `export`: --export, every captured tensor to a .npz or .pt file;
- `run`: orchestration, the driver over layers and directions, the checks and `run_gates`.

The names below are re-exported so that `from lstm_cli.gates import X` keeps working. A test
that monkeypatches a function must patch it in the module that calls it (e.g.
`lstm_cli.gates.kernels.activate`, `lstm_cli.gates.run.prepare`): patching this package's
attribute changes nothing the capture looks up.
"""

from lstm_cli.gates.batch import WorkingBatch, working_row
from lstm_cli.gates.choice import MethodChoice, choose_method
from lstm_cli.gates.export import export_names, export_tensors, from_time_major_shape
from lstm_cli.gates.heatmap import (
    HEATMAP_MAX_STEPS,
    HEATMAP_MAX_UNITS,
    Heatmap,
    build_heatmap,
)
from lstm_cli.gates.kernels import (
    CHUNK_ELEMENTS,
    MAX_CHUNK_STEPS,
    METHOD_CLASSES,
    Chunk,
    ChunkBuffers,
    LoopCapture,
    RecomputeCapture,
    StepGemm,
    activate,
    chunk_bounds,
    chunk_steps_for,
    input_projection,
    previous_h,
    rebuild_h,
)
from lstm_cli.gates.reference import Reference, layerwise_forward, subset_forward
from lstm_cli.gates.run import (
    Capture,
    EndToEnd,
    GatesResult,
    SampleRecorder,
    capture_gates,
    end_to_end,
    extra_elements,
    run_gates,
    run_shadow_for,
    step_checks,
)
from lstm_cli.gates.stats import (
    CellStats,
    DirectionRecorder,
    GateAccumulator,
    GateStats,
    LayerGates,
    UnitSaturation,
)
from lstm_cli.gates_options import GatesOptions, HeatmapSpec, Thresholds

__all__ = [
    "CHUNK_ELEMENTS",
    "HEATMAP_MAX_STEPS",
    "HEATMAP_MAX_UNITS",
    "MAX_CHUNK_STEPS",
    "METHOD_CLASSES",
    "Capture",
    "CellStats",
    "Chunk",
    "ChunkBuffers",
    "DirectionRecorder",
    "EndToEnd",
    "GateAccumulator",
    "GateStats",
    "GatesOptions",
    "GatesResult",
    "Heatmap",
    "HeatmapSpec",
    "LayerGates",
    "MethodChoice",
    "LoopCapture",
    "RecomputeCapture",
    "Reference",
    "SampleRecorder",
    "StepGemm",
    "Thresholds",
    "UnitSaturation",
    "WorkingBatch",
    "activate",
    "build_heatmap",
    "capture_gates",
    "choose_method",
    "chunk_bounds",
    "chunk_steps_for",
    "end_to_end",
    "export_names",
    "export_tensors",
    "extra_elements",
    "from_time_major_shape",
    "input_projection",
    "layerwise_forward",
    "previous_h",
    "rebuild_h",
    "run_gates",
    "run_shadow_for",
    "step_checks",
    "subset_forward",
    "working_row",
]
