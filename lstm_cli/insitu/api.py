"""`lstm_cli.watch`: the LSTMs inside a PyTorch model, captured while the user's own code runs
the model, and lstm-cli's commands on exactly what they received.

    import lstm_cli
    with lstm_cli.watch(model) as w:      # hooks every nn.LSTM and nn.LSTMCell; changes no output
        model(batch)
    w.names                                # ["encoder.rnn", ...] in call order
    r = w.gates("encoder.rnn")             # the result `lstm-cli gates --json` prints
    r.to_dict(); r.plot("gates.png"); print(r)

Each command runs as the command line runs it (the same spec, the same thread choice, the same
checks), with the module's own weights and the captured input, lengths and initial state.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable
from typing import Any

from torch import nn

from lstm_cli.insitu.captured import Captured
from lstm_cli.insitu.feed import Feed, register
from lstm_cli.insitu.torch_hooks import Watch
from lstm_cli.spec import LSTMSpec

# Width of the text a result prints as (str(result)); a notebook shows HTML of the same tables.
TEXT_WIDTH = 100


class Result:
    """One command's result. `to_dict()` is the document `--json` prints; str() (print) and a
    notebook cell show the command's tables; attributes (`passed`, `checks`, `layers`, ...) are
    the result's own fields."""

    def __init__(self, result: Any, render: Callable[[Any, Any], None], rerun: Callable[..., Any] | None = None):
        self._result = result
        self._render = render
        self._rerun = rerun  # the same command again, with more options (plot)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._result, name)

    def to_dict(self) -> dict:
        from lstm_cli.output import to_json

        return json.loads(to_json(self._result, lift=("config", "source")))

    def _console(self, **kwargs: Any):
        from rich.console import Console

        return Console(file=io.StringIO(), width=TEXT_WIDTH, highlight=False, **kwargs)

    def __str__(self) -> str:
        from lstm_cli.render.common import render_uniformly

        console = self._console(color_system=None)
        render_uniformly(self._result, console, self._render)
        return console.file.getvalue()

    def __repr__(self) -> str:
        verdict = {True: "passed", False: "FAILED", None: "nothing checked"}[self._result.passed]
        return f"<lstm-cli {self._result.command} result: {verdict}>"

    def _repr_html_(self) -> str:  # Jupyter
        from lstm_cli.render.common import render_uniformly

        console = self._console(record=True)
        render_uniformly(self._result, console, self._render)
        return console.export_html(inline_styles=True)

    def plot(self, path: str, **options: Any) -> str:
        """Draw the result as the command's --plot does (gates: heatmaps per layer and gate),
        into `path` (.png, .svg or .pdf); returns the path."""
        if self._rerun is None:
            raise TypeError(f"{self._result.command} results have no plot")
        self._rerun(plot=path, **options)
        return path


class Watched:
    """What `lstm_cli.watch(model)` returns: a context manager that hooks the model's LSTMs while
    the block runs (and removes every hook on exit, also on an exception), then the commands."""

    def __init__(self, model: nn.Module, max_sequences: int = 4096, max_steps: int = 100_000):
        self._model = model
        self._watch = Watch(model, max_sequences=max_sequences, max_steps=max_steps)

    def __enter__(self) -> Watched:
        self._watch.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._watch.__exit__(*exc_info)

    @property
    def names(self) -> list[str]:
        """The nn.LSTM and nn.LSTMCell modules called, in the order of their first call."""
        return list(self._watch.names)

    def captured(self, name: str | None = None) -> Captured:
        """What reached `name` (the only LSTM called when None), in nn.LSTM's layouts."""
        return self._watch.captured(self._watch.resolve(name))

    def spec(self, name: str | None = None, **flags: Any) -> LSTMSpec:
        """The spec a command runs: `name`'s architecture and weights, the captured input's
        shape, lengths and initial state; `flags` as the shared flags (dtype="float64",
        device="cpu", ...), an explicit one contradicting the capture is an error."""
        return self._spec_and_feed(name, flags)[0]

    def _spec_and_feed(self, name: str | None, flags: dict) -> tuple[LSTMSpec, Feed]:
        """The spec, and the capture it reads (registered again before each run: another
        watch of the same model registers its own capture under the same words)."""
        from lstm_cli.sources import resolve_flags

        key = self._watch.resolve(name)
        feed = Feed(self._watch.captured(key), self._watch.module(key), key,
                    f"{type(self._model).__name__} (lstm_cli.watch)")
        register(feed)
        values = {f.name: f.default for f in dataclasses.fields(LSTMSpec)}
        unknown = sorted(set(flags) - set(values))
        if unknown:
            raise TypeError(f"unknown flag(s) {', '.join(unknown)}; the shared flags are LSTMSpec's fields")
        values.update(flags)
        return LSTMSpec(**resolve_flags(values, set(flags), feed)), feed

    def gates(self, name: str | None = None, *, flags: dict | None = None, **options: Any) -> Result:
        """`lstm-cli gates` on what reached `name`; `options` as the command's (method="loop",
        units=True, sat_low=0.05, export="gates.npz", plot="gates.png", ...)."""
        from lstm_cli.gates import run_gates
        from lstm_cli.gates_options import make_options
        from lstm_cli.render.gates import render_gates
        from lstm_cli.spec import check_runs_as_loaded

        spec, feed = self._spec_and_feed(name, flags or {})
        check_runs_as_loaded(spec, "gates", activations=True)

        def run(**more: Any) -> Any:
            register(feed)
            return _in_thread_scope(spec, lambda: run_gates(spec, make_options(spec, **{**options, **more})))

        return Result(run(), render_gates, rerun=run)

    def inspect(self, name: str | None = None, *, flags: dict | None = None, **options: Any) -> Result:
        """`lstm-cli inspect` on what reached `name` (options: explain, atol, rtol)."""
        from lstm_cli.inspect import run_inspect
        from lstm_cli.render.inspect import render_inspect

        spec = self.spec(name, **(flags or {}))
        return Result(_in_thread_scope(spec, lambda: run_inspect(spec, **options)), render_inspect)

    def compare_cell(self, name: str | None = None, *, flags: dict | None = None, **options: Any) -> Result:
        """`lstm-cli compare-cell` on what reached `name` (options: per_step, repeat, atol, rtol)."""
        from lstm_cli.compare_cell import run_compare
        from lstm_cli.render.compare_cell import render_compare_cell
        from lstm_cli.spec import check_runs_as_loaded

        spec = self.spec(name, **(flags or {}))
        check_runs_as_loaded(spec, "compare-cell")
        return Result(_in_thread_scope(spec, lambda: run_compare(spec, **options)), render_compare_cell)


    def units(self, name: str | None = None, *, text: str, flags: dict | None = None, **options: Any) -> Result:
        """`lstm-cli units` on what reached `name`: which units track which features of `text`,
        the characters the model read (its first captured sequence is `text`, one step per
        character); options: top, min_r."""
        from lstm_cli.errors import UsageError
        from lstm_cli.render.feature_units import render_units
        from lstm_cli.text.units import run_units

        spec = self.spec(name, **(flags or {}))
        steps = spec.seq_len if spec.lengths is None else spec.lengths[0]
        if steps != len(text):
            raise UsageError(f"units: the first sequence {spec.captured} has {steps:,} steps and the text "
                             f"{len(text):,} characters: give the text the model read, one character a step")
        return Result(_in_thread_scope(spec, lambda: run_units(spec, text, **options)), render_units)


def _in_thread_scope(spec: LSTMSpec, run: Callable[[], Any]) -> Any:
    """Run as the command line does: threads.choose_threads' count for this model, restored
    after, and recorded in the result's config as `--json` records it."""
    from lstm_cli.threads import choose_threads, thread_scope

    with thread_scope(choose_threads(None, spec)) as threads:
        result = run()
    if isinstance(getattr(result, "config", None), dict):
        result.config["threads"] = threads.count
        result.config["threads_chosen_by"] = threads.chosen_by
    return result
