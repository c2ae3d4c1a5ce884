"""numpy's files: .npz archives (np.savez, read with allow_pickle=False), and plain Python
pickles of a dict of numpy arrays (pickle.dump({"weight_ih_l0": array, ...})).

A pickle can name any Python callable and have it called while loading. safe_unpickle resolves
only the names numpy's arrays and torch's tensors are rebuilt from and replaces every other
class by an inert stand-in, so a pickle that holds arrays (or a pickled nn.Module) is read and
nothing in it runs; one that names os.system or eval is refused.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from lstm_cli.formats import safe_unpickle, torch_file
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
        loaded = safe_unpickle.load_pickle(file)
    except safe_unpickle.Hostile as exc:
        raise FormatError(
            f"a Python pickle that names {exc.name}, which only a pickle built to run code needs; "
            "lstm-cli refuses it: save the arrays with np.savez(path, **arrays) instead"
        ) from None
    except safe_unpickle.Refused as exc:
        raise FormatError(f"a Python pickle that lstm-cli refuses to read: {exc}") from None
    except Exception as exc:  # a damaged pickle raises many kinds of error
        raise FormatError(f"a Python pickle that cannot be read (truncated or corrupt?): {type(exc).__name__}") from None
    arrays = flatten(loaded.value, np.ndarray)
    tensors = flatten(loaded.value, torch.Tensor)
    if not arrays and not tensors:
        raise FormatError(f"a Python pickle of a {type(loaded.value).__name__} with no arrays or tensors in it")
    if not tensors and not loaded.replaced:  # the common case: a dict of numpy arrays
        return find_in_tensors(_tensors(arrays), "Python pickle of numpy arrays (read without running code)")
    named = {**_tensors(arrays), **tensors}
    return torch_file.contents_of(safe_unpickle.SafeLoad(named, loaded.replaced, loaded.batch_first),
                                  "Python pickle (read without running code)")


def _tensors(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    bad = next((name for name, a in arrays.items() if a.dtype.kind not in NUMERIC_KINDS), None)
    if bad is not None:
        raise FormatError(f"array '{bad}' has dtype {arrays[bad].dtype}, not numbers")
    return {name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in arrays.items()}
