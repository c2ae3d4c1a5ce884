"""The flags of `lstm-cli gates` that the shared spec does not cover, validated before anything
is built. No torch here: bad flags fail in a fraction of a second with one line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lstm_cli.errors import UsageError
from lstm_cli.paths import writable_file
from lstm_cli.spec import GATES, LSTMSpec
from lstm_cli.verify.rule import check_tolerances

METHODS = ("auto", "loop", "recompute")
EXPORT_SUFFIXES = (".npz", ".pt")


@dataclass(frozen=True)
class Thresholds:
    """Saturation thresholds: a sigmoid gate (i, f, o) is left-saturated below `low` and
    right-saturated above `high`; the tanh candidate g uses `tanh_low` and `tanh_high`.
    Defaults follow Karpathy, Johnson and Fei-Fei (2015)."""

    low: float = 0.1
    high: float = 0.9
    tanh_low: float = -0.9
    tanh_high: float = 0.9

    def __post_init__(self) -> None:
        for (low_flag, low), (high_flag, high), lo, hi in (
            (("--sat-low", self.low), ("--sat-high", self.high), 0.0, 1.0),
            (("--tanh-sat-low", self.tanh_low), ("--tanh-sat-high", self.tanh_high), -1.0, 1.0),
        ):
            for flag, value in ((low_flag, low), (high_flag, high)):
                if not (lo <= value <= hi):  # also rejects NaN
                    raise UsageError(f"{flag} must be in [{lo:g}, {hi:g}] (got {value})")
            if not low < high:
                raise UsageError(f"{low_flag} must be below {high_flag} (got {low} >= {high})")

    def for_gate(self, gate: str) -> tuple[float, float]:
        return (self.tanh_low, self.tanh_high) if gate == "g" else (self.low, self.high)


@dataclass(frozen=True)
class HeatmapSpec:
    """One layer x direction x gate to draw as units x time. Gate `c` is the cell state."""

    layer: int
    gate: str
    direction: str = "forward"

    @property
    def label(self) -> str:
        return f"layer {self.layer} {self.direction} {self.gate}"


HEATMAP_GATES = (*GATES, "c")


def parse_heatmap(text: str | None, spec: LSTMSpec) -> HeatmapSpec | None:
    """'0:f' or '1:g:backward' (direction may be written fwd/bwd) -> HeatmapSpec."""
    if text is None:
        return None
    usage = (
        f"--heatmap takes LAYER:GATE[:DIRECTION] like 0:f or 1:g:backward, with GATE one of "
        f"{', '.join(HEATMAP_GATES)} (got {text!r})"
    )
    parts = text.strip().split(":")
    if len(parts) not in (2, 3) or not parts[0].strip().isdigit():
        raise UsageError(usage)
    layer, gate = int(parts[0]), parts[1].strip().lower()
    if gate not in HEATMAP_GATES:
        raise UsageError(usage)
    if layer >= spec.num_layers:
        raise UsageError(f"--heatmap layer {layer} does not exist: --num-layers is {spec.num_layers}")
    direction = "forward"
    if len(parts) == 3:
        direction = {"forward": "forward", "fwd": "forward", "backward": "backward", "bwd": "backward"}.get(
            parts[2].strip().lower(), ""
        )
        if not direction:
            raise UsageError(usage)
        if direction == "backward" and not spec.bidirectional:
            raise UsageError("--heatmap direction backward needs --bidirectional")
    return HeatmapSpec(layer, gate, direction)


def check_sequence(sequence: int, spec: LSTMSpec) -> int:
    batch = 1 if spec.unbatched else spec.batch_size
    if not 0 <= sequence < batch:
        raise UsageError(f"--sequence must be between 0 and {batch - 1} (got {sequence})")
    return sequence


def check_method(method: str) -> str:
    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)} (got {method!r})")
    return method


def check_export(text: str | None) -> Path | None:
    return None if text is None else writable_file("--export", text, EXPORT_SUFFIXES)


def check_plot(text: str | None) -> Path | None:
    """--plot: a writable .png, .svg or .pdf path, and matplotlib importable."""
    from lstm_cli.plot import plot_target

    return plot_target(text)


def check_plot_choices(spec: LSTMSpec, plot: Path | None, plot_range: str | None,
                       layers: str | None) -> tuple[str, tuple[int, ...] | None]:
    """--plot-range and --layers: validated, and only with --plot (they change nothing else)."""
    from lstm_cli.plot import check_panel_rows, check_plot_range, parse_plot_layers

    for flag, value in (("--plot-range", plot_range), ("--layers", layers)):
        if value is not None and plot is None:
            raise UsageError(f"{flag} chooses what --plot draws: add --plot FILE.png (or .svg, .pdf)")
    color_range = "fixed" if plot_range is None else check_plot_range(plot_range)
    chosen = None if layers is None else parse_plot_layers(layers, spec.num_layers)
    if plot is not None:
        check_panel_rows(spec, chosen)
    return color_range, chosen


def units_plot_path(plot: Path) -> Path:
    """Where --plot with --units writes the per-unit saturation scatter: next to --plot's file,
    `_units` added to its name (gates.png -> gates_units.png)."""
    return plot.with_name(f"{plot.stem}_units{plot.suffix}")


def check_units_plot(plot: Path) -> Path:
    """The scatter's file must be writable too (an existing file there is replaced)."""
    return writable_file("--plot (with --units)", str(units_plot_path(plot)), (plot.suffix.lower(),))


@dataclass(frozen=True)
class GatesOptions:
    """Everything `gates` takes beyond the shared LSTM flags, validated."""

    thresholds: Thresholds = Thresholds()
    method: str = "auto"
    heatmap: HeatmapSpec | None = None
    sequence: int = 0
    export: Path | None = None
    plot: Path | None = None
    plot_range: str = "fixed"  # --plot-range: fixed (each gate's own range) or panel (min..max)
    plot_layers: tuple[int, ...] | None = None  # --layers: the layers --plot draws (None: all)
    units: bool = False  # --units: per-unit saturation fractions (and, with --plot, their scatter)
    gemm: str = "auto"  # loop method: the step GEMM's backend, "auto" measures (gates/step_gemm.py)
    atol: float | None = None  # --atol/--rtol: replace the derived bound (verify/rule.py)
    rtol: float | None = None


def make_options(
    spec: LSTMSpec,
    *,
    heatmap: str | None = None,
    sequence: int = 0,
    sat_low: float = 0.1,
    sat_high: float = 0.9,
    tanh_sat_low: float = -0.9,
    tanh_sat_high: float = 0.9,
    method: str = "auto",
    export: str | None = None,
    plot: str | None = None,
    plot_range: str | None = None,
    layers: str | None = None,
    units: bool = False,
    atol: float | None = None,
    rtol: float | None = None,
) -> GatesOptions:
    """Validate the command line's own flags; each bad value is one UsageError line."""
    check_tolerances(atol, rtol)
    if method == "recompute" and spec.own_loop_only:
        raise UsageError(
            f"--method recompute rebuilds the gates from nn.LSTM's output, and nn.LSTM cannot run this "
            f"model's {spec.own_loop_only}: drop --method (auto runs the model's own loop)"
        )
    plot_path = check_plot(plot)
    plot_range_chosen, plot_layers = check_plot_choices(spec, plot_path, plot_range, layers)
    if units and plot_path is not None:
        check_units_plot(plot_path)
    return GatesOptions(
        thresholds=Thresholds(sat_low, sat_high, tanh_sat_low, tanh_sat_high),
        method=check_method(method),
        heatmap=parse_heatmap(heatmap, spec),
        sequence=check_sequence(sequence, spec),
        export=check_export(export),
        plot=plot_path,
        plot_range=plot_range_chosen,
        plot_layers=plot_layers,
        units=bool(units),
        atol=atol,
        rtol=rtol,
    )
