"""Where things are in an ONNX model: every recurrent node, found in file order at the top level
and inside If/Loop/Scan subgraphs (at most MAX_DEPTH deep) and given a unique name, and Scope,
which resolves the name of an input to the initializer, node or graph input that defines it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from lstm_cli.formats.base import FormatError
from lstm_cli.formats.text import printable

MAX_DEPTH = 16  # subgraph nesting searched (If inside Loop inside If ...)

DEFAULT_DOMAINS = ("", "ai.onnx")
# Op types reported: each becomes a Found or a Rejected (whatever its domain).
RECURRENT_OPS = {"LSTM", "GRU", "RNN", "DynamicQuantizeLSTM", "AttnLSTM"}


class Scope:
    """One graph: its initializers, the nodes producing each value, its inputs; names a
    subgraph does not define resolve in the graphs around it."""

    def __init__(self, graph: Any, parent: Scope | None, where: str) -> None:
        self.graph = graph
        self.parent = parent
        self.where = where  # "" at the top level, else "If node 'x' (then_branch)" and so on
        self.initializers = {t.name: t for t in graph.initializer}
        self.sparse = {t.values.name for t in graph.sparse_initializer}
        self.producers = {out: node for node in graph.node for out in node.output if out}
        self.inputs = {value.name for value in graph.input}

    def lookup(self, name: str) -> tuple[str, Any, Scope] | None:
        scope: Scope | None = self
        while scope is not None:
            # An initializer that is also a graph input is a default value; it is what the
            # file stores, so it wins.
            if name in scope.initializers:
                return "initializer", scope.initializers[name], scope
            if name in scope.sparse:
                return "sparse", None, scope
            if name in scope.producers:
                return "node", scope.producers[name], scope
            if name in scope.inputs:
                return "input", None, scope
            scope = scope.parent
        return None


@dataclass
class RecurrentNode:
    """One recurrent node found in the walk, with the name --key will know it by."""

    node: Any
    scope: Scope
    name: str
    notes: list[str] = field(default_factory=list)


def recurrent_nodes(onnx: Any, graph: Any) -> Iterator[RecurrentNode]:
    """Every recurrent node of the model's graph and its subgraphs, in file order."""
    yield from _Walk(onnx).walk(Scope(graph, None, ""), depth=0)


class _Walk:
    """Walks the graphs and names each recurrent node."""

    def __init__(self, onnx: Any) -> None:
        self.onnx = onnx
        self.seen_per_op: dict[str, int] = {}
        self.names: set[str] = set()

    def walk(self, scope: Scope, depth: int) -> Iterator[RecurrentNode]:
        """Every node of this graph in order, descending into each subgraph where its node is."""
        for node in scope.graph.node:
            if node.op_type in RECURRENT_OPS:
                yield self.named(node, scope)
            for attribute in node.attribute:
                graphs = [attribute.g] if attribute.type == self.onnx.AttributeProto.GRAPH else []
                if attribute.type == self.onnx.AttributeProto.GRAPHS:
                    graphs = list(attribute.graphs)
                for graph in graphs:
                    if depth + 1 > MAX_DEPTH:
                        raise FormatError(f"its subgraphs are nested more than {MAX_DEPTH} levels deep")
                    label = f"{printable(node.op_type)} node" + (f" '{printable(node.name)}'" if node.name else "")
                    where = f"{label} ({printable(attribute.name)})"
                    yield from self.walk(Scope(graph, scope, f"{scope.where} > {where}" if scope.where else where), depth + 1)

    def named(self, node: Any, scope: Scope) -> RecurrentNode:
        name, notes = self.unique_name(node)
        if scope.where:
            notes.insert(0, f"inside {scope.where}")
        return RecurrentNode(node, scope, name, notes)

    def unique_name(self, node: Any) -> tuple[str, list[str]]:
        """node.name, or '<op>#k' (the k-th node of that op in the file) when it has none;
        a repeated name gets '#2', '#3', ... so that --key always picks one node."""
        number = self.seen_per_op[node.op_type] = self.seen_per_op.get(node.op_type, 0) + 1
        notes = []
        name = printable(node.name)
        if not name:
            name = f"{node.op_type}#{number}"
            notes.append(f"the node has no name: called '{name}' here ({node.op_type} node number {number} in the file)")
        if name in self.names:
            base, k = name, 2
            while f"{base}#{k}" in self.names:
                k += 1
            name = f"{base}#{k}"
            notes.append(f"another node is also called '{base}': this one is called '{name}' here")
        self.names.add(name)
        return name, notes
