"""One LSTM configuration, validated in one place, and every fact that follows from it.

Pure Python on purpose: no torch import, so `--help` stays fast and the shape and parameter
formulas can be tested against real `nn.LSTM` calls from the outside.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

from lstm_cli.errors import UsageError

DTYPES = ("float32", "float64", "float16", "bfloat16")
ITEMSIZE = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2}
# PyTorch stacks the four gates in this order along dim 0 of weight_ih/weight_hh/bias_*.
GATES = ("i", "f", "g", "o")
GATE_MEANING = {"i": "input gate", "f": "forget gate", "g": "cell candidate", "o": "output gate"}
DIRECTIONS = ("forward", "backward")
# Recurrent activations (of i, f, o) a loaded model may use, as formulas. nn.LSTM computes only
# sigmoid; `gates` runs the others through its own loop, commands that need nn.LSTM refuse them.
RECURRENT_ACTIVATIONS = {
    "sigmoid": "sigmoid(z)",
    # Keras 2 / tf.keras: K.hard_sigmoid(z) = clip(0.2 z + 0.5, 0, 1).
    "hard_sigmoid": "clip(0.2 z + 0.5, 0, 1)",
    # Keras 3: ops.hard_sigmoid(z) = relu6(z + 3) / 6 = clip(z / 6 + 0.5, 0, 1).
    "hard_sigmoid_keras3": "clip(z / 6 + 0.5, 0, 1)",
}
# The slope of each hard sigmoid: clip(slope z + 0.5, 0, 1).
HARD_SIGMOID_SLOPES = {"hard_sigmoid": 0.2, "hard_sigmoid_keras3": 1 / 6}
_DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
MAX_SEED = 2**63 - 1
MAX_LAYERS = 1000


@dataclass(frozen=True)
class Dim:
    """One dimension of a tensor: its symbol in PyTorch's docs, its size, what it counts."""

    symbol: str
    size: int
    meaning: str


@dataclass(frozen=True)
class LSTMSpec:
    """The shared flags of every command that builds an LSTM. Defaults are the seed example."""

    input_size: int = 100
    hidden_size: int = 20
    num_layers: int = 4
    seq_len: int = 10
    batch_size: int = 3
    bidirectional: bool = False
    batch_first: bool = False
    proj_size: int = 0
    dropout: float = 0.0
    bias: bool = True
    dtype: str = "float32"
    device: str = "auto"
    seed: int = 0
    lengths: tuple[int, ...] | None = None
    unbatched: bool = False
    # Real models and data (sources.py reads them; the architecture above then matches them).
    weights: str | None = None
    key: str | None = None
    input: str | None = None
    save_weights: str | None = None
    trust_checkpoint: bool = False
    # Text for a character model (text/input.py builds the input from the model's vocabulary).
    text: str | None = None
    text_file: str | None = None
    vocab: str | None = None  # a JSON list of characters; default: the checkpoint's "vocab"
    embedding: str | None = None  # the embedding matrix's name (found when not given); None = one-hot
    # The state the run starts from (h_0, c_0), from a file; default zeros, as nn.LSTM's.
    initial_state: str | None = None
    # The user's whole model run on the user's data (insitu/): --model-input feeds an ONNX
    # --weights graph, a trusted pickled module, or --model's factory module; what reaches the
    # LSTM (--key) is captured and every command runs on it.
    model_input: str | None = None
    model: str | None = None  # "package.module:factory", an nn.Module built from the user's code
    # What --weights turned out to be (set by sources.resolve_flags, never by a flag):
    recurrent_activation: str = "sigmoid"  # of i, f, o; nn.LSTM computes only sigmoid
    peepholes: bool = False  # the file's LSTM has peephole weights (ONNX P), which nn.LSTM cannot run
    stack_widths: tuple[int, ...] | None = None  # a free-form stack of LSTMCells of these widths
    # Where the captured input came from, in words ("captured at node /lstm/LSTM of model.onnx
    # running x.npy"): set by sources.resolve_flags (or lstm_cli.watch), never by a flag; the
    # captured tensors are kept by insitu.feed under these words.
    captured: str | None = None
    source: dict | None = None  # file, format, key, conversions, notes (JSON-ready)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def own_loop_only(self) -> str | None:
        """What nn.LSTM cannot compute in this model, in words (only lstm-cli's own loop runs
        it: hard-sigmoid gates, peepholes), or None when nn.LSTM runs it exactly."""
        if self.recurrent_activation != "sigmoid":
            return f"{self.recurrent_activation} gates ({RECURRENT_ACTIVATIONS[self.recurrent_activation]})"
        if self.peepholes:
            return "peephole connections (ONNX P)"
        return None

    # -- validation ---------------------------------------------------------------------------

    def validate(self) -> None:
        for flag, value in (
            ("--input-size", self.input_size),
            ("--hidden-size", self.hidden_size),
            ("--num-layers", self.num_layers),
            ("--seq-len", self.seq_len),
            ("--batch-size", self.batch_size),
        ):
            if value < 1:
                raise UsageError(f"{flag} must be at least 1 (got {value})")
        if self.num_layers > MAX_LAYERS:  # every command loops over layers in Python
            raise UsageError(f"--num-layers must be at most {MAX_LAYERS} (got {self.num_layers})")
        if self.proj_size < 0:
            raise UsageError(f"--proj-size must be 0 (off) or positive (got {self.proj_size})")
        if self.proj_size >= self.hidden_size:
            raise UsageError(
                f"--proj-size must be smaller than --hidden-size "
                f"(got {self.proj_size} >= {self.hidden_size})"
            )
        if not (0.0 <= self.dropout < 1.0):  # also rejects NaN
            raise UsageError(f"--dropout must be in [0, 1) (got {self.dropout})")
        if self.dtype not in DTYPES:
            raise UsageError(f"--dtype must be one of {', '.join(DTYPES)} (got {self.dtype!r})")
        if not _DEVICE_PATTERN.fullmatch(self.device):
            raise UsageError(
                f"--device must be auto, cpu, cuda, cuda:N or mps (got {self.device!r})"
            )
        if not (0 <= self.seed <= MAX_SEED):
            raise UsageError(f"--seed must be in [0, 2**63) (got {self.seed})")
        if self.lengths is not None:
            self._validate_lengths(self.lengths)
        check_text_flags(self.text, self.text_file, self.input, self.weights, self.vocab, self.embedding)
        check_model_flags(self.model, self.model_input, self.weights, self.input, self.text, self.text_file)

    def _validate_lengths(self, lengths: tuple[int, ...]) -> None:
        if self.unbatched:
            raise UsageError("--lengths needs a batch: it cannot be combined with --unbatched")
        if len(lengths) != self.batch_size:
            raise UsageError(
                f"--lengths has {len(lengths)} values but --batch-size is {self.batch_size}"
            )
        bad = [n for n in lengths if not 1 <= n <= self.seq_len]
        if bad:
            raise UsageError(
                f"--lengths values must be between 1 and --seq-len {self.seq_len} (got {bad[0]})"
            )

    # -- derived facts ------------------------------------------------------------------------

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def h_out(self) -> int:
        """Width of h and of each direction's output: proj_size when projecting, else hidden."""
        return self.proj_size or self.hidden_size

    @property
    def packed(self) -> bool:
        return self.lengths is not None

    def layer_input_size(self, layer: int) -> int:
        return self.input_size if layer == 0 else self.num_directions * self.h_out

    def directions(self) -> tuple[str, ...]:
        return DIRECTIONS[: self.num_directions]

    def config(self) -> dict:
        """The configuration as JSON-ready values (every JSON document carries it)."""
        out = asdict(self)
        out["lengths"] = list(self.lengths) if self.lengths is not None else None
        out["stack_widths"] = list(self.stack_widths) if self.stack_widths is not None else None
        out["input_source"] = self.input_source()
        out["initial_state_source"] = self.initial_state_source()
        return out

    def initial_state_source(self) -> str:
        """Where (h_0, c_0) came from, in words; "zeros" by default."""
        if self.initial_state is not None:
            return f"file {self.initial_state}"
        if self.captured is not None and self.source is not None and self.source.get("captured_initial_state"):
            return "captured with the input"
        return "zeros"

    def input_source(self) -> str:
        """Where the input came from, in words (headers and JSON say it)."""
        if self.captured is not None:
            return self.captured
        if self.input is not None:
            return "standard input" if self.input == "-" else f"file {self.input}"
        if self.text is not None or self.text_file is not None:
            where = "--text" if self.text is not None else self.text_file
            how = f"through embedding {self.embedding!r}" if self.embedding else f"as one-hot vectors of {self.input_size}"
            vocab = f" (vocabulary from {self.vocab})" if self.vocab else ""
            return f"text of {self.seq_len:,} characters from {where} {how}{vocab}"
        padded = ", zero past each length" if self.lengths is not None else ""
        return f"random N(0, 1) from seed {self.seed}{padded}"

    def tensor_dims(self) -> dict[str, list[Dim]]:
        """Shape of input, output, h_n and c_n, each dimension with what it means."""
        D, L, N = self.num_directions, self.seq_len, self.batch_size
        seq = Dim("L", L, "sequence length (time steps)")
        batch = Dim("N", N, "batch size")
        out_meaning = (
            f"{D} directions x H_out {self.h_out} (forward | backward)"
            if D == 2
            else f"H_out {self.h_out}"
        )
        if self.proj_size:
            out_meaning += " (proj_size)"
        time_batch = [seq] if self.unbatched else ([batch, seq] if self.batch_first else [seq, batch])
        state_meaning = f"{D} x num_layers {self.num_layers}, layer-major" + (
            " (l0 fwd, l0 bwd, l1 fwd, ...)" if D == 2 else ""
        )
        state = [Dim("D*num_layers", D * self.num_layers, state_meaning)]
        state_batch = [] if self.unbatched else [batch]
        return {
            "input": time_batch + [Dim("H_in", self.input_size, "input size (features per step)")],
            "output": time_batch + [Dim("D*H_out", D * self.h_out, out_meaning)],
            "h_n": state + state_batch
            + [Dim("H_out", self.h_out, "last hidden state width" + (" (proj_size)" if self.proj_size else ""))],
            "c_n": state + state_batch + [Dim("H_cell", self.hidden_size, "cell state width (hidden_size)")],
        }

    def tensor_shapes(self) -> dict[str, list[int]]:
        return {name: [d.size for d in dims] for name, dims in self.tensor_dims().items()}

    def parameter_shapes(self) -> list[tuple[str, list[int]]]:
        """Every parameter of nn.LSTM, in the order `named_parameters()` yields them."""
        H, P = self.hidden_size, self.proj_size
        shapes = []
        for layer in range(self.num_layers):
            for suffix in ("", "_reverse")[: self.num_directions]:
                shapes.append((f"weight_ih_l{layer}{suffix}", [4 * H, self.layer_input_size(layer)]))
                shapes.append((f"weight_hh_l{layer}{suffix}", [4 * H, self.h_out]))
                if self.bias:
                    shapes.append((f"bias_ih_l{layer}{suffix}", [4 * H]))
                    shapes.append((f"bias_hh_l{layer}{suffix}", [4 * H]))
                if P:
                    shapes.append((f"weight_hr_l{layer}{suffix}", [P, H]))
        return shapes

    def parameter_count(self) -> int:
        """Closed form: D * sum over layers of 4H(in_k + H_out) + 8H*bias + P*H."""
        H, D = self.hidden_size, self.num_directions
        fixed = 4 * H * self.h_out + (8 * H if self.bias else 0) + self.proj_size * H
        first = 4 * H * self.input_size + fixed
        later = 4 * H * D * self.h_out + fixed  # every layer after the first takes D*H_out inputs
        return D * (first + (self.num_layers - 1) * later)

    def memory_estimate_bytes(self, extra_elements: int = 0) -> int:
        """Rough peak bytes of one forward pass: weights, input, every layer's output, one
        layer's precomputed gates (what fused kernels keep), states, plus what a command adds."""
        T, N, D = self.seq_len, max(self.batch_size, 1), self.num_directions
        elements = (
            self.parameter_count()
            + T * N * self.input_size * 2  # float32 draw on the host, then the cast copy
            + self.num_layers * T * N * D * self.h_out
            + T * N * D * 4 * self.hidden_size
            + 4 * self.num_layers * D * N * self.hidden_size
            + extra_elements
        )
        return elements * ITEMSIZE[self.dtype]


def check_text_flags(
    text: str | None, text_file: str | None, input: str | None, weights: str | None,
    vocab: str | None, embedding: str | None,
) -> None:
    """--text and --text-file: one input at a time, for a loaded character model."""
    if text is not None and text_file is not None:
        raise UsageError("--text and --text-file are two inputs: give one of them")
    given = "--text" if text is not None else "--text-file" if text_file is not None else None
    if given and input is not None:
        raise UsageError(f"{given} and --input are two inputs: give one of them")
    if given and weights is None:
        raise UsageError(f"{given} runs a character model's vocabulary and embedding: give --weights too")
    if given is None:
        for flag, value in (("--vocab", vocab), ("--embedding", embedding)):
            if value is not None:
                raise UsageError(f"{flag} applies to --text or --text-file: give one of them too")
    if text == "":
        raise UsageError("--text is empty: give at least one character")


def check_model_flags(model: str | None, model_input: str | None, weights: str | None, input: str | None,
                      text: str | None, text_file: str | None) -> None:
    """--model-input and --model: the user's whole model on the user's data, one input at a time."""
    if model is not None and model_input is None:
        raise UsageError("--model builds the user's whole model: give --model-input, the data to run it on")
    if model is not None and (":" not in model or not all(model.partition(":")[::2])):
        raise UsageError(f"--model takes package.module:factory, a function that returns the nn.Module (got {model!r})")
    if model_input is None:
        return
    if weights is None and model is None:
        raise UsageError(
            "--model-input runs a whole model: give --weights model.onnx, a pickled module with "
            "--trust-checkpoint, or --model package.module:factory"
        )
    for flag, value in (("--input", input), ("--text", text), ("--text-file", text_file)):
        if value is not None:
            raise UsageError(f"--model-input and {flag} are two inputs: give one of them")


def parse_lengths(text: str | None) -> tuple[int, ...] | None:
    """'10,7,3' -> (10, 7, 3); a clear UsageError for anything else, '' included."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise UsageError(
            f"--lengths takes whole numbers separated by commas, like 10,7,3 (got {text!r})"
        ) from None


def format_bytes(n: float) -> str:
    if n < 1024:
        return f"{int(n)} B"
    exponent = min(int(math.log(n, 1024)), 5)
    return f"{n / 1024**exponent:.1f} {'BKMGTP'[exponent]}iB".replace("BiB", "B")


def check_runs_as_loaded(spec: LSTMSpec, command: str, stacks: bool = False, activations: bool = False) -> None:
    """Refuse, in one sentence, a loaded model this command cannot run as it is: a stack of
    LSTMCells of different widths (only compare-cell runs those) or gates that are not sigmoid
    (nn.LSTM computes sigmoid only; running such a model with it would give wrong numbers)."""
    if spec.stack_widths is not None and not stacks:
        widths = " -> ".join(map(str, (spec.input_size, *spec.stack_widths)))
        raise UsageError(
            f"{command} runs one nn.LSTM, and --weights {spec.weights} is a stack of LSTMCells of "
            f"different widths ({widths}) that no nn.LSTM holds: compare-cell runs it"
        )
    if spec.recurrent_activation != "sigmoid" and not activations:
        raise UsageError(
            f"{command} runs nn.LSTM, whose gates are sigmoid, and --weights {spec.weights} uses "
            f"{spec.recurrent_activation} ({RECURRENT_ACTIVATIONS[spec.recurrent_activation]}): "
            "its numbers would be wrong; inspect shows it and gates runs it exactly"
        )
    if spec.peepholes and not activations:
        raise UsageError(
            f"{command} runs nn.LSTM, which has no peephole connections, and --weights {spec.weights} "
            "has them (ONNX P): its numbers would be wrong; inspect shows it and gates runs it exactly"
        )


def parse_hidden_sizes(text: str | None) -> tuple[int, ...] | None:
    """'30,20' -> (30, 20): the widths of a free-form LSTMCell stack."""
    if text is None or text == "":
        return None
    try:
        sizes = tuple(int(p.strip()) for p in text.split(","))
    except ValueError:
        raise UsageError(
            f"--hidden-sizes takes whole numbers separated by commas, like 30,20 (got {text!r})"
        ) from None
    bad = [n for n in sizes if n < 1]
    if bad:
        raise UsageError(f"--hidden-sizes values must be at least 1 (got {bad[0]})")
    return sizes


def check_free_form(spec: LSTMSpec, explicit_flags: set[str]) -> None:
    """A free-form stack is unidirectional cells without projection or dropout, its layers and
    widths set by --hidden-sizes alone: say so rather than ignore a contradicting flag."""
    for flag, on in (
        ("--bidirectional", spec.bidirectional),
        ("--proj-size", spec.proj_size > 0),
        ("--dropout", spec.dropout > 0),
        ("--num-layers", "num_layers" in explicit_flags),
        ("--hidden-size", "hidden_size" in explicit_flags),
        ("--weights", spec.weights is not None),
        ("--save-weights", spec.save_weights is not None),
        ("--key", spec.key is not None),
    ):
        if on:
            raise UsageError(
                f"--hidden-sizes builds a plain stack of LSTMCells (its own layers and widths, "
                f"one direction, no projection, no dropout, random weights): drop {flag}"
            )


# The recurrent models `gradients` compares, by name: nn.RNN (tanh), nn.GRU, nn.LSTM.
CELLS = ("rnn", "gru", "lstm")


def parse_cells(text: str) -> tuple[str, ...]:
    """'rnn,lstm' -> ('rnn', 'lstm'), in the order given; unknown, empty or repeated names are
    a UsageError."""
    names = [p.strip().lower() for p in text.split(",")]
    if not any(names):
        raise UsageError(f"--cells needs at least one of {', '.join(CELLS)} (got {text!r})")
    for name in names:
        if name not in CELLS:
            raise UsageError(f"--cells: unknown cell {name!r} (choose from {', '.join(CELLS)})")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UsageError(f"--cells lists {repeated[0]} more than once (got {text!r})")
    return tuple(names)


def check_gradients_flags(spec: LSTMSpec, cells: tuple[str, ...], forget_bias: float | None) -> None:
    """What `gradients` can measure honestly: one common last step to count back from, and a
    forget-gate bias only where there is an LSTM with biases."""
    if spec.bidirectional:
        advice = (f"--weights {spec.weights} holds a bidirectional LSTM, whose backward direction ends at step 0: "
                  "gradients measures one-directional LSTMs only" if spec.weights is not None else
                  "a backward direction ends at step 0: drop --bidirectional")
        raise UsageError(f"gradients counts steps back from one final step, but {advice}")
    if spec.lengths is not None:
        raise UsageError(
            "gradients counts steps back from one final step shared by the whole batch, but "
            "--lengths gives each sequence its own: drop --lengths (or use --batch-size 1 --seq-len N)"
        )
    if spec.save_weights is not None and "lstm" not in cells:
        raise UsageError("--save-weights writes the LSTM's weights: add lstm to --cells")
    if forget_bias is not None:
        if not math.isfinite(forget_bias):
            raise UsageError(f"--forget-bias must be a finite number (got {forget_bias})")
        if "lstm" not in cells:
            raise UsageError("--forget-bias sets the LSTM's forget gate: add lstm to --cells")
        if not spec.bias:
            raise UsageError("--forget-bias needs the LSTM's biases: drop --no-bias")


BENCH_PRESETS = {  # (input_size, hidden_size, num_layers, seq_len, batch_size)
    "seed": (100, 20, 4, 10, 3),
    "medium": (128, 256, 2, 100, 32),
    "large": (512, 1024, 2, 200, 64),
}
SIZE_FIELDS = ("input_size", "hidden_size", "num_layers", "seq_len", "batch_size")
MAX_SWEEP_VALUES = 20


def parse_sweep(text: str | None) -> tuple[str, list[int]] | None:
    """'seq-len=10,100,1000' -> ('seq_len', [10, 100, 1000])."""
    if text is None or text == "":
        return None
    names = ", ".join(f.replace("_", "-") for f in SIZE_FIELDS)
    flag, sep, values = text.partition("=")
    field = flag.strip().removeprefix("--").replace("-", "_")
    if not sep or field not in SIZE_FIELDS:
        raise UsageError(f"--sweep takes NAME=V1,V2,... with NAME one of {names} (got {text!r})")
    try:
        numbers = [int(v) for v in values.split(",")]
    except ValueError:
        raise UsageError(f"--sweep values must be whole numbers, like seq-len=10,100,1000 (got {text!r})") from None
    if any(n < 1 for n in numbers):
        raise UsageError(f"--sweep values must be at least 1 (got {min(numbers)})")
    if len(numbers) > MAX_SWEEP_VALUES:
        raise UsageError(f"--sweep takes at most {MAX_SWEEP_VALUES} values (got {len(numbers)})")
    return field, numbers


def check_bench_flags(spec: LSTMSpec, preset: str | None, sweep: tuple[str, list[int]] | None, explicit: set[str]) -> None:
    """A preset or a sweep sets sizes: a size flag, file or input that also sets one is refused."""
    if spec.save_weights is not None:
        raise UsageError("bench times several models and saves none: drop --save-weights (inspect can save them)")
    if preset is not None and preset not in BENCH_PRESETS:
        raise UsageError(f"--preset must be one of {', '.join(BENCH_PRESETS)} (got {preset!r})")
    set_by_bench = set(SIZE_FIELDS) if preset is not None else set()
    if sweep is not None:
        set_by_bench.add(sweep[0])
    for field in sorted(set_by_bench & explicit, key=SIZE_FIELDS.index):
        raise UsageError(f"--{field.replace('_', '-')} is set by --preset/--sweep here: drop one of them")
    architecture = set_by_bench & {"input_size", "hidden_size", "num_layers"}
    if spec.weights is not None and architecture:
        raise UsageError("--weights fixes the model's sizes: bench it without --preset, or sweep only seq-len or batch-size")
    if spec.input is not None and set_by_bench:
        raise UsageError("--input fixes seq-len and batch size: bench it without --preset or --sweep")
    text = "--text" if spec.text is not None else "--text-file" if spec.text_file is not None else None
    if text and set_by_bench:
        raise UsageError(f"{text} fixes seq-len and batch size: bench it without --preset or --sweep")
