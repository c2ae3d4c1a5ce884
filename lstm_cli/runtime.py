"""Where and in what precision a run happens: device and dtype resolution, the memory guard,
and torch's warnings turned into plain sentences. Every check here runs before allocation."""

from __future__ import annotations

import contextlib
import gc
import os
import warnings
from collections.abc import Iterator

import torch

from lstm_cli.errors import UsageError
from lstm_cli.guard import plain_warning
from lstm_cli.spec import LSTMSpec, format_bytes

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
    """Memory a run may use on this device, or None when it can't be known."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def ensure_fits(spec: LSTMSpec, device: torch.device, extra_elements: int = 0) -> int:
    """Refuse, before allocating anything, a run whose estimate exceeds the device's memory."""
    estimate = spec.memory_estimate_bytes(extra_elements)
    limit = available_bytes(device)
    if limit is not None and estimate > limit:
        raise UsageError(
            f"this configuration needs about {format_bytes(estimate)} but {device} has "
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
