"""Text as input for a character model (--text, --text-file): each character becomes its row of
the model's embedding matrix, or a one-hot vector when the LSTM's input size is the vocabulary's.

The vocabulary is the checkpoint's own top-level "vocab" list (read with
torch.load(weights_only=True), which unpickles tensors and plain containers only) or a JSON list
given with --vocab; row k of the embedding is vocab[k]. A character outside the vocabulary is
refused with its position (line:column), never mapped to some stand-in.

The input is (L, 1, input_size), or (1, L, input_size) with --batch-first: one sequence, one step
per character, so that every command (batched or not) runs it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from lstm_cli.errors import UsageError
from lstm_cli.formats.base import FormatError
from lstm_cli.formats.detect import detect
from lstm_cli.formats.named_tensors import LSTM_PARAM, flatten
from lstm_cli.formats.torch_file import load_checkpoint
from lstm_cli.paths import readable_file
from lstm_cli.shapes import shape_text

MAX_VOCAB = 1 << 20


@dataclass(frozen=True)
class TextInput:
    """What --text/--text-file resolved to."""

    ids: torch.Tensor  # (L,) the characters' rows in the vocabulary
    vocab: tuple[str, ...]
    embedding: str | None  # the matrix's name in --weights; None = one-hot
    matrix: torch.Tensor | None  # (len(vocab), input_size)

    def tensor(self, batch_first: bool) -> torch.Tensor:
        """(L, 1, input) float32, or (1, L, input) with batch_first."""
        if self.matrix is None:
            x = torch.nn.functional.one_hot(self.ids, len(self.vocab)).to(torch.float32)
        else:
            x = self.matrix.to(torch.float32)[self.ids]
        return x.unsqueeze(0) if batch_first else x.unsqueeze(1)


def read_text(text: str | None, text_file: str | None) -> tuple[str, str]:
    """The text and how to name it in messages ("--text" or "--text-file PATH")."""
    if text is not None:
        return text, "--text"
    file = readable_file("--text-file", text_file)
    try:
        value = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"--text-file {text_file}: not UTF-8 text (byte {exc.start} cannot be decoded)") from None
    except OSError as exc:
        raise UsageError(f"--text-file {text_file}: cannot be read ({exc.strerror or exc})") from None
    if not value:
        raise UsageError(f"--text-file {text_file}: the file is empty")
    return value, f"--text-file {text_file}"


def _checked_vocab(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise UsageError(f"{where}: the vocabulary must be a non-empty list of characters")
    if len(value) > MAX_VOCAB:
        raise UsageError(f"{where}: a vocabulary of {len(value):,} entries is more than {MAX_VOCAB:,}")
    for k, item in enumerate(value):
        if not isinstance(item, str) or len(item) != 1:
            raise UsageError(f"{where}: entry {k} is {item!r}, not a single character")
    seen: dict[str, int] = {}
    for k, item in enumerate(value):
        if item in seen:
            raise UsageError(f"{where}: {item!r} is both entry {seen[item]} and entry {k}")
        seen[item] = k
    return tuple(value)


def read_vocab_file(path: str) -> tuple[str, ...]:
    """--vocab FILE: a JSON list of one-character strings, row order."""
    file = readable_file("--vocab", path)
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"--vocab {path}: not a JSON list of characters ({str(exc)[:120]})") from None
    return _checked_vocab(value, f"--vocab {path}")


def load_torch_checkpoint(path: str) -> object | None:
    """The raw torch.load(weights_only=True) value of a torch.save file (the one the LSTM's
    reader loaded: read once); None for other formats."""
    if detect(Path(path)).kind != "torch":
        return None
    try:
        return load_checkpoint(Path(path))
    except FormatError as exc:
        raise UsageError(f"--weights {path}: {exc}") from None


def checkpoint_vocab(path: str) -> tuple[str, ...] | None:
    """The top-level "vocab" list of a torch.save dict, checked; None when there is none."""
    value = load_torch_checkpoint(path)
    if not isinstance(value, dict) or "vocab" not in value:
        return None
    return _checked_vocab(value["vocab"], f"--weights {path}: its \"vocab\"")


def embedding_candidates(tensors: dict[str, torch.Tensor], rows: int, columns: int) -> list[str]:
    """Names of the 2-D float tensors of shape (rows, columns) that are not LSTM parameters."""
    return [
        name for name, t in tensors.items()
        if t.dim() == 2 and t.dtype.is_floating_point and tuple(t.shape) == (rows, columns)
        and not LSTM_PARAM.match(name)
    ]


def _matrices(tensors: dict[str, torch.Tensor]) -> str:
    listed = [f"{name} {shape_text(t.shape)}" for name, t in tensors.items() if t.dim() == 2]
    return ", ".join(listed[:12]) + (f", ... ({len(listed) - 12} more)" if len(listed) > 12 else "") or "none"


def find_embedding(path: str, vocab_size: int, input_size: int, key: str | None) -> tuple[str | None, torch.Tensor | None]:
    """The embedding matrix (its name and value), or (None, None) for one-hot input."""
    value = load_torch_checkpoint(path)
    tensors = flatten(value, torch.Tensor) if value is not None else {}
    if key is not None:
        if value is None:
            raise UsageError(f"--embedding {key!r}: lstm-cli reads embeddings from torch.save files only, and --weights {path} is not one")
        if key not in tensors:
            raise UsageError(f"--embedding {key!r}: no tensor of that name in {path} (matrices: {_matrices(tensors)})")
        matrix = tensors[key]
        if matrix.dim() != 2 or not matrix.dtype.is_floating_point or tuple(matrix.shape) != (vocab_size, input_size):
            raise UsageError(
                f"--embedding {key!r} is {shape_text(matrix.shape)} {str(matrix.dtype).removeprefix('torch.')}; "
                f"it must be a float matrix ({vocab_size}, {input_size}): vocabulary rows, input-size columns"
            )
        return key, _finite(key, path, matrix)
    candidates = embedding_candidates(tensors, vocab_size, input_size)
    if len(candidates) == 1:
        return candidates[0], _finite(candidates[0], path, tensors[candidates[0]])
    if len(candidates) > 1:
        raise UsageError(
            f"--weights {path} has {len(candidates)} matrices of shape ({vocab_size}, {input_size}) that could be the "
            f"embedding: {', '.join(candidates)}; pick one with --embedding KEY"
        )
    if input_size == vocab_size:
        return None, None
    raise UsageError(
        f"--weights {path} has no embedding matrix of shape ({vocab_size}, {input_size}) (vocabulary {vocab_size}, "
        f"input size {input_size}), and input size {input_size} is not the vocabulary's for one-hot input "
        f"(matrices: {_matrices(tensors)}); name one with --embedding KEY"
    )


def _finite(name: str, path: str, matrix: torch.Tensor) -> torch.Tensor:
    bad = ~torch.isfinite(matrix)
    if bad.any():
        raise UsageError(f"--embedding {name!r} in {path} has {int(bad.sum())} NaN/Inf value(s)")
    return matrix


def encode(text: str, vocab: tuple[str, ...], where: str, vocab_from: str) -> torch.Tensor:
    """Each character's row; the first character outside the vocabulary is refused with its
    line:column (1-based)."""
    index = {c: k for k, c in enumerate(vocab)}
    ids = []
    for position, char in enumerate(text):
        row = index.get(char)
        if row is None:
            line = text.count("\n", 0, position) + 1
            column = position - (text.rfind("\n", 0, position) + 1) + 1
            raise UsageError(
                f"{where}: character {char!r} at {line}:{column} is not in the vocabulary "
                f"({len(vocab)} characters, {vocab_from})"
            )
        ids.append(row)
    return torch.tensor(ids, dtype=torch.long)


def resolve_text(
    text: str | None, text_file: str | None, weights: str, vocab_file: str | None,
    embedding: str | None, input_size: int,
) -> TextInput:
    """The checked input of --text/--text-file for the loaded model of this input size."""
    value, where = read_text(text, text_file)
    if vocab_file is not None:
        vocab, vocab_from = read_vocab_file(vocab_file), f"from --vocab {vocab_file}"
    else:
        vocab, vocab_from = checkpoint_vocab(weights), f"from --weights {weights}"
        if vocab is None:
            raise UsageError(
                f"{where} needs the model's vocabulary: --weights {weights} holds no top-level \"vocab\" list "
                "of characters; give --vocab FILE (a JSON list of characters, in row order)"
            )
    name, matrix = find_embedding(weights, len(vocab), input_size, embedding)
    return TextInput(encode(value, vocab, where, vocab_from), vocab, name, matrix)
