"""Files in and out: a user's checkpoint (--weights, --key), a user's input (--input, or text
for a character model: --text, --text-file, see text/input.py), and the weights of a run
(--save-weights).

Loading never runs code: torch files go through torch.load(weights_only=True) and numpy files
through np.load(allow_pickle=False); a file that needs arbitrary unpickling is refused. Every
problem with a file is a UsageError (one line, exit 2) that names the file and what is wrong.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from lstm_cli.shapes import shape_text
from lstm_cli.errors import UsageError
from lstm_cli.guard import PROG
from lstm_cli.formats import read_file
from lstm_cli.formats.detect import detect
from lstm_cli.formats.base import FormatError, Found
from lstm_cli.formats.named_tensors import LSTM_PARAM
from lstm_cli.formats.torch_file import load_weights_only
from lstm_cli.paths import file_version, readable_file, writable_file
from lstm_cli.formats.text import a_type

RUN_TIME_ROLES = ("sequence_lens ", "initial_h ", "initial_c ")  # an ONNX node's run-time inputs, in notes
SAVE_SUFFIXES = (".pt", ".pth", ".safetensors", ".npz")
ARCHITECTURE_FIELDS = ("input_size", "hidden_size", "num_layers", "bidirectional", "proj_size", "bias")


# -- finding the LSTM in a checkpoint -------------------------------------------------------


@dataclass
class LSTMGroup:
    """One LSTM found in a checkpoint: its configuration, its parameters in nn.LSTM's names,
    and where it came from (format, name in the file, every conversion applied)."""

    prefix: str  # its name in the file: state_dict prefix, ONNX node, Keras layer
    input_size: int
    hidden_size: int
    num_layers: int
    bidirectional: bool
    proj_size: int
    bias: bool
    dtype: str
    state: dict[str, torch.Tensor]  # nn.LSTM parameter names, prefix removed
    stack_widths: tuple[int, ...] | None = None  # a free-form stack of cells of these widths
    found: Found | None = None  # what the reader returned: conversions, notes, activation, ...
    format: str = ""  # the file's format in words

    def architecture(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ARCHITECTURE_FIELDS}

    def describe(self) -> str:
        if self.stack_widths:
            return f"a stack of LSTMCells {' -> '.join(map(str, (self.input_size, *self.stack_widths)))}"
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



def _one_float_dtype(where: str, state: dict[str, torch.Tensor]) -> str:
    dtypes = {t.dtype for t in state.values()}
    if not all(d.is_floating_point for d in dtypes) or len(dtypes) != 1:
        raise ValueError(f"LSTM at {where} has parameters of dtype {', '.join(sorted(map(str, dtypes)))}: need one float dtype")
    return str(next(iter(dtypes))).removeprefix("torch.")


def infer_group(prefix: str, state: dict[str, torch.Tensor]) -> LSTMGroup:
    """Configuration from parameter names and shapes; a ValueError says what is inconsistent."""
    where = f"'{prefix}'" if prefix else "the top level"
    layers = sorted({int(LSTM_PARAM.match(name).group("layer")) for name in state})
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
        raise ValueError(f"{where}: weight_ih_l0 is {shape_text(state['weight_ih_l0'].shape)}, not (4*hidden, input): not an LSTM")
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
    _check_names(where, state, expected)
    return LSTMGroup(
        prefix, input_size, hidden, len(layers), bidirectional, proj, bias, _one_float_dtype(where, state), dict(state),
    )


def _check_names(where: str, state: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]]) -> None:
    for name, shape in expected.items():
        if name not in state:
            raise ValueError(f"LSTM at {where} is missing {name}")
        if tuple(state[name].shape) != shape:
            raise ValueError(
                f"LSTM at {where}: {name} is {shape_text(state[name].shape)} but this LSTM needs "
                f"{'(' + ', '.join(map(str, shape)) + (',' if len(shape) == 1 else '') + ')'}"
            )
    extra = sorted(set(state) - set(expected))
    if extra:
        raise ValueError(f"LSTM at {where} has parameters that don't fit its layout: {', '.join(extra)}")


def infer_stack(prefix: str, state: dict[str, torch.Tensor]) -> LSTMGroup:
    """A free-form stack of cells (weight_ih_lK etc., each layer its own width H_K)."""
    where = f"'{prefix}'" if prefix else "the top level"
    layers = len({LSTM_PARAM.match(name).group("layer") for name in state})
    widths = tuple(state[f"weight_hh_l{k}"].shape[1] for k in range(layers))
    bias = "bias_ih_l0" in state
    expected: dict[str, tuple[int, ...]] = {}
    width = state["weight_ih_l0"].shape[1]
    for k, hidden in enumerate(widths):
        expected[f"weight_ih_l{k}"] = (4 * hidden, width)
        expected[f"weight_hh_l{k}"] = (4 * hidden, hidden)
        if bias:
            expected[f"bias_ih_l{k}"] = expected[f"bias_hh_l{k}"] = (4 * hidden,)
        width = hidden
    _check_names(where, state, expected)
    input_size = state["weight_ih_l0"].shape[1]
    return LSTMGroup(
        prefix, input_size, widths[-1], layers, False, 0, bias, _one_float_dtype(where, state), dict(state),
        stack_widths=widths,
    )


def find_lstm(path: str, key: str | None, trust: bool = False) -> LSTMGroup:
    """The one LSTM in the file, or the one --key names; anything else is a clear error."""
    file = readable_file("--weights", path)
    try:
        contents = read_file(file, trust)
    except FormatError as exc:
        raise UsageError(f"--weights {path}: {exc}") from None
    candidates = contents.found
    if key is not None:
        key = key.rstrip(".")
        rejected = {r.name: r.reason for r in contents.rejected}
        candidates = [found for found in contents.found if found.name == key]
        if not candidates and key in rejected:
            raise UsageError(f"--key {key!r} in {path}: {rejected[key]}")
        if not candidates:
            names = [found.name for found in contents.found]
            listed = ", ".join(repr(name) for name in names) or "none"
            raise UsageError(f"--key {key!r}: no LSTM of that name in {path} (LSTMs found: {listed})")
    groups, problems = [], []
    for found in candidates:
        try:
            group = (infer_stack if found.cell_stack else infer_group)(found.name, found.state)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        group.found, group.format = found, contents.format
        groups.append(group)
    if not groups:
        if problems:
            raise UsageError(f"--weights {path}: {problems[0]}")
        if contents.rejected:
            more = f" (and {len(contents.rejected) - 1} more not usable)" if len(contents.rejected) > 1 else ""
            raise UsageError(f"--weights {path}: {contents.rejected[0].reason}{more}")
        raise UsageError(
            f"--weights {path}: {contents.format} with no LSTM in it "
            "(looked for nn.LSTM's weight_ih_l0, weight_hh_l0, ... and nn.LSTMCell's weight_ih, weight_hh)"
        )
    if len(groups) > 1:
        listing = "; ".join(f"{g.prefix!r}: {g.describe()}" for g in groups)
        raise UsageError(f"--weights {path} holds {len(groups)} LSTMs; pick one with --key: {listing}")
    group = groups[0]
    bad = {name: int((~torch.isfinite(t)).sum()) for name, t in group.state.items() if not torch.isfinite(t).all()}
    if bad:
        name, count = next(iter(bad.items()))
        raise UsageError(f"--weights {path}: {name} has {count} NaN/Inf value(s); the LSTM's output would be meaningless")
    return group


def describe_source(path: str, group: LSTMGroup) -> dict[str, Any]:
    """What was loaded, JSON-ready: every command's header and JSON `source` say it."""
    found = group.found
    return {
        "file": path,
        "format": group.format,
        "key": group.prefix,
        "conversions": list(found.conversions) if found else [],
        "notes": list(found.notes) if found else [],
        "recurrent_activation": found.recurrent_activation if found else "sigmoid",
        "peepholes": sorted(found.peepholes) if found else [],
    }


# -- reading an input -------------------------------------------------------------------------


def load_input(path: str) -> torch.Tensor:
    """A float tensor from a .pt (a single tensor) or .npy file, checked for shape and NaN/Inf;
    `-` reads the file's bytes from standard input."""
    file = stdin_copy("--input") if path == "-" else readable_file("--input", path)
    return _load_input(file, file_version(file), path)


@functools.cache
def stdin_copy(flag: str) -> Path:
    """Standard input's bytes (`flag -`), read once, in a private temporary file that the
    readers can look at like any file; removed when the process ends."""
    import atexit
    import shutil
    import tempfile

    from lstm_cli.paths import read_stdin_bytes

    data = read_stdin_bytes(flag)
    folder = tempfile.mkdtemp(prefix="lstm-cli-stdin-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    file = Path(folder) / "stdin"
    file.write_bytes(data)
    return file


@functools.lru_cache(maxsize=2)
def _load_input(file: Path, version: tuple[int, int], path: str) -> torch.Tensor:
    """`path`: what the user gave (`-` for standard input), for the messages."""
    detected = detect(file)
    if detected.kind not in ("torch", "npy"):
        raise UsageError(
            f"--input {path}: {detected.what.split(':')[0]}; --input takes a .pt file holding one tensor "
            "(torch.save(x, path)) or a .npy array (np.save(path, x))"
        )
    if detected.kind == "npy":
        try:
            array = np.load(file, allow_pickle=False)
        except ValueError as exc:
            raise UsageError(f"--input {path}: refusing to load it: {str(exc)[:160]}") from None
        except (OSError, EOFError) as exc:
            raise UsageError(f"--input {path}: not a readable .npy file: {str(exc)[:160]}") from None
        value: Any = torch.from_numpy(np.array(array))
    else:
        try:
            value = load_weights_only(file, advice="save the input with torch.save(tensor, path) or np.save")
        except FormatError as exc:
            raise UsageError(f"--input {path}: {exc}") from None
    if not isinstance(value, torch.Tensor):
        raise UsageError(f"--input {path}: holds {a_type(value)}, not a single tensor")
    if not value.dtype.is_floating_point:
        raise UsageError(f"--input {path}: has dtype {str(value.dtype).removeprefix('torch.')}; LSTM input must be floating point")
    if value.dim() not in (2, 3):
        raise UsageError(
            f"--input {path}: has shape {shape_text(value.shape)}; expected (L, N, input), (N, L, input) with "
            "--batch-first, or (L, input)"
        )
    if value.numel() == 0:
        raise UsageError(f"--input {path}: has shape {shape_text(value.shape)}, with no values")
    bad = ~torch.isfinite(value)
    if bad.any():
        first = tuple(int(i) for i in bad.nonzero()[0])
        raise UsageError(f"--input {path}: has {int(bad.sum())} NaN/Inf value(s) (first at {list(first)})")
    return value


# -- flags and files together -----------------------------------------------------------------


def resolve_flags(flags: dict[str, Any], explicit: set[str], feed: Any = None) -> dict[str, Any]:
    """Fill the shared flags from --weights and --input: the file decides what the user left at
    its default, and a flag given explicitly that contradicts a file is an error. `feed`: a run
    of a PyTorch model already captured (lstm_cli.watch), in place of --model-input."""
    flags = dict(flags)

    def take(field: str, value: Any, source: str) -> None:
        if field in explicit and flags[field] != value:
            flag = "--" + field.replace("_", "-")
            shown = flags[field] if not isinstance(value, bool) else ("on" if flags[field] else "off")
            actual = value if not isinstance(value, bool) else ("on" if value else "off")
            raise UsageError(f"{flag} {shown} contradicts {source}, which has {field.replace('_', ' ')} {actual}")
        flags[field] = value

    model_input = flags.get("model_input")
    onnx = bool(model_input and flags.get("weights")) and detect(readable_file("--weights", flags["weights"])).kind == "onnx"
    # The LSTM's weights come from the module that ran (a PyTorch model), not from a file.
    runs_module = feed is not None or (bool(model_input) and not onnx)
    if flags.get("weights") or runs_module:
        if flags.get("trust_checkpoint"):
            print(f"{PROG}: warning: --trust-checkpoint: unpickling {flags['weights']} can run any code it holds",
                  file=sys.stderr)
        if runs_module:
            if feed is None:
                from lstm_cli.insitu.feed import capture_from_flags

                feed = capture_from_flags(flags.get("weights"), flags.get("key"), model_input, flags.get("model"),
                                          flags.get("trust_checkpoint", False), onnx=False)
            group = module_group(feed)
            loaded_from = (f"--model {flags['model']}" if flags.get("model") else
                           f"--weights {flags['weights']}" if flags.get("weights") else feed.model_name)
        else:
            group = find_lstm(flags["weights"], flags.get("key"), flags.get("trust_checkpoint", False))
            loaded_from = f"--weights {flags['weights']}"
        flags["key"] = group.prefix
        for field, value in group.architecture().items():
            take(field, value, loaded_from)
        if "dtype" not in explicit and group.dtype in ("float32", "float64", "float16", "bfloat16"):
            flags["dtype"] = group.dtype
        source = describe_source(feed.model_name if runs_module else flags["weights"], group)
        recorded = group.found.batch_first if group.found else None
        # Input the tool builds itself (text, a capture) has the layout the tool gives it.
        built_here = runs_module or flags.get("text") is not None or flags.get("text_file") is not None
        if recorded is None and not built_here:
            if not flags.get("batch_first"):
                source["notes"].append(
                    "input layout assumed time-major (L, N, H_in): the file does not record it "
                    "(--batch-first for (N, L, H_in))"
                )
        elif recorded and not flags.get("batch_first"):
            flags["batch_first"] = True  # the reader's conversions say so
        elif recorded is False and "batch_first" in explicit:
            source["notes"].append("--batch-first given; the file records time-major input (L, N, H_in)")
        flags["recurrent_activation"] = source["recurrent_activation"]
        flags["peepholes"] = bool(source["peepholes"])
        flags["stack_widths"] = group.stack_widths
        flags["source"] = source
        if onnx and model_input:
            from lstm_cli.insitu.feed import capture_from_flags

            feed = capture_from_flags(flags["weights"], flags["key"], model_input, None, False, onnx=True)
        if feed is not None:
            _take_captured(flags, feed, take)
    elif flags.get("key") is not None:
        raise UsageError("--key picks an LSTM inside --weights; give --weights too")
    elif flags.get("trust_checkpoint"):
        raise UsageError("--trust-checkpoint applies to a --weights file; give --weights too")
    if flags.get("initial_state"):
        load_initial_state(flags["initial_state"], None)  # readable and well-formed before any work

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

    if flags.get("text") is not None or flags.get("text_file") is not None:
        from lstm_cli.text.input import resolve_text

        text = resolve_text(
            flags.get("text"), flags.get("text_file"), flags["weights"], flags.get("vocab"),
            flags.get("embedding"), flags["input_size"],
        )
        source = "--text" if flags.get("text") is not None else f"--text-file {flags['text_file']}"
        take("unbatched", False, f"{source} (one sequence of batch 1)")
        take("batch_size", 1, f"{source} (one sequence)")
        take("seq_len", len(text.ids), f"{source} (one step per character)")
        flags["embedding"] = text.embedding
    return flags


def _take_captured(flags: dict[str, Any], feed: Any, take: Callable[[str, Any, str], None]) -> None:
    """The shape of the captured run decides the run's shape; an explicit flag that contradicts
    it is an error, like one that contradicts a file."""
    captured = feed.captured
    words = f"--model-input {flags['model_input']} ({captured.where})" if flags.get("model_input") else captured.where
    take("unbatched", captured.unbatched, words)
    take("batch_first", captured.batch_first, words)
    x = captured.x
    if captured.unbatched:
        seq_len, features = x.shape
    else:
        first, second, features = x.shape
        seq_len, batch = (second, first) if captured.batch_first else (first, second)
        take("batch_size", batch, words)
    take("seq_len", seq_len, words)
    take("lengths", captured.lengths, words)
    take("input_size", features, words)
    if captured.h0 is not None and flags.get("initial_state"):
        raise UsageError(f"--initial-state {flags['initial_state']}: the captured run has its own initial state ({captured.where})")
    flags["captured"] = captured.where
    source = flags["source"]
    source["captured_initial_state"] = captured.h0 is not None
    # The reader's notes on run-time inputs describe a run from zeros at full length; this run
    # has the values the graph computed.
    source["notes"] = [note for note in source["notes"] if not note.startswith(RUN_TIME_ROLES)]
    source["notes"].extend(captured.notes)


def module_group(feed: Any) -> LSTMGroup:
    """The LSTM's weights as the module that ran holds them."""
    from lstm_cli.formats.torch_file import module_found

    found = module_found(feed.key, feed.module)
    group = infer_group(feed.key, found.state)
    group.found, group.format = found, "PyTorch module (captured while it ran)"
    return group


def lstm_group_of(spec: Any) -> LSTMGroup:
    """The LSTM a spec runs: the captured module's, or --weights'."""
    if spec.captured is not None:
        from lstm_cli.insitu.feed import feed_of

        feed = feed_of(spec)
        if feed.module is not None:
            return module_group(feed)
    return find_lstm(spec.weights, spec.key, spec.trust_checkpoint)


# -- reading an initial state -------------------------------------------------------------------


def load_initial_state(path: str, spec: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(h_0, c_0) from --initial-state: a .npz with arrays h0 and c0, or a .pt holding a pair
    (h0, c0) or a dict with h0 and c0; shapes checked against `spec` when given."""
    file = readable_file("--initial-state", path)
    h0, c0 = _load_initial_state(file, file_version(file))
    if spec is not None:
        D, H = spec.num_directions * spec.num_layers, spec.hidden_size
        batch = () if spec.unbatched else (spec.batch_size,)
        for name, value, width in (("h0", h0, spec.h_out), ("c0", c0, H)):
            want = (D, *batch, width)
            if tuple(value.shape) != want:
                raise UsageError(
                    f"--initial-state {path}: {name} is {shape_text(value.shape)} but this LSTM starts from "
                    f"{shape_text(want)} (D*num_layers, {'N, ' if batch else ''}{'H_out' if name == 'h0' else 'H'})"
                )
    return h0, c0


@functools.lru_cache(maxsize=2)
def _load_initial_state(file: Path, version: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    path = str(file)
    detected = detect(file)
    wanted = "--initial-state takes a .npz with arrays h0 and c0 (np.savez(path, h0=h0, c0=c0)) or a .pt holding (h0, c0)"
    if detected.kind == "npz":
        try:
            with np.load(file, allow_pickle=False) as archive:
                value: Any = {name: torch.from_numpy(np.array(archive[name])) for name in archive.files}
        except ValueError as exc:
            raise UsageError(f"--initial-state {path}: refusing to load it: {str(exc)[:160]}") from None
        except (OSError, EOFError, KeyError) as exc:
            raise UsageError(f"--initial-state {path}: not a readable .npz file: {str(exc)[:160]}") from None
    elif detected.kind == "torch":
        try:
            value = load_weights_only(file, advice="save the states with torch.save((h0, c0), path)")
        except FormatError as exc:
            raise UsageError(f"--initial-state {path}: {exc}") from None
    else:
        raise UsageError(f"--initial-state {path}: {detected.what.split(':')[0]}; {wanted}")
    if isinstance(value, dict):
        missing = [name for name in ("h0", "c0") if name not in value]
        if missing:
            held = ", ".join(map(str, value)) or "nothing"
            raise UsageError(f"--initial-state {path}: has no {missing[0]} (it holds {held}); {wanted}")
        pair = (value["h0"], value["c0"])
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        pair = tuple(value)
    else:
        raise UsageError(f"--initial-state {path}: holds {a_type(value)}; {wanted}")
    for name, t in zip(("h0", "c0"), pair):
        if not isinstance(t, torch.Tensor) or not t.dtype.is_floating_point:
            what = type(t).__name__ if not isinstance(t, torch.Tensor) else f"a {str(t.dtype).removeprefix('torch.')} tensor"
            raise UsageError(f"--initial-state {path}: {name} is {what}, not a floating-point tensor")
        if t.dim() not in (2, 3):
            raise UsageError(f"--initial-state {path}: {name} has shape {shape_text(t.shape)}; expected (D*num_layers, N, width), or (D*num_layers, width) unbatched")
        bad = ~torch.isfinite(t)
        if bad.any():
            raise UsageError(f"--initial-state {path}: {name} has {int(bad.sum())} NaN/Inf value(s)")
    return pair[0], pair[1]


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
