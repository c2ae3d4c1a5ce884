"""The command line: parse flags, build one validated spec, call one core function, render.

torch is never imported at module level here (nor by anything this module imports at module
level), so `lstm-cli --help` stays fast; each command imports its core lazily.
"""

import functools
import inspect as pyinspect
from contextlib import nullcontext
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from lstm_cli import __version__
from lstm_cli.errors import UsageError
from lstm_cli.guard import EXIT_CHECK_FAILED, EXIT_OK, PROG, run_guarded, silence_stdout
from lstm_cli.spec import LSTMSpec, parse_lengths
from lstm_cli.threads import (
    SMALL_STEP_MACS, ThreadChoice, active_threads, check_threads, choose_threads, thread_scope,
)
from lstm_cli.verify.rule import check_tolerances

LSTM_PANEL = "LSTM configuration (shared by every command)"
FILES_PANEL = "Real models and data (shared by every command)"

app = typer.Typer(
    name=PROG,
    help="See inside a PyTorch LSTM: shapes, identities, LSTMCell loops, gates.\n\n"
    "Exit codes: 0 success, 1 a check failed, 2 bad usage or input, 130 interrupted.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _default(name: str) -> Any:
    return LSTMSpec.__dataclass_fields__[name].default


def examples(*lines: str) -> str:
    """A command's help epilog: one example per line (Rich keeps a blank line between them)."""
    return "Examples:\n\n" + "\n\n".join(f"  {line}" for line in lines)


def _option(*decls: str, help: str, **kwargs: Any) -> Any:
    return typer.Option(*decls, help=help, rich_help_panel=LSTM_PANEL, **kwargs)


def _files(*decls: str, help: str) -> Any:
    return typer.Option(*decls, help=help, rich_help_panel=FILES_PANEL)


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
    ("dtype", Annotated[str, _option("--dtype", metavar="[float32|float64|float16|bfloat16]", help="Precision of weights, input and every computation.")]),
    ("device", Annotated[str, _option("--device", metavar="[auto|cpu|cuda|cuda:N|mps]", help="Where it runs (auto = cuda if available, else cpu).")]),
    ("seed", Annotated[int, _option("--seed", help="Seeds two separate generators: weights and input.")]),
    ("lengths", Annotated[str | None, _option("--lengths", help="Per-sequence lengths, e.g. 10,7,3: a packed, variable-length batch.")]),
    ("unbatched", Annotated[bool, _option("--unbatched", help="Input (L, H_in) with no batch dimension.")]),
    ("weights", Annotated[str | None, _files("--weights", help="Load the LSTM from a checkpoint: PyTorch state_dict (nn.LSTM or LSTMCells, nested or prefixed), TorchScript, safetensors, npz, ONNX or Keras .h5/.keras, told apart by content; its shapes set the architecture.")]),
    ("key", Annotated[str | None, _files("--key", help="Which LSTM to use when --weights holds several: a state_dict prefix (model.encoder.rnn), an ONNX node or a Keras layer name.")]),
    ("input", Annotated[str | None, _files("--input", help="Input tensor (.pt or .npy): (L, N, H_in), (N, L, H_in) with --batch-first, or (L, H_in); sets seq-len and batch size. - reads the file from standard input: cat x.npy | lstm-cli inspect --input -")]),
    ("initial_state", Annotated[str | None, _files("--initial-state", help="Start from this (h_0, c_0) instead of zeros: a .npz with arrays h0 (D*num_layers, N, H_out) and c0 (D*num_layers, N, H), or a .pt holding (h0, c0).")]),
    ("model_input", Annotated[str | None, _files("--model-input", help="Run the user's whole model on this data and analyse what reaches the LSTM (--key): for an ONNX --weights graph a .npz of its inputs by name (or a .npy for its one input); for a PyTorch module (--model, or a pickled module with --trust-checkpoint) a .pt holding a tensor, a tuple of arguments or a dict of keyword arguments. Sets the input, lengths and initial state.")]),
    ("model", Annotated[str | None, _files("--model", help="The user's PyTorch model as package.module:factory (imported from the current directory or the environment; factory() returns the nn.Module), with --weights as its state_dict; runs on --model-input.")]),
    ("save_weights", Annotated[str | None, _files("--save-weights", help="Write the weights that ran as a state_dict (.pt, .pth, .safetensors or .npz), to rerun with --weights.")]),
    ("trust_checkpoint", Annotated[bool, _files("--trust-checkpoint", help="Load a --weights file that pickles whole Python objects (a saved nn.Module). Unpickling can run any code in the file: only for files you trust.")]),
    ("text", Annotated[str | None, _files("--text", help="Run this text through a character model (--weights): one step per character, batch 1, each character its embedding row (or one-hot). - reads standard input: cat FILE | lstm-cli units --weights M --text -")]),
    ("text_file", Annotated[str | None, _files("--text-file", help="As --text, the text of a UTF-8 file; - reads standard input.")]),
    ("vocab", Annotated[str | None, _files("--vocab", help="The characters of the model's vocabulary, a JSON list in row order (default: the checkpoint's own \"vocab\" list).")]),
    ("embedding", Annotated[str | None, _files("--embedding", help="The embedding matrix (vocabulary x input size) in --weights; found by its shape when only one fits. None fits and input size = vocabulary size: one-hot.")]),
]

# --threads on every command that computes: one definition, validated by threads.check_threads.
SPEED_PANEL = "Speed (shared by every command)"
ThreadsFlag = Annotated[int | None, typer.Option(
    "--threads", metavar="N", rich_help_panel=SPEED_PANEL,
    help="torch's intra-op CPU threads while this command runs (1 to the CPUs this process may use), "
    "e.g. --threads 1; the previous count is restored after. Default: 1 when the model's largest step "
    f"GEMM is under {SMALL_STEP_MACS:,} multiply-adds (batch x 4 hidden x (input + hidden); the seed "
    "example's is 28,800), where more threads only wait for each other, else torch's own count "
    "(bench: always torch's own).",
)]

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")]

# One meaning on every command that checks (inspect, compare-cell, gates): see verify/rule.py.
CHECKS_PANEL = "Checks (same meaning on every command that checks)"
AtolFlag = Annotated[float | None, typer.Option(
    "--atol", rich_help_panel=CHECKS_PANEL,
    help="Pass an element when |value - reference| <= atol + rtol |reference| (numpy's allclose), "
    "instead of the bound derived from the dtype and the magnitudes (docs/checks.md).",
)]
RtolFlag = Annotated[float | None, typer.Option(
    "--rtol", rich_help_panel=CHECKS_PANEL, help="Relative part of that bound (with or without --atol; default 0).",
)]


def spec_from_flags(flags: dict[str, Any], explicit: set[str] = frozenset()) -> LSTMSpec:
    """One validated spec from the shared flags; with --weights or --input the files fill in
    what was not given explicitly (and contradict nothing that was)."""
    flags = dict(flags, lengths=parse_lengths(flags.get("lengths")))
    if flags.get("save_weights"):
        from lstm_cli.sources import check_save_path  # torch-side: only when a file is involved

        check_save_path(flags["save_weights"])
    from lstm_cli.spec import check_model_flags, check_text_flags

    check_text_flags(*(flags.get(name) for name in ("text", "text_file", "input", "weights", "vocab", "embedding")))
    check_model_flags(*(flags.get(name) for name in ("model", "model_input", "weights", "input", "text", "text_file")))
    from lstm_cli.paths import readable_file

    for name in ("weights", "input", "initial_state", "model_input"):  # a missing file is said before torch loads
        if flags.get(name) and not (name == "input" and flags[name] == "-"):  # -: standard input
            readable_file("--" + name.replace("_", "-"), flags[name])
    for name in ("text", "text_file"):  # `-`: standard input, read once here, run as --text
        if flags.get(name) == "-":
            from lstm_cli.paths import read_stdin

            flags["text"], flags["text_file"] = read_stdin(f"--{name.replace('_', '-')}"), None
    if any(flags.get(name) for name in ("weights", "input", "trust_checkpoint", "initial_state", "model_input")) \
            or flags.get("key") is not None:
        from lstm_cli.sources import resolve_flags

        flags = resolve_flags(flags, explicit)
    return LSTMSpec(**flags)  # validates; raises UsageError with a one-line message


def explicit_flags(ctx: typer.Context) -> set[str]:
    """The shared flags the user typed (as opposed to defaults)."""
    return {
        name for name, _ in SHARED_FLAGS
        if (source := ctx.get_parameter_source(name)) is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")
    }


def reflow(doc: str | None) -> str | None:
    """A docstring's paragraphs as single lines, so --help re-wraps them at the terminal's
    width instead of keeping the source's line breaks."""
    if doc is None:
        return None
    paragraphs = pyinspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def lstm_command(command: Callable[..., int] | None = None, *, small_model_threads: bool = True) -> Any:
    """Give a command the shared LSTM flags and --threads: Typer sees them in the signature, the
    command receives one validated `spec` instead (and `ctx` and the `threads` choice too if it
    asks for them) and runs inside threads.thread_scope, which sets the chosen thread count and
    restores the previous one after. `small_model_threads=False` keeps torch's thread count
    unless --threads is given (bench measures torch's own behaviour)."""
    if command is None:
        return functools.partial(lstm_command, small_model_threads=small_model_threads)
    own = [p for p in pyinspect.signature(command).parameters.values() if p.name not in ("spec", "threads")]
    wants_ctx = any(p.name == "ctx" for p in own)
    wants_threads = "threads" in pyinspect.signature(command).parameters
    shared = [
        pyinspect.Parameter(name, pyinspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=_default(name))
        for name, annotation in SHARED_FLAGS
    ]
    shared.append(pyinspect.Parameter("threads", pyinspect.Parameter.KEYWORD_ONLY, annotation=ThreadsFlag, default=None))
    if not wants_ctx:
        shared.append(pyinspect.Parameter("ctx", pyinspect.Parameter.KEYWORD_ONLY, annotation=typer.Context))

    def with_spec(**kwargs: Any) -> int:
        flags = {name: kwargs.pop(name) for name, _ in SHARED_FLAGS}
        requested = check_threads(kwargs.pop("threads"))  # before any file is read
        ctx = kwargs["ctx"] if wants_ctx else kwargs.pop("ctx")
        spec = spec_from_flags(flags, explicit_flags(ctx))
        choice = choose_threads(requested, spec, small_model_threads)
        if wants_threads:
            kwargs["threads"] = choice
        with thread_scope(choice):
            return command(spec=spec, **kwargs)

    with_spec.__signature__ = pyinspect.Signature(own + shared)  # type: ignore[attr-defined]
    with_spec.__name__ = command.__name__
    with_spec.__doc__ = reflow(command.__doc__)
    return with_spec


def emit(result: Any, as_json: bool, render: Callable[[Any, Any], None]) -> int:
    """Print a result (JSON on stdout, or Rich), its notes on stderr; exit 1 if a check failed."""
    from lstm_cli.output import make_console, to_json

    threads = active_threads()
    if threads is not None and isinstance(getattr(result, "config", None), dict):
        result.config["threads"] = threads.count  # torch.get_num_threads() while it ran
        result.config["threads_chosen_by"] = threads.chosen_by
    try:
        if as_json:
            sys.stdout.write(to_json(result, lift=("config", "source")) + "\n")
            sys.stdout.flush()
        else:
            from lstm_cli.render.common import render_uniformly

            console = make_console()
            render_uniformly(result, console, render)
            saved = (getattr(result, "config", None) or {}).get("save_weights")
            if saved:  # said like exported: and plotted: files
                console.print(f"saved: {saved} (the weights that ran)", highlight=False, markup=False)
    except BrokenPipeError:  # the reader went away (`| head -1`): stop quietly
        silence_stdout()
        return EXIT_OK
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if result.passed is False:  # None: the command checks nothing
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
    epilog=examples('lstm-cli inspect', 'lstm-cli inspect --bidirectional --lengths 10,7,3', 'lstm-cli inspect --proj-size 8 --batch-first --json', 'lstm-cli inspect --weights examples/formats/lstm.onnx --key /LSTM'),
)
@lstm_command
def inspect_command(
    spec: LSTMSpec,
    explain: Annotated[bool, typer.Option("--explain", help="Write out the LSTM equations with these shapes.")] = False,
    atol: AtolFlag = None,
    rtol: RtolFlag = None,
    json_output: JsonFlag = False,
) -> int:
    """Shapes, parameters and the output/h_n identities of an nn.LSTM, each verified.

    Builds nn.LSTM from the flags, runs seeded random input through it and shows input,
    output, h_n and c_n with what each dimension means, every parameter split into its
    i, f, g, o gate blocks, the total against the closed-form count, and the identities
    that connect output and h_n (batch_first, bidirectional, proj_size and packed forms).
    """
    from lstm_cli.spec import check_runs_as_loaded

    check_runs_as_loaded(spec, "inspect", activations=True)
    check_tolerances(atol, rtol)
    from lstm_cli.inspect import run_inspect
    from lstm_cli.render.inspect import render_inspect

    return emit(run_inspect(spec, explain=explain, atol=atol, rtol=rtol), json_output, render_inspect)


@app.command(
    "compare-cell",
    epilog=examples('lstm-cli compare-cell', 'lstm-cli compare-cell --bidirectional --proj-size 8 --lengths 10,7,3 --steps', 'lstm-cli compare-cell --hidden-sizes 30,20', 'lstm-cli compare-cell --dtype float64 --seq-len 200 --json'),
)
@lstm_command
def compare_cell_command(
    spec: LSTMSpec,
    ctx: typer.Context,
    hidden_sizes: Annotated[
        str | None,
        typer.Option("--hidden-sizes", help="Free-form stack of cells of these widths, e.g. 30,20 "
                     "(the seed's 100 -> 30 -> 20); replaces --hidden-size and --num-layers."),
    ] = None,
    atol: AtolFlag = None,
    rtol: RtolFlag = None,
    steps: Annotated[bool, typer.Option("--steps", help="Also show, at every time step, the output difference, "
                                        "each path's distance from float64 and how a 1e-7 input change grows.")] = False,
    all_steps: Annotated[bool, typer.Option("--all-steps", help="Show the --steps table (implies --steps) with one "
                                            "row per step; by default long sequences are binned to at most 64 "
                                            "rows, each the largest of its steps.")] = False,
    allow_tf32: Annotated[
        bool, typer.Option("--allow-tf32", help="Let cuDNN and matmuls use TF32 on CUDA (off by default).")
    ] = False,
    repeat: Annotated[int, typer.Option("--repeat", help="Timed runs of each path (median reported); 0 skips timing.")] = 5,
    json_output: JsonFlag = False,
) -> int:
    """The same network as a loop over stacked nn.LSTMCells, matched against nn.LSTM and timed.

    Mirror mode copies nn.LSTM's weights into one nn.LSTMCell per layer and direction and
    steps through time as the seed does, adding by hand what LSTMCell lacks (backward
    direction, proj_size, packed lengths). The verdict is step-local: every step of the loop
    is recomputed in float64, with nn.LSTM's weights, from the state the loop started it
    from, and must agree within one step's rounding (exit 1 names the layer, direction and
    first bad step). The end-to-end difference of output, h_n and c_n is reported beside each
    path's distance from a float64 run, with a sentence when the model is chaotic.
    """
    from lstm_cli.spec import check_free_form, check_runs_as_loaded, parse_hidden_sizes

    check_runs_as_loaded(spec, "compare-cell", stacks=True)
    sizes = parse_hidden_sizes(hidden_sizes)
    if sizes is not None:
        check_free_form(spec, explicit_flags(ctx))
    sizes = sizes or spec.stack_widths
    check_tolerances(atol, rtol)
    if not 0 <= repeat <= 10_000:
        raise UsageError(f"--repeat must be between 0 and 10000 (got {repeat})")

    from lstm_cli.compare_cell import run_compare
    from lstm_cli.render.compare_cell import render_compare_cell

    from lstm_cli.render.common import stderr_progress

    # Every LSTMCell step of every run (the check, a warm-up and --repeat timed runs), counted
    # per finished direction; a bar only when there is a long loop to wait for.
    cells_per_run = (len(sizes) if sizes else spec.num_layers * spec.num_directions) * spec.seq_len
    total = cells_per_run * (1 + (1 + repeat if repeat else 0))
    with stderr_progress(total, "steps", "LSTMCell loop") if cells_per_run >= 2000 else nullcontext() as progress:
        result = run_compare(spec, sizes, atol=atol, rtol=rtol, per_step=steps or all_steps, allow_tf32=allow_tf32,
                             repeat=repeat, progress=progress)
    return emit(result, json_output, lambda r, console: render_compare_cell(r, console, all_steps=all_steps))


GATES_PANEL = "gates"


def _gates_option(*decls: str, help: str, **kwargs: Any) -> Any:
    return typer.Option(*decls, help=help, rich_help_panel=GATES_PANEL, **kwargs)


@app.command(
    "gates",
    epilog=examples('lstm-cli gates', 'lstm-cli gates --heatmap 0:f', 'lstm-cli gates --bidirectional --lengths 10,7,3 --json', 'lstm-cli gates --export gates.npz --plot gates.png', 'lstm-cli gates --weights examples/recognizer.onnx --key /lstm/LSTM_1 --model-input examples/recognizer_images.npy --compare-input random'),
)
@lstm_command
def gates_command(
    spec: LSTMSpec,
    heatmap: Annotated[str | None, _gates_option("--heatmap", metavar="LAYER:GATE[:DIR]", help="Draw one gate (i, f, g, o, or c for the cell state) as units x time, e.g. 0:f or 1:g:backward.")] = None,
    sequence: Annotated[int, _gates_option("--sequence", help="Which sequence of the batch --heatmap and --plot draw.")] = 0,
    per_step: Annotated[bool, _gates_option("--per-step", help="Also print every gate's mean at every step.")] = False,
    all_steps: Annotated[bool, _gates_option("--all-steps", help="Print the per-step table (implies --per-step) with one row per step; by default long sequences are binned to at most 64 rows, each the mean of its steps.")] = False,
    verbose: Annotated[bool, _gates_option("--verbose", help="Also print how the gates were captured (loop or recompute) and why.")] = False,
    sat_low: Annotated[float, _gates_option("--sat-low", help="i, f, o count as left-saturated below this.")] = 0.1,
    sat_high: Annotated[float, _gates_option("--sat-high", help="i, f, o count as right-saturated above this.")] = 0.9,
    tanh_sat_low: Annotated[float, _gates_option("--tanh-sat-low", help="g counts as left-saturated below this.")] = -0.9,
    tanh_sat_high: Annotated[float, _gates_option("--tanh-sat-high", help="g counts as right-saturated above this.")] = 0.9,
    method: Annotated[str, _gates_option("--method", metavar="[auto|loop|recompute]", help="How gates are captured (auto picks by device and size).")] = "auto",
    export: Annotated[str | None, _gates_option("--export", metavar="FILE.npz|FILE.pt", help="Write every captured tensor (names and shapes in docs/gates.md).")] = None,
    plot: Annotated[str | None, _gates_option("--plot", metavar="FILE.png|FILE.svg|FILE.pdf", help="Write heatmaps per layer and gate, titled with the configuration and sources (needs the plot extra: pip install 'lstm-cli\\[plot]').")] = None,
    plot_range: Annotated[str | None, _gates_option("--plot-range", metavar="[fixed|panel]", help="--plot colours: fixed (default: i, f, o 0..1, g -1..1, c symmetric and shared) or panel (each panel its own min..max, a colour bar each).")] = None,
    layers: Annotated[str | None, _gates_option("--layers", metavar="0,2", help="The layers --plot draws (default: all).")] = None,
    units: Annotated[bool, _gates_option("--units", help="Also the fraction of time every unit of every gate is left- and right-saturated (counts over 50% and 90%, the top units); with --plot also a scatter per layer, left vs right, in FILE_units.png next to --plot's file.")] = False,
    compare_weights: Annotated[str | None, _gates_option("--compare-weights", metavar="FILE|random", help="Also run other weights of the same architecture on the same input (an earlier checkpoint, or random: an untrained copy from --seed) and show what changed, side by side.")] = None,
    compare_key: Annotated[str | None, _gates_option("--compare-key", help="Which LSTM in --compare-weights (as --key).")] = None,
    compare_input: Annotated[str | None, _gates_option("--compare-input", metavar="random|FILE", help="Also run the same weights on another input of the same shape (random: N(0, 1) from --seed; or a .pt/.npy tensor), from a zero state, and show what changed, side by side: what a model's own input (--model-input) shows that random input hides.")] = None,
    atol: AtolFlag = None,
    rtol: RtolFlag = None,
    json_output: JsonFlag = False,
) -> int:
    """Every gate at every step: i, f, g, o and c captured, verified, summarised and drawn.

    Captures the input, forget and output gates, the cell candidate g and
    the cell state c of every layer, direction and step (with --lengths,
    valid steps only). Shows per gate the mean, std, min, max and the
    fractions saturated left and right, with its mean at every step as a
    sparkline. Verified step by step: each captured step is recomputed in
    float64 from the state the capture started it from and must agree
    within one step's rounding (exit 1 names where it first does not);
    the end-to-end difference from nn.LSTM's output, h_n and c_n is
    reported, with each path's distance from a float64 run.
    """
    from lstm_cli.gates_options import make_options
    from lstm_cli.spec import check_runs_as_loaded

    check_runs_as_loaded(spec, "gates", activations=True)
    options = make_options(
        spec, heatmap=heatmap, sequence=sequence, sat_low=sat_low, sat_high=sat_high,
        tanh_sat_low=tanh_sat_low, tanh_sat_high=tanh_sat_high, method=method, export=export, plot=plot,
        plot_range=plot_range, layers=layers, units=units, atol=atol, rtol=rtol,
    )
    from lstm_cli.gates import run_gates
    from lstm_cli.render.gates import capture_progress, render_gates

    if compare_input is not None and compare_weights is not None:
        raise UsageError("--compare-input and --compare-weights each compare against a second run: give one of them")
    if compare_input is not None and compare_input != "random":
        from lstm_cli.paths import readable_file

        readable_file("--compare-input", compare_input)
    if compare_key is not None and compare_weights is None:
        raise UsageError("--compare-key picks an LSTM inside --compare-weights; give --compare-weights too")
    with capture_progress(spec) as progress:
        if compare_input is not None:
            from lstm_cli.gates.compare import run_compared_input

            result = run_compared_input(spec, compare_input, options, progress)
        elif compare_weights is None:
            result = run_gates(spec, options, progress=progress)
        else:
            from lstm_cli.gates.compare import compare_spec, run_compared

            result = run_compared(spec, compare_spec(spec, compare_weights, compare_key), options, progress)
    return emit(result, json_output, lambda r, console: render_gates(r, console, per_step=per_step,
                                                                     all_steps=all_steps, verbose=verbose))


@app.command(
    "bench",
    epilog=examples('lstm-cli bench --preset large', 'lstm-cli bench --sweep seq-len=10,100,1000', 'lstm-cli bench --preset medium --device cuda --json'),
)
@lstm_command(small_model_threads=False)
def bench_command(
    spec: LSTMSpec,
    ctx: typer.Context,
    threads: ThreadChoice,
    preset: Annotated[
        str | None,
        typer.Option("--preset", help="Sizes (I, H, L, T, B): seed (100, 20, 4, 10, 3), medium (128, 256, 2, 100, 32), "
                     "large (512, 1024, 2, 200, 64). Otherwise the shared flags."),
    ] = None,
    sweep: Annotated[
        str | None,
        typer.Option("--sweep", metavar="NAME=V1,V2,...", help="One row per value of seq-len, batch-size, "
                     "hidden-size, input-size or num-layers, e.g. seq-len=10,100,1000."),
    ] = None,
    repeat: Annotated[int, typer.Option("--repeat", help="Timed runs of each path per row (fastest, median "
                      "and slowest reported).")] = 5,
    method: Annotated[str, typer.Option("--method", metavar="[auto|loop|recompute]", help="Gate capture method.")] = "auto",
    json_output: JsonFlag = False,
) -> int:
    """Time nn.LSTM, the LSTMCell loop and the gate capture side by side on one device.

    In one process, on the same input: the fused nn.LSTM forward, compare-cell's stacked
    LSTMCell loop and gates' capture (with the nn.LSTM run it compares against), round-robin after a warm-up,
    CUDA synchronised; fastest, median and slowest of --repeat runs, the ratio of medians to
    nn.LSTM and GFLOP/s. A note warns when a path's slowest run took over 1.5x its fastest, or
    the cell loop beat nn.LSTM: the machine was busy and the medians may not be trustworthy.
    FLOPs of a forward pass count the gate GEMMs, a multiply-add as 2: per direction, valid
    step and sequence 8H(I + H_out) for layer 0 and 8H(D*H_out + H_out) for each later layer,
    plus 2PH per layer with proj_size P; so 8*B*T*H*((I+H) + (L-1)*(D*H+H)) per direction
    without one, B*T being the sum of --lengths where given.
    """
    from lstm_cli.spec import check_bench_flags, parse_sweep

    swept = parse_sweep(sweep)
    check_bench_flags(spec, preset, swept, explicit_flags(ctx))
    if not 1 <= repeat <= 1000:
        raise UsageError(f"--repeat must be between 1 and 1000 (got {repeat})")
    if method not in ("auto", "loop", "recompute"):
        raise UsageError(f"--method must be auto, loop or recompute (got {method!r})")
    if spec.unbatched and swept is not None and swept[0] == "batch_size":
        raise UsageError("--unbatched input has no batch: drop --unbatched or the batch-size sweep")
    from lstm_cli.spec import check_runs_as_loaded

    check_runs_as_loaded(spec, "bench")

    from lstm_cli.bench import bench_specs, run_bench
    from lstm_cli.render.bench import render_bench
    from lstm_cli.render.common import stderr_progress

    specs = bench_specs(spec, preset, swept)
    with stderr_progress(len(specs), "rows", "timing") as progress:
        def say(line: str) -> None:
            """On a terminal in the progress bar's line; piped, a line on stderr."""
            if progress is not None:
                progress(0, line.removeprefix("bench: "))
            else:
                print(f"{PROG}: {line}", file=sys.stderr, flush=True)

        result = run_bench(specs, repeat=repeat, method=method, progress=progress, threads=threads.requested, say=say)
    return emit(result, json_output, render_bench)


@app.command(
    "gradients",
    epilog=examples('lstm-cli gradients', 'lstm-cli gradients --forget-bias 1', 'lstm-cli gradients --cells rnn,lstm --seq-len 100 --num-layers 1 --plot norms.png', 'lstm-cli gradients --dtype float64 --json'),
)
@lstm_command
def gradients_command(
    spec: LSTMSpec,
    ctx: typer.Context,
    cells: Annotated[
        str, typer.Option("--cells", help="Models to compare, comma-separated, in this order: rnn (nn.RNN, tanh), "
                          "gru, lstm. Each is built from the same flags and seed. With --weights the "
                          "default is the loaded lstm alone.")
    ] = "rnn,gru,lstm",
    forget_bias: Annotated[
        float | None,
        typer.Option("--forget-bias", metavar="B", help="Set the LSTM's forget-gate bias to B in every layer "
                     "(Jozefowicz et al. 2015 use 1): rows H:2H of bias_ih become B and rows H:2H of "
                     "bias_hh become 0, so b_if + b_hf = B. Default: PyTorch's random init."),
    ] = None,
    plot: Annotated[
        str | None,
        typer.Option("--plot", metavar="FILE.png|FILE.svg|FILE.pdf", help="Also draw the norms over time, log "
                     "scale, one line per model, titled with the configuration and sources, into this "
                     ".png, .svg or .pdf. Needs matplotlib: pip install 'lstm-cli\\[plot]'."),
    ] = None,
    json_output: JsonFlag = False,
) -> int:
    """How far back the gradient reaches: |d loss / d x_t| at every step for RNN, GRU and LSTM.

    Builds nn.RNN (tanh), nn.GRU and nn.LSTM from the same flags and seed, runs the same seeded
    input through each, takes loss = sum of h_n[-1] (the last layer's final hidden state) and
    reports, for every time step t, the L2 norm of d loss / d x_t over the whole batch and all
    input features. Per model: the norms as a log-scale sparkline, first/last = norm at t=0
    divided by the norm at the last step t=L-1, and where it vanishes: walking back from the
    last step, the first k >= 1 steps back (t = L-1-k) whose norm is below 1e-3 x the last
    step's (a norm that underflowed to exactly 0 counts), or "never". Exit 1 if a gradient is
    not finite. --bidirectional and --lengths are
    refused: both leave no single last step to count back from.
    """
    from lstm_cli.spec import check_gradients_flags, check_runs_as_loaded, parse_cells

    chosen = parse_cells(cells)
    if spec.weights is not None and ctx.get_parameter_source("cells").name in ("DEFAULT", "DEFAULT_MAP"):
        chosen = ("lstm",)  # a loaded model alone; --cells rnn,gru,lstm adds same-size references
    check_gradients_flags(spec, chosen, forget_bias)
    check_runs_as_loaded(spec, "gradients")
    from lstm_cli.plot import plot_target

    target = plot_target(plot)

    from lstm_cli.gradients import run_gradients
    from lstm_cli.render.gradients import render_gradients

    result = run_gradients(spec, chosen, forget_bias)
    if target is not None:
        from lstm_cli.render.gradients_plot import plot_gradients

        plot_gradients(result, target)
        result.plot = str(target)
    return emit(result, json_output, render_gradients)


@app.command(
    "units",
    epilog=examples('lstm-cli units --weights examples/char_lstm.pt --key lstm --text-file examples/train_char_model.py', "lstm-cli units --weights examples/char_lstm.pt --key lstm --text '(a(a)a)' --top 5 --min-r 0.8 --json", "lstm-cli units --weights examples/char_lstm.pt --key lstm --text-file examples/train_char_model.py --select-regex '(?<=\")textwrap[.]py(?=\")' --sign both --threshold 0.5 --match"),
)
@lstm_command
def units_command(
    spec: LSTMSpec,
    top: Annotated[int | None, typer.Option("--top", metavar="K", help="Units listed per feature, largest |r| first "
                   "(default 3). With --select it means something else: the matches --match lists (default 10).")] = None,
    min_r: Annotated[float, typer.Option("--min-r", metavar="R", help="A unit tracks a feature when |r| >= R "
                     "(0.5: the feature explains at least 25% of the unit's variance).")] = 0.5,
    select: Annotated[str | None, typer.Option(
        "--select", metavar="START:END", rich_help_panel="Select and match (LSTMVis)",
        help="Select these characters of the text (offsets from 0, END exclusive) and list the units that are on "
        "(value > --threshold) at every one of them and off --margin characters either side.")] = None,
    select_text: Annotated[str | None, typer.Option(
        "--select-text", metavar="STRING", rich_help_panel="Select and match (LSTMVis)",
        help="Select the first occurrence of STRING in the text (or the --occurrence'th).")] = None,
    select_regex: Annotated[str | None, typer.Option(
        "--select-regex", metavar="PATTERN", rich_help_panel="Select and match (LSTMVis)",
        help="Select the first match of this Python regular expression (or the --occurrence'th); "
        "lookarounds leave delimiters out of it, like (?<=x) and (?=y).")] = None,
    occurrence: Annotated[int | None, typer.Option(
        "--occurrence", metavar="N", rich_help_panel="Select and match (LSTMVis)",
        help="Which occurrence of --select-text or match of --select-regex, from 1 (default 1).")] = None,
    state: Annotated[str | None, typer.Option(
        "--state", metavar="[c|h]", rich_help_panel="Select and match (LSTMVis)",
        help="Values compared with --threshold: c = tanh of the cell state, as LSTMVis (default), or h, "
        "the hidden state.")] = None,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", metavar="T", rich_help_panel="Select and match (LSTMVis)",
        help="A unit is on where its value > T: two decimals at most, -0.99 to 0.99 (default 0.3).")] = None,
    margin: Annotated[int | None, typer.Option(
        "--margin", metavar="K", rich_help_panel="Select and match (LSTMVis)",
        help="A selected unit is off at the K characters before and after the selection (default 1; "
        "0: no condition).")] = None,
    sign: Annotated[str | None, typer.Option(
        "--sign", metavar="[positive|both]", rich_help_panel="Select and match (LSTMVis)",
        help="positive: a unit is on where its value > T, as LSTMVis (default). both: also where its value "
        "< -T, shown as the unit's negative side (a trained unit's sign is arbitrary, so a detector may be "
        "low where its feature is); needs T >= 0.")] = None,
    match: Annotated[bool, typer.Option(
        "--match", rich_help_panel="Select and match (LSTMVis)",
        help="Also search the whole text for runs where at least half the selected units are on together, "
        "ranked by how many of them are on throughout, then fewest other units on throughout; --top of them "
        "listed with the line each starts in, the run marked.")] = False,
    min_length: Annotated[int | None, typer.Option(
        "--min-length", metavar="N", rich_help_panel="Select and match (LSTMVis)",
        help="With --match: only runs of N or more characters (default 1).")] = None,
    json_output: JsonFlag = False,
) -> int:
    """Which units track which features of the text: each unit's c and h correlated with it.

    Runs a character model (--weights) over --text or --text-file and computes, over the text's
    characters, the Pearson r of every unit's cell state c and hidden state h (every layer and
    direction, float64 from the model's own weights) with simple features of the text itself:
    inside a string literal, bracket depth, column, indentation, inside a comment, and the
    character classes letter, digit, space, upper case and punctuation. Lists the best units
    per feature with r and a trace of the text with the unit's value under it, and says plainly
    when no unit reaches --min-r. A feature constant over the text is skipped with a note.

    With --select, --select-text or --select-regex (LSTMVis's select and match): the units on
    throughout the selected characters and off around them, with their mean inside and outside;
    with --match also the other places in the text where those units are on together. The
    table shows the selection; JSON keeps every key above and adds "select".
    """
    from lstm_cli.text.select import DEFAULT_TOP, check_select_flags

    given = [flag for flag, value in (("--select", select), ("--select-text", select_text),
                                      ("--select-regex", select_regex)) if value is not None]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} each pick the selection: give one of them")
    selecting = bool(given)
    check_select_flags(selection=selecting, occurrence=occurrence, state=state, threshold=threshold, margin=margin,
                       match=match, min_length=min_length, proj_size=spec.proj_size, sign=sign)
    if spec.text is None and spec.text_file is None:
        if selecting:
            raise UsageError(f"{given[0]} picks characters of a text: give --text or --text-file (with --weights)")
        raise UsageError("units correlates units with features of a text: give --text or --text-file (with --weights)")
    if top is not None and not 1 <= top <= 1000:
        raise UsageError(f"--top must be between 1 and 1000 (got {top})")
    if not 0 <= min_r <= 1:
        raise UsageError(f"--min-r must be between 0 and 1 (got {min_r:g})")
    from lstm_cli.spec import check_runs_as_loaded

    check_runs_as_loaded(spec, "units", activations=True)
    from lstm_cli.render.feature_units import render_units
    from lstm_cli.text.input import read_text
    from lstm_cli.text.units import run_units

    text, _ = read_text(spec.text, spec.text_file)
    if not selecting:
        return emit(run_units(spec, text, top=3 if top is None else top, min_r=min_r), json_output, render_units)
    from lstm_cli.render.select import render_select
    from lstm_cli.text.select import (
        DEFAULT_MARGIN, DEFAULT_MIN_LENGTH, DEFAULT_SIGN, DEFAULT_STATE, DEFAULT_THRESHOLD, resolve_span, run_select,
        with_selection,
    )

    from lstm_cli.text.unit_states import unit_states

    span = resolve_span(text, select=select, select_text=select_text, occurrence=occurrence, select_regex=select_regex)
    states = unit_states(spec, sequence=0)  # the model runs once for both parts
    chosen = run_select(
        spec, text, span, states=states, state=state or DEFAULT_STATE,
        threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
        margin=DEFAULT_MARGIN if margin is None else margin, match=match, top=DEFAULT_TOP if top is None else top,
        min_length=DEFAULT_MIN_LENGTH if min_length is None else min_length, sign=sign or DEFAULT_SIGN,
    )
    return emit(with_selection(run_units(spec, text, min_r=min_r, states=states), chosen), json_output, render_select)


@app.command(
    "report",
    epilog=examples(
        "lstm-cli report --html report.html",
        "lstm-cli report --weights examples/char_lstm.pt --key lstm --text-file examples/train_char_model.py "
        "--html code.html",
        "lstm-cli report --weights examples/char_lstm.pt --key lstm --text 'x = \"a b\" + y' --state h "
        "--threshold 0.5 --html small.html",
    ),
)
@lstm_command
def report_command(
    spec: LSTMSpec,
    html: Annotated[str, typer.Option("--html", metavar="FILE.html", help="Where to write the page (.html or .htm).")],
    state: Annotated[str, typer.Option("--state", metavar="[c|h]", help="What select-and-match reads: c = tanh of "
                                       "the cell state, as LSTMVis (default), or h.")] = "c",
    threshold: Annotated[float, typer.Option("--threshold", metavar="T", help="The page's starting threshold: a unit "
                                             "is on where its value > T; two decimals at most, -0.99 to 0.99.")] = 0.3,
    margin: Annotated[int, typer.Option("--margin", metavar="K", help="The page's starting margin: a selected unit "
                                        "is off K steps before and after the selection (0: no condition).")] = 1,
    sign: Annotated[str, typer.Option("--sign", metavar="[positive|both]", help="The page's starting sign: positive, "
                                      "a unit is on above T (as LSTMVis); both, also below -T (needs T >= 0).")] = "positive",
    json_output: JsonFlag = False,
) -> int:
    """The whole exploration in one self-contained HTML file (LSTMVis in one page).

    Runs the gates verification (with per-unit saturation) and every unit's float64 states over
    the input's first sequence, and writes one page with no network request of any kind: the
    configuration and provenance, the checks, gate and cell-state heatmaps with hover values,
    the per-unit saturation scatter per gate, the text (or the steps) coloured by any unit, and
    LSTMVis' select-and-match: drag over characters, adjust threshold and margin, see the
    selected units' traces and the ranked matches. The page decides exactly as
    `units --select ... --match` does.
    """
    from lstm_cli.report.options import check_html_path, check_options  # no torch: fails fast

    check_html_path(html)
    check_options(state, threshold, margin, sign=sign)
    from lstm_cli.spec import check_runs_as_loaded

    check_runs_as_loaded(spec, "report", activations=True)
    if state == "h" and spec.proj_size:
        raise UsageError(f"--state h: this model projects h to {spec.proj_size} values (--proj-size), which are not "
                         "units of the cell; use --state c")
    from lstm_cli.render.gates import capture_progress
    from lstm_cli.render.report import render_report
    from lstm_cli.report import run_report

    with capture_progress(spec) as progress:
        result = run_report(spec, html, state=state, threshold=threshold, margin=margin, sign=sign, progress=progress)
    return emit(result, json_output, render_report)


@app.command(
    "schema",
    epilog=examples('lstm-cli schema gates', 'lstm-cli schema units > units.schema.json'),
)
def schema_command(
    command: Annotated[str, typer.Argument(metavar="COMMAND", help="The command whose --json document to describe.")],
) -> int:
    """The JSON Schema of a command's --json document (draft 2020-12).

    Every document has command, config, source (null for random weights), passed (null when
    the command checks nothing), checks and notes; the schema lists every other key and its
    type. Floats may be null (NaN and infinities are written as null).
    """
    import json

    from lstm_cli.schema import commands, shipped

    if command not in commands():
        raise UsageError(f"no command {command!r} writes --json: schema takes one of {', '.join(commands())}")
    sys.stdout.write(json.dumps(shipped(command), indent=2) + "\n")
    return EXIT_OK


schema_command.__doc__ = reflow(schema_command.__doc__)  # as lstm_command does for the others


@app.command(
    "trace",
    epilog=examples("lstm-cli trace --weights examples/char_lstm.pt --key lstm --text $'def f(x):\\n    return x'", 'lstm-cli trace --weights examples/char_lstm.pt --key lstm --text-file examples/train_char_model.py --unit 1:37', 'lstm-cli trace --weights examples/char_lstm.pt --key lstm --text-file examples/train_char_model.py --unit 0:5:f --top 3 --plot trace.png'),
)
@lstm_command
def trace_command(
    spec: LSTMSpec,
    unit: Annotated[str | None, typer.Option("--unit", metavar="LAYER:UNIT[:c|h|i|f|g|o][:DIR]", help="The unit whose value colours each character, e.g. 1:37 (c, the cell state, by default), 0:5:f or 1:2:h:backward.")] = None,
    top: Annotated[int | None, typer.Option("--top", metavar="K", help="Also the K units that vary most over the text (largest std), of --unit's layer, quantity and direction; without --unit, of the last layer's c (default K 3).")] = None,
    plot: Annotated[str | None, typer.Option("--plot", metavar="FILE.png|FILE.svg|FILE.pdf", help="Also draw the text as a grid of coloured cells, one panel per unit shown (the first 3,000 characters), titled with the configuration and sources. Needs matplotlib: pip install 'lstm-cli\\[plot]'.")] = None,
    json_output: JsonFlag = False,
) -> int:
    """The text with each character's background coloured by one unit's value at that character.

    Runs --text or --text-file through a character model (--weights) and colours every
    character by a unit's value after reading it (Karpathy, Johnson and Fei-Fei 2015, Fig. 2):
    c, h and g on a diverging scale (blue below 0, red above, +-max |value| over the text),
    the gates i, f, o on white to green over 0..1. Values are computed in float64 from the
    model's weights. Rows wrap at the terminal's width; a newline shows as a coloured marker.
    Without colour (a pipe, NO_COLOR) a row of digits 0-9, the value's tenth of the scale,
    runs under each text row. Without --unit it shows the 3 units of the last layer whose
    cell state varies most over the text.
    """
    from lstm_cli.spec import check_runs_as_loaded
    from lstm_cli.text.trace import check_top, check_trace_flags, check_unit, parse_unit

    check_trace_flags(spec)
    check_runs_as_loaded(spec, "trace", activations=True)
    ref = parse_unit(unit) if unit is not None else None
    if ref is not None:
        check_unit(ref, spec)
    check_top(top, spec, ref.quantity if ref is not None else "c")
    from lstm_cli.plot import plot_target

    target = plot_target(plot)

    from lstm_cli.render.trace import plot_trace, render_trace
    from lstm_cli.text.trace import run_trace

    result = run_trace(spec, ref, top)
    if target is not None:
        plot_trace(result, target)
    return emit(result, json_output, render_trace)


def main(argv: list[str] | None = None) -> int:
    """Entry point. `argv` None means the real process (Ctrl-C watchdog on); tests pass a list."""
    args = sys.argv[1:] if argv is None else argv
    return run_guarded(lambda: app(args=argv, prog_name=PROG, standalone_mode=False), watch_interrupts=argv is None,
                       json_errors="--json" in args)
