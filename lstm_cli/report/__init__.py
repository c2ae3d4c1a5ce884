"""`lstm-cli report --html FILE`: LSTMVis in one file.

One self-contained HTML page (inline CSS, JS and data; no request of any kind) with the
configuration and provenance header, the verification of a `gates --units` run (its checks and
verdict), per layer x direction the gate and cell-state heatmaps (units x time, hover values),
the per-unit saturation scatter per gate (Karpathy et al. 2015, Fig. 3), the text (or the steps)
coloured by any unit, and LSTMVis' select-and-match run in the browser.

Python computes and writes (data.py: the numbers; page.py: the file); the page's behaviour is
assets/report.js, kept as real files next to assets/report.css and assets/template.html.

Select-and-match, as the page implements it (and `lstm-cli units --select/--match` does):
units are every (layer, direction, unit), layer-major, forward before backward; each value v of
tanh(c) (--state c) or h (--state h) becomes q = ceil(100 v) - 1 (float64), clipped to [-101, 99];
a threshold t gives k = round(100 t); a unit is ON at a step iff q >= k. Selecting [a, b): the
units ON at every step of it and OFF at every step of the `margin` steps on each side (clipped
to the sequence). Matching: need = ceil(|S| / 2); runs are maximal intervals where at least
`need` selected units are ON, at least `min_length` long; R = every unit ON throughout a run;
ranked by |S & R| desc, |R - S| asc, length desc, start asc; score |S & R| / |S | R|.
Sign (--sign, and the page's control): "positive" is the above; "both" (needs t >= 0) adds each
unit's negative side, ON at a step iff q <= -k - 1: the units are every unit's positive side in
the order above (indices 0..U-1), then every unit's negative side in the same order (U..2U-1),
and selection and matching treat the two sides as separate units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from typing import TYPE_CHECKING

from lstm_cli.errors import UsageError
from lstm_cli.report.options import (
    DEFAULT_MARGIN,
    DEFAULT_MIN_LENGTH,
    DEFAULT_SIGN,
    DEFAULT_THRESHOLD,
    DEFAULT_TOP,
    STATE_LABELS,
    ReportOptions,
    check_html_path,
    check_options,
)

from lstm_cli.checks import Check

if TYPE_CHECKING:
    from lstm_cli.spec import LSTMSpec

__all__ = ["ReportResult", "ReportOptions", "check_html_path", "check_options", "run_report"]


@dataclass
class ReportResult:
    command: str
    config: dict
    passed: bool  # the gates run's step-local checks and the unit values' checks (text.unit_states)
    checks: list[Check]
    notes: list[str]
    html: str  # the file written
    bytes: int  # its size
    device: str  # where the gates run ran (unit states: float64 on the CPU)
    dtype: str
    state: str  # "c" (tanh(c)) or "h": what select-and-match reads
    threshold: float  # the page's starting threshold, margin, minimum run length and matches shown
    margin: int
    min_length: int
    top: int
    sign: str  # the page's starting sign: "positive", or "both" (each unit's negative side is a unit too)
    text: bool  # the input was text (--text/--text-file): characters, else steps
    steps: int  # steps of sequence 0
    shown_steps: int  # steps the text view and select-and-match cover (the first ones)
    units: int  # units of the select-and-match: every layer x direction
    heatmap_columns: int
    steps_per_column: int  # > 1: the heatmaps' time axis is binned (each column a mean)
    heatmap_rows: int
    units_per_row: int
    caps: dict = field(default_factory=dict)  # the limits that applied


def run_report(
    spec: LSTMSpec,
    html_path: str | Path,
    *,
    state: str = "c",
    threshold: float = DEFAULT_THRESHOLD,
    margin: int = DEFAULT_MARGIN,
    min_length: int = DEFAULT_MIN_LENGTH,
    top: int = DEFAULT_TOP,
    sign: str = DEFAULT_SIGN,
    gates_options=None,
    progress=None,
) -> ReportResult:
    """Run the gates verification (with --units) and the float64 unit states of sequence 0, and
    write the page to `html_path` (checked first: .html/.htm in a writable folder). The flags are
    checked before any work; a bad one is a one-line UsageError. `gates_options`: a
    GatesOptions to run gates with (its `units` is turned on); `progress` as run_gates takes."""
    import dataclasses

    path = check_html_path(html_path)
    options = check_options(state, threshold, margin, min_length, top, sign)
    if options.state == "h" and spec.proj_size:  # as `units --select` refuses it
        raise UsageError(f"--state h: this model projects h to {spec.proj_size} values (--proj-size), which are not "
                         "units of the cell; use --state c")
    from lstm_cli.spec import check_runs_as_loaded

    check_runs_as_loaded(spec, "report", activations=True)
    text = None
    if spec.text is not None or spec.text_file is not None:
        from lstm_cli.text.input import read_text

        text, _ = read_text(spec.text, spec.text_file)

    from lstm_cli.gates.run import run_gates
    from lstm_cli.gates_options import GatesOptions
    from lstm_cli.report import data as pagedata
    from lstm_cli.report.page import build_html, write_atomically
    from lstm_cli.text.unit_states import unit_states

    gates_options = dataclasses.replace(gates_options or GatesOptions(), units=True)
    gates = run_gates(spec, gates_options, progress=progress)
    if progress is not None:
        progress(0, "unit states (float64, sequence 0)")
    states = unit_states(spec, sequence=0)
    if text is not None and len(text) != states.steps:  # cannot happen for text input
        raise ValueError(f"{states.steps} steps for a text of {len(text)} characters")

    config = spec.config()
    _threads_into(config)
    values = states.values
    layer_units = [values[key][options.state].shape[1] for key in pagedata.unit_order(values)]
    widest = max(values[key]["c"].shape[1] for key in values)
    caps = pagedata.plan_caps(states.steps, layer_units, widest, len(values) * len(pagedata.HEATMAP_QUANTITIES))
    state_block, layers = pagedata.state_data(values, options.state, caps.shown_steps)
    notes = list(gates.notes) + caps.notes
    nan_units = [k for k, v in enumerate(state_block["stats"]["mean"]) if v is None]
    if nan_units:
        notes.append(f"{len(nan_units)} unit(s) have NaN or infinite values: those steps count as OFF")
    data = {
        "format": 1,
        "command": "report",
        "title": _title(spec),
        "header": _header(config, gates, spec),
        "verification": _verification(gates, states.checks),
        "notes": notes,
        "input": {
            "kind": "text" if text is not None else "steps",
            "text": None if text is None else text[: caps.shown_steps],
            "steps": states.steps, "shown": caps.shown_steps, "sequence": 0,
            "batch": 1 if spec.unbatched else spec.batch_size,
        },
        "state": {
            "name": options.state, "label": STATE_LABELS[options.state], "threshold": options.threshold,
            "margin": options.margin, "min_length": options.min_length, "top": options.top,
            "sign": options.sign,
        },
        "layers": layers,
        "units": caps.units,
        **state_block,
        "heatmap": pagedata.heatmap_data(values, caps),
        "saturation": pagedata.saturation_data(gates.layers, gates.thresholds),
        "caps": _caps_dict(caps),
    }
    written = write_atomically(path, build_html(data, data["title"]))
    return ReportResult(
        command="report",
        config=config,
        # the capture's step checks, and the unit values the page shows against PyTorch's cell
        passed=gates.passed and all(check.passed for check in states.checks),
        checks=gates.checks + states.checks,
        notes=notes + states.notes,
        html=str(path),
        bytes=written,
        device=gates.device,
        dtype=gates.dtype,
        state=options.state,
        threshold=options.threshold,
        margin=options.margin,
        min_length=options.min_length,
        top=options.top,
        sign=options.sign,
        text=text is not None,
        steps=states.steps,
        shown_steps=caps.shown_steps,
        units=caps.units,
        heatmap_columns=caps.columns,
        steps_per_column=caps.steps_per_column,
        heatmap_rows=caps.rows,
        units_per_row=caps.units_per_row,
        caps=_caps_dict(caps),
    )


def _caps_dict(caps) -> dict:
    from lstm_cli.report import data as pagedata

    return {
        "max_steps": pagedata.MAX_STEPS, "max_state_cells": pagedata.MAX_STATE_CELLS,
        "max_columns": pagedata.MAX_COLUMNS, "max_rows": pagedata.MAX_ROWS,
        "max_heatmap_cells": pagedata.MAX_HEATMAP_CELLS,
        "steps_cut": caps.shown_steps < caps.steps, "time_binned": caps.steps_per_column > 1,
        "units_binned": caps.units_per_row > 1,
    }


def _threads_into(config: dict) -> None:
    """The thread count the command runs with, as cli.emit records it (the header shows it)."""
    from lstm_cli.threads import active_threads

    threads = active_threads()
    if threads is not None:
        config["threads"] = threads.count
        config["threads_chosen_by"] = threads.chosen_by


def _title(spec: LSTMSpec) -> str:
    what = Path(spec.weights).name if spec.weights else "random weights"
    return f"lstm-cli report: {what}"


def _header(config: dict, gates, spec: LSTMSpec) -> list[str]:
    from lstm_cli.render.common import config_line

    lines = config_line(config, gates.device, gates.dtype).split("\n")
    lines.append(
        "unit states, text colours, heatmaps and select-and-match: sequence 0, every unit's c, h and gates "
        "computed in float64 on the CPU from the model's own weights"
    )
    return lines


def _verification(gates, extra: list) -> dict:
    """The gates run's checks and `extra` (the unit values against PyTorch's cell)."""
    from lstm_cli.render.common import failure_lines, format_diff, format_used, shadow_lines

    checks = gates.checks + extra
    return {
        "passed": all(c.passed for c in checks),
        "method": gates.method,
        "sentences": [
            f"gates --units ({gates.method} capture, {gates.dtype} on {gates.device}): each step recomputed in float64 "
            f"({gates.checked}); bound: {gates.rule['description']}.",
            *failure_lines(gates.checks),
            *shadow_lines(gates.shadow, gates.shadow_note),
            *(["The unit values shown here (float64) match PyTorch's nn.LSTMCell from the same state at every step."]
              if extra and all(c.passed for c in extra) else []),
        ],
        "checks": [
            {"name": c.name, "passed": bool(c.passed), "max_abs_diff": format_diff(c.max_abs_diff),
             "bound": format_diff(c.tolerance), "used": format_used(c.worst_ratio)}
            for c in checks
        ],
    }
