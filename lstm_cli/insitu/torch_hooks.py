"""Forward hooks on every nn.LSTM and nn.LSTMCell of a PyTorch model: run the user's whole model
on the user's data and keep exactly what reached each LSTM, as one `Captured` per module.

    with Watch(model) as watch:
        model(images)
    captured = watch.captured("lstm")

What the hooks promise:
- they never change the run: they read their arguments, keep detached CPU copies (a later in-place
  change by user code cannot reach the copy), and return None, so the model's outputs are
  bit-identical with and without a Watch;
- a failure while copying (an input shape nobody planned for) never breaks the user's run: it is
  remembered and raised by `captured()` for that module only.

How calls become one `Captured`:
- nn.LSTM: each call is normalised to time-first and batched (a packed input padded with zeros past
  each length, in the original batch order); several calls of one module (a loop over batches)
  are concatenated along the batch axis, shorter ones padded with zeros, `lengths` recording each
  sequence's own length. A single unbatched call stays unbatched.
- nn.LSTMCell: consecutive calls form one sequence while each call's hx is the (h, c) the previous
  call of the same cell returned (see `_CellRecord.continues`); each sequence becomes a
  (T, N, in) input of a one-layer nn.LSTM, and sequences merge along the batch like nn.LSTM calls.
- sequences beyond `max_sequences`, and nn.LSTMCell calls beyond `max_steps`, are not kept; the
  `Captured`'s notes say how many were.

Names are those of `model.named_modules()` (of the module inside a torch.compile wrapper, whose
hooks fire); the model itself, when it is an LSTM (named "" by
torch), is named by its class, e.g. "LSTM" (or "(model)" should a submodule already have that
name); `module("")` and `captured("")` accept "" for it too.

TorchScript (torch.jit.script / trace / load) cannot be watched: a ScriptModule refuses
register_forward_hook (scripted), or runs its submodules as one compiled graph so their hooks never
fire (traced), and its LSTMs are no longer nn.LSTM instances. `Watch` refuses such a model with a
one-line UsageError saying what to use instead.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from lstm_cli.errors import UsageError
from lstm_cli.insitu.captured import Captured
from lstm_cli.formats.text import a_type

LSTM_TYPES = (nn.LSTM, nn.LSTMCell)

TORCHSCRIPT_REFUSAL = (
    "{what} is TorchScript ({kind}): its LSTMs run as compiled code that forward hooks cannot see; "
    "watch the eager model instead (build the Python class and load its state_dict), or export it "
    "to ONNX and capture there, or give the LSTM's own input with --input"
)


def _keep(tensor: torch.Tensor) -> torch.Tensor:
    """A detached copy on the CPU that nothing the user's code does later can change."""
    return tensor.detach().to("cpu", copy=True)


def _pad_time(tensor: torch.Tensor, steps: int) -> torch.Tensor:
    """(L, N, ...) padded with zeros to (steps, N, ...)."""
    missing = steps - tensor.shape[0]
    if missing <= 0:
        return tensor
    return torch.cat([tensor, tensor.new_zeros((missing, *tensor.shape[1:]))], dim=0)


def _count(n: int) -> str:
    return f"{n:,}"


@dataclass
class _Part:
    """Some sequences that reached one LSTM, time-first and batched: x (L, N, in), states
    (layers, N, H), output (L, N, out), zero past each sequence's length."""

    x: torch.Tensor
    lengths: list[int]
    h0: torch.Tensor | None
    c0: torch.Tensor | None
    output: torch.Tensor
    h_n: torch.Tensor
    c_n: torch.Tensor
    unbatched: bool = False

    def rows(self, keep: int) -> _Part:
        """The first `keep` sequences only."""
        def first(t):
            return None if t is None else t[:, :keep]
        return _Part(first(self.x), self.lengths[:keep], first(self.h0), first(self.c0),
                     first(self.output), first(self.h_n), first(self.c_n), self.unbatched)


def _merge(parts: list[_Part]) -> tuple[torch.Tensor, tuple[int, ...] | None, torch.Tensor | None,
                                         torch.Tensor | None, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Parts concatenated along the batch axis: (x, lengths, h0, c0, output, h_n, c_n), time-first.
    Shorter parts are padded with zeros past their length; a part that started from no state gets
    zeros where others passed one (nn.LSTM's meaning of hx=None)."""
    steps = max(part.x.shape[0] for part in parts)
    if len(parts) == 1:  # one call: its copies as they are (a cat would copy them again)
        part = parts[0]
        lengths = None if all(length == steps for length in part.lengths) else tuple(part.lengths)
        return part.x, lengths, part.h0, part.c0, part.output, part.h_n, part.c_n
    x = torch.cat([_pad_time(part.x, steps) for part in parts], dim=1)
    output = torch.cat([_pad_time(part.output, steps) for part in parts], dim=1)
    h_n = torch.cat([part.h_n for part in parts], dim=1)
    c_n = torch.cat([part.c_n for part in parts], dim=1)
    lengths = [length for part in parts for length in part.lengths]
    h0 = c0 = None
    if any(part.h0 is not None for part in parts):
        # nn.LSTM's hx=None means zeros of h_n's / c_n's shape and dtype.
        h0 = torch.cat([part.h0 if part.h0 is not None else torch.zeros_like(part.h_n) for part in parts], dim=1)
        c0 = torch.cat([part.c0 if part.c0 is not None else torch.zeros_like(part.c_n) for part in parts], dim=1)
    return x, (None if all(length == steps for length in lengths) else tuple(lengths)), h0, c0, output, h_n, c_n


def _arguments(args: tuple, kwargs: dict) -> tuple[object, object]:
    """(input, hx) of an nn.LSTM / nn.LSTMCell call, positional or by keyword."""
    data = args[0] if args else kwargs.get("input")
    hx = args[1] if len(args) > 1 else kwargs.get("hx")
    return data, hx


@dataclass
class _Budget:
    """How many sequences (batch rows) one module may still keep, and how many it saw."""

    limit: int
    kept: int = 0
    seen: int = 0

    def take(self, rows: int) -> int:
        """Count `rows` new sequences; how many of them to keep."""
        self.seen += rows
        keep = max(0, min(rows, self.limit - self.kept))
        self.kept += keep
        return keep

    def note(self) -> list[str]:
        if self.seen <= self.kept or self.kept < self.limit:  # not cut by max_sequences (max_steps may have)
            return []
        return [f"kept the first {_count(self.kept)} of {_count(self.seen)} sequences (max_sequences)"]


@dataclass
class _LSTMRecord:
    """Every call of one nn.LSTM."""

    module: nn.LSTM
    budget: _Budget
    parts: list[_Part] = field(default_factory=list)
    calls: int = 0

    def add(self, args: tuple, kwargs: dict, result: tuple) -> None:
        self.calls += 1
        data, hx = _arguments(args, kwargs)
        out, (h_n, c_n) = result
        rows = h_n.shape[1] if h_n.dim() == 3 else 1  # sequences in this call (h_n: (layers, N, H) or (layers, H))
        keep = self.budget.take(rows)
        if keep == 0:  # over max_sequences: counted for the note, nothing copied
            return
        if isinstance(data, PackedSequence):
            # pad_packed_sequence restores the original batch order (unsorted_indices) and pads
            # with zeros; the user's hx and the returned h_n/c_n are in that order already.
            x, lengths = pad_packed_sequence(data, batch_first=False)
            lengths = [int(n) for n in lengths]
            output, _ = pad_packed_sequence(out, batch_first=False)
            unbatched = False
        else:
            unbatched = data.dim() == 2
            x, output = data, out
            if unbatched:  # (L, in) -> (L, 1, in); states (layers, H) -> (layers, 1, H)
                x, output = x.unsqueeze(1), output.unsqueeze(1)
                h_n, c_n = h_n.unsqueeze(1), c_n.unsqueeze(1)
                if hx is not None:
                    hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
            elif self.module.batch_first:  # (N, L, ...) -> (L, N, ...)
                x, output = x.transpose(0, 1), output.transpose(0, 1)
            lengths = [x.shape[0]] * x.shape[1]
        part = _Part(x, lengths, None if hx is None else hx[0], None if hx is None else hx[1], output, h_n, c_n, unbatched)
        if keep < rows:
            part = part.rows(keep)  # slice before copying: never copy what is not kept
        self.parts.append(_Part(
            _keep(part.x), part.lengths,
            None if part.h0 is None else _keep(part.h0), None if part.c0 is None else _keep(part.c0),
            _keep(part.output), _keep(part.h_n), _keep(part.c_n), part.unbatched,
        ))

    def captured(self, where: str) -> Captured:
        batch_first = self.module.batch_first
        if len(self.parts) == 1 and self.parts[0].unbatched:  # one unbatched call: nn.LSTM's own unbatched layout
            part = self.parts[0]
            squeeze = (lambda t: None if t is None else t.squeeze(1))
            return Captured(squeeze(part.x), batch_first, None, squeeze(part.h0), squeeze(part.c0),
                            squeeze(part.output), squeeze(part.h_n), squeeze(part.c_n), where, tuple(self.budget.note()))
        x, lengths, h0, c0, output, h_n, c_n = _merge(self.parts)
        if batch_first:
            x, output = x.transpose(0, 1).contiguous(), output.transpose(0, 1).contiguous()
        notes = self.budget.note()
        if self.calls > 1:
            notes.insert(0, f"{_count(self.calls)} calls merged along the batch axis")
        return Captured(x, batch_first, lengths, h0, c0, output, h_n, c_n, where, tuple(notes))


@dataclass
class _Sequence:
    """Consecutive nn.LSTMCell calls that chain (each call's hx is the previous call's output):
    per step the input (N, in) and the returned h, c (N, H), batched; the first call's hx."""

    keep_rows: int
    h0: torch.Tensor | None
    c0: torch.Tensor | None
    xs: list[torch.Tensor] = field(default_factory=list)
    hs: list[torch.Tensor] = field(default_factory=list)
    cs: list[torch.Tensor] = field(default_factory=list)

    def part(self) -> _Part:
        def layer(t):  # (N, H) -> (1, N, H): the state of a one-layer nn.LSTM
            return None if t is None else t.unsqueeze(0)
        output = torch.stack(self.hs)
        return _Part(torch.stack(self.xs), [len(self.xs)] * self.keep_rows, layer(self.h0), layer(self.c0),
                     output, output[-1:].clone(), torch.stack(self.cs)[-1:].clone())


@dataclass
class _CellRecord:
    """Every call of one nn.LSTMCell, grouped into sequences.

    The chaining rule: a call continues the current sequence when its hx holds the values the
    previous call of this cell returned, i.e. when the steps so far are exactly one nn.LSTM
    recurrence. Checked first by identity: the very tensor objects that call returned
    (`hx = cell(x, hx)`), not changed in place since (their version counter is the same); failing
    that, by value (torch.equal with copies taken at return), so a loop that clones, detaches or
    moves its state between steps still chains. A call with hx None, or with any other state (a
    reset, a mask applied in place, a fresh tensor) starts a new sequence from that state. Only
    the previous call is compared: interleaving two loops on one cell (A1, B1, A2, B2) gives
    one-step sequences.
    """

    module: nn.LSTMCell
    budget: _Budget
    max_steps: int
    sequences: list[_Sequence] = field(default_factory=list)
    calls: int = 0
    kept_calls: int = 0
    started: int = 0  # sequences begun (kept or not)
    previous: tuple | None = None  # ((weakref, version), ...) of the (h, c) the last call returned
    previous_values: tuple | None = None  # and copies of their values, for the fallback
    current: _Sequence | None = None  # the sequence being extended (None: not kept)

    def continues(self, hx) -> bool:
        if hx is None or self.previous is None:
            return False
        h, c = hx
        (h_ref, h_version), (c_ref, c_version) = self.previous
        if h is h_ref() and c is c_ref() and h._version == h_version and c._version == c_version:
            return True  # the returned tensors themselves, not modified in place since
        old_h, old_c = self.previous_values
        return (h.shape == old_h.shape and c.shape == old_c.shape and h.dtype == old_h.dtype
                and torch.equal(h.detach().cpu(), old_h) and torch.equal(c.detach().cpu(), old_c))

    def add(self, args: tuple, kwargs: dict, result: tuple) -> None:
        self.calls += 1
        data, hx = _arguments(args, kwargs)
        h, c = result
        chained = self.continues(hx)
        # Remember what this call returned before anything else, so the next call can be matched
        # even when this one is not kept.
        self.previous = ((weakref.ref(h), h._version), (weakref.ref(c), c._version))
        self.previous_values = (_keep(h), _keep(c))
        unbatched = data.dim() == 1
        if unbatched:  # (in,) -> (1, in), states (H,) -> (1, H): a batch of one
            data, h, c = data.unsqueeze(0), h.unsqueeze(0), c.unsqueeze(0)
            if hx is not None:
                hx = (hx[0].unsqueeze(0), hx[1].unsqueeze(0))
        if not chained:
            self.started += 1
            self.current = None
            if self.kept_calls >= self.max_steps:  # past max_steps nothing more is kept
                self.budget.seen += data.shape[0]
                return
            keep = self.budget.take(data.shape[0])
            if keep:
                self.current = _Sequence(
                    keep, None if hx is None else _keep(hx[0][:keep]), None if hx is None else _keep(hx[1][:keep]))
                self.sequences.append(self.current)
        if self.current is None or self.kept_calls >= self.max_steps:
            return
        rows = self.current.keep_rows
        self.current.xs.append(_keep(data[:rows]))
        self.current.hs.append(_keep(h[:rows]))
        self.current.cs.append(_keep(c[:rows]))
        self.kept_calls += 1

    def captured(self, where: str) -> Captured:
        parts = [sequence.part() for sequence in self.sequences if sequence.xs]
        x, lengths, h0, c0, output, h_n, c_n = _merge(parts)
        notes = [f"{_count(self.calls)} nn.LSTMCell call{'s' if self.calls != 1 else ''} chained into "
                 f"{_count(self.started)} sequence{'s' if self.started != 1 else ''} (a call continues a "
                 "sequence when its hx is what the previous call returned)"]
        notes += self.budget.note()
        if self.kept_calls < self.calls and self.kept_calls >= self.max_steps:
            notes.append(f"kept the first {_count(self.kept_calls)} of {_count(self.calls)} calls (max_steps)")
        return Captured(x, False, lengths, h0, c0, output, h_n, c_n, where, tuple(notes))


class Watch:
    """Context manager: while inside, every call of every nn.LSTM / nn.LSTMCell of `model` (the
    model itself included) is recorded; afterwards `captured(name)` gives what reached it."""

    def __init__(self, model: nn.Module, max_sequences: int = 4096, max_steps: int = 100_000):
        _refuse_torchscript(model)
        if max_sequences < 1 or max_steps < 1:
            raise UsageError("max_sequences and max_steps must be at least 1")
        # torch.compile's wrapper (OptimizedModule) runs the original module, whose hooks fire;
        # name modules as the user wrote them ("lstm", not "_orig_mod.lstm").
        inner = getattr(model, "_orig_mod", None)
        if type(model).__name__ == "OptimizedModule" and isinstance(inner, nn.Module):
            model = inner
        self.model = model
        self.max_sequences = max_sequences
        self.max_steps = max_steps
        self.names: list[str] = []  # modules called at least once, in first-call order
        self._modules: dict[str, nn.Module] = {}  # every LSTM of the model, by name
        self._records: dict[str, _LSTMRecord | _CellRecord] = {}
        self._errors: dict[str, str] = {}  # a module whose call could not be copied: why
        self._handles: list = []
        all_names = {name for name, _ in model.named_modules()}
        root = type(model).__name__ if type(model).__name__ not in all_names else "(model)"
        for name, module in model.named_modules():
            if isinstance(module, LSTM_TYPES):
                self._modules[name or root] = module
        self._root = root

    def __enter__(self) -> Watch:
        for name, module in self._modules.items():
            # with_kwargs: a model may pass hx by keyword (self.lstm(x, hx=state)).
            handle = module.register_forward_hook(self._hook(name), with_kwargs=True)
            self._handles.append(handle)
        return self

    def __exit__(self, *exc_info) -> None:
        # Always remove every hook, whatever the body did; returning None lets its exception through.
        handles, self._handles = self._handles, []
        for handle in handles:
            handle.remove()

    def _hook(self, name: str):
        def hook(module, args, kwargs, output):
            if name in self._errors:
                return None
            try:
                record = self._records.get(name)
                if record is None:
                    budget = _Budget(self.max_sequences)
                    record = (_LSTMRecord(module, budget) if isinstance(module, nn.LSTM)
                              else _CellRecord(module, budget, self.max_steps))
                    self._records[name] = record
                    self.names.append(name)
                record.add(args, kwargs, output)
            except Exception as exc:  # never break the user's run; captured(name) reports it
                if name not in self.names:
                    self.names.append(name)
                self._errors[name] = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
            return None  # a forward hook that returns None leaves the output as it was

        return hook

    def _name(self, name: str) -> str:
        return self._root if name == "" else name

    def module(self, name: str) -> nn.Module:
        """The nn.LSTM or nn.LSTMCell called `name` (called or not)."""
        name = self._name(name)
        if name not in self._modules:
            raise UsageError(self._unknown(name))
        return self._modules[name]

    def resolve(self, key: str | None) -> str:
        """The name of the LSTM that `key` means: None picks the only one called; anything that is
        not a called nn.LSTM / nn.LSTMCell is a one-line UsageError listing those that were."""
        if key is None:
            if len(self.names) == 1:
                return self.names[0]
            if not self.names:
                have = ", ".join(self._modules) or "none"
                raise UsageError(f"{type(self.model).__name__} called no nn.LSTM or nn.LSTMCell (its LSTM modules: {have})")
            raise UsageError(f"{type(self.model).__name__} called {len(self.names)} LSTMs: {', '.join(self.names)}; "
                             "choose one with --key NAME")
        name = self._name(key)
        if name in self.names:
            return name
        raise UsageError(self._unknown(name))

    def _unknown(self, name: str) -> str:
        called = f"the LSTMs it called: {', '.join(self.names)}" if self.names else "it called no LSTM"
        owner = type(self.model).__name__
        if name in self._modules:
            return f"{name!r} ({type(self._modules[name]).__name__}) was never called while {owner} ran; {called}"
        modules = dict(self.model.named_modules())
        if name in modules:
            return f"{name!r} is {a_type(modules[name])}, not an nn.LSTM or nn.LSTMCell; {called}"
        return f"{owner} has no module {name!r}; {called}"

    def captured(self, name: str | None = None) -> Captured:
        """What reached LSTM `name` (None: the only one called), in nn.LSTM's layouts."""
        name = self.resolve(name)
        if name in self._errors:
            raise UsageError(f"what reached {name} could not be captured: {self._errors[name]}")
        return self._records[name].captured(f"captured at {name} of {type(self.model).__name__}")


def _refuse_torchscript(model: nn.Module) -> None:
    """A one-line UsageError when the model, or a submodule holding an LSTM, is TorchScript."""
    script = torch.jit.ScriptModule
    if isinstance(model, script):
        kind = "traced" if isinstance(model, torch.jit.TracedModule) else "scripted or loaded with torch.jit.load"
        raise UsageError(TORCHSCRIPT_REFUSAL.format(what=f"the model ({type(model).__name__})", kind=kind))
    for name, module in model.named_modules():
        if isinstance(module, script):
            # A ScriptModule keeps its Python class's name in original_name.
            inner = [n for n, m in module.named_modules() if getattr(m, "original_name", "") in ("LSTM", "LSTMCell")]
            if inner:
                kind = "traced" if isinstance(module, torch.jit.TracedModule) else "scripted"
                raise UsageError(TORCHSCRIPT_REFUSAL.format(what=f"submodule {name!r}, which holds an LSTM,", kind=kind))
