"""LSTMs among named tensors (a state_dict, a safetensors or npz file, a TorchScript module's
parameters), found by PyTorch's own parameter names:

- nn.LSTM:      PREFIX.weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, weight_hr_l0, ..._reverse
- nn.LSTMCell:  PREFIX.weight_ih, weight_hh, bias_ih, bias_hh (one cell = a one-layer LSTM)
- a stack of cells in an nn.ModuleList/Sequential: BASE.0.weight_ih, BASE.1.weight_ih, ...

nn.GRU, nn.RNN and their cells use the same names; weight_hh's shape tells them apart: its
columns are H (P with proj_size, which only LSTMs have), its rows 4H for an LSTM, 3H for a GRU
and H for an RNN. A group is named as what it is, whatever its hidden size.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from lstm_cli.formats.base import Contents, Found, Rejected

LSTM_PARAM = re.compile(
    r"^(?:(?P<prefix>.*)\.)?(?P<kind>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(?P<layer>\d+)(?P<reverse>_reverse)?$"
)
CELL_PARAM = re.compile(r"^(?:(?P<prefix>.*)\.)?(?P<kind>weight_ih|weight_hh|bias_ih|bias_hh)$")
STACK_MEMBER = re.compile(r"^(?:(?P<base>.*)\.)?(?P<index>\d+)$")
GATE_ROWS = {4: "LSTM", 3: "GRU", 1: "RNN"}


def flatten(value: Any, leaf: type, prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every `leaf` (a tensor or array) in nested dicts, lists and tuples, by dotted path
    (Lightning's {"state_dict": {...}, "epoch": 3} gives "state_dict.model.rnn.weight_ih_l0")."""
    out = {} if out is None else out
    if isinstance(value, leaf):
        out[prefix] = value
    elif isinstance(value, dict):
        for key, item in value.items():
            flatten(item, leaf, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            flatten(item, leaf, f"{prefix}.{index}" if prefix else str(index), out)
    return out


def recurrent_kind(state: dict[str, torch.Tensor], weight_hh: str, projected: bool) -> str | None:
    """'LSTM', 'GRU' or 'RNN' from weight_hh's (rows, columns); None if it fits none."""
    if projected:
        return "LSTM"
    w = state.get(weight_hh)
    if w is None or w.dim() != 2 or w.shape[1] == 0:
        return None
    rows, hidden = w.shape
    return GATE_ROWS.get(rows // hidden) if rows % hidden == 0 else None


def find_in_tensors(tensors: dict[str, torch.Tensor], format_name: str) -> Contents:
    """Every nn.LSTM, nn.LSTMCell and stack of LSTMCells among `tensors`, by name."""
    contents = Contents(format_name)
    lstm_groups: dict[str, dict[str, torch.Tensor]] = {}
    cell_groups: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        if match := LSTM_PARAM.match(name):
            prefix = match.group("prefix") or ""
            lstm_groups.setdefault(prefix, {})[name[len(prefix) + 1 :] if prefix else name] = tensor
        elif match := CELL_PARAM.match(name):
            prefix = match.group("prefix") or ""
            cell_groups.setdefault(prefix, {})[match.group("kind")] = tensor

    for prefix, state in lstm_groups.items():
        kind = recurrent_kind(state, "weight_hh_l0", any(n.startswith("weight_hr") for n in state))
        if kind in ("GRU", "RNN"):
            contents.rejected.append(_not_an_lstm(prefix, f"nn.{kind}", state["weight_hh_l0"]))
        else:  # an LSTM, or malformed: its validation names what is wrong
            contents.found.append(Found(prefix, state))

    cells: dict[str, dict[str, torch.Tensor]] = {}
    for prefix, state in cell_groups.items():
        if "weight_ih" not in state or "weight_hh" not in state:
            continue  # a Linear's weight/bias is not a cell; only both matrices make one
        kind = recurrent_kind(state, "weight_hh", projected=False)
        if kind in ("GRU", "RNN"):
            contents.rejected.append(_not_an_lstm(prefix, f"nn.{kind}Cell", state["weight_hh"]))
        elif kind == "LSTM":
            cells[prefix] = state
    for base, members in _stacks(cells).items():
        found = _stack(base, [cells.pop(member) for member in members], members)
        if isinstance(found, Rejected):
            contents.rejected.append(found)
        else:
            contents.found.append(found)
    for prefix, state in cells.items():
        contents.found.append(Found(
            prefix, {f"{kind}_l0": t for kind, t in state.items()},
            conversions=[f"nn.LSTMCell {_where(prefix)} -> layer 0 of a one-layer nn.LSTM (names + _l0; same weights)"],
        ))
    return contents


def _where(prefix: str) -> str:
    return f"'{prefix}'" if prefix else "at the top level"


def _not_an_lstm(prefix: str, what: str, weight_hh: torch.Tensor) -> Rejected:
    rows, hidden = weight_hh.shape
    subject = f"'{prefix}'" if prefix else "the state_dict"
    return Rejected(
        prefix,
        f"{subject} is an {what} with hidden size {hidden}, not an LSTM "
        f"(weight_hh is ({rows}, {hidden}): {rows // hidden} gate block(s); an LSTM has 4)",
    )


def _stacks(cells: dict[str, dict[str, torch.Tensor]]) -> dict[str, list[str]]:
    """Cells named BASE.0, BASE.1, ... (an nn.ModuleList or nn.Sequential of cells), in order,
    when there are at least two and the indices run 0..n-1."""
    by_base: dict[str, dict[int, str]] = {}
    for prefix in cells:
        if match := STACK_MEMBER.match(prefix):
            by_base.setdefault(match.group("base") or "", {})[int(match.group("index"))] = prefix
    return {
        base: [members[i] for i in range(len(members))]
        for base, members in by_base.items()
        if len(members) >= 2 and sorted(members) == list(range(len(members)))
    }


def _stack(base: str, states: list[dict[str, torch.Tensor]], members: list[str]) -> Found | Rejected:
    """A stack of cells as layers: one nn.LSTM when every cell has the same width (and feeds
    the next), else a free-form stack of cells of its own widths."""
    widths = [state["weight_hh"].shape[1] for state in states]
    for k in range(1, len(states)):
        takes = states[k]["weight_ih"].shape[1]
        if takes != widths[k - 1]:
            return Rejected(
                base,
                f"the cells of {_where(base)} do not form a stack: {members[k]} takes {takes} "
                f"inputs but {members[k - 1]} gives {widths[k - 1]}; pick one cell with --key",
            )
    biases = {"bias_ih" in state for state in states}
    if len(biases) != 1:
        return Rejected(base, f"the cells of {_where(base)} mix cells with and without bias; pick one with --key")
    state = {f"{kind}_l{k}": t for k, cell in enumerate(states) for kind, t in cell.items()}
    listed = ", ".join(members)
    if len(set(widths)) == 1:
        return Found(base, state, conversions=[
            f"nn.LSTMCell stack {listed} -> layers 0..{len(states) - 1} of one nn.LSTM (same weights)"
        ])
    return Found(
        base, state, cell_stack=True,
        conversions=[f"nn.LSTMCell stack {listed} (widths {', '.join(map(str, widths))}) -> a free-form stack of cells"],
    )
