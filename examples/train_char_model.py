"""Train a small character-level LSTM on the Python standard library's own source, and save it
for lstm-cli to look inside.

Text every machine has offline: the top-level `*.py` files of this Python's standard library
(`sysconfig.get_paths()["stdlib"]`), in sorted order, except three files held out for
evaluation (HELD_OUT below: textwrap.py, shlex.py, string.py). The model reads one character at
a time and predicts the next:

    nn.Embedding(V, 32) -> nn.LSTM(32, 128, num_layers=2) -> nn.Linear(128, V)

trained by truncated backpropagation through time (32 contiguous streams, windows of 128
characters, the state carried from window to window), Adam with a cosine learning-rate decay,
seeded, on one CPU thread (`torch.set_num_threads(1)`).

Vocabulary: every character seen at least MIN_COUNT times in the training text, sorted, plus
"\\x00", which stands for every rarer character during training and evaluation (the stdlib's
sources hold no NUL). lstm-cli refuses a character that is not in the vocabulary, naming it and
its position; it never maps it to "\\x00" on its own.

    .venv/bin/python examples/train_char_model.py     # about 8 minutes on one CPU core

writes examples/char_lstm.pt, weights-only loadable (`torch.load(path, weights_only=True)`): a
dict of float32 tensors, "embedding.weight", "lstm.weight_ih_l0", ..., "head.weight",
"head.bias", and "vocab", a list of one-character strings (row k of the embedding is vocab[k]).

Measured by the run that made the shipped checkpoint (Python 3.11.7's stdlib: 165 training files,
4,653,337 characters; 44,943 held-out characters; vocabulary of 98), 4,500 steps in 462 s with
torch 2.13.0 on one thread of an Intel(R) Xeon(R) Processor @ 2.50GHz (2 cores, the other busy):

    held-out bits per character   1.84   (the model, evaluate() below)
    unigram baseline              4.36   (the training text's character frequencies)

The checkpoint is 0.93 MB (230,818 float32 parameters). RESULTS below holds the same numbers;
another Python's stdlib has other files and so gives other numbers.
"""

from __future__ import annotations

import hashlib
import math
import sys
import sysconfig
import time
from collections import Counter
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the sibling training.py, also when loaded by path
from training import adam_cosine, cpu_name, remember_first, take_step  # noqa: E402

CHECKPOINT = HERE / "char_lstm.pt"
HELD_OUT = ("shlex.py", "string.py", "textwrap.py")
UNKNOWN = "\x00"
MIN_COUNT = 10
EMBED, HIDDEN, LAYERS = 32, 128, 2
STREAMS, WINDOW, STEPS, LR = 32, 128, 4500, 3e-3
EVAL_STREAMS = 16
SEED = 0

# From the run that made the shipped examples/char_lstm.pt (tests/test_text_input.py checks
# that evaluate() on the checkpoint reproduces HELD_OUT_BPC).
RESULTS = {
    "held_out_sha256": "7c7b71e6006b0978174c955abb84490c30665d1b0406c27d7f31937b1c4a0cf9",
    "held_out_characters": 44943,
    "held_out_bpc": 1.8406,
    "unigram_bpc": 4.3582,
    "train_seconds": 462,
    "cpu": "Intel(R) Xeon(R) Processor @ 2.50GHz",
}
HELD_OUT_BPC = RESULTS["held_out_bpc"]


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def training_files() -> list[Path]:
    return [f for f in sorted(stdlib_dir().glob("*.py")) if f.name not in HELD_OUT]


def read_text(files: list[Path]) -> str:
    return "".join(f.read_text(encoding="utf-8", errors="replace") for f in files)


def held_out_text() -> str:
    return read_text([stdlib_dir() / name for name in HELD_OUT])


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_vocab(text: str) -> list[str]:
    counts = Counter(text)
    return sorted({UNKNOWN} | {c for c, n in counts.items() if n >= MIN_COUNT})


def encode(text: str, vocab: list[str]) -> torch.Tensor:
    index = {c: k for k, c in enumerate(vocab)}
    unknown = index[UNKNOWN]
    return torch.tensor([index.get(c, unknown) for c in text], dtype=torch.long)


class CharLSTM(nn.Module):
    def __init__(self, vocab_size: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, EMBED)
        self.lstm = nn.LSTM(EMBED, HIDDEN, LAYERS)
        self.head = nn.Linear(HIDDEN, vocab_size)

    def forward(self, ids: torch.Tensor, state=None):
        out, state = self.lstm(self.embedding(ids), state)
        return self.head(out), state


def streams(ids: torch.Tensor, count: int) -> torch.Tensor:
    """(len // count, count): `count` contiguous pieces of the text, side by side."""
    length = len(ids) // count
    return ids[: length * count].view(count, length).t().contiguous()


def bits_per_char(model: CharLSTM, ids: torch.Tensor) -> float:
    """Mean -log2 p(next character) over `ids`, read as EVAL_STREAMS contiguous streams in one
    pass from a zero state (each stream's first character is context only)."""
    data = streams(ids, EVAL_STREAMS)
    with torch.no_grad():
        logits, _ = model(data[:-1])
        nats = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), data[1:].reshape(-1))
    return nats.item() / math.log(2)


def unigram_bits_per_char(train_ids: torch.Tensor, ids: torch.Tensor, vocab_size: int) -> float:
    """The same positions scored by the training text's character frequencies alone."""
    p = torch.bincount(train_ids, minlength=vocab_size).double() / len(train_ids)
    targets = streams(ids, EVAL_STREAMS)[1:].reshape(-1)
    return (-torch.log2(p[targets])).mean().item()


def load_model(path: Path = CHECKPOINT) -> tuple[CharLSTM, list[str]]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    vocab = state.pop("vocab")
    model = CharLSTM(len(vocab))
    model.load_state_dict(state)
    return model.eval(), vocab


def evaluate(path: Path = CHECKPOINT, text: str | None = None) -> float:
    """Held-out bits per character of a saved checkpoint (the held-out files by default)."""
    torch.set_num_threads(1)
    model, vocab = load_model(path)
    return bits_per_char(model, encode(held_out_text() if text is None else text, vocab))


def main() -> None:
    torch.set_num_threads(1)  # one core: the measured time is for one thread
    torch.manual_seed(SEED)
    files = training_files()
    train_text, test_text = read_text(files), held_out_text()
    vocab = make_vocab(train_text)
    train_ids, test_ids = encode(train_text, vocab), encode(test_text, vocab)
    print(f"training on {len(files)} files of {stdlib_dir()} ({len(train_text):,} characters), "
          f"vocabulary {len(vocab)}")
    print(f"held out: {', '.join(HELD_OUT)} ({len(test_text):,} characters)")

    model = CharLSTM(len(vocab))
    remember_first(model.lstm)
    optimizer, schedule = adam_cosine(model, LR, STEPS, floor=0.03)
    data = streams(train_ids, STREAMS)
    windows = (len(data) - 1) // WINDOW
    start, state, position = time.perf_counter(), None, 0
    for step in range(1, STEPS + 1):
        if position >= windows:  # a new pass over the text: start from a zero state
            position, state = 0, None
        chunk = data[position * WINDOW : (position + 1) * WINDOW + 1]
        position += 1
        if state is not None:
            state = tuple(s.detach() for s in state)
        logits, state = model(chunk[:-1], state)
        loss = nn.functional.cross_entropy(logits.reshape(-1, len(vocab)), chunk[1:].reshape(-1))
        take_step(loss, model, optimizer, schedule)
        if step % 500 == 0:
            print(f"step {step}: {loss.item() / math.log(2):.3f} bits/char on training windows "
                  f"({time.perf_counter() - start:.0f} s)")
    seconds = time.perf_counter() - start
    model.eval()
    bpc = bits_per_char(model, test_ids)
    unigram = unigram_bits_per_char(train_ids, test_ids, len(vocab))
    state_dict = {name: t.detach().clone().contiguous() for name, t in model.state_dict().items()}
    torch.save({**state_dict, "vocab": vocab}, CHECKPOINT)
    results = {
        "held_out_sha256": sha256(test_text),
        "held_out_characters": len(test_text),
        "held_out_bpc": round(bpc, 4),
        "unigram_bpc": round(unigram, 4),
        "train_seconds": round(seconds),
        "cpu": cpu_name(),
    }
    print(f"held-out bits per character: {bpc:.4f} (unigram baseline {unigram:.4f})")
    print(f"training took {seconds:.0f} s on one thread of {results['cpu']}")
    print(f"wrote {CHECKPOINT} ({CHECKPOINT.stat().st_size / 1e6:.2f} MB)")
    print(f"RESULTS = {results!r}")


if __name__ == "__main__":
    main()
