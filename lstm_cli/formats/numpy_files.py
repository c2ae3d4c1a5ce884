"""numpy's files: .npz archives (np.savez, read with allow_pickle=False), and plain Python
pickles of a dict of numpy arrays (pickle.dump({"weight_ih_l0": array, ...})).

A pickle can name any Python callable and have it called while loading. This unpickler
resolves only the few names numpy's arrays are rebuilt from (the array reconstructor, ndarray,
dtype and its classes, scalars, and _codecs.encode for protocol-2 byte strings) and refuses any
other name before anything is called, so a pickle that holds arrays loads and one that could
run code never gets to.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lstm_cli.formats.base import Contents, FormatError
from lstm_cli.formats.named_tensors import find_in_tensors, flatten

NUMERIC_KINDS = "fiub"  # float, signed and unsigned integer, bool


def read_npz(file: Path, trust: bool = False) -> Contents:
    try:
        with np.load(file, allow_pickle=False) as archive:
            arrays = {name: np.array(archive[name]) for name in archive.files}
    except ValueError as exc:  # numpy: "Object arrays cannot be loaded when allow_pickle=False"
        raise FormatError(f"an .npz archive with pickled Python objects inside, refused: {str(exc)[:160]}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise FormatError(f"an .npz archive numpy cannot read (truncated or corrupt?): {str(exc)[:120]}") from None
    return find_in_tensors(_tensors(arrays), "numpy .npz archive")


def read_pickle(file: Path, trust: bool = False) -> Contents:
    try:
        with open(file, "rb") as handle:
            value = _ArraysOnly(handle).load()
    except _Refused as exc:
        raise FormatError(
            f"a Python pickle that needs {exc.name}, not only numpy arrays; unpickling it could run "
            "code, so lstm-cli refuses: save the arrays with np.savez(path, **arrays) instead"
        ) from None
    except Exception as exc:  # a damaged pickle raises many kinds of error
        raise FormatError(f"a Python pickle that cannot be read (truncated or corrupt?): {type(exc).__name__}") from None
    arrays = flatten(value, np.ndarray)
    if not arrays:
        raise FormatError(f"a Python pickle of a {type(value).__name__} with no numpy arrays in it")
    return find_in_tensors(_tensors(arrays), "Python pickle of numpy arrays (read without running code)")


def _tensors(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    bad = next((name for name, a in arrays.items() if a.dtype.kind not in NUMERIC_KINDS), None)
    if bad is not None:
        raise FormatError(f"array '{bad}' has dtype {arrays[bad].dtype}, not numbers")
    return {name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in arrays.items()}


class _Refused(Exception):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


# (module, name) pairs an array pickle needs. numpy 2 writes numpy._core, numpy 1 numpy.core.
_ALLOWED = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("collections", "OrderedDict"),
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED or (module == "numpy.dtypes" and name.endswith("DType")):
            return super().find_class(module, name)
        raise _Refused(f"{module}.{name}")
