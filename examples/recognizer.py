"""A small whole model whose LSTM sits between layers before and after it: a digit-string
recogniser (CRNN-style, trained with CTC) on synthetic grayscale images.

    image (N, 1, 16, 96) in [0, 1], ink bright on dark
      -> Conv2d(1, 8, 3, padding=1) -> ReLU -> MaxPool2d(2)        (N, 8, 8, 48)
      -> Conv2d(8, 16, 3, padding=1) -> ReLU -> MaxPool2d((2, 1))  (N, 16, 4, 48)
      -> each of the 48 columns as one time step of 16 x 4 = 64 features   (48, N, 64)
      -> nn.LSTM(64, 48, num_layers=2)                                     (48, N, 48)
      -> nn.Linear(48, 11)                                                 (48, N, 11)

The output is per-column logits, time first (T, N, 11): class 0 is CTC's blank, class k + 1 is
digit k. `decode()` reads them greedily (best class per column, repeats merged, blanks dropped).

`render()` draws a digit string from the 5 x 7 pixel font below, each glyph scaled to 10 x 14,
at a random horizontal offset, vertical offset, spacing, ink level and noise; `make_dataset()`
draws a seeded set of them. examples/train_recognizer.py trains the model and saves it;
this file only defines it, so it can be imported by path (the tests do).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

HEIGHT, WIDTH = 16, 96
MIN_DIGITS, MAX_DIGITS = 3, 6
CLASSES = 11  # 0 = CTC blank, 1..10 = digits 0..9
BLANK = 0
CHANNELS, FEATURES, HIDDEN, LAYERS = 16, 64, 48, 2

FONT = {  # 5 x 7, one string per row, "#" = ink
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
}
GLYPHS = {
    digit: np.kron(np.array([[c == "#" for c in row] for row in rows], dtype=np.float32), np.ones((2, 2), np.float32))
    for digit, rows in FONT.items()
}  # each 14 x 10
GLYPH_H, GLYPH_W = 14, 10


def render(text: str, rng: np.random.Generator) -> np.ndarray:
    """One (HEIGHT, WIDTH) float32 image of `text`, values quantised to k / 255 like an 8-bit scan."""
    gaps = rng.integers(1, 5, size=len(text) - 1)
    span = GLYPH_W * len(text) + int(gaps.sum())
    x = int(rng.integers(0, WIDTH - span + 1))
    image = np.zeros((HEIGHT, WIDTH), np.float32)
    for k, digit in enumerate(text):
        y = int(rng.integers(0, HEIGHT - GLYPH_H + 1))
        ink = rng.uniform(0.55, 1.0)
        image[y : y + GLYPH_H, x : x + GLYPH_W] = np.maximum(image[y : y + GLYPH_H, x : x + GLYPH_W], ink * GLYPHS[digit])
        x += GLYPH_W + (int(gaps[k]) if k < len(gaps) else 0)
    image += rng.normal(0.0, rng.uniform(0.05, 0.2), size=image.shape)
    return (np.round(np.clip(image, 0.0, 1.0) * 255) / 255).astype(np.float32)


def make_dataset(count: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """`count` images (count, 1, HEIGHT, WIDTH) float32 and their digit strings, from `seed`."""
    rng = np.random.default_rng(seed)
    labels = ["".join(map(str, rng.integers(0, 10, size=int(rng.integers(MIN_DIGITS, MAX_DIGITS + 1)))))
              for _ in range(count)]
    images = np.stack([render(text, rng) for text in labels])[:, None]
    return images, labels


class DigitRecognizer(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, CHANNELS, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d((2, 1)),
        )
        self.lstm = nn.LSTM(FEATURES, HIDDEN, LAYERS)
        self.head = nn.Linear(HIDDEN, CLASSES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1, HEIGHT, W) -> logits (W // 2, N, CLASSES)."""
        maps = self.features(images)  # (N, C, 4, T)
        steps = maps.flatten(1, 2).permute(2, 0, 1)  # (T, N, C * 4)
        out, _ = self.lstm(steps)
        return self.head(out)


def build() -> DigitRecognizer:
    """The untrained model (load examples/recognizer.pt into it for the trained one)."""
    return DigitRecognizer()


def decode(logits: torch.Tensor) -> list[str]:
    """Greedy CTC decoding of (T, N, CLASSES) logits: one string per sequence."""
    best = logits.argmax(-1).t().tolist()  # (N, T)
    texts = []
    for row in best:
        previous, digits = BLANK, []
        for cls in row:
            if cls != previous and cls != BLANK:
                digits.append(str(cls - 1))
            previous = cls
        texts.append("".join(digits))
    return texts
