"""What capturing the LSTM's input costs on top of the model's own forward pass (issue 22's
budget: <= 1.2x), for the shipped recogniser (conv front-end, 2-layer LSTM, linear head):

- ONNX: onnxruntime running examples/recognizer.onnx as it is, against lstm-cli's capture
  (insitu.onnx_graph.capture_onnx: the same graph with the node's X, states and Y, Y_h, Y_c
  added as outputs, session built, run once, converted to nn.LSTM's layouts). Both include
  building the session, as a capture does once per command.
- PyTorch: the model's forward under torch.no_grad, against the same inside lstm_cli.watch
  (forward hooks keeping CPU copies of what reaches the LSTM), and against watch plus
  `captured()` (merging the calls into one input).

Runs interleaved (plain, captured, plain, ...) so that other load lands on both alike; prints
the fastest and the median of each and their ratios (on a shared machine the fastest is the
steadier). Say the CPU with the numbers.

    .venv/bin/python benchmarks/capture_overhead.py               # 50 repeats, batch 256
    .venv/bin/python benchmarks/capture_overhead.py --repeat 2 --batch 8   # a quick run
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def interleaved(runs: dict, repeat: int) -> dict[str, tuple[float, float]]:
    """(fastest, median) seconds of each run, the runs taking turns."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for name, run in runs.items():  # warm-up
        run()
    for _ in range(repeat):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: (min(values), statistics.median(values)) for name, values in times.items()}


def images(batch: int) -> np.ndarray:
    base = np.load(EXAMPLES / "recognizer_images.npy")
    return np.concatenate([base] * (batch // len(base) + 1))[:batch]


def onnx_times(batch: int, repeat: int) -> dict[str, tuple[float, float]]:
    import onnxruntime

    from lstm_cli.insitu.onnx_graph import capture_onnx

    model = str(EXAMPLES / "recognizer.onnx")
    data = images(batch)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "images.npy"
        np.save(path, data)

        def plain():
            session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
            session.run(None, {"images": data})

        return interleaved({"onnxruntime": plain, "capture": lambda: capture_onnx(model, "/lstm/LSTM_1", str(path))},
                           repeat)


def torch_times(batch: int, repeat: int) -> dict[str, tuple[float, float]]:
    sys.path.insert(0, str(EXAMPLES))
    from recognizer import build

    import lstm_cli

    model = build()
    model.load_state_dict(torch.load(EXAMPLES / "recognizer.pt", weights_only=True))
    model.eval()
    x = torch.from_numpy(images(batch))

    def plain():
        with torch.no_grad():
            model(x)

    def watched(merge: bool):
        with lstm_cli.watch(model) as w, torch.no_grad():
            model(x)
        if merge:
            w.captured("lstm")

    return interleaved({"forward": plain, "watch": lambda: watched(False), "watch + captured()": lambda: watched(True)},
                       repeat)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the commands' own choice for a model this small (threads.py)
    result = {"onnx": onnx_times(args.batch, args.repeat), "torch": torch_times(args.batch, args.repeat)}
    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__} (1 thread), onnxruntime "
          f"its own default threads; batch {args.batch}; fastest and median of {args.repeat}")
    for kind, times in result.items():
        fastest, median = next(iter(times.values()))
        for name, (low, mid) in times.items():
            print(f"{kind:6} {name:20} fastest {low * 1e3:7.2f} ms {low / fastest:5.2f}x   "
                  f"median {mid * 1e3:7.2f} ms {mid / median:5.2f}x")
    return result


if __name__ == "__main__":
    main()
