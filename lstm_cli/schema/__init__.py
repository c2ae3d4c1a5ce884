"""The `--json` contract, written down: one JSON Schema per command, generated from the command's
result dataclass (the document is that dataclass as `output.to_json` writes it) and shipped as
`lstm_cli/schema/<command>.json`, which `lstm-cli schema COMMAND` prints without importing torch.

Every document has the same top-level keys: command, config, source (the loaded model, null for
random weights), passed (null when the command checks nothing), checks and notes. Floats may be
null (NaN and infinities are written as null: strict JSON has neither). Objects allow more
keys than listed: fields are added freely, never renamed.

    .venv/bin/python -m lstm_cli.schema      # regenerate the shipped files after changing a result
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import types
import typing
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DRAFT = "https://json-schema.org/draft/2020-12/schema"
# command -> (module, result class); a command whose document comes in two variants lists both
# (units: without and with a selection) and keys of the first are the required ones.
RESULTS: dict[str, list[tuple[str, str]]] = {
    "inspect": [("lstm_cli.inspect", "InspectResult")],
    "compare-cell": [("lstm_cli.compare_cell", "CompareResult")],
    "gates": [("lstm_cli.gates.run", "GatesResult")],
    "gradients": [("lstm_cli.gradients", "GradientsResult")],
    "bench": [("lstm_cli.bench", "BenchResult")],
    "units": [("lstm_cli.text.units", "UnitsResult"), ("lstm_cli.text.select", "SelectedUnitsResult")],
    "trace": [("lstm_cli.text.trace", "TraceResult")],
    "report": [("lstm_cli.report", "ReportResult")],
}
COMMON = ("command", "config", "source", "passed", "checks", "notes")


def commands() -> list[str]:
    return sorted(RESULTS)


def shipped(command: str) -> dict:
    """The schema file shipped in the package (no torch import)."""
    return json.loads((HERE / f"{command}.json").read_text())


def generate(command: str) -> dict:
    """The schema of `command`'s document, from its result dataclass(es)."""
    variants = [getattr(importlib.import_module(module), name) for module, name in RESULTS[command]]
    builder = _Builder()
    widest = variants[-1]
    document = builder.object_of(widest, top=True)
    required = [f.name for f in dataclasses.fields(variants[0]) if f.name != "config"] + ["config", "source"]
    document["required"] = sorted(set(required) | set(COMMON))
    document["properties"]["command"] = {"const": command}
    document["properties"]["source"] = {"type": ["object", "null"],
                                        "description": "the loaded model: file, format, key, conversions, notes"}
    document["properties"]["passed"] = {"type": ["boolean", "null"],
                                        "description": "null when the command checks nothing"}
    return {"$schema": DRAFT, "title": f"lstm-cli {command} --json", **document, "$defs": builder.defs}


class _Builder:
    """Dataclasses to JSON Schema, each dataclass once under $defs."""

    def __init__(self) -> None:
        self.defs: dict[str, dict] = {}

    def object_of(self, cls: type, top: bool = False) -> dict:
        hints = typing.get_type_hints(cls)
        properties = {f.name: self.of(hints[f.name]) for f in dataclasses.fields(cls)}
        if top:
            properties["config"] = self.config()
        return {"type": "object", "properties": properties,
                "required": [f.name for f in dataclasses.fields(cls)], "additionalProperties": True}

    def config(self) -> dict:
        from lstm_cli.spec import LSTMSpec

        spec = self.object_of(LSTMSpec)
        del spec["properties"]["source"]  # lifted to the top level
        spec["required"] = [name for name in spec["required"] if name != "source"] + ["input_source",
                                                                                     "initial_state_source"]
        spec["properties"]["input_source"] = {"type": "string"}
        spec["properties"]["initial_state_source"] = {"type": "string"}
        return spec

    def of(self, hint: Any) -> dict:
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if hint is Any or hint is object:
            return {}
        if origin in (typing.Union, types.UnionType):
            options = [self.of(a) for a in args if a is not type(None)]
            nullable = type(None) in args
            if len(options) == 1 and "type" in options[0] and nullable:
                kind = options[0]["type"]
                return {**options[0], "type": sorted(set(kind if isinstance(kind, list) else [kind]) | {"null"})}
            return {"anyOf": options + ([{"type": "null"}] if nullable else [])}
        if hint is bool:
            return {"type": "boolean"}
        if hint is int:
            return {"type": "integer"}
        if hint is float:
            return {"type": ["number", "null"]}  # NaN and infinities are written as null
        if hint is str:
            return {"type": "string"}
        if hint in (list, tuple) or origin in (list, tuple):
            items = [a for a in args if a is not Ellipsis]
            return {"type": "array", **({"items": self.of(items[0])} if len(set(items)) == 1 else {})}
        if hint is dict or origin is dict:
            return {"type": "object", **({"additionalProperties": self.of(args[1])} if args else {})}
        if dataclasses.is_dataclass(hint):
            name = hint.__name__
            if name not in self.defs:
                self.defs[name] = {}  # a placeholder first: a dataclass may hold itself
                self.defs[name] = self.object_of(hint)
            return {"$ref": f"#/$defs/{name}"}
        raise TypeError(f"no JSON Schema for {hint!r}")


def write_all() -> list[Path]:
    written = []
    for command in commands():
        path = HERE / f"{command}.json"
        path.write_text(json.dumps(generate(command), indent=2) + "\n")
        written.append(path)
    return written
