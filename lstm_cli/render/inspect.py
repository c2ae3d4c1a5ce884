"""Rich rendering of an InspectResult."""

from __future__ import annotations

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from lstm_cli.inspect import InspectResult
from lstm_cli.render.common import checks_table, config_line, print_table
from lstm_cli.shapes import shape_text
from lstm_cli.spec import GATE_MEANING
from lstm_cli.verify.rule import COPY_ULPS


def _identity_rule(rule: dict) -> str:
    if rule["atol"] is not None or rule["rtol"] is not None:
        return rule["description"]
    return f"{COPY_ULPS:g} ulps of the value (one kernel writes both; {rule['dtype']})"


def render_inspect(result: InspectResult, console: Console) -> None:
    console.print(Text(config_line(result.config, result.device, result.dtype), style="bold"))
    console.print(Panel(Text(result.module), title="module, as PyTorch prints it", title_align="left"))

    tensors = Table(title="Tensors", title_justify="left")
    tensors.add_column("tensor", no_wrap=True)
    tensors.add_column("shape", no_wrap=True)
    tensors.add_column("dimensions")
    for name, info in result.tensors.items():
        dims = "\n".join(f"{d.symbol} = {d.size}: {d.meaning}" for d in info.dims)
        tensors.add_row(name, shape_text(info.shape), dims)
    print_table(console, tensors)
    if result.packed is not None:
        p = result.packed
        console.print(Text(
            f"Packed: nn.LSTM took pack_padded_sequence(input, lengths, enforce_sorted=False) and "
            f"returned a PackedSequence with data {shape_text(p['data_shape'])} (sum(lengths), "
            f"D*H_out), batch_sizes {p['batch_sizes']} (sequences running at each step), "
            f"sorted_indices {p['sorted_indices']}; output above is {p['unpacked_with']}, zero past "
            "each length."
        ))

    params = Table(title="Parameters", title_justify="left")
    params.add_column("parameter")
    params.add_column("shape", no_wrap=True)
    params.add_column("numel", justify="right", no_wrap=True)
    params.add_column("what it is")
    for p in result.parameters:
        params.add_row(p.name, shape_text(p.shape), f"{p.numel:,}", p.role)
    params.add_row("total", "", f"{result.total_parameters:,}", f"closed form {result.expected_parameters:,}")
    print_table(console, params)

    blocked = next((p for p in result.parameters if p.gate_rows), None)
    if blocked is not None:
        gates = Table(title="Gate blocks: rows of every weight_ih, weight_hh and bias", title_justify="left")
        gates.add_column("gate", no_wrap=True)
        gates.add_column("rows", no_wrap=True)
        gates.add_column("meaning")
        gates.add_column("activation")
        recurrent = result.config.get("recurrent_activation", "sigmoid")
        for gate, (start, stop) in blocked.gate_rows.items():
            activation = "tanh" if gate == "g" else recurrent
            gates.add_row(gate, f"{start}:{stop}", GATE_MEANING[gate], activation)
        print_table(console, gates)

    console.print(Text(f"Identities hold when each element is within {_identity_rule(result.rule)}."))
    print_table(console, checks_table(result.checks))
    if result.explain:
        console.print(Panel(Text("\n".join(result.explain)), title="the equations, with these shapes", title_align="left"))
