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
from lstm_cli.formats.text import a_type

NUMERIC_KINDS = "fiub"  # float, signed and unsigned integer, bool


def read_npz(file: Path, trust: bool = False) -> Contents:
    try:
        with np.load(file, allow_pickle=False) as archive:
            arrays = {name: np.array(archive[name]) for name in archive.files}
    except ValueError as exc:  # numpy: "Object arrays cannot be loaded when allow_pickle=False"
        raise FormatError(f"an .npz archive with pickled Python objects inside, refused: {str(exc)[:160]}") from None
    except (OSError, zipfile.BadZipFile, EOFError, NotImplementedError) as exc:  # NotImplementedError: a damaged method or flag field
        raise FormatError(f"an .npz archive numpy cannot read (truncated or corrupt?): {str(exc)[:120]}") from None
    return find_in_tensors(_tensors(arrays), "numpy .npz archive")


def read_pickle(file: Path, trust: bool = False) -> Contents:
    loaded = torch_file.safe_read(lambda: safe_unpickle.load_pickle(file), "a Python pickle",
                                  "lstm-cli refuses it: save the arrays with np.savez(path, **arrays) instead")
    arrays = flatten(loaded.value, np.ndarray)
    tensors = flatten(loaded.value, torch.Tensor)
    if not arrays and not tensors:
        raise FormatError(f"a Python pickle of {a_type(loaded.value)} with no arrays or tensors in it")
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
