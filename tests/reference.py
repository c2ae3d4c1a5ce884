"""An independent float64 LSTM, written straight from the equations in PyTorch's docs.

It shares no code with lstm_cli: a plain loop over time for every layer and direction, with
projection and per-sequence lengths. Tests compare the tool's numbers against it."""

import torch


def gate(z: torch.Tensor, activation: str) -> torch.Tensor:
    """sigmoid, or Keras' hard sigmoids: 0.2 z + 0.5 (Keras 2) and z / 6 + 0.5 (Keras 3), in [0, 1]."""
    if activation == "sigmoid":
        return torch.sigmoid(z)
    slope = {"hard_sigmoid": 0.2, "hard_sigmoid_keras3": 1 / 6}[activation]
    return torch.clamp(slope * z + 0.5, min=0.0, max=1.0)


def reference_lstm(lstm: torch.nn.LSTM, x: torch.Tensor, lengths=None, activation: str = "sigmoid"):
    """x is time-major (L, N, H_in). Returns output (L, N, D*H_out) with zeros past each
    length, h_n (D*layers, N, H_out), c_n (D*layers, N, H) and, per layer and direction,
    the gates: a dict (layer, direction) -> {"i","f","g","o","c","h"} of (L, N, H) tensors
    (zero past each length)."""
    L, N, _ = x.shape
    lengths = torch.tensor(lengths if lengths is not None else [L] * N)
    layer_input = x.double()
    h_n, c_n, captured = [], [], {}
    directions = ["forward", "backward"] if lstm.bidirectional else ["forward"]
    for layer in range(lstm.num_layers):
        outputs = []
        for direction in directions:
            suffix = f"_l{layer}" + ("_reverse" if direction == "backward" else "")
            w_ih = getattr(lstm, "weight_ih" + suffix).double()
            w_hh = getattr(lstm, "weight_hh" + suffix).double()
            b = (
                getattr(lstm, "bias_ih" + suffix).double() + getattr(lstm, "bias_hh" + suffix).double()
                if lstm.bias
                else torch.zeros(w_ih.shape[0], dtype=torch.float64)
            )
            w_hr = getattr(lstm, "weight_hr" + suffix, None)
            H = lstm.hidden_size
            h = torch.zeros(N, w_hh.shape[1], dtype=torch.float64)
            c = torch.zeros(N, H, dtype=torch.float64)
            out = torch.zeros(L, N, w_hh.shape[1], dtype=torch.float64)
            gates = {k: torch.zeros(L, N, H, dtype=torch.float64) for k in "ifgoch"}
            steps = range(L - 1, -1, -1) if direction == "backward" else range(L)
            for t in steps:
                z = layer_input[t] @ w_ih.T + h @ w_hh.T + b
                i = gate(z[:, 0:H], activation)
                f = gate(z[:, H : 2 * H], activation)
                g = torch.tanh(z[:, 2 * H : 3 * H])
                o = gate(z[:, 3 * H : 4 * H], activation)
                c_new = f * c + i * g
                h_full = o * torch.tanh(c_new)
                h_new = h_full @ w_hr.double().T if w_hr is not None else h_full
                valid = (t < lengths).unsqueeze(1)
                h = torch.where(valid, h_new, h)
                c = torch.where(valid, c_new, c)
                out[t] = torch.where(valid, h_new, torch.zeros_like(h_new))
                for name, value in zip("ifgoch", (i, f, g, o, c_new, h_full)):
                    gates[name][t] = torch.where(valid, value, torch.zeros_like(value))
            outputs.append(out)
            h_n.append(h)
            c_n.append(c)
            captured[(layer, direction)] = gates
        layer_input = torch.cat(outputs, dim=2)
    return layer_input, torch.stack(h_n), torch.stack(c_n), captured
