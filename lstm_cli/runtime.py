"""Where and in what precision a run happens: device and dtype resolution, the memory guard,
and torch's warnings turned into plain sentences. Every check here runs before allocation."""

from __future__ import annotations

import contextlib
import gc
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from lstm_cli.errors import UsageError
from lstm_cli.guard import plain_warning
from lstm_cli.spec import ITEMSIZE, LSTMSpec, format_bytes

# Importing torch leaves over a million live objects to the garbage collector, and its next full
# collection walks them all: 70-100 ms in the middle of every command's start (measured in
# `lstm-cli inspect`; gc.freeze() here cut its wall time from 1.56-1.73 s to 1.48-1.54 s). None of
# them is garbage, so they are moved out of the collector's reach once torch is in. Every command
# that runs torch imports this module first thing.
gc.freeze()

TORCH_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def resolve_device(name: str) -> torch.device:
    """auto -> cuda if present, else cpu. A device that this torch build can't use is a
    usage error that says why."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else "no usable GPU"
            raise UsageError(
                f"--device {name}: CUDA is not available (torch {torch.__version__}, {build})"
            )
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise UsageError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) visible"
            )
        return torch.device("cuda", index)
    if device.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise UsageError(f"--device {name}: MPS is not available on this machine")
    return device


def check_runnable(device: torch.device, dtype: torch.dtype) -> None:
    """Run a 1-unit LSTM step so an unsupported device/dtype pair fails here, clearly,
    rather than deep inside a command."""
    try:
        with quiet_torch_warnings():
            lstm = torch.nn.LSTM(1, 1).to(device=device, dtype=dtype)
            lstm(torch.zeros(1, 1, 1, device=device, dtype=dtype))
    except (RuntimeError, TypeError) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise UsageError(f"{dtype} LSTMs cannot run on {device} with this torch: {reason}") from None


def available_bytes(device: torch.device) -> int | None:
    """Memory a run may use on this device, or None when it can't be known: on the CPU the
    kernel's MemAvailable, or less where a cgroup (a container) limits this process further."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free
    host = None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    host = int(line.split()[1]) * 1024
    except OSError:
        pass
    if host is None:
        try:
            host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            pass
    room = cgroup_room()
    return host if room is None else room if host is None else min(host, room)


# cgroup v2, then v1: (limit, usage, memory.stat's reclaimable page cache entry)
_CGROUP_FILES = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory.stat", "inactive_file"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes",
     "/sys/fs/cgroup/memory/memory.stat", "total_inactive_file"),
)


def cgroup_room() -> int | None:
    """What this process's memory cgroup still allows (its limit less what it uses, page cache
    that can be dropped not counted as used, as `docker stats` counts it); None without a limit.
    The kernel's OOM killer acts at this limit even when the machine has memory free."""
    for limit_file, usage_file, stat_file, inactive in _CGROUP_FILES:
        try:
            with open(limit_file) as f:
                limit = f.read().strip()
            with open(usage_file) as f:
                usage = int(f.read())
            with open(stat_file) as f:
                stat = dict(line.split() for line in f if line.count(" ") == 1)
        except (OSError, ValueError):
            continue
        if limit == "max" or int(limit) >= 1 << 60:  # no limit (v1 writes a huge number)
            return None
        return max(int(limit) - usage + int(stat.get(inactive, 0)), 0)
    return None


@dataclass(frozen=True)
class Copy:
    """Bytes one thing a command allocates takes: held for the whole run (phase None), or only
    while one phase of the command runs (the phases follow one another)."""

    what: str
    bytes: int
    phase: str | None = None


COMMANDS = ("forward", "inspect", "compare-cell", "gates", "bench", "gradients", "units", "trace")
GRADIENT_CELLS = ("rnn", "gru", "lstm")
_GATE_BLOCKS = {"rnn": 1, "gru": 3, "lstm": 4}


def _layer_direction_elements(spec: LSTMSpec, layer: int) -> int:
    """Parameters of one direction of one layer: W_ih, W_hh, both biases and W_hr."""
    H = spec.hidden_size
    return 4 * H * (spec.layer_input_size(layer) + spec.h_out) + (8 * H if spec.bias else 0) + spec.proj_size * H


def _largest_layer_direction(spec: LSTMSpec) -> int:
    return max(_layer_direction_elements(spec, layer) for layer in range(min(spec.num_layers, 2)))


def _largest_parameter(spec: LSTMSpec) -> int:
    """The largest single weight tensor: W_ih of some layer, W_hh or W_hr."""
    H = spec.hidden_size
    widest_input = max(spec.layer_input_size(layer) for layer in range(min(spec.num_layers, 2)))
    return max(4 * H * widest_input, 4 * H * spec.h_out, spec.proj_size * H)


def _shadowed(spec: LSTMSpec) -> bool:
    """Whether verify.shadow.run_shadow makes its float64 copy: always, except for a
    bidirectional run too long to shadow within its budget (same arithmetic as run_shadow)."""
    from lstm_cli.verify.shadow import SEQUENCE_COST_ROWS, SHADOW_FREE_MACS, SHADOW_SEQUENCES, SHADOW_SHARE

    if not spec.bidirectional:
        return True
    batch = 1 if spec.unbatched else spec.batch_size
    biases = spec.num_layers * spec.num_directions * (8 * spec.hidden_size if spec.bias else 0)
    step_macs = spec.parameter_count() - biases  # verify.shadow.shadow_step_macs: the weights
    budget = max(SHADOW_FREE_MACS, batch * spec.seq_len * step_macs // SHADOW_SHARE)
    affordable = max(1, budget // max(step_macs * SEQUENCE_COST_ROWS * min(SHADOW_SEQUENCES, batch), 1))
    return affordable >= max(spec.lengths or (spec.seq_len,))


def memory_copies(spec: LSTMSpec, command: str, extra_elements: int = 0,
                  cells: tuple[str, ...] = GRADIENT_CELLS, widths: tuple[int, ...] | None = None) -> list[Copy]:
    """Everything `command` allocates for `spec` that grows with the model, one entry per copy
    of the weights, and why it exists. `extra_elements`: what the command counts itself (its
    own buffers: gates' capture buffers, compare-cell's loop outputs), in the run's dtype;
    `cells`: the models gradients builds; `widths`: compare-cell's --hidden-sizes stack.
    Measured against peak RSS by benchmarks/memory_peak.py (README: "The estimate ...")."""
    if command not in COMMANDS:
        raise ValueError(f"no memory estimate for command {command!r}")
    size = ITEMSIZE[spec.dtype]
    P = spec.parameter_count()
    one = _largest_layer_direction(spec)  # the largest layer x direction
    layer = spec.num_directions * one  # the largest layer, both directions
    # oneDNN (CPU, float32/16) reorders one layer x direction's weights into its own layout as
    # nn.LSTM runs it, and frees them after it; float64 and proj_size runs use PyTorch's own
    # kernel, which reads the weights as they are (measured: benchmarks/memory_peak.py).
    onednn = spec.dtype != "float64" and not spec.proj_size
    forward_copy = one * size if onednn else 0
    # the float32 copy of one tensor being cast (a float32 model's .to(float32) is no copy)
    cast = 0 if spec.dtype == "float32" else min(4, size) * _largest_parameter(spec)
    # verify.loop64 casts one layer x direction at a time to float64 (a float64 model: no copy)
    loop64 = (0 if spec.dtype == "float64" else 8) * one
    # Activations of one forward: the input (drawn in float32, then cast), every layer's output,
    # one layer's gates and the states (spec.memory_estimate_bytes less the weights).
    activations = spec.memory_estimate_bytes() - P * size
    # verify.step.Weights64, bytes a parameter: one layer x direction in float64 (a float64
    # model's own tensors), and |W| in float32 (cast first, unless the model is float32)
    check = (0 if spec.dtype == "float64" else 8) + 4 + (0 if spec.dtype == "float32" else 4)

    if command == "compare-cell" and widths is not None:  # --hidden-sizes: cells of their own widths
        inputs = [spec.input_size, *widths[:-1]]
        layers = [4 * h * (i + h) + (8 * h if spec.bias else 0) for i, h in zip(inputs, widths)]
        return [
            Copy("the input, and what the command keeps (its own count)",
                 spec.seq_len * max(spec.batch_size, 1) * spec.input_size * (4 + size) + extra_elements * size),
            Copy("the LSTMCell stack's weights", sum(layers) * size),
            # the reference: each cell as a one-layer nn.LSTM with the same weights
            Copy("one single-layer nn.LSTM per cell", sum(layers) * size),
            Copy("nn.LSTM's copy of one layer", max(layers) * size if onednn else 0, "forward"),
            Copy("step check: one layer in float64, |W| in float32", check * max(layers), "step check"),
        ]

    if command == "gradients":  # builds no model of the spec's own: one model per cell, in turn
        T, N, H = spec.seq_len, max(spec.batch_size, 1), spec.hidden_size
        copies = [Copy("input, its requires_grad copy and d loss / d x", T * N * spec.input_size * (4 + 3 * size))]
        previous = 0
        for cell in cells:
            weights = P * _GATE_BLOCKS[cell] // 4 * size
            copies += [
                # the previous cell's model is still referenced while this one is built
                Copy(f"{cell} weights, beside the previous model's", previous + weights, f"build {cell}"),
                # drawn in float32, then cast one tensor at a time
                Copy(f"{cell}: float32 weights before the cast", max(4 * P - size * P, 0) * _GATE_BLOCKS[cell] // 4
                     + cast * _GATE_BLOCKS[cell] // 4, f"build {cell}"),
                Copy(f"{cell} weights", weights, f"{cell} forward and backward"),
                # what autograd saves for the backward pass: gates and states of every step
                Copy(f"{cell}: activations saved for backward",
                     spec.num_layers * T * N * (_GATE_BLOCKS[cell] + 2) * H * size, f"{cell} forward and backward"),
            ]
            if cell == "lstm":
                # oneDNN's copy of the weights in its layout, and the weight gradients its backward
                # computes whether or not they are asked for; nn.RNN and nn.GRU (and float64 or
                # projected LSTMs) run PyTorch's own kernels, which compute only d loss / d x
                copies.append(Copy("lstm: oneDNN's weight copy and weight gradients",
                                   0 if spec.dtype == "float64" or spec.proj_size else 2 * weights,
                                   "lstm forward and backward"))
            previous = weights
        return copies

    copies = [
        Copy("the model's weights", P * size),
        Copy("one forward's input, outputs, gates and states", activations),
        Copy("what the command keeps besides (its own count)", extra_elements * size),
    ]
    if spec.weights is not None:
        # --weights: what was read from the file stays cached (formats.read_file) beside the model
        copies.append(Copy("the file's tensors, cached", P * size))
        # build_lstm calls sources.find_lstm again: its LSTM group is a new state dict, and its
        # finiteness check makes two bool masks of each tensor in turn (measured at hidden 8000)
        copies.append(Copy("find_lstm's state and finiteness masks", P * size + 2 * _largest_parameter(spec), "build"))
    elif spec.dtype != "float32":
        # random weights are drawn in float32, then cast one parameter at a time
        copies.append(Copy("float32 weights before the cast", max(4 * P - size * P, 0) + cast, "build"))

    if command == "forward":
        copies.append(Copy("nn.LSTM's copy of one layer x direction", forward_copy, "forward"))
    elif command == "inspect":
        copies.append(Copy("nn.LSTM's copy of one layer x direction", forward_copy, "forward"))
        if spec.own_loop_only:
            copies.append(Copy("float64 loop: one layer x direction in float64", loop64, "forward"))
        if spec.weights is not None and spec.weights.endswith(".onnx"):
            # verify.original: a float32 CPU copy of the module, float64 runs of layer 0, the
            # float64 step with float32 magnitudes (Weights64); onnxruntime holds the model too
            copies.append(Copy("onnxruntime's copy of the model", 4 * P))
            copies.append(Copy("check against onnxruntime: float32 copy, layer 0 in float64 twice",
                               4 * P + 8 * layer + 12 * one, "original"))
    elif command in ("compare-cell", "gates", "bench"):
        if command in ("compare-cell", "bench"):
            # one nn.LSTMCell per layer x direction, weights copied in; with proj_size W_hh is
            # padded to H columns (W_hr is shared, not copied)
            H = spec.hidden_size
            padded = spec.num_layers * spec.num_directions * (4 * H * (H - spec.h_out) - spec.proj_size * H)
            copies.append(Copy("the LSTMCell stack's weights", (P + padded) * size))
        copies.append(Copy("nn.LSTM's copy of one layer x direction", forward_copy, "forward"))
        if command in ("gates", "bench"):
            # gates.choice's probe: layer 0's forward direction as its own nn.LSTM, and that
            # module's forward copy (or the loop's packed W_hh)
            copies.append(Copy("method probe: layer 0 as its own nn.LSTM, and its forward copy",
                               one * size + forward_copy, "probe"))
            # recompute runs every layer as its own nn.LSTM (gates.reference.single_layer_lstm)
            copies.append(Copy("recompute: one layer as its own nn.LSTM, and its forward copy",
                               layer * size + forward_copy, "reference"))
            # the loop's step GEMM: W_hh packed by MKL (or reordered by oneDNN) per layer x direction
            copies.append(Copy("the loop's packed W_hh", 4 * spec.hidden_size * spec.h_out * size, "capture"))
        if command in ("compare-cell", "gates"):
            # verify.step.Weights64 of one layer x direction
            copies.append(Copy("step check: one layer x direction in float64, |W| in float32",
                               check * one, "step check"))
            if _shadowed(spec):
                # verify.shadow: copy.deepcopy of the model, cast to float64 one parameter at a time
                copies.append(Copy("float64 shadow of the whole model", 8 * P, "shadow"))
                copies.append(Copy("the shadow's deepcopy, before its cast",
                                   0 if spec.dtype == "float64" else size * _largest_parameter(spec), "shadow"))
    else:  # units, trace: unit_states runs the float64 loop (verify.loop64) on the CPU
        copies.append(Copy("float64 loop: one layer x direction in float64", loop64, "float64 loop"))
    return copies


def memory_estimate(spec: LSTMSpec, command: str, extra_elements: int = 0,
                    cells: tuple[str, ...] = GRADIENT_CELLS, widths: tuple[int, ...] | None = None) -> int:
    """Peak bytes of `command`: what is held throughout, plus the largest of its phases."""
    copies = memory_copies(spec, command, extra_elements, cells, widths)
    phases: dict[str, int] = {}
    for copy in copies:
        if copy.phase is not None:
            phases[copy.phase] = phases.get(copy.phase, 0) + copy.bytes
    return sum(copy.bytes for copy in copies if copy.phase is None) + max(phases.values(), default=0)


def ensure_fits(spec: LSTMSpec, device: torch.device, command: str, extra_elements: int = 0,
                cells: tuple[str, ...] = GRADIENT_CELLS, widths: tuple[int, ...] | None = None) -> int:
    """Refuse, before allocating anything, a run whose estimate exceeds the device's memory."""
    estimate = memory_estimate(spec, command, extra_elements, cells, widths)
    limit = available_bytes(device)
    if limit is not None and estimate > limit:
        raise UsageError(
            f"{command} with this configuration needs about {format_bytes(estimate)} but {device} has "
            f"{format_bytes(limit)} available; use smaller sizes"
        )
    return estimate


@contextlib.contextmanager
def collect_warnings(notes: list[str]) -> Iterator[None]:
    """Record warnings raised inside the block as plain sentences in `notes`, each once."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        sentence = plain_warning(str(warning.message))
        if sentence not in notes:
            notes.append(sentence)


@contextlib.contextmanager
def quiet_torch_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def tf32_mode(device: torch.device, allow: bool) -> Iterator[None]:
    """TF32 on or off for both cuDNN and plain matmuls while the block runs, then restored.

    cuDNN RNNs use TF32 by default on Ampere and newer while plain matmuls do not, so a cell
    loop and nn.LSTM only compare like with like when both settings agree."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = allow
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
