"""How results leave the process: one JSON document for scripts, or Rich for people.

No torch here: results are plain dataclasses of lists, floats and strings."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from typing import Any


def jsonable(value: Any) -> Any:
    """Dataclasses to dicts, tuples to lists, NaN/Inf to null (strict JSON has no NaN)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(result: Any, lift: tuple[str, str] | None = None) -> str:
    """One JSON document; `lift` (outer, inner) moves document[outer][inner] to the top level,
    null when unset (config.source -> source: what a script asks first of a loaded model, null
    for random weights: every command's document has the same top-level keys)."""
    document = jsonable(result)
    if lift is not None and isinstance(document, dict):
        outer, inner = lift
        document[inner] = (document.get(outer) or {}).pop(inner, None)
    return json.dumps(document, indent=2, allow_nan=False)


def make_console(stderr: bool = False):
    """A Rich console that writes no colour codes into pipes and honours NO_COLOR."""
    from rich.console import Console

    class QuietPipeConsole(Console):
        def on_broken_pipe(self) -> None:
            # Rich would exit 1; a reader that stopped reading (`| head -1`) is no failure,
            # so the caller ends quietly with 0 (see cli.emit).
            raise BrokenPipeError

    return QuietPipeConsole(
        file=sys.stderr if stderr else sys.stdout,
        highlight=False,
        no_color="NO_COLOR" in os.environ or None,
        soft_wrap=False,
    )
