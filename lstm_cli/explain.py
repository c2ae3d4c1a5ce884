"""The LSTM equations written out with one configuration's concrete shapes (--explain)."""

from __future__ import annotations

import re

from lstm_cli.spec import RECURRENT_ACTIVATIONS, LSTMSpec


def explain_lines(spec: LSTMSpec) -> list[str]:
    H, P, N = spec.hidden_size, spec.proj_size, spec.batch_size
    batch = "" if spec.unbatched else f"{N}, "
    lines = [
        "At every step t, in every layer and direction (PyTorch stacks the gates",
        "i, f, g, o in that order along dim 0 of weight_ih, weight_hh and the biases):",
        "",
        "  i_t = sigmoid(W_ii x_t + b_ii + W_hi h_(t-1) + b_hi)    input gate",
        "  f_t = sigmoid(W_if x_t + b_if + W_hf h_(t-1) + b_hf)    forget gate",
        "  g_t = tanh(W_ig x_t + b_ig + W_hg h_(t-1) + b_hg)       cell candidate",
        "  o_t = sigmoid(W_io x_t + b_io + W_ho h_(t-1) + b_ho)    output gate",
        "  c_t = f_t * c_(t-1) + i_t * g_t",
        "  h_t = o_t * tanh(c_t)",
    ]
    if P:
        lines.append(f"  h_t = W_hr h_t                                          projection to {P}")
    if not spec.bias:  # --no-bias: no b terms (each gate line loses the same two, so columns align)
        lines = [re.sub(r" \+ b_\w\w", "", line).replace(", weight_hh and the biases", " and weight_hh")
                 for line in lines]
    if spec.recurrent_activation != "sigmoid":  # same width as "sigmoid", so the columns align
        lines = [line.replace("sigmoid(", "hardsig(") for line in lines]
        formula = RECURRENT_ACTIVATIONS[spec.recurrent_activation]
        lines.append(f"  hardsig(z) = {formula}: this model's {spec.recurrent_activation}, not sigmoid")
    lines += ["", "With this configuration:"]
    for layer in range(spec.num_layers):
        width = spec.layer_input_size(layer)
        source = "the input" if layer == 0 else f"layer {layer - 1}'s output"
        lines.append(f"  layer {layer}: x_t is {source}, ({batch}{width})")
        lines.append(f"    W_ii, W_if, W_ig, W_io are ({H}, {width}); W_hi .. W_ho are ({H}, {spec.h_out})")
    lines.append(f"  b_* are ({H},) each, two per gate" if spec.bias else "  no biases (--no-bias)")
    lines.append(f"  i_t, f_t, g_t, o_t and c_t are ({batch}{H})")
    if P:
        lines.append(f"  W_hr is ({P}, {H}), so h_t is ({batch}{P}) while c_t stays ({batch}{H})")
    else:
        lines.append(f"  h_t is ({batch}{H})")
    if spec.bidirectional:
        lines.append("  backward direction: t = L-1 .. 0 with its own *_reverse weights;")
        lines.append(f"    each layer's output concatenates both directions, {2 * spec.h_out} wide")
    if spec.lengths is not None:
        lines.append("  packed: each sequence stops at its own length; h_n holds the state")
        lines.append("    of that step and the padded output is 0 after it")
    return lines
