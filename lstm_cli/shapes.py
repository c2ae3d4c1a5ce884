"""A shape written as Python prints it, for every message and table: (80, 100), and (80,) for
one dimension. Pure Python: torch-free readers, renderers and errors all use it."""

from __future__ import annotations

from collections.abc import Iterable


def shape_text(shape: Iterable[int]) -> str:
    dims = [int(n) for n in shape]
    return "(" + ", ".join(map(str, dims)) + ("," if len(dims) == 1 else "") + ")"
