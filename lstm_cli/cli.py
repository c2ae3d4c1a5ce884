"""The command line: parse flags, build one validated spec, call one core function, render.

torch is never imported at module level here (nor by anything this module imports at module
level), so `lstm-cli --help` stays fast; each command imports its core lazily.
"""

import inspect as pyinspect
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from lstm_cli import __version__
from lstm_cli.errors import UsageError
from lstm_cli.spec import LSTMSpec, parse_lengths

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
PROG = "lstm-cli"
LSTM_PANEL = "LSTM configuration (shared by every command)"

app = typer.Typer(
    name=PROG,
    help="See inside a PyTorch LSTM: shapes, identities, LSTMCell loops, gates.\n\n"
    "Exit codes: 0 success, 1 a check failed, 2 bad usage or input, 130 interrupted.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _default(name: str) -> Any:
    return LSTMSpec.__dataclass_fields__[name].default


def _option(*decls: str, help: str) -> Any:
    return typer.Option(*decls, help=help, rich_help_panel=LSTM_PANEL)


# The shared LSTM flags: (parameter name, annotated type). Defaults come from LSTMSpec, the one
# place that also validates them.
SHARED_FLAGS: list[tuple[str, Any]] = [
    ("input_size", Annotated[int, _option("--input-size", help="Features per time step, H_in.")]),
    ("hidden_size", Annotated[int, _option("--hidden-size", help="Units per layer, H (cell width).")]),
    ("num_layers", Annotated[int, _option("--num-layers", help="Stacked layers.")]),
    ("seq_len", Annotated[int, _option("--seq-len", help="Time steps, L.")]),
    ("batch_size", Annotated[int, _option("--batch-size", help="Sequences per batch, N.")]),
    ("bidirectional", Annotated[bool, _option("--bidirectional", help="Add a backward direction (D=2).")]),
    ("batch_first", Annotated[bool, _option("--batch-first", help="Input/output as (N, L, ...); h_n/c_n stay (D*layers, N, ...).")]),
    ("proj_size", Annotated[int, _option("--proj-size", help="Project h to this width (0 = off; < hidden size).")]),
    ("dropout", Annotated[float, _option("--dropout", help="Dropout between layers, in [0, 1); active in train mode only.")]),
    ("bias", Annotated[bool, _option("--bias/--no-bias", help="Use b_ih and b_hh.")]),
    ("dtype", Annotated[str, _option("--dtype", help="float32, float64, float16 or bfloat16.")]),
    ("device", Annotated[str, _option("--device", help="auto, cpu, cuda, cuda:N or mps (auto = cuda if available).")]),
    ("seed", Annotated[int, _option("--seed", help="Seeds two separate generators: weights and input.")]),
    ("lengths", Annotated[str | None, _option("--lengths", help="Per-sequence lengths, e.g. 10,7,3: a packed, variable-length batch.")]),
    ("unbatched", Annotated[bool, _option("--unbatched", help="Input (L, H_in) with no batch dimension.")]),
]

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")]


def spec_from_flags(**flags: Any) -> LSTMSpec:
    flags["lengths"] = parse_lengths(flags.get("lengths"))
    return LSTMSpec(**flags)  # validates; raises UsageError with a one-line message


def lstm_command(command: Callable[..., int]) -> Callable[..., int]:
    """Give a command the shared LSTM flags: Typer sees them in the signature, the command
    receives one validated `spec` instead."""
    own = [p for p in pyinspect.signature(command).parameters.values() if p.name != "spec"]
    shared = [
        pyinspect.Parameter(name, pyinspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=_default(name))
        for name, annotation in SHARED_FLAGS
    ]

    def with_spec(**kwargs: Any) -> int:
        flags = {name: kwargs.pop(name) for name, _ in SHARED_FLAGS}
        return command(spec=spec_from_flags(**flags), **kwargs)

    with_spec.__signature__ = pyinspect.Signature(own + shared)  # type: ignore[attr-defined]
    with_spec.__name__ = command.__name__
    with_spec.__doc__ = command.__doc__
    return with_spec


def emit(result: Any, as_json: bool, render: Callable[[Any, Any], None]) -> int:
    """Print a result (JSON on stdout, or Rich), its notes on stderr; exit 1 if a check failed."""
    from lstm_cli.output import make_console, to_json

    try:
        if as_json:
            sys.stdout.write(to_json(result) + "\n")
            sys.stdout.flush()
        else:
            render(result, make_console())
    except BrokenPipeError:  # the reader went away (`| head -1`): stop quietly
        _silence_stdout()
        return EXIT_OK
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if not result.passed:
        failed = sum(not check.passed for check in result.checks)
        print(f"{PROG}: {failed} check(s) failed", file=sys.stderr)
        return EXIT_CHECK_FAILED
    return EXIT_OK


def _version(value: bool) -> None:
    if value:
        print(f"{PROG} {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    pass


@app.command(
    "inspect",
    epilog="Examples: lstm-cli inspect | lstm-cli inspect --bidirectional --lengths 10,7,3 "
    "| lstm-cli inspect --proj-size 8 --batch-first --json",
)
@lstm_command
def inspect_command(
    spec: LSTMSpec,
    explain: Annotated[bool, typer.Option("--explain", help="Write out the LSTM equations with these shapes.")] = False,
    json_output: JsonFlag = False,
) -> int:
    """Shapes, parameters and the output/h_n identities of an nn.LSTM, each verified.

    Builds nn.LSTM from the flags, runs seeded random input through it and shows input,
    output, h_n and c_n with what each dimension means, every parameter split into its
    i, f, g, o gate blocks, the total against the closed-form count, and the identities
    that connect output and h_n (batch_first, bidirectional, proj_size and packed forms).
    """
    from lstm_cli.inspect import run_inspect
    from lstm_cli.render.inspect import render_inspect

    return emit(run_inspect(spec, explain=explain), json_output, render_inspect)


GATES_PANEL = "gates"


def _gates_option(*decls: str, help: str, **kwargs: Any) -> Any:
    return typer.Option(*decls, help=help, rich_help_panel=GATES_PANEL, **kwargs)


@app.command(
    "gates",
    epilog="Examples: lstm-cli gates | lstm-cli gates --heatmap 0:f | "
    "lstm-cli gates --bidirectional --lengths 10,7,3 --json | "
    "lstm-cli gates --export gates.npz --plot gates.png",
)
@lstm_command
def gates_command(
    spec: LSTMSpec,
    heatmap: Annotated[str | None, _gates_option("--heatmap", metavar="LAYER:GATE[:DIR]", help="Draw one gate (i, f, g, o, or c for the cell state) as units x time, e.g. 0:f or 1:g:backward.")] = None,
    sequence: Annotated[int, _gates_option("--sequence", help="Which sequence of the batch --heatmap and --plot draw.")] = 0,
    per_step: Annotated[bool, _gates_option("--per-step", help="Also print every gate's mean at every step.")] = False,
    sat_low: Annotated[float, _gates_option("--sat-low", help="i, f, o count as left-saturated below this.")] = 0.1,
    sat_high: Annotated[float, _gates_option("--sat-high", help="i, f, o count as right-saturated above this.")] = 0.9,
    tanh_sat_low: Annotated[float, _gates_option("--tanh-sat-low", help="g counts as left-saturated below this.")] = -0.9,
    tanh_sat_high: Annotated[float, _gates_option("--tanh-sat-high", help="g counts as right-saturated above this.")] = 0.9,
    method: Annotated[str, _gates_option("--method", help="How gates are captured: auto, loop or recompute (auto picks by device and size).")] = "auto",
    export: Annotated[str | None, _gates_option("--export", metavar="FILE.npz|FILE.pt", help="Write every captured tensor (names and shapes in the README).")] = None,
    plot: Annotated[str | None, _gates_option("--plot", metavar="FILE.png", help="Write heatmaps per layer and gate (needs the plot extra: pip install 'lstm-cli\\[plot]').")] = None,
    json_output: JsonFlag = False,
) -> int:
    """Every gate at every step: i, f, g, o and c captured, verified, summarised and drawn.

    Captures the input, forget and output gates, the cell candidate g and
    the cell state c of every layer, direction and step (with --lengths,
    valid steps only) and checks that the h_t rebuilt from them equals
    nn.LSTM's own output, h_n and c_n. Shows per gate the mean, std, min,
    max and the fractions saturated left and right, with its mean at every
    step as a sparkline. Exits 1 if the rebuilt h does not match.
    """
    from lstm_cli.gates_options import make_options

    options = make_options(
        spec, heatmap=heatmap, sequence=sequence, sat_low=sat_low, sat_high=sat_high,
        tanh_sat_low=tanh_sat_low, tanh_sat_high=tanh_sat_high, method=method, export=export, plot=plot,
    )
    from lstm_cli.gates import run_gates
    from lstm_cli.render.gates import capture_progress, render_gates

    with capture_progress(spec) as progress:
        result = run_gates(spec, options, progress=progress)
    return emit(result, json_output, lambda r, console: render_gates(r, console, per_step=per_step))


def _fail(message: str) -> None:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)


def _silence_stdout() -> None:
    """After a closed pipe, point stdout at /dev/null so the interpreter's final flush is quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    """Entry point: turns every way a run can end into one of the documented exit codes."""
    try:
        code = app(args=argv, prog_name=PROG, standalone_mode=False)
    except UsageError as exc:
        _fail(str(exc))
        return EXIT_USAGE
    except (KeyboardInterrupt, typer.Abort):
        code = EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - the last line of defence, by design
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            # Click's parse errors (Typer may vendor Click, so matched by shape, not class).
            _fail(exc.format_message())
            return exc.exit_code
        if os.environ.get("LSTM_CLI_DEBUG"):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (run with LSTM_CLI_DEBUG=1 for the traceback)")
        return EXIT_CHECK_FAILED
    if code == EXIT_INTERRUPTED:  # Typer turns Ctrl-C into exit code 130 itself
        print(f"{PROG}: interrupted", file=sys.stderr)
    return code if isinstance(code, int) else EXIT_OK
