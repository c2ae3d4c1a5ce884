"""Tensors out of any pickle without running anything it names.

A pickle names the Python callables that rebuild its objects, and unpickling calls them: a
hostile file names os.system. torch.load(weights_only=True) refuses every name outside a short
list, so a Lightning checkpoint (omegaconf's ListConfig in its hyper-parameters) or a whole
pickled nn.Module is refused even though its tensors are plain.

This unpickler imports nothing. `find_class` returns the real object only for the few names
torch's own files are rebuilt from (tensor rebuild functions, dtypes, torch.Size, OrderedDict,
...; the list torch/_weights_only_unpickler.py allows, narrowed) and, for plain pickles, numpy's
array reconstructors. Every other name becomes an inert stand-in class that only records the
arguments and state it is given. What comes out is then turned into tensors and plain
containers: a pickled nn.Module (a stand-in whose state has `_parameters`/`_modules`) becomes a
dict of its tensors under the names `module.state_dict()` gives.

Storages are checked before they are allocated: one larger than the whole file is refused, so a
few bytes cannot ask for terabytes.
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import pickle
import pickletools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

# The class a pickled nn.LSTM names (torch.save(model) pickles the class by this path).
LSTM_CLASSES = {"torch.nn.modules.rnn.LSTM"}
MOST_LISTED = 6  # classes named in the note; the rest are counted


class Refused(Exception):
    """The file asks for something lstm-cli will not do (one sentence)."""


class Hostile(Refused):
    """The file names a callable that only a pickle built to run code needs (os.system, eval)."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


# Names no checkpoint needs and every pickle exploit does. A stand-in would make them harmless
# too, but a file that names them was built to attack whoever loads it: the user should know.
HOSTILE_MODULES = (
    "os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "importlib", "runpy", "code",
    "pty", "ctypes", "webbrowser", "marshal", "pickle", "_pickle", "types", "multiprocessing",
)
HOSTILE_BUILTINS = {"eval", "exec", "compile", "__import__", "open", "breakpoint", "input", "globals", "vars"}


def _hostile(module: str, name: str) -> bool:
    if module == "builtins":
        return name in HOSTILE_BUILTINS
    return module.split(".", 1)[0] in HOSTILE_MODULES


@dataclass
class SafeLoad:
    value: Any  # tensors, numpy arrays and plain dicts/lists/tuples/scalars only
    replaced: list[str] = field(default_factory=list)  # "module.qualname" of each class not imported
    batch_first: dict[str, bool] = field(default_factory=dict)  # dotted path of a pickled nn.LSTM -> its batch_first


def note(replaced: list[str]) -> str:
    """The header line that says how the file was read."""
    if not replaced:
        return "read without running code (unpickled with an unpickler that imports nothing)"
    listed = ", ".join(replaced[:MOST_LISTED])
    more = f", and {len(replaced) - MOST_LISTED} more" if len(replaced) > MOST_LISTED else ""
    classes = "class" if len(replaced) == 1 else "classes"
    return f"read without running code; {len(replaced)} {classes} replaced by inert stand-ins: {listed}{more}"


# -- stand-ins ---------------------------------------------------------------------------------


class StandIn:
    """An object of a class that was not imported. Accepts whatever pickle hands it (constructor
    arguments, __setstate__'s state, dict items, list items) and keeps it as data; it has no
    other behaviour, so nothing in the file can make it run code."""

    _module = ""
    _qualname = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> StandIn:
        self = object.__new__(cls)
        object.__setattr__(self, "_args", args)
        object.__setattr__(self, "_kwargs", kwargs)
        object.__setattr__(self, "_state", None)
        object.__setattr__(self, "_items", {})
        object.__setattr__(self, "_list", [])
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # arguments already kept by __new__
        pass

    def __setstate__(self, state: Any) -> None:  # pickle's BUILD
        object.__setattr__(self, "_state", state)

    def __setattr__(self, name: str, value: Any) -> None:  # BUILD's slot state, kept as data
        self._items[name] = value

    def __setitem__(self, key: Any, value: Any) -> None:  # SETITEMS on a dict subclass
        self._items[key] = value

    def append(self, value: Any) -> None:  # APPENDS on a list subclass
        self._list.append(value)

    def extend(self, values: Any) -> None:
        self._list.extend(values)

    def __call__(self, *args: Any, **kwargs: Any) -> StandIn:  # REDUCE with a stand-in object as the callable
        return type(self)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<stand-in for {self._module}.{self._qualname}>"


# -- the few real callables, narrowed so that none of them can allocate or call beyond the file --


def _rebuild_tensor(storage: Any, storage_offset: int, size: Any, stride: Any, *rest: Any) -> torch.Tensor:
    """torch._utils._rebuild_tensor_v2 without backward hooks or Python state (metadata that
    could name more objects): the tensor's values only. set_ checks the view fits its storage."""
    if not isinstance(storage, torch.storage.TypedStorage):
        raise Refused(f"a tensor whose storage is {type(storage).__name__}, not a torch storage")
    _check_fits(storage, storage_offset, size, stride, storage.dtype)
    return torch._utils._rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage: Any, storage_offset: int, size: Any, stride: Any, requires_grad: Any,
                       backward_hooks: Any, dtype: Any, *rest: Any) -> torch.Tensor:
    """torch._utils._rebuild_tensor_v3: as v2, with the tensor's dtype given apart from its storage's."""
    if not isinstance(storage, torch.storage.TypedStorage) or not isinstance(dtype, torch.dtype):
        raise Refused("a tensor whose storage or dtype is not torch's")
    _check_fits(storage, storage_offset, size, stride, dtype)
    return torch.empty((0,), dtype=dtype).set_(storage._untyped_storage, storage_offset, size, stride)


def _check_fits(storage: Any, offset: Any, size: Any, stride: Any, dtype: torch.dtype) -> None:
    """Tensor.set_ grows a storage to fit the view it is given, so a view larger than its storage
    would allocate whatever the pickle says: refuse it instead."""
    numbers = [offset, *size, *stride]
    if len(size) != len(stride) or not all(isinstance(n, int) and n >= 0 for n in numbers):
        raise Refused("a tensor with a malformed shape or stride")
    if 0 in size:
        return
    last = offset + sum((n - 1) * step for n, step in zip(size, stride))
    needed = (last + 1) * torch._utils._element_size(dtype)
    if needed > storage._untyped_storage.nbytes():
        raise Refused(
            f"a tensor of shape {tuple(size)} that needs {needed} bytes of a storage of "
            f"{storage._untyped_storage.nbytes()} (damaged, or built to exhaust memory)"
        )


def _rebuild_parameter(data: Any, *rest: Any) -> Any:
    """torch._utils._rebuild_parameter(_with_state): an nn.Parameter's tensor, no hooks or state."""
    return data.detach() if isinstance(data, torch.Tensor) else data


def _rebuild_from_type_v2(func: Callable[..., Any], new_type: Any, args: tuple, state: Any) -> Any:
    """torch._tensor._rebuild_from_type_v2 (a tensor subclass or a tensor with attributes): the
    plain tensor; the subclass and its attributes are dropped."""
    return func(*args)


def _codecs_encode(text: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Protocol-2 pickles write bytes as _codecs.encode(str, 'latin1'); other codecs (zlib,
    bz2) could expand a few bytes into gigabytes."""
    if not isinstance(text, str) or encoding.replace("-", "").lower() not in ("latin1", "utf8"):
        raise Refused(f"_codecs.encode with {encoding!r}, which torch's files never use")
    return text.encode(encoding, errors)


def _bytearray(*args: Any) -> bytearray:
    """bytearray(bytes) only: bytearray(10**12) would allocate a terabyte."""
    if len(args) > 1 or (args and not isinstance(args[0], (bytes, bytearray))):
        raise Refused("bytearray(n) with a size, which torch's files never use")
    return bytearray(*args)


def _torch_names() -> dict[tuple[str, str], Any]:
    names: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("collections", "Counter"): collections.Counter,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "complex"): complex,
        ("builtins", "bytearray"): _bytearray,
        ("_codecs", "encode"): _codecs_encode,
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
        ("torch", "Tensor"): torch.Tensor,
        ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
        ("torch.serialization", "_get_layout"): torch.serialization._get_layout,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        # A tensor pickled with plain pickle.dump keeps its storage as torch.save bytes.
        ("torch.storage", "_load_from_bytes"): lambda data: _load_torch_bytes(data),
    }
    for value in vars(torch).values():  # torch.float32, torch.per_tensor_affine, ...
        if isinstance(value, (torch.dtype, torch.qscheme, torch.layout, torch.memory_format)):
            names[("torch", str(value).removeprefix("torch."))] = value
    return names


def _numpy_names() -> dict[tuple[str, str], Any]:
    """What a pickled numpy array is rebuilt from (numpy 2 writes numpy._core, numpy 1 numpy.core)."""
    import numpy as np

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1
        from numpy.core import multiarray
    names: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        names[(module, "_reconstruct")] = multiarray._reconstruct
        names[(module, "scalar")] = multiarray.scalar
    for name in dir(np.dtypes):
        if name.endswith("DType"):
            names[("numpy.dtypes", name)] = getattr(np.dtypes, name)
    return names


# -- the unpickler -----------------------------------------------------------------------------


class _Record:
    """What one load replaced, shared by every unpickler torch.load makes for it."""

    def __init__(self, allowed: dict[tuple[str, str], Any], file_size: int):
        self.allowed = allowed
        self.file_size = file_size
        self.stand_ins: dict[tuple[str, str], type] = {}


def _check_pickle(handle: Any) -> None:
    """Walk the next pickle's opcodes up to its STOP without building anything
    (pickletools.genops) and go back: a counted bytes, bytearray or string longer than what
    follows it is refused here, where CPython's unpickler would first allocate the size the
    file declares (a few bytes asking for exabytes) and then fail messily."""
    start = handle.tell()
    end = handle.seek(0, io.SEEK_END)
    handle.seek(start)
    try:
        for _ in pickletools.genops(_Bounded(handle, end)):
            pass
    except ValueError as exc:  # genops' word for every malformed or cut-short pickle
        raise Refused(f"a damaged pickle: {str(exc)[:160]}") from None
    finally:
        handle.seek(start)


class _Bounded:
    """A file whose read(n) asks for no more than what is left: a buffered file's read(n)
    allocates n bytes before it reads."""

    def __init__(self, handle: Any, end: int):
        self.handle, self.end = handle, end

    def read(self, n: int = -1) -> bytes:
        left = max(self.end - self.handle.tell(), 0)
        return self.handle.read(left if n is None or n < 0 else min(n, left))

    def readline(self) -> bytes:
        return self.handle.readline()

    def tell(self) -> int:
        return self.handle.tell()


def _unpickler_class(record: _Record) -> type:
    class SafeUnpickler(pickle.Unpickler):
        def __init__(self, file: Any, *args: Any, **kwargs: Any):
            if file.seekable():  # torch's zip gives data.pkl in memory, legacy files the file itself
                _check_pickle(file)
            super().__init__(file, *args, **kwargs)

        def find_class(self, module: str, name: str) -> Any:
            # Protocol-2 pickles name Python 2's modules (__builtin__.set); pickle's own
            # find_class maps them, and this one replaces it.
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
            if (module, name) in record.allowed:
                return record.allowed[(module, name)]
            if _hostile(module, name):
                raise Hostile(f"{module}.{name}")
            if (module, name) not in record.stand_ins:  # never imported, never looked up
                record.stand_ins[(module, name)] = type(name, (StandIn,), {"_module": module, "_qualname": name})
            return record.stand_ins[(module, name)]

        # torch.load sets `persistent_load` after making the unpickler; this property keeps its
        # function behind a check on each storage's size, made before torch allocates it.
        @property
        def persistent_load(self) -> Callable[[Any], Any]:
            return self._checked_persistent_load

        @persistent_load.setter
        def persistent_load(self, function: Callable[[Any], Any]) -> None:
            self._torch_persistent_load = function

        def _checked_persistent_load(self, saved_id: Any) -> Any:
            function = getattr(self, "_torch_persistent_load", None)
            if function is None or not isinstance(saved_id, tuple) or not saved_id:
                raise pickle.UnpicklingError("a persistent id outside a torch.save file")
            kind = saved_id[0].decode("ascii") if isinstance(saved_id[0], bytes) else saved_id[0]
            if kind == "module":  # legacy files name the class of each pickled module: keep the stand-in
                return saved_id[1]
            if kind == "storage" and len(saved_id) >= 5:
                storage_type, numel = saved_id[1], saved_id[4]
                dtype = torch.uint8 if storage_type is torch.UntypedStorage else getattr(storage_type, "dtype", None)
                if not isinstance(dtype, torch.dtype) or not isinstance(numel, int) or numel < 0:
                    raise Refused("a storage record that is not a torch storage")
                nbytes = numel * torch._utils._element_size(dtype)
                if nbytes > record.file_size:
                    raise Refused(
                        f"a storage that declares {nbytes} bytes in a file of {record.file_size} bytes "
                        "(damaged, or built to exhaust memory)"
                    )
            return function(saved_id)

    return SafeUnpickler


class _PickleModule:
    """What torch.load(pickle_module=...) needs: an Unpickler class and load()."""

    def __init__(self, record: _Record):
        self.Unpickler = _unpickler_class(record)
        self.__name__ = __name__

    def load(self, handle: Any, **kwargs: Any) -> Any:
        return self.Unpickler(handle, **kwargs).load()


def load_torch(file: Path) -> SafeLoad:
    """A torch.save file (zip or legacy), every class replaced by a stand-in."""
    record = _Record(_torch_names(), file.stat().st_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's notes on legacy files are not the user's business
        value = torch.load(file, map_location="cpu", weights_only=False, pickle_module=_PickleModule(record))
    return _finish(value, record)


def load_pickle(file: Path) -> SafeLoad:
    """A plain pickle (pickle.dump) of numpy arrays, tensors and anything else."""
    record = _Record({**_torch_names(), **_numpy_names()}, file.stat().st_size)
    with open(file, "rb") as handle:
        value = _unpickler_class(record)(handle).load()
    return _finish(value, record)


def load_torch_bytes(data: bytes) -> SafeLoad:
    """A torch.save file held in memory (thinc keeps one inside its msgpack)."""
    record = _Record(_torch_names(), len(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False, pickle_module=_PickleModule(record))
    return _finish(value, record)


def _load_torch_bytes(data: Any) -> Any:
    """torch.storage._load_from_bytes: the storage of a tensor pickled with pickle.dump is a
    torch.save file in bytes; read it the same way (never with torch's unrestricted load)."""
    if not isinstance(data, bytes):
        raise Refused("a pickled storage that is not bytes")
    record = _Record(_torch_names(), len(data))
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False, pickle_module=_PickleModule(record))


def _finish(value: Any, record: _Record) -> SafeLoad:
    found = SafeLoad(None, sorted(f"{m}.{n}" for m, n in record.stand_ins))
    found.value = _plain(value, "", found.batch_first, set())
    return found


# -- stand-ins to plain containers -------------------------------------------------------------


def _join(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _plain(value: Any, path: str, batch_first: dict[str, bool], seen: set[int]) -> Any:
    """`value` with every stand-in turned into a dict (a module's into its state_dict's shape),
    so that flatten's dotted paths are state_dict names. `path` is the dotted path flatten will
    give this value; `seen` stops cycles (a module that refers to its parent)."""
    if isinstance(value, (torch.Tensor, str, bytes, int, float, bool, complex)) or value is None:
        return value
    if id(value) in seen:
        return None
    seen = seen | {id(value)}
    if isinstance(value, dict):
        return {key: _plain(item, _join(path, key), batch_first, seen) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_plain(item, _join(path, i), batch_first, seen) for i, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, StandIn):
        return _plain_stand_in(value, path, batch_first, seen)
    if type(value).__module__ == "numpy" and type(value).__name__ == "ndarray":
        return value
    return None  # sets, Counters, devices, dtypes: never weights


def _plain_stand_in(value: StandIn, path: str, batch_first: dict[str, bool], seen: set[int]) -> Any:
    state = value._state
    if isinstance(state, tuple) and len(state) == 2 and all(isinstance(part, (dict, type(None))) for part in state):
        state = {**(state[0] or {}), **(state[1] or {})}  # (__dict__, slots)
    if not isinstance(state, dict):
        state = {}
    state = {**state, **{k: v for k, v in value._items.items() if isinstance(k, str)}}
    if "_parameters" in state or "_modules" in state:  # a pickled nn.Module
        out: dict[str, Any] = {}
        skipped = state.get("_non_persistent_buffers_set")
        skipped = skipped if isinstance(skipped, (set, frozenset)) else set()
        for key in ("_parameters", "_buffers"):
            for name, tensor in _mapping(state.get(key)).items():
                if isinstance(tensor, torch.Tensor) and name not in skipped:
                    out[name] = tensor.detach()
        for name, child in _mapping(state.get("_modules")).items():
            if child is not None:
                out[name] = _plain(child, _join(path, name), batch_first, seen)
        if f"{value._module}.{value._qualname}" in LSTM_CLASSES and isinstance(state.get("batch_first"), bool):
            batch_first[path] = state["batch_first"]
        return out
    if value._list:
        return _plain(list(value._list), path, batch_first, seen)
    if state:
        return _plain(state, path, batch_first, seen)
    return _plain(list(value._args), path, batch_first, seen)


def _mapping(value: Any) -> dict[str, Any]:
    """An OrderedDict of parameters, modules or buffers (or its stand-in), as a dict."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, StandIn):
        return {str(k): v for k, v in value._items.items()}
    return {}
