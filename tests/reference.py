"""An independent float64 LSTM, written straight from the equations in PyTorch's docs.

It shares no code with lstm_cli: a plain loop over time for every layer and direction, with
projection and per-sequence lengths. Tests compare the tool's numbers against it."""

import torch


def reference_lstm(lstm: torch.nn.LSTM, x: torch.Tensor, lengths=None):
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
                i = torch.sigmoid(z[:, 0:H])
                f = torch.sigmoid(z[:, H : 2 * H])
                g = torch.tanh(z[:, 2 * H : 3 * H])
                o = torch.sigmoid(z[:, 3 * H : 4 * H])
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
