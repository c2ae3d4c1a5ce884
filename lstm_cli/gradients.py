"""`lstm-cli gradients`: how far back the gradient of the final hidden state reaches, for
nn.RNN (tanh), nn.GRU and nn.LSTM built from the same flags. Returns a plain result; never
prints.

For each model: loss = sum of h_n[-1] (the last layer's final hidden state, which equals the
output at the last step), one backward pass, and the L2 norm of d loss / d x_t at every step t
(over the whole batch and every input feature).
"""

from __future__ import annotations

import math
from decimal import Decimal
from dataclasses import dataclass, replace

import torch
from torch import nn

from lstm_cli.checks import Check
from lstm_cli.model import (
    InitialState, Placement, build_lstm, make_initial_state, state_pair, init_uniform, make_input, place, recurrent_kwargs, time_major, weight_generator,
)
from lstm_cli.runtime import collect_warnings, tf32_mode
from lstm_cli.spec import LSTMSpec

# A step's gradient has "vanished" once its norm is below this fraction of the last step's.
VANISH_FRACTION = 1e-3
LOSS = "sum of h_n[-1], the last layer's final hidden state (= output at the last step)"
NORM = "L2 norm of d loss / d x_t over the whole batch and all input features, per step t"
MODULE_NAMES = {"rnn": "nn.RNN (tanh)", "gru": "nn.GRU", "lstm": "nn.LSTM"}
# Rows of weight_ih per unit of hidden size: the gate blocks each cell stacks.
GATE_BLOCKS = {"rnn": 1, "gru": 3, "lstm": 4}


@dataclass
class ForgetBiasStats:
    """b_if + b_hf of the LSTM that ran: rows H:2H of bias_ih plus rows H:2H of bias_hh, over
    every unit of every layer and direction (PyTorch adds both biases)."""

    mean: float
    min: float
    max: float


@dataclass
class ModelGradients:
    cell: str  # rnn | gru | lstm
    module: str
    parameters: int
    grad_norms: list[float]  # one per time step, t = 0 .. L-1
    first_step_norm: float
    last_step_norm: float
    first_to_last_ratio: float | None  # null when the last step's norm is 0
    # k >= 1: the first step met walking back from the last one, t = L-1-k, whose norm is below
    # VANISH_FRACTION x the last step's (a norm of exactly 0 is below it); null if no step is
    # ("never"), and null when the last step's norm is 0: no ratio to count from.
    vanishes_at_step: int | None
    vanishes_at_t: int | None
    # what vanishes_at_step means: "at_step" (it is set), "never" (no step fell below the
    # fraction), "every_step" (every norm underflowed to exactly 0: null, yet everything vanished),
    # "undefined" (the last step's norm is 0 or not finite while others are not: no ratio)
    vanishes: str
    forget_bias: float | None  # lstm: the value set with --forget-bias, else null
    # steps whose norm is exactly 0: the gradient underflowed (fell below the dtype's smallest
    # number); they count as vanished
    underflow_steps: int
    forget_bias_stats: ForgetBiasStats | None  # lstm with biases: b_if + b_hf as it ran; else null


@dataclass
class GradientsResult:
    command: str
    config: dict
    device: str
    dtype: str
    tf32: bool
    loss: str
    norm: str
    vanish_fraction: float
    # a step's norm counts as underflowed when it is exactly 0: every element of its gradient
    # rounded to 0, which happens to a result of magnitude at most half of this, the dtype's
    # smallest subnormal (round to nearest even); half of it is no float64 number for float64
    smallest_subnormal: float
    models: list[ModelGradients]
    plot: str | None
    passed: bool
    checks: list[Check]
    notes: list[str]


def run_gradients(
    spec: LSTMSpec, cells: tuple[str, ...] = ("rnn", "gru", "lstm"), forget_bias: float | None = None
) -> GradientsResult:
    """Flags are validated by spec.check_gradients_flags (no --bidirectional, no --lengths)."""
    notes: list[str] = []
    with collect_warnings(notes):
        placement = place(spec, command="gradients", cells=cells)  # runtime.memory_copies counts each model
        x = make_input(spec, placement)
        initial = make_initial_state(spec, placement)
        models = []
        with tf32_mode(placement.device, False):
            for cell in cells:
                module = build_model(cell, spec, placement)
                if cell == "lstm" and forget_bias is not None:
                    set_forget_bias(module, forget_bias)
                if cell == "lstm" and spec.save_weights is not None:  # the weights that ran
                    from lstm_cli.sources import save_state

                    save_state(module.state_dict(), spec.save_weights)
                norms = step_grad_norms(module, x, spec, initial if cell == "lstm" else None)
                models.append(summarise(cell, module, norms, forget_bias if cell == "lstm" else None))

    references = [MODULE_NAMES[cell] for cell in cells if cell != "lstm"]
    if spec.weights is not None and references:
        notes.append(
            f"{' and '.join(references)} {'have' if len(references) > 1 else 'has'} random weights "
            f"(PyTorch's init, seed {spec.seed}); only the LSTM is loaded from {spec.weights}"
        )
    underflow = underflow_note(models, placement.dtype_name, smallest_positive(placement.dtype))
    if initial is not None and references:
        notes.append(f"the LSTM starts from the initial state ({spec.initial_state_source()}); "
                     f"{' and '.join(references)} start from zeros")

    if underflow:
        notes.append(underflow)
    if spec.dropout:
        notes.append(f"gradients are measured without dropout (as in eval mode): --dropout {spec.dropout} is not applied")
    if spec.proj_size and set(cells) - {"lstm"}:
        notes.append("--proj-size applies to the LSTM only: nn.RNN and nn.GRU have no projection")
    if spec.dtype in ("float16", "bfloat16"):
        notes.append(
            f"in {spec.dtype} small gradients round to 0 or lose digits: use float32 or float64 "
            "to see how far the decay really goes"
        )
    checks = [
        Check(f"{m.cell}: every d loss / d x_t is finite", all(math.isfinite(v) for v in m.grad_norms), None)
        for m in models
    ]
    return GradientsResult(
        command="gradients",
        config=spec.config() | {"cells": list(cells), "forget_bias": forget_bias},
        device=str(placement.device),
        dtype=placement.dtype_name,
        tf32=False,
        loss=LOSS,
        norm=NORM,
        vanish_fraction=VANISH_FRACTION,
        smallest_subnormal=smallest_positive(placement.dtype),
        models=models,
        plot=None,
        passed=all(check.passed for check in checks),
        checks=checks,
        notes=notes,
    )


def build_model(cell: str, spec: LSTMSpec, placement: Placement) -> nn.Module:
    """The model for one cell name, in train mode with dropout off.

    Train mode because cuDNN computes an RNN's backward pass only in train mode; with dropout
    off, train and eval mode compute exactly the same thing. The LSTM is build_lstm's; nn.RNN
    and nn.GRU draw their weights the same way (init_uniform), so a seed fixes all three."""
    if cell == "lstm":
        return build_lstm(replace(spec, dropout=0.0), placement).train()
    kwargs = {"nonlinearity": "tanh"} if cell == "rnn" else {}
    module = (nn.RNN if cell == "rnn" else nn.GRU)(**recurrent_kwargs(spec), dtype=torch.float32, **kwargs)
    init_uniform(module, spec.hidden_size, weight_generator(spec))
    return module.to(device=placement.device, dtype=placement.dtype).train()


def set_forget_bias(lstm: nn.LSTM, value: float) -> None:
    """Forget gate pre-activation bias = value in every layer and direction: rows H:2H of each
    bias_ih become value and rows H:2H of each bias_hh become 0, so b_if + b_hf = value exactly
    (PyTorch adds both biases). Nothing else changes."""
    H = lstm.hidden_size
    with torch.no_grad():
        for name, param in lstm.named_parameters():
            if name.startswith("bias_ih"):
                param[H : 2 * H] = value
            elif name.startswith("bias_hh"):
                param[H : 2 * H] = 0.0


def forget_bias_stats(lstm: nn.LSTM) -> ForgetBiasStats | None:
    """Mean, min and max of b_if + b_hf over every unit, layer and direction; None without
    biases. In float64 from the parameters as they ran."""
    H = lstm.hidden_size
    params = dict(lstm.named_parameters())
    sums = [
        params[name][H : 2 * H].double() + params[name.replace("bias_ih", "bias_hh")][H : 2 * H].double()
        for name in params
        if name.startswith("bias_ih")
    ]
    if not sums:
        return None
    values = torch.cat(sums).detach()
    return ForgetBiasStats(mean=values.mean().item(), min=values.min().item(), max=values.max().item())


def smallest_positive(dtype: torch.dtype) -> float:
    """The smallest number above 0 the dtype holds (its smallest subnormal)."""
    info = torch.finfo(dtype)
    return info.smallest_normal * info.eps


def half_text(value: float) -> str:
    """value / 2 to two digits, exactly even where the half is no float (5e-324 / 2)."""
    return format(Decimal(value) / 2, ".2g")


def underflow_note(models: list[ModelGradients], dtype: str, smallest: float) -> str | None:
    """What norms of exactly 0 mean, with the test used, or None when there are none."""
    hit = [m for m in models if m.underflow_steps]
    if not hit:
        return None
    counts = ", ".join(f"{m.module} at {m.underflow_steps} of {len(m.grad_norms)} steps" for m in hit)
    note = (
        f"gradient norms exactly 0, the gradient underflowed: every element of d loss / d x_t at that "
        f"step rounded to 0, as a {dtype} result does at or below {half_text(smallest)} (half its "
        f"smallest subnormal, {smallest:.2g}): {counts}. They count as vanished"
    )
    if any(m.vanishes == "every_step" for m in hit):
        note += '; where every step is 0 the gradient vanished everywhere ("vanishes": "every_step")'
    if any(m.vanishes == "undefined" for m in hit):
        note += "; a last step of 0 leaves no ratio to count back from"
    if dtype != "float64":
        note += ". --dtype float64 shows the true, tiny norms"
    return note + "."


def step_grad_norms(module: nn.Module, x: torch.Tensor, spec: LSTMSpec,
                    initial: InitialState | None = None) -> list[float]:
    """||d loss / d x_t|| for t = 0 .. L-1, loss = h_n[-1].sum(), in float64 from the gradient;
    the LSTM from `initial` (None: zeros)."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        _output, state = module(x, state_pair(initial)) if initial is not None else module(x)
        h_n = state[0] if isinstance(state, tuple) else state  # LSTM returns (h_n, c_n)
        loss = h_n[-1].sum()
        (grad,) = torch.autograd.grad(loss, x)
    return time_major(grad, spec).double().flatten(1).norm(dim=1).tolist()


def vanishing_step(norms: list[float], fraction: float = VANISH_FRACTION) -> int | None:
    """Walking back from the last step: the first k >= 1 with norms[L-1-k] < fraction *
    norms[L-1], or None if there is none (or the last step's norm is 0 or not finite). A norm of
    exactly 0 (underflow) is below any positive threshold, so it counts as vanished."""
    last = norms[-1]
    if not (math.isfinite(last) and last > 0):
        return None
    for k in range(1, len(norms)):
        if norms[-1 - k] < fraction * last:
            return k
    return None


def summarise(cell: str, module: nn.Module, norms: list[float], forget_bias: float | None) -> ModelGradients:
    """One model's numbers. vanishing_step already counts a norm of 0 as vanished while the last
    step's norm is > 0; when the last step's norm is 0 there is no ratio, so no step either."""
    first, last = norms[0], norms[-1]
    k = vanishing_step(norms)
    if k is not None:
        vanishes = "at_step"
    elif all(v == 0 for v in norms):
        vanishes = "every_step"
    elif math.isfinite(last) and last > 0:
        vanishes = "never"
    else:
        vanishes = "undefined"
    return ModelGradients(
        cell=cell,
        module=MODULE_NAMES[cell],
        parameters=sum(p.numel() for p in module.parameters()),
        grad_norms=norms,
        first_step_norm=first,
        last_step_norm=last,
        first_to_last_ratio=first / last if last > 0 else None,
        vanishes_at_step=k,
        vanishes_at_t=None if k is None else len(norms) - 1 - k,
        vanishes=vanishes,
        forget_bias=forget_bias,
        underflow_steps=sum(v == 0 for v in norms),
        forget_bias_stats=forget_bias_stats(module) if cell == "lstm" else None,
    )


def extra_elements(spec: LSTMSpec, cells: tuple[str, ...]) -> int:
    """Rough count of what this command adds to one LSTM forward pass (spec's estimate):
    RNN/GRU weights, every model's gradients, the activations autograd keeps for the backward
    pass, and d loss / d x."""
    T, N, H = spec.seq_len, max(spec.batch_size, 1), spec.hidden_size
    lstm_weights = spec.parameter_count()
    extra = 2 * spec.seq_len * N * spec.input_size  # the requires_grad copy and its gradient
    for cell in cells:
        weights = lstm_weights * GATE_BLOCKS[cell] // 4
        extra += 2 * weights if cell != "lstm" else weights  # weights (+ gradients)
        extra += spec.num_layers * T * N * (GATE_BLOCKS[cell] + 2) * H  # saved for backward
    return extra
