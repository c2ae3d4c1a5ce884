"""--export: every captured tensor, and nn.LSTM's own input, output and final states, written
to a .npz or .pt file (`export_names` lists what such a file holds, with shapes)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lstm_cli.model import Forward, from_time_major
from lstm_cli.spec import GATES, LSTMSpec

if TYPE_CHECKING:  # gates.run imports this module
    from lstm_cli.gates.run import Capture


def export_names(spec: LSTMSpec) -> dict[str, list[int]]:
    """Every name an --export file holds, with its shape (documented in the README)."""
    layout = lambda width: from_time_major_shape(spec, width)  # noqa: E731
    names: dict[str, list[int]] = {}
    for layer in range(spec.num_layers):
        for direction in spec.directions():
            suffix = f"_l{layer}" + ("_reverse" if direction == "backward" else "")
            for gate in GATES:
                names[gate + suffix] = layout(spec.hidden_size)
            names["c" + suffix] = layout(spec.hidden_size)
            names["h" + suffix] = layout(spec.h_out)
    shapes = spec.tensor_shapes()
    names.update({name: shapes[name] for name in ("input", "output", "h_n", "c_n")})
    if spec.lengths is not None:
        names["lengths"] = [spec.batch_size]
    return names


def from_time_major_shape(spec: LSTMSpec, width: int) -> list[int]:
    if spec.unbatched:
        return [spec.seq_len, width]
    if spec.batch_first:
        return [spec.batch_size, spec.seq_len, width]
    return [spec.seq_len, spec.batch_size, width]


def export_tensors(path: Path, spec: LSTMSpec, capture: Capture, x: torch.Tensor, reference: Forward) -> None:
    """Write every captured tensor (in the input's layout and batch order; NaN at padded steps)
    and nn.LSTM's own input, output, h_n and c_n to a .npz or .pt file."""
    tensors: dict[str, torch.Tensor] = {}
    batch = capture.batch
    for (layer, direction), recorder in capture.recorders.items():
        suffix = f"_l{layer}" + ("_reverse" if direction == "backward" else "")
        kept = recorder.all
        gates = batch.to_original(kept["gates"], 1)
        for k, gate in enumerate(GATES):
            tensors[gate + suffix] = from_time_major(gates[:, :, k], spec)
        tensors["c" + suffix] = from_time_major(batch.to_original(kept["c"], 1), spec)
        tensors["h" + suffix] = from_time_major(batch.to_original(kept["h"], 1), spec)
    tensors.update(input=x, output=reference.output, h_n=reference.h_n, c_n=reference.c_n)
    if spec.lengths is not None:
        tensors["lengths"] = torch.tensor(spec.lengths)
    tensors = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    try:
        if path.suffix.lower() == ".pt":
            torch.save(tensors, path)
        else:
            import numpy as np

            arrays = {
                name: (t.float() if t.dtype == torch.bfloat16 else t).numpy() for name, t in tensors.items()
            }
            with open(path, "wb") as handle:
                np.savez(handle, **arrays)
    except OSError as exc:
        from lstm_cli.errors import UsageError

        raise UsageError(f"--export {path}: cannot write: {exc.strerror or exc}") from None
