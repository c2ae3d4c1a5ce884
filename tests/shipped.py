"""The shipped examples the tests load: examples/ is not a package, so its modules are loaded by
path, under a name of their own (never `recognizer`, which a trusted pickle names)."""

import importlib.util
from pathlib import Path

import numpy as np
import torch

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str):
    """examples/NAME.py as a module."""
    spec = importlib.util.spec_from_file_location(f"{name}_example", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def trained_recognizer() -> torch.nn.Module:
    """examples/recognizer.py's DigitRecognizer with examples/recognizer.pt's trained weights, in
    eval mode."""
    model = load_example("recognizer").build()
    model.load_state_dict(torch.load(EXAMPLES / "recognizer.pt", map_location="cpu", weights_only=True), strict=True)
    return model.eval()


def recognizer_images(count: int = 32) -> torch.Tensor:
    """The first `count` of the 32 shipped held-out images, (count, 1, 16, 96)."""
    return torch.from_numpy(np.load(EXAMPLES / "recognizer_images.npy")[:count].copy())
