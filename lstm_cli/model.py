"""torch side of a spec: the nn.LSTM it describes, its input, and one forward pass.

Weights and input come from two separate generators derived from --seed, so the same seed gives
the same input whether the weights are random or loaded, and the numbers do not depend on the
device: both are drawn on the CPU in float32 and then moved and cast.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lstm_cli.runtime import GRADIENT_CELLS, TORCH_DTYPES, check_runnable, ensure_fits, resolve_device
from lstm_cli.spec import LSTMSpec

# Weights use their own stream: input draws seed, weights draw seed + 2**32, so changing how
# weights are made (random or loaded) never shifts the input.
WEIGHT_SEED_OFFSET = 2**32


@dataclass
class Placement:
    """The device and dtype a run uses, checked to work before anything large is allocated."""

    device: torch.device
    dtype: torch.dtype

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


def place(spec: LSTMSpec, extra_elements: int = 0, command: str = "forward",
          cells: tuple[str, ...] = GRADIENT_CELLS, widths: tuple[int, ...] | None = None) -> Placement:
    device = resolve_device(spec.device)
    dtype = TORCH_DTYPES[spec.dtype]
    ensure_fits(spec, device, command, extra_elements, cells, widths)  # runtime.memory_copies
    check_runnable(device, dtype)
    # No torch.set_flush_denormal here, nor any other global float mode: the numbers shown must
    # be the ones the user's own program computes, denormals included (issue 21).
    return Placement(device, dtype)


def build_lstm(spec: LSTMSpec, placement: Placement) -> nn.LSTM:
    """nn.LSTM exactly as the flags describe it, in eval mode (dropout off; see notes): with the
    parameters of --weights, or with PyTorch's own init distribution U(-1/sqrt(H), 1/sqrt(H))
    drawn from the weight generator."""
    kwargs = dict(
        recurrent_kwargs(spec),
        dropout=spec.dropout,
        bidirectional=spec.bidirectional,
        proj_size=spec.proj_size,
    )
    if spec.weights is not None or spec.captured is not None:
        from lstm_cli.sources import lstm_group_of

        lstm = nn.LSTM(**kwargs, dtype=placement.dtype)
        group = lstm_group_of(spec)
        lstm.load_state_dict(group.state)
        for name, p in (group.found.peepholes if group.found else {}).items():
            # Buffers move and cast with the module; nn.LSTM's own forward never reads them
            # (commands that run it refuse peephole models), lstm-cli's loops do.
            lstm.register_buffer(name, p.to(placement.dtype))
        return lstm.to(device=placement.device).eval()
    lstm = nn.LSTM(**kwargs, dtype=torch.float32)
    init_uniform(lstm, spec.hidden_size, weight_generator(spec))
    return lstm.to(device=placement.device, dtype=placement.dtype).eval()


def recurrent_kwargs(spec: LSTMSpec) -> dict:
    """What nn.LSTM, nn.GRU and nn.RNN share of their constructor arguments, from the flags."""
    return dict(
        input_size=spec.input_size,
        hidden_size=spec.hidden_size,
        num_layers=spec.num_layers,
        bias=spec.bias,
        batch_first=spec.batch_first,
    )


def weight_generator(spec: LSTMSpec) -> torch.Generator:
    """The weight stream: seed + 2**32, separate from the input stream (seed)."""
    return torch.Generator().manual_seed(spec.seed + WEIGHT_SEED_OFFSET)


def init_uniform(module: nn.Module, hidden_size: int, generator: torch.Generator) -> None:
    """Every parameter of `module`, in order, from U(-1/sqrt(H), 1/sqrt(H)) (PyTorch's own
    RNN init) drawn from `generator`: the same seed gives the same weights for nn.LSTM, nn.GRU,
    nn.RNN and LSTMCell stacks alike, independent of the input stream."""
    bound = 1.0 / math.sqrt(hidden_size)
    with torch.no_grad():
        for param in module.parameters():
            param.uniform_(-bound, bound, generator=generator)


def make_input(spec: LSTMSpec, placement: Placement) -> torch.Tensor:
    """The --input tensor, what a run of the user's whole model fed the LSTM (insitu), the text
    of --text/--text-file (text/input.py), or standard normal input of the spec's input shape
    (honouring batch_first/unbatched) where, with --lengths, steps past each length are zero
    padding."""
    if spec.captured is not None:
        from lstm_cli.insitu.feed import feed_of

        return feed_of(spec).captured.x.to(device=placement.device, dtype=placement.dtype)
    if spec.input is not None:
        from lstm_cli.sources import load_input

        x = load_input(spec.input)
        if torch.finfo(placement.dtype).bits < torch.finfo(x.dtype).bits or (
            x.dtype == torch.float16 and placement.dtype == torch.bfloat16
        ):
            stored = str(x.dtype).removeprefix("torch.")
            warnings.warn(
                f"--input {spec.input} holds {stored} values; they run rounded to {placement.dtype_name} "
                f"(--dtype {stored} runs them as stored)"
            )
        return x.to(device=placement.device, dtype=placement.dtype)
    if spec.text is not None or spec.text_file is not None:
        from lstm_cli.text.input import resolve_text

        text = resolve_text(spec.text, spec.text_file, spec.weights, spec.vocab, spec.embedding, spec.input_size)
        return text.tensor(spec.batch_first).to(device=placement.device, dtype=placement.dtype)
    shape = spec.tensor_shapes()["input"]
    generator = torch.Generator().manual_seed(spec.seed)
    x = torch.randn(shape, generator=generator, dtype=torch.float32)
    if spec.lengths is not None:
        time_dim = 1 if spec.batch_first else 0
        steps = torch.arange(spec.seq_len).unsqueeze(1 - time_dim)  # broadcast over batch
        valid = steps < torch.tensor(spec.lengths).unsqueeze(time_dim)
        x = x * valid.unsqueeze(-1)
    return x.to(device=placement.device, dtype=placement.dtype)


@dataclass
class InitialState:
    """(h_0, c_0) in nn.LSTM's layout: (D * num_layers, N, H_out) and (D * num_layers, N, H),
    without the N axis for unbatched input. A run without one starts from zeros (None)."""

    h0: torch.Tensor
    c0: torch.Tensor

    def pair(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.h0, self.c0

    def batched(self) -> InitialState:
        """With an N axis also for unbatched input."""
        return InitialState(self.h0.unsqueeze(1), self.c0.unsqueeze(1)) if self.h0.dim() == 2 else self

    def layers(self, start: int, stop: int) -> InitialState:
        """Rows [start, stop) of the D * num_layers axis (one layer: [layer * D, layer * D + D))."""
        return InitialState(self.h0[start:stop], self.c0[start:stop])

    def sequences(self, index: torch.Tensor) -> InitialState:
        """The batch rows `index` (batched states only)."""
        return InitialState(self.h0.index_select(1, index.to(self.h0.device)), self.c0.index_select(1, index.to(self.c0.device)))

    def to(self, **kwargs) -> InitialState:
        return InitialState(self.h0.to(**kwargs), self.c0.to(**kwargs))


def state_pair(initial: InitialState | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """nn.LSTM's hx argument: the pair, or None for zeros."""
    return None if initial is None else initial.pair()


def direction_state(initial: InitialState | None, layer: int, d: int, num_directions: int
                    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The (N, H_out) h_0 and (N, H) c_0 where layer `layer`, direction `d` starts (batched), or
    (None, None) for zeros."""
    if initial is None:
        return None, None
    k = layer * num_directions + d
    batched = initial.batched()
    return batched.h0[k], batched.c0[k]


def make_initial_state(spec: LSTMSpec, placement: Placement) -> InitialState | None:
    """The run's (h_0, c_0): captured with the input (insitu), from --initial-state, or None
    (zeros, nn.LSTM's default)."""
    initial = None
    if spec.captured is not None:
        from lstm_cli.insitu.feed import feed_of

        captured = feed_of(spec).captured
        if captured.h0 is not None:
            initial = InitialState(captured.h0, captured.c0)
    if spec.initial_state is not None:
        from lstm_cli.sources import load_initial_state

        initial = InitialState(*load_initial_state(spec.initial_state, spec))
    return None if initial is None else initial.to(device=placement.device, dtype=placement.dtype)


@dataclass
class Prepared:
    """What every command starts from: where it runs, the module, its input and the state the
    run starts from (None: zeros)."""

    placement: Placement
    lstm: nn.LSTM
    x: torch.Tensor
    initial: InitialState | None = None


def prepare(spec: LSTMSpec, extra_elements: int = 0, x: torch.Tensor | None = None,
            command: str = "forward", initial: InitialState | None = None) -> Prepared:
    """Place, build, save (--save-weights) and make the input and initial state, in that
    order; `x` given is the input instead (a second model run on the first one's input), with
    `initial` its initial state."""
    placement = place(spec, extra_elements, command)
    lstm = build_lstm(spec, placement)
    if spec.save_weights is not None:
        from lstm_cli.sources import save_state

        save_state(lstm.state_dict(), spec.save_weights)
    if x is not None:
        moved = None if initial is None else initial.to(device=placement.device, dtype=placement.dtype)
        return Prepared(placement, lstm, x.to(device=placement.device, dtype=placement.dtype), moved)
    return Prepared(placement, lstm, make_input(spec, placement), make_initial_state(spec, placement))


@dataclass
class PackedInfo:
    """What nn.LSTM returned for a packed batch, before pad_packed_sequence made it padded."""

    data_shape: list[int]  # (sum(lengths), D * H_out)
    batch_sizes: list[int]  # sequences still running at each step
    sorted_indices: list[int]  # the batch, longest first (what enforce_sorted=False did)


@dataclass
class Forward:
    """One forward pass: the padded output (zeros past each length) and the final states."""

    output: torch.Tensor
    h_n: torch.Tensor
    c_n: torch.Tensor
    packed: PackedInfo | None = None  # with --lengths


@torch.inference_mode()
def run_lstm(lstm: nn.LSTM, x: torch.Tensor, spec: LSTMSpec, initial: InitialState | None = None) -> Forward:
    """nn.LSTM on x from `initial` (None: zeros); with --lengths through pack_padded_sequence
    (unsorted lengths allowed; nn.LSTM takes the states in the user's batch order)."""
    if spec.lengths is None:
        output, (h_n, c_n) = lstm(x, state_pair(initial))
        return Forward(output, h_n, c_n)
    packed = pack_padded_sequence(
        x, torch.tensor(spec.lengths), batch_first=spec.batch_first, enforce_sorted=False
    )
    packed_output, (h_n, c_n) = lstm(packed, state_pair(initial))
    output, _ = pad_packed_sequence(
        packed_output, batch_first=spec.batch_first, total_length=spec.seq_len
    )
    info = PackedInfo(
        list(packed_output.data.shape), packed_output.batch_sizes.tolist(), packed_output.sorted_indices.tolist()
    )
    return Forward(output, h_n, c_n, info)


@dataclass
class DirectionWeights:
    """One layer x direction of an nn.LSTM, gates stacked i, f, g, o along dim 0."""

    w_ih: torch.Tensor  # (4H, in)
    w_hh: torch.Tensor  # (4H, H_out)
    b_ih: torch.Tensor | None  # (4H,), None with --no-bias
    b_hh: torch.Tensor | None
    w_hr: torch.Tensor | None  # (P, H), None without proj_size
    peephole: torch.Tensor | None = None  # (3, H), rows i, f, o: a loaded model's peepholes (ONNX P)


def direction_weights(lstm: nn.LSTM, layer: int, direction: str) -> DirectionWeights:
    suffix = f"_l{layer}" + ("_reverse" if direction == "backward" else "")
    get = lambda name: getattr(lstm, name + suffix, None)  # noqa: E731
    return DirectionWeights(get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"), get("weight_hr"),
                            get("peephole"))


def time_major(x: torch.Tensor, spec: LSTMSpec) -> torch.Tensor:
    """View any input/output of the spec's layout as (L, N, features)."""
    if spec.unbatched:
        return x.unsqueeze(1)
    return x.transpose(0, 1) if spec.batch_first else x


def from_time_major(x: torch.Tensor, spec: LSTMSpec) -> torch.Tensor:
    """Inverse of time_major: back to the spec's own layout."""
    if spec.unbatched:
        return x.squeeze(1)
    return x.transpose(0, 1) if spec.batch_first else x
