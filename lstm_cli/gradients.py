"""`lstm-cli gradients`: how far back the gradient of the final hidden state reaches, for
nn.RNN (tanh), nn.GRU and nn.LSTM built from the same flags. Returns a plain result; never
prints.

For each model: loss = sum of h_n[-1] (the last layer's final hidden state, which equals the
output at the last step), one backward pass, and the L2 norm of d loss / d x_t at every step t
(over the whole batch and every input feature).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn

from lstm_cli.checks import Check
from lstm_cli.model import (
    Placement, build_lstm, init_uniform, make_input, place, recurrent_kwargs, time_major, weight_generator,
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
class ModelGradients:
    cell: str  # rnn | gru | lstm
    module: str
    parameters: int
    grad_norms: list[float]  # one per time step, t = 0 .. L-1
    first_step_norm: float
    last_step_norm: float
    first_to_last_ratio: float | None  # null when the last step's norm is 0
    # k >= 1: the first step met walking back from the last one, t = L-1-k, whose norm is below
    # VANISH_FRACTION x the last step's; null ("never") if no step is.
    vanishes_at_step: int | None
    vanishes_at_t: int | None
    forget_bias: float | None  # lstm: the value set with --forget-bias, else null


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
        placement = place(spec, extra_elements=extra_elements(spec, cells))
        x = make_input(spec, placement)
        models = []
        with tf32_mode(placement.device, False):
            for cell in cells:
                module = build_model(cell, spec, placement)
                if cell == "lstm" and forget_bias is not None:
                    set_forget_bias(module, forget_bias)
                if cell == "lstm" and spec.save_weights is not None:  # the weights that ran
                    from lstm_cli.sources import save_state

                    save_state(module.state_dict(), spec.save_weights)
                norms = step_grad_norms(module, x, spec)
                models.append(summarise(cell, module, norms, forget_bias if cell == "lstm" else None))

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


def step_grad_norms(module: nn.Module, x: torch.Tensor, spec: LSTMSpec) -> list[float]:
    """||d loss / d x_t|| for t = 0 .. L-1, loss = h_n[-1].sum(), in float64 from the gradient."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        _output, state = module(x)
        h_n = state[0] if isinstance(state, tuple) else state  # LSTM returns (h_n, c_n)
        loss = h_n[-1].sum()
        (grad,) = torch.autograd.grad(loss, x)
    return time_major(grad, spec).double().flatten(1).norm(dim=1).tolist()


def vanishing_step(norms: list[float], fraction: float = VANISH_FRACTION) -> int | None:
    """Walking back from the last step: the first k >= 1 with norms[L-1-k] < fraction *
    norms[L-1], or None if there is none (or the last step's norm is 0 or not finite)."""
    last = norms[-1]
    if not (math.isfinite(last) and last > 0):
        return None
    for k in range(1, len(norms)):
        if norms[-1 - k] < fraction * last:
            return k
    return None


def summarise(cell: str, module: nn.Module, norms: list[float], forget_bias: float | None) -> ModelGradients:
    first, last = norms[0], norms[-1]
    k = vanishing_step(norms)
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
        forget_bias=forget_bias,
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
