"""Train the digit-string recogniser of examples/recognizer.py and save it in every form lstm-cli
reads: a whole model whose LSTM reads convolutional features and feeds a classifier, for looking
at an LSTM on the input its own model gives it.

The task: read a string of 3-6 digits from a 16 x 96 grayscale image, drawn from a 5 x 7 pixel
font at random offsets, spacing, ink levels and noise (recognizer.render). The model is

    Conv2d -> ReLU -> MaxPool -> Conv2d -> ReLU -> MaxPool    (the 48 columns become time steps)
      -> nn.LSTM(64, 48, num_layers=2) -> nn.Linear(48, 11)    (10 digits + CTC blank)

trained with CTC on TRAIN_IMAGES images (seed 1), Adam with a cosine learning-rate decay, seeded,
on one CPU thread. It is scored on HELD_OUT_IMAGES other images (seed 2): the share whose greedy
CTC decoding equals the digit string exactly.

    .venv/bin/python examples/train_recognizer.py     # about 2 minutes on one CPU core

writes, next to itself:
    recognizer.pt           the state_dict (weights-only loadable)
    recognizer_module.pt    the whole module, torch.save(model): its class pickled as
                            recognizer.DigitRecognizer (lstm-cli reads it without importing it)
    recognizer.onnx         torch.onnx.export of the whole model (TorchScript exporter, opset 17),
                            input "images" (batch, 1, 16, 96), output "logits" (48, batch, 11),
                            the batch dynamic; the LSTM is two ONNX LSTM nodes, one per layer
    recognizer_samples.npz  the first SAMPLES held-out images, "images" float32 (N, 1, 16, 96),
                            and their digit strings, "labels" (a unicode array)

Measured by the run that made the shipped files: see RESULTS below. A second run on the same
machine wrote byte-identical files.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from training import adam_cosine, cpu_name, remember_first, take_step  # noqa: E402
from recognizer import BLANK, LAYERS, build, decode, make_dataset  # noqa: E402

STATE_DICT = HERE / "recognizer.pt"
MODULE = HERE / "recognizer_module.pt"
ONNX = HERE / "recognizer.onnx"
SAMPLES_FILE = HERE / "recognizer_samples.npz"
TRAIN_IMAGES, HELD_OUT_IMAGES, SAMPLES = 30000, 2000, 32
BATCH, STEPS, LR = 64, 3000, 3e-3
SEED = 0

# From the run that made the shipped files (tests/test_recognizer_example.py checks the shipped
# model on the shipped samples; `accuracy()` on HELD_OUT_IMAGES recomputes held_out_exact_match).
RESULTS = {
    "held_out_exact_match": 1.0,
    "held_out_images": 2000,
    "train_exact_match": 1.0,
    "train_seconds": 92,
    "cpu": "AMD EPYC",
    "onnx_lstm_nodes": ["/lstm/LSTM", "/lstm/LSTM_1"],
    "onnx_max_abs_difference": 4.8e-06,
}


def targets(labels: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """CTC targets: the digits as classes 1..10, concatenated, and each string's length."""
    flat = torch.tensor([int(c) + 1 for text in labels for c in text], dtype=torch.long)
    return flat, torch.tensor([len(text) for text in labels], dtype=torch.long)


def accuracy(model: nn.Module, images: np.ndarray, labels: list[str]) -> float:
    """Share of images whose greedy CTC decoding is exactly their digit string."""
    with torch.no_grad():
        got = [text for start in range(0, len(images), 500)
               for text in decode(model(torch.from_numpy(images[start : start + 500])))]
    return sum(g == want for g, want in zip(got, labels)) / len(labels)


def export_onnx(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Write ONNX, with the batch dynamic; return the names of its LSTM nodes."""
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(
            model, (example,), str(ONNX), dynamo=False, opset_version=17,
            input_names=["images"], output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {1: "batch"}},
        )
    graph = onnx.load(str(ONNX)).graph
    names = [node.name for node in graph.node if node.op_type == "LSTM"]
    if len(names) != LAYERS:
        raise SystemExit(f"{ONNX}: expected {LAYERS} ONNX LSTM nodes, found {names}")
    return names


def main() -> None:
    torch.set_num_threads(1)  # one core: the measured time is for one thread
    torch.manual_seed(SEED)
    start = time.perf_counter()
    train_images, train_labels = make_dataset(TRAIN_IMAGES, seed=1)
    test_images, test_labels = make_dataset(HELD_OUT_IMAGES, seed=2)
    print(f"{TRAIN_IMAGES} training images, {HELD_OUT_IMAGES} held out, "
          f"drawn in {time.perf_counter() - start:.1f} s")

    model = build()
    remember_first(model.lstm)
    optimizer, schedule = adam_cosine(model, LR, STEPS, floor=0.02)
    ctc = nn.CTCLoss(blank=BLANK, zero_infinity=True)
    order = torch.Generator().manual_seed(SEED)
    start, permutation, position = time.perf_counter(), torch.randperm(TRAIN_IMAGES, generator=order), 0
    for step in range(1, STEPS + 1):
        if position + BATCH > TRAIN_IMAGES:  # a new pass over the training images
            permutation, position = torch.randperm(TRAIN_IMAGES, generator=order), 0
        index = permutation[position : position + BATCH]
        position += BATCH
        images = torch.from_numpy(train_images[index.numpy()])
        flat, lengths = targets([train_labels[k] for k in index.tolist()])
        log_probs = model(images).log_softmax(-1)
        steps = torch.full((len(index),), log_probs.shape[0], dtype=torch.long)
        loss = ctc(log_probs, flat, steps, lengths)
        take_step(loss, model, optimizer, schedule)
        if step % 500 == 0:
            model.eval()
            held_out = accuracy(model, test_images[:500], test_labels[:500])
            model.train()
            print(f"step {step}: CTC loss {loss.item():.4f}, exact match on 500 held-out images "
                  f"{held_out:.3f} ({time.perf_counter() - start:.0f} s)")
    seconds = time.perf_counter() - start
    model.eval()
    held_out = accuracy(model, test_images, test_labels)
    train_part = accuracy(model, train_images[:HELD_OUT_IMAGES], train_labels[:HELD_OUT_IMAGES])

    state_dict = {name: t.detach().clone().contiguous() for name, t in model.state_dict().items()}
    torch.save(state_dict, STATE_DICT)
    torch.save(model, MODULE)
    samples = torch.from_numpy(test_images[:SAMPLES])
    nodes = export_onnx(model, samples)
    np.savez_compressed(SAMPLES_FILE, images=test_images[:SAMPLES], labels=np.array(test_labels[:SAMPLES]))

    import onnxruntime

    session = onnxruntime.InferenceSession(str(ONNX), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(samples).numpy()
    onnx_difference = float(np.abs(session.run(None, {"images": test_images[:SAMPLES]})[0] - expected).max())
    results = {
        "held_out_exact_match": round(held_out, 4),
        "held_out_images": HELD_OUT_IMAGES,
        "train_exact_match": round(train_part, 4),
        "train_seconds": round(seconds),
        "cpu": cpu_name(),
        "onnx_lstm_nodes": nodes,
        "onnx_max_abs_difference": float(f"{onnx_difference:.2g}"),
    }
    print(f"held-out exact match: {held_out:.4f} on {HELD_OUT_IMAGES} images "
          f"(first {HELD_OUT_IMAGES} training images: {train_part:.4f})")
    print(f"training took {seconds:.0f} s on one thread of {results['cpu']}")
    print(f"onnxruntime against torch on the {SAMPLES} samples: max |difference| {onnx_difference:.2g}; "
          f"LSTM nodes {nodes}")
    for path in (STATE_DICT, MODULE, ONNX, SAMPLES_FILE):
        print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} KB)")
    print(f"RESULTS = {results!r}")


if __name__ == "__main__":
    main()
