"""Files in and out: a user's checkpoint (--weights, --key), a user's input (--input), and the
weights of a run (--save-weights).

Loading never runs code: torch files go through torch.load(weights_only=True) and numpy files
through np.load(allow_pickle=False); a file that needs arbitrary unpickling is refused. Every
problem with a file is a UsageError (one line, exit 2) that names the file and what is wrong.
"""

from __future__ import annotations

import functools
import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lstm_cli.errors import UsageError
from lstm_cli.paths import writable_file

WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".npz")
SAVE_SUFFIXES = (".pt", ".pth", ".safetensors", ".npz")
_PARAM = re.compile(r"^(?:(?P<prefix>.*)\.)?(?P<kind>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(?P<layer>\d+)(?P<reverse>_reverse)?$")
ARCHITECTURE_FIELDS = ("input_size", "hidden_size", "num_layers", "bidirectional", "proj_size", "bias")


# -- reading tensors --------------------------------------------------------------------------


def _check_readable(path: str, flag: str) -> Path:
    file = Path(path)
    if not file.exists():
        raise UsageError(f"{flag} {path}: no such file")
    if file.is_dir():
        raise UsageError(f"{flag} {path}: is a directory, not a file")
    if not os.access(file, os.R_OK):
        raise UsageError(f"{flag} {path}: not readable (permission denied)")
    if file.stat().st_size == 0:
        raise UsageError(f"{flag} {path}: the file is empty")
    return file


def _looks_like_safetensors(file: Path) -> bool:
    with open(file, "rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < file.stat().st_size


def _is_npz(file: Path) -> bool:
    if not zipfile.is_zipfile(file):
        return False
    try:
        with zipfile.ZipFile(file) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return bool(names) and all(name.endswith(".npy") for name in names)


def _flatten(value: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    """Every tensor in nested dicts/lists, named by its dotted path (Lightning's
    {"state_dict": {...}, "epoch": 3} gives "state_dict.model.rnn.weight_ih_l0")."""
    if isinstance(value, torch.Tensor):
        out[prefix] = value
    elif isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _flatten(item, f"{prefix}.{index}" if prefix else str(index), out)


def _torch_load(file: Path, flag: str) -> Any:
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        blocked = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" (it asks for {blocked.group(1)})" if blocked else ""
        raise UsageError(
            f"{flag} {file}: refusing to load it: it needs arbitrary Python objects unpickled{what}, "
            "which could run code; save a state_dict instead: torch.save(model.state_dict(), path)"
        ) from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, AttributeError, IndexError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"{flag} {file}: not a readable torch file (truncated or corrupt?): {reason[:160]}") from None


def _file_version(file: Path) -> tuple[int, int]:
    stat = file.stat()
    return stat.st_mtime_ns, stat.st_size


def load_tensors(path: str, flag: str = "--weights") -> dict[str, torch.Tensor]:
    """All tensors in a torch, safetensors or npz file, by dotted name, on the CPU.
    Cached per file version: a run reads its checkpoint once however many steps look at it."""
    file = _check_readable(path, flag)
    return _load_tensors(file, flag, _file_version(file))


@functools.lru_cache(maxsize=4)
def _load_tensors(file: Path, flag: str, version: tuple[int, int]) -> dict[str, torch.Tensor]:
    path = str(file)
    if file.suffix == ".safetensors" or (file.suffix not in (".npz",) and _looks_like_safetensors(file)):
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise UsageError(
                f"{flag} {path}: reading .safetensors needs the safetensors package: "
                "pip install 'lstm-cli[safetensors]'"
            ) from None
        try:
            return dict(load_file(str(file), device="cpu"))
        except Exception as exc:  # safetensors raises its own SafetensorError
            raise UsageError(f"{flag} {path}: not a readable safetensors file: {str(exc)[:160]}") from None
    if file.suffix == ".npz" or _is_npz(file):
        try:
            with np.load(file, allow_pickle=False) as archive:
                return {name: torch.from_numpy(np.array(archive[name])) for name in archive.files}
        except ValueError as exc:
            raise UsageError(f"{flag} {path}: refusing to load it: {str(exc)[:160]}") from None
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            raise UsageError(f"{flag} {path}: not a readable .npz file (truncated or corrupt?): {str(exc)[:120]}") from None
    tensors: dict[str, torch.Tensor] = {}
    _flatten(_torch_load(file, flag), "", tensors)
    return tensors


# -- finding LSTMs in a checkpoint ------------------------------------------------------------


@dataclass
class LSTMGroup:
    """One nn.LSTM found in a checkpoint: where, its configuration, its parameters."""

    prefix: str
    input_size: int
    hidden_size: int
    num_layers: int
    bidirectional: bool
    proj_size: int
    bias: bool
    dtype: str
    state: dict[str, torch.Tensor]  # nn.LSTM parameter names, prefix removed

    def architecture(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ARCHITECTURE_FIELDS}

    def describe(self) -> str:
        extras = [
            text
            for text, on in (
                ("bidirectional", self.bidirectional),
                (f"proj_size {self.proj_size}", self.proj_size),
                ("no bias", not self.bias),
            )
            if on
        ]
        return ", ".join(
            [f"input {self.input_size}, hidden {self.hidden_size}, {self.num_layers} layer(s)", *extras]
        )


def _group_names(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        match = _PARAM.match(name)
        if match:
            prefix = match.group("prefix") or ""
            groups.setdefault(prefix, {})[name[len(prefix) + 1 :] if prefix else name] = tensor
    return groups


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(map(str, t.shape)) + ("," if t.dim() == 1 else "") + ")"


def infer_group(prefix: str, state: dict[str, torch.Tensor]) -> LSTMGroup:
    """Configuration from parameter names and shapes; a ValueError says what is inconsistent."""
    where = f"'{prefix}'" if prefix else "the top level"
    layers = sorted({int(_PARAM.match(name).group("layer")) for name in state})
    if layers != list(range(len(layers))):
        missing = min(set(range(max(layers) + 1)) - set(layers))
        raise ValueError(f"LSTM at {where} has no parameters for layer {missing}")
    bidirectional = any(name.endswith("_reverse") for name in state)
    bias = any(name.startswith("bias_") for name in state)
    projected = any(name.startswith("weight_hr") for name in state)
    if "weight_ih_l0" not in state:
        raise ValueError(f"LSTM at {where} is missing weight_ih_l0")
    rows = state["weight_ih_l0"].shape[0] if state["weight_ih_l0"].dim() == 2 else -1
    if rows <= 0 or rows % 4:
        raise ValueError(
            f"{where}: weight_ih_l0 is {_shape(state['weight_ih_l0'])}, not (4*hidden, input): not an LSTM"
            + (" (3*hidden rows: a GRU?)" if rows > 0 and rows % 3 == 0 else "")
        )
    hidden = rows // 4
    proj = state["weight_hr_l0"].shape[0] if projected and "weight_hr_l0" in state else 0
    h_out = proj or hidden
    directions = 2 if bidirectional else 1
    input_size = state["weight_ih_l0"].shape[1]
    expected: dict[str, tuple[int, ...]] = {}
    for layer in layers:
        for suffix in ("", "_reverse")[:directions]:
            width = input_size if layer == 0 else directions * h_out
            expected[f"weight_ih_l{layer}{suffix}"] = (4 * hidden, width)
            expected[f"weight_hh_l{layer}{suffix}"] = (4 * hidden, h_out)
            if bias:
                expected[f"bias_ih_l{layer}{suffix}"] = (4 * hidden,)
                expected[f"bias_hh_l{layer}{suffix}"] = (4 * hidden,)
            if projected:
                expected[f"weight_hr_l{layer}{suffix}"] = (proj, hidden)
    for name, shape in expected.items():
        if name not in state:
            raise ValueError(f"LSTM at {where} is missing {name}")
        if tuple(state[name].shape) != shape:
            raise ValueError(
                f"LSTM at {where}: {name} is {_shape(state[name])} but this LSTM needs "
                f"{'(' + ', '.join(map(str, shape)) + (',' if len(shape) == 1 else '') + ')'}"
            )
    extra = sorted(set(state) - set(expected))
    if extra:
        raise ValueError(f"LSTM at {where} has parameters that don't fit its layout: {', '.join(extra)}")
    dtypes = {t.dtype for t in state.values()}
    if not all(d.is_floating_point for d in dtypes) or len(dtypes) != 1:
        raise ValueError(f"LSTM at {where} has parameters of dtype {', '.join(sorted(map(str, dtypes)))}: need one float dtype")
    return LSTMGroup(
        prefix, input_size, hidden, len(layers), bidirectional, proj, bias,
        str(next(iter(dtypes))).removeprefix("torch."), dict(state),
    )


def find_lstm(path: str, key: str | None) -> LSTMGroup:
    """The one LSTM in the file, or the one under --key; anything else is a clear error."""
    tensors = load_tensors(path)
    groups = _group_names(tensors)
    if not groups:
        raise UsageError(f"--weights {path}: no LSTM parameters found (looked for weight_ih_l0, weight_hh_l0, ...)")
    if key is not None:
        key = key.rstrip(".")
        if key not in groups:
            listed = ", ".join(repr(p) for p in groups) or "none"
            raise UsageError(f"--key {key!r}: no LSTM under that prefix in {path} (prefixes found: {listed})")
        candidates = {key: groups[key]}
    else:
        candidates = groups
    found, problems = [], []
    for prefix, state in candidates.items():
        try:
            found.append(infer_group(prefix, state))
        except ValueError as exc:
            problems.append(str(exc))
    if len(found) == 1:
        group = found[0]
    elif not found:
        raise UsageError(f"--weights {path}: {problems[0]}")
    else:
        listing = "; ".join(f"{g.prefix!r}: {g.describe()}" for g in found)
        raise UsageError(f"--weights {path} holds {len(found)} LSTMs; pick one with --key: {listing}")
    bad = {name: int((~torch.isfinite(t)).sum()) for name, t in group.state.items() if not torch.isfinite(t).all()}
    if bad:
        name, count = next(iter(bad.items()))
        raise UsageError(f"--weights {path}: {name} has {count} NaN/Inf value(s); the LSTM's output would be meaningless")
    return group


# -- reading an input -------------------------------------------------------------------------


def load_input(path: str) -> torch.Tensor:
    """A float tensor from a .pt (a single tensor) or .npy file, checked for shape and NaN/Inf."""
    file = _check_readable(path, "--input")
    return _load_input(file, _file_version(file))


@functools.lru_cache(maxsize=2)
def _load_input(file: Path, version: tuple[int, int]) -> torch.Tensor:
    path = str(file)
    if file.suffix == ".npy":
        try:
            array = np.load(file, allow_pickle=False)
        except ValueError as exc:
            raise UsageError(f"--input {path}: refusing to load it: {str(exc)[:160]}") from None
        except (OSError, EOFError) as exc:
            raise UsageError(f"--input {path}: not a readable .npy file: {str(exc)[:160]}") from None
        value: Any = torch.from_numpy(np.array(array))
    else:
        value = _torch_load(file, "--input")
    if not isinstance(value, torch.Tensor):
        raise UsageError(f"--input {path}: holds a {type(value).__name__}, not a single tensor")
    if not value.dtype.is_floating_point:
        raise UsageError(f"--input {path}: has dtype {str(value.dtype).removeprefix('torch.')}; LSTM input must be floating point")
    if value.dim() not in (2, 3):
        raise UsageError(
            f"--input {path}: has shape {_shape(value)}; expected (L, N, input), (N, L, input) with "
            "--batch-first, or (L, input)"
        )
    if value.numel() == 0:
        raise UsageError(f"--input {path}: has shape {_shape(value)}, with no values")
    bad = ~torch.isfinite(value)
    if bad.any():
        first = tuple(int(i) for i in bad.nonzero()[0])
        raise UsageError(f"--input {path}: has {int(bad.sum())} NaN/Inf value(s) (first at {list(first)})")
    return value


# -- flags and files together -----------------------------------------------------------------


def resolve_flags(flags: dict[str, Any], explicit: set[str]) -> dict[str, Any]:
    """Fill the shared flags from --weights and --input: the file decides what the user left at
    its default, and a flag given explicitly that contradicts a file is an error."""
    flags = dict(flags)

    def take(field: str, value: Any, source: str) -> None:
        if field in explicit and flags[field] != value:
            flag = "--" + field.replace("_", "-")
            shown = flags[field] if not isinstance(value, bool) else ("on" if flags[field] else "off")
            actual = value if not isinstance(value, bool) else ("on" if value else "off")
            raise UsageError(f"{flag} {shown} contradicts {source}, which has {field.replace('_', ' ')} {actual}")
        flags[field] = value

    if flags.get("weights"):
        group = find_lstm(flags["weights"], flags.get("key"))
        flags["key"] = group.prefix
        for field, value in group.architecture().items():
            take(field, value, f"--weights {flags['weights']}")
        if "dtype" not in explicit and group.dtype in ("float32", "float64", "float16", "bfloat16"):
            flags["dtype"] = group.dtype
    elif flags.get("key") is not None:
        raise UsageError("--key picks an LSTM inside --weights; give --weights too")

    if flags.get("input"):
        x = load_input(flags["input"])
        source = f"--input {flags['input']}"
        if x.dim() == 2:
            take("unbatched", True, f"{source} (2-D: unbatched)")
            seq_len, features = x.shape
        else:
            take("unbatched", False, f"{source} (3-D: batched)")
            first, second, features = x.shape
            seq_len, batch = (second, first) if flags.get("batch_first") else (first, second)
            take("batch_size", batch, source)
        take("seq_len", seq_len, source)
        if features != flags["input_size"] and ("input_size" in explicit or flags.get("weights")):
            raise UsageError(
                f"{source} has {features} features per step but the model takes input_size {flags['input_size']}"
            )
        flags["input_size"] = features
    return flags


def check_save_path(path: str) -> None:
    """Refuse an unusable --save-weights path before any work is done."""
    writable_file("--save-weights", path, SAVE_SUFFIXES)


def save_state(state: dict[str, torch.Tensor], path: str) -> None:
    """Write a state_dict by suffix, atomically (a half-written file never replaces a good one)."""
    file = Path(path)
    tmp = file.with_name(f".{file.name}.tmp")
    cpu = {name: t.detach().to("cpu").contiguous() for name, t in state.items()}
    try:
        if file.suffix == ".safetensors":
            try:
                from safetensors.torch import save_file
            except ImportError:
                raise UsageError("--save-weights to .safetensors needs the safetensors package: pip install 'lstm-cli[safetensors]'") from None
            save_file(cpu, str(tmp))
        elif file.suffix == ".npz":
            with open(tmp, "wb") as handle:
                np.savez(handle, **{name: t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy() for name, t in cpu.items()})
        else:
            torch.save(cpu, tmp)
        os.replace(tmp, file)
    finally:
        if tmp.exists():
            tmp.unlink()
