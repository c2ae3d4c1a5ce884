"""The captured run a command works on: the user's whole model run once on the user's data
(--model-input, or lstm_cli.watch), what reached the chosen LSTM kept here under the words that
say where it came from (LSTMSpec.captured), so the spec stays plain values and every command
reads the same tensors.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lstm_cli.errors import UsageError
from lstm_cli.insitu.captured import Captured
from lstm_cli.paths import file_version, readable_file
from lstm_cli.formats.text import a_type


@dataclass
class Feed:
    """A captured run, and the LSTM's weights when they come from the module that ran (a
    PyTorch model: the module itself); None: from --weights (an ONNX graph's node)."""

    captured: Captured
    module: nn.LSTM | nn.LSTMCell | None = None
    key: str | None = None  # the module's name in the model
    model_name: str = ""  # what the model is, in words, for the weights line


_FEEDS: dict[str, Feed] = {}


def register(feed: Feed) -> str:
    """Keep `feed` under its own words (the latest capture of the same words replaces it)."""
    _FEEDS[feed.captured.where] = feed
    return feed.captured.where


def feed_of(spec) -> Feed:
    try:
        return _FEEDS[spec.captured]
    except KeyError:
        raise UsageError(f"no captured run called {spec.captured!r} in this process: capture it first") from None


def capture_from_flags(weights: str | None, key: str | None, model_input: str, model: str | None,
                       trust: bool, onnx: bool) -> Feed:
    """Run the user's model on --model-input once per process (the same files give the same
    capture) and register what reached the LSTM."""
    versions = tuple(file_version(p) for p in (weights, model_input) if p is not None and Path(p).exists())
    feed = _capture(weights, key, model_input, model, trust, onnx, versions)
    register(feed)
    return feed


@functools.lru_cache(maxsize=2)
def _capture(weights: str | None, key: str | None, model_input: str, model: str | None, trust: bool,
             onnx: bool, versions: tuple) -> Feed:
    del versions  # only part of the cache key: a changed file is captured again
    if onnx:
        from lstm_cli.insitu.onnx_graph import capture_onnx

        return Feed(capture_onnx(weights, key, model_input))
    from lstm_cli.insitu import torch_module

    if model is not None:
        module = torch_module.load_factory_module(model)
        if weights is not None:
            torch_module.load_state_into(module, weights)
        described = f"{type(module).__name__} from {model}" + (f" with state_dict {weights}" if weights else "")
    else:
        module = _trusted_module(weights, trust)
        described = f"{type(module).__name__} from {weights}"
    args, kwargs = torch_module.load_model_input(model_input)
    captured, lstm = torch_module.capture_module(module, args, kwargs, key, Path(model_input).name)
    name = next(n for n, m in module.named_modules() if m is lstm)
    return Feed(captured, lstm, name, described)


def _trusted_module(weights: str, trust: bool) -> nn.Module:
    """A whole pickled module, loaded only with --trust-checkpoint (unpickling runs its code)."""
    from lstm_cli.formats.detect import detect

    if detect(readable_file("--weights", weights)).kind == "torchscript":
        raise UsageError(
            f"--model-input with --weights {weights}: a TorchScript archive runs its LSTMs as compiled code that "
            "forward hooks cannot see; give the eager model (--model package.module:factory with its state_dict), "
            "export it to ONNX, or pass the LSTM's own input with --input"
        )
    if not trust:
        raise UsageError(
            f"--model-input with --weights {weights}: running a PyTorch model needs the model's code: "
            "--model package.module:factory (with --weights as its state_dict), or --trust-checkpoint "
            "for a pickled whole module"
        )
    file = readable_file("--weights", weights)
    try:
        value = torch.load(file, map_location="cpu", weights_only=False)  # the user trusts it
    except Exception as exc:  # arbitrary unpickling can raise anything
        hint = ("; the classes it pickles must be importable here (run from the directory that holds their "
                "code, or add it to PYTHONPATH)") if isinstance(exc, ImportError) else ""
        first = str(exc).splitlines()[0][:160] if str(exc) else ""
        raise UsageError(f"--weights {weights}: could not be unpickled: {type(exc).__name__}: {first}{hint}") from None
    if not isinstance(value, nn.Module):
        raise UsageError(
            f"--weights {weights}: holds {a_type(value)}, not a whole nn.Module; --model-input runs "
            "a module: give --model package.module:factory with this file as its state_dict"
        )
    return value
