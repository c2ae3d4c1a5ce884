"""Step-local verification: the verdict of compare-cell and gates.

A checked path (the LSTMCell loop, a gate capture) records, for some sequences and steps, what
it computed: the layer input x_t it read, the h it fed into step t, and its c_t, h_t and gates.
Every recorded step is then recomputed in float64 from exactly the state the path started that
step from (its own c_(t-1) and the h_(t-1) it fed) with the reference module's weights, and
compared element by element within the bound of `rule`. Because both start every step from the
same state, rounding cannot accumulate over the sequence and chaotic dynamics cannot amplify
it; a wrong weight, gate order, bias, projection, direction or padding shows at its first step.

All steps of one layer x direction are recomputed at once (a few GEMMs over the rows), so the
check costs about as much as a forward pass over the sampled rows; `choose_sample` keeps that
to a small share of the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from lstm_cli.checks import Check
from lstm_cli.model import DirectionWeights, direction_weights
from lstm_cli.spec import HARD_SIGMOID_SLOPES
from lstm_cli.verify.loop64 import gate_activation
from lstm_cli.verify.rule import ACTIVATION_ULPS, GEMM_ULPS, Rule

# Rows of float64 work at once: about 12 tensors of rows x 4H float64 live together.
ROW_CHUNK_ELEMENTS = 1 << 21
# Multiply-adds the check may spend without sampling (all sequences, every step); beyond, at
# most 1/CHECK_SHARE of the run's own forward multiply-adds (the check does ~3 per row).
CHECK_FREE_MACS = 1 << 28
CHECK_SHARE = 48


@dataclass
class Sample:
    """Which rows are checked: some sequences (indices in the user's batch order) at every
    `stride`-th step of their own processing order, first and last steps always included."""

    sequences: list[int]
    stride: int
    batch: int
    seq_len: int
    batch_lengths: tuple[int, ...] | None = None  # --lengths of the whole batch, None: all seq_len

    @property
    def lengths(self) -> list[int]:
        """Valid steps of each sampled sequence, in the order of `sequences`."""
        if self.batch_lengths is None:
            return [self.seq_len] * len(self.sequences)
        return [self.batch_lengths[n] for n in self.sequences]

    def steps(self, length: int, reverse: bool) -> list[int]:
        """Checked steps of a sequence of `length` valid steps, in processing order."""
        order = list(range(length - 1, -1, -1)) if reverse else list(range(length))
        picked = order[:: self.stride]
        if order and picked[-1] != order[-1]:
            picked.append(order[-1])
        return picked

    def describe(self) -> str:
        which = "every sequence" if len(self.sequences) == self.batch else (
            f"{len(self.sequences)} of {self.batch} sequences ({_list(self.sequences)})"
        )
        steps = "every step" if self.stride == 1 else f"every {_ordinal(self.stride)} step and the last"
        return f"{which}, {steps}"


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _list(values: list[int], most: int = 6) -> str:
    shown = ", ".join(map(str, values[:most]))
    return shown + (f", ... ({len(values)} in all)" if len(values) > most else "")


def choose_sample(batch: int, seq_len: int, macs_per_row: int, lengths: tuple[int, ...] | None = None) -> Sample:
    """All rows when that is cheap; else a few sequences (spread over the batch, the shortest
    included when lengths differ) and, if one sequence is already too much, every k-th step.
    `macs_per_row`: one step of one sequence through every layer and direction."""
    macs_per_row = max(macs_per_row, 1)
    forward_macs = batch * seq_len * macs_per_row
    budget = max(CHECK_FREE_MACS, forward_macs // CHECK_SHARE) / 3
    rows = max(1, int(budget // macs_per_row))
    if rows >= batch * seq_len:
        return Sample(list(range(batch)), 1, batch, seq_len, lengths)
    count = max(1, min(batch, rows // seq_len))
    sequences = sorted({round(k * (batch - 1) / max(count - 1, 1)) for k in range(count)}) if count > 1 else [0]
    if lengths is not None:
        shortest = min(range(batch), key=lambda n: (lengths[n], n))
        if shortest not in sequences:
            sequences = sorted(sequences[:-1] + [shortest]) if len(sequences) > 1 else sorted({0, shortest})
    stride = max(1, math.ceil(seq_len * len(sequences) / rows))
    return Sample(sequences, stride, batch, seq_len, lengths)


@dataclass
class PathRecord:
    """What a checked path computed in one layer x direction for the sampled sequences, at the
    steps kept (checked steps and their predecessors). Tensors are (len(steps), n, ...)."""

    steps: list[int]
    x: torch.Tensor  # the layer input the path read at each step
    h_fed: torch.Tensor  # the h sequence its recurrence reads: its own h, or nn.LSTM's (recompute)
    c: torch.Tensor
    h: torch.Tensor
    gates: torch.Tensor | None  # (.., n, 4, H) after the activations, where the path has them


def kept_steps(sample: Sample, reverse: bool) -> list[int]:
    """Steps a recorder keeps for the sampled sequences: every checked step and the step before
    it in processing order."""
    keep: set[int] = set()
    for length in set(sample.lengths):
        for t in sample.steps(length, reverse):
            keep.add(t)
            before = t + 1 if reverse else t - 1
            if 0 <= before < length:
                keep.add(before)
    return sorted(keep)


@dataclass
class Weights64:
    """One layer x direction of the reference module, in float64, with |W| for the bound."""

    w_ih: torch.Tensor
    w_hh: torch.Tensor
    b: torch.Tensor | None
    w_hr: torch.Tensor | None
    abs_ih: torch.Tensor  # float32: magnitudes need no more
    abs_hh: torch.Tensor
    abs_b: torch.Tensor | None
    abs_hr: torch.Tensor | None
    peephole: torch.Tensor | None = None  # (3, H) rows i, f, o, float64

    @classmethod
    def of(cls, w: DirectionWeights, device: torch.device) -> Weights64:
        def f64(t):
            return None if t is None else t.detach().to(device=device, dtype=torch.float64)

        def mag(t):
            return None if t is None else t.detach().to(device=device, dtype=torch.float32).abs()

        b = None if w.b_ih is None else f64(w.b_ih) + f64(w.b_hh)
        abs_b = None if w.b_ih is None else f64(w.b_ih).abs() + f64(w.b_hh).abs()
        return cls(f64(w.w_ih), f64(w.w_hh), b, f64(w.w_hr), mag(w.w_ih), mag(w.w_hh), abs_b, mag(w.w_hr),
                   f64(w.peephole))


@dataclass
class StepReference:
    """The float64 step and the bound of every element: gates (R, 4, H), c (R, H), h (R, H_out)."""

    gates: torch.Tensor
    c: torch.Tensor
    h: torch.Tensor
    bound_gates: torch.Tensor
    bound_c: torch.Tensor
    bound_h: torch.Tensor


def reference_step(w: Weights64, x: torch.Tensor, h_prev: torch.Tensor, c_prev: torch.Tensor, rule: Rule,
                   activation: str = "sigmoid", activation_floor: float = 0.0) -> StepReference:
    """PyTorch's LSTM equations for one step of R rows, in float64, with each element's bound;
    `activation` is that of i, f, o (sigmoid, or a loaded model's hard sigmoid);
    `activation_floor` an absolute error, in u, of the checked path's sigmoid and tanh on top
    of the relative one (a runtime whose activations are approximations, see rule.py). With
    peepholes (w.peephole), i and f add P_i c_prev and P_f c_prev to z, o adds P_o c (ONNX)."""
    u, u_in, eta = rule.u, rule.u_in, rule.eta
    x64, h64, c64 = x.double(), h_prev.double(), c_prev.double()
    z_x, z_h = x64 @ w.w_ih.T, h64 @ w.w_hh.T
    z = z_x + z_h if w.b is None else z_x + z_h + w.b
    H = w.w_hh.shape[0] // 4
    z = z.view(-1, 4, H).clone()
    if w.peephole is not None:
        z[:, 0:2] += w.peephole[0:2] * c64.unsqueeze(1)
    gates = z.clone()
    gates[:, (0, 1)] = gate_activation(z[:, (0, 1)], activation)
    gates[:, 2] = z[:, 2].tanh()
    i, f, g = gates[:, 0], gates[:, 1], gates[:, 2]
    c = f * c64 + i * g
    if w.peephole is not None:
        z[:, 3] += w.peephole[2] * c
    gates[:, 3] = gate_activation(z[:, 3], activation)
    o = gates[:, 3]
    tanh_c = c.tanh()
    r = o * tanh_c
    h = r if w.w_hr is None else r @ w.w_hr.T
    if rule.overridden:
        return StepReference(gates, c, h, rule.fixed_bound(gates), rule.fixed_bound(c), rule.fixed_bound(h))

    magnitude = (x.abs().float() @ w.abs_ih.T + h_prev.abs().float() @ w.abs_hh.T).double()
    if w.abs_b is not None:
        magnitude += w.abs_b
    e_z = GEMM_ULPS * u * (magnitude + math.sqrt(x.shape[-1]) * z_x.abs() + math.sqrt(h_prev.shape[-1]) * z_h.abs())
    if u_in:
        e_z += 2 * u_in * magnitude
    e_z += GEMM_ULPS * (x.shape[-1] + h_prev.shape[-1] + 1) * eta  # each product may underflow
    e_z = e_z.view(-1, 4, H)
    if w.peephole is not None:  # P c_prev: a product and a sum, each rounded once
        e_z[:, 0:2] += ACTIVATION_ULPS * (u * ((w.peephole[0:2] * c64.unsqueeze(1)).abs() + z[:, 0:2].abs()) + eta)

    def bound(k: list[int], e: torch.Tensor) -> torch.Tensor:
        """The bound of gates k (after their activation) whose pre-activations are within e."""
        # The largest slope of sigmoid (tanh) on [z - e, z + e] is where |z| is smallest there.
        nearest = (z[:, k].abs() - e).clamp(min=0)
        if k == [2]:
            return tanh_slope(nearest) * e + ACTIVATION_ULPS * (u * gates[:, k].abs() + eta) + activation_floor * u
        if activation == "sigmoid":
            return sigmoid_slope(nearest) * e + ACTIVATION_ULPS * (u * gates[:, k].abs() + eta) + activation_floor * u
        # clip(a z + 0.5, 0, 1): slope a at most; a z and the + 0.5 each round once, on values
        # that may be larger than the gate itself.
        a = HARD_SIGMOID_SLOPES[activation]
        return a * e + ACTIVATION_ULPS * (u * (a * z[:, k].abs() + 0.5) + eta) + activation_floor * u

    e_gates = torch.empty_like(gates)
    e_gates[:, 0:2] = bound([0, 1], e_z[:, 0:2])
    e_gates[:, 2:3] = bound([2], e_z[:, 2:3])
    e_i, e_f, e_g = e_gates[:, 0], e_gates[:, 1], e_gates[:, 2]
    e_c = (c64.abs() * e_f + g.abs() * e_i + i * e_g + e_i * e_g
           + ACTIVATION_ULPS * (u * ((f * c64).abs() + (i * g).abs()) + eta))
    e_zo = e_z[:, 3]
    if w.peephole is not None:  # P_o c reads the checked path's own c, off by up to e_c
        e_zo = e_zo + w.peephole[2].abs() * e_c + ACTIVATION_ULPS * (u * ((w.peephole[2] * c).abs() + z[:, 3].abs()) + eta)
    e_gates[:, 3:4] = bound([3], e_zo.unsqueeze(1))
    e_o = e_gates[:, 3]
    slope_c = tanh_slope((c.abs() - e_c).clamp(min=0))
    e_r = tanh_c.abs() * e_o + o * (slope_c * e_c + activation_floor * u) + ACTIVATION_ULPS * (u * r.abs() + eta)
    if w.w_hr is None:
        e_h = e_r
    else:
        r_magnitude = (r.abs().float() @ w.abs_hr.T).double()
        e_h = (e_r.float() @ w.abs_hr.T).double() + GEMM_ULPS * u * (r_magnitude + math.sqrt(r.shape[-1]) * h.abs())
        e_h += GEMM_ULPS * (r.shape[-1] + 1) * eta
        if u_in:
            e_h += 2 * u_in * r_magnitude
    return StepReference(gates, c, h, e_gates, e_c, e_h)


def sigmoid_slope(z: torch.Tensor) -> torch.Tensor:
    """sigma'(z) = sigma(z) sigma(-z): s (1 - s) is exactly 0 in float64 once |z| > 37, where the
    true slope (1e-16 and below) still carries a float32 gate's error."""
    return z.sigmoid() * (-z).sigmoid()


def tanh_slope(z: torch.Tensor) -> torch.Tensor:
    """tanh'(z) = 1 - tanh(z)^2 = 4 sigma(2z) sigma(-2z), without the cancellation (0 in float64
    once |z| > 19)."""
    return 4 * (2 * z).sigmoid() * (-2 * z).sigmoid()


@dataclass
class _Worst:
    """Running maxima and the first failing element over the chunks of one check."""

    reverse: bool
    diff: dict[str, float] = field(default_factory=dict)
    ratio: float = 0.0
    bound_at_max: float = 0.0
    max_diff: float = 0.0
    first_bad: dict | None = None
    nan: bool = False

    def add(self, name: str, got: torch.Tensor, ref: StepReference, steps: torch.Tensor, seqs: torch.Tensor,
            sequence_ids: list[int]) -> None:
        expected, bound = {"gates": (ref.gates, ref.bound_gates), "c": (ref.c, ref.bound_c),
                           "h": (ref.h, ref.bound_h)}[name]
        diff = (got.double() - expected).abs()
        if diff.numel() == 0:
            return
        if torch.isnan(diff).any():
            self.nan = True
        flat = diff.reshape(diff.shape[0], -1)
        flat_bound = bound.reshape(bound.shape[0], -1)
        largest = torch.nan_to_num(flat, nan=math.inf).max()
        self.diff[name] = max(self.diff.get(name, 0.0), largest.item())
        ratio = torch.where(flat_bound > 0, flat / flat_bound, torch.where(flat == 0, 0.0, math.inf))
        ratio = torch.nan_to_num(ratio, nan=math.inf)
        self.ratio = max(self.ratio, ratio.max().item())
        if largest.item() > self.max_diff or (self.max_diff == 0 and largest.item() == 0):
            row, col = divmod(int(torch.nan_to_num(flat, nan=math.inf).argmax()), flat.shape[1])
            self.max_diff, self.bound_at_max = largest.item(), flat_bound[row, col].item()
        bad = ~(flat <= flat_bound)  # NaN is bad
        if not bad.any():
            return
        rows = bad.any(1).nonzero().flatten().cpu()  # steps and seqs live on the CPU
        order = steps[rows] * (-1 if self.reverse else 1) * (len(sequence_ids) + 1) + seqs[rows]
        first = int(rows[int(torch.argmin(order))])
        step, sequence = int(steps[first]), sequence_ids[int(seqs[first])]
        key = (-step if self.reverse else step, sequence)
        if self.first_bad is not None and self.first_bad["_key"] <= key:
            return
        col = int(bad[first].nonzero()[0])
        if name == "gates":
            quantity, unit = "ifgo"[col // expected.shape[-1]], col % expected.shape[-1]
        else:
            quantity, unit = name, col
        self.first_bad = {
            "_key": key, "step": step, "sequence": sequence, "quantity": quantity, "unit": unit,
            "value": got.reshape(got.shape[0], -1)[first, col].item(),
            "reference": expected.reshape(expected.shape[0], -1)[first, col].item(),
            "bound": flat_bound[first, col].item(),
        }


def previous_state(record: torch.Tensor, steps: list[int], lengths: torch.Tensor, reverse: bool,
                   t: torch.Tensor, n: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
    """The state before step t of each (t, n) row in processing order: the recorded state at
    t - 1 (t + 1 backward), and at a sequence's first step its initial state `start[n]` (zero
    when None; a backward pass starts at the sequence's own last valid step, whatever the
    padding after it holds)."""
    slot_of = torch.full((max(steps) + 2,), -1, dtype=torch.long)
    slot_of[torch.tensor(steps, dtype=torch.long)] = torch.arange(len(steps))
    before = t + 1 if reverse else t - 1
    starts = (before < 0) | (before >= lengths[n])
    slots = slot_of[before.clamp(min=0)]
    if bool((slots[~starts] < 0).any()):
        raise ValueError("a checked step's predecessor was not recorded")
    device = record.device
    state = record[slots.clamp(min=0).to(device), n.to(device)]
    first = torch.zeros_like(state) if start is None else start.to(device=device, dtype=state.dtype)[n.to(device)]
    return torch.where(starts.to(device).view(-1, *[1] * (state.dim() - 1)), first, state)


def check_direction(name: str, reference: torch.nn.LSTM, layer: int, direction: str, record: PathRecord,
                    sample: Sample, rule: Rule, activation: str = "sigmoid",
                    initial: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)) -> Check:
    """Every checked step of one layer x direction of the sampled sequences (record's batch
    dimension in the order of sample.sequences) against the float64 step computed with
    `reference`'s own weights (read here, not from the checked path). `initial`: the (h_0, c_0)
    of the sampled sequences, (n, H_out) and (n, H) (None: zeros)."""
    lengths = sample.lengths
    device = record.c.device if record.c.device.type != "mps" else torch.device("cpu")
    w = Weights64.of(direction_weights(reference, layer, direction), device)
    reverse = direction == "backward"
    slot = {t: k for k, t in enumerate(record.steps)}
    wanted_t, wanted_n = [], []
    for n, length in enumerate(lengths):
        for t in sample.steps(length, reverse):
            wanted_t.append(t)
            wanted_n.append(n)
    worst = _Worst(reverse)
    H4 = w.w_ih.shape[0]
    chunk = max(1, ROW_CHUNK_ELEMENTS // H4)
    all_t = torch.tensor(wanted_t, dtype=torch.long)
    all_n = torch.tensor(wanted_n, dtype=torch.long)
    valid_steps = torch.tensor(lengths, dtype=torch.long)
    for start in range(0, len(wanted_t), chunk):
        t, n = all_t[start : start + chunk], all_n[start : start + chunk]
        slots = torch.tensor([slot[v] for v in t.tolist()], dtype=torch.long)

        def rows(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor[slots.to(tensor.device), n.to(tensor.device)].to(device)

        h_prev = previous_state(record.h_fed, record.steps, valid_steps, reverse, t, n, initial[0]).to(device)
        c_prev = previous_state(record.c, record.steps, valid_steps, reverse, t, n, initial[1]).to(device)
        ref = reference_step(w, rows(record.x), h_prev, c_prev, rule, activation)
        for quantity, got in (("gates", rows(record.gates)), ("c", rows(record.c)), ("h", rows(record.h))):
            if got is not None:
                worst.add(quantity, got, ref, t, n, sample.sequences)
    passed = worst.first_bad is None and not worst.nan
    first_bad = None
    if worst.first_bad is not None:
        first_bad = {k: v for k, v in worst.first_bad.items() if k != "_key"}
    return Check(
        name=name,
        passed=passed,
        max_abs_diff=math.nan if worst.nan else worst.max_diff,
        tolerance=worst.bound_at_max,
        worst_ratio=math.nan if worst.nan else worst.ratio,
        first_bad=first_bad,
        checked=f"{len(wanted_t):,} steps: {sample.describe()}",
        max_abs_diff_by=dict(worst.diff),
    )
