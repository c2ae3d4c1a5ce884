"""Keras LSTMs: HDF5 files from Keras 2, tf.keras and Keras 3 (full models and weights only),
Keras 3 .keras archives and .weights.h5 files, read with h5py alone (no TensorFlow, no Keras).

This module opens the file and tells the layouts apart; each job has its module:

- hdf5.py: safe access to an untrusted HDF5 file (links, cycles, size limits, attribute text)
- legacy.py: the legacy HDF5 layout of Keras 2, tf.keras and Keras 3's .h5
- keras3.py: the Keras 3 layout (.keras archives, .weights.h5 files)
- config.py: what a layer config says (LSTM settings, activations, Keras version defaults)
- convert.py: Keras weights as nn.LSTM's tensors
- messages.py: text from the file made fit for one-line messages

The file is untrusted: no link is followed, no data outside the file is read, every walk and
every declared size is bounded, and a .keras archive is read in place (never extracted). h5py is
an optional extra, imported per read.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from lstm_cli.formats.base import Contents, FormatError
from lstm_cli.formats.keras.config import Version, parse_json
from lstm_cli.formats.keras.hdf5 import (
    as_text,
    has_attribute,
    has_link,
    link_names,
    open_hdf5,
    read_attribute,
    resolve,
)
from lstm_cli.formats.keras.keras3 import natural_order, read_archive, read_keras3
from lstm_cli.formats.keras.legacy import read_legacy
from lstm_cli.formats.text import printable


def read(file: Path, trust: bool = False) -> Contents:
    """Every LSTM in a Keras HDF5 file, .keras archive or .weights.h5 file. `trust` changes
    nothing: reading Keras files never runs code from them (Lambda layers are never rebuilt)."""
    try:
        import h5py
    except ImportError:
        raise FormatError("reading Keras files needs h5py: pip install 'lstm-cli[keras]'") from None
    file = Path(file)
    try:
        # HDF5 first: a zip's end record can occur by chance inside an HDF5 file, not vice versa.
        is_zip = zipfile.is_zipfile(file) and not h5py.is_hdf5(str(file))
        with open(file, "rb") as handle:
            zip_start = handle.read(4) == b"PK\x03\x04"
    except OSError as exc:
        raise FormatError(f"could not read the file: {exc.strerror or exc}") from None
    if is_zip:
        return read_archive(file, h5py)
    if zip_start:  # a zip's first entry without its end record: cut short
        raise FormatError("a truncated or damaged zip archive (.keras files are zips)")
    with open_hdf5(h5py, str(file)) as root:
        return _read_hdf5(h5py, root)


def _read_hdf5(h5py, root) -> Contents:
    """Which kind of Keras HDF5 file this is, from its attributes and top-level groups."""
    if "model_config" in root.attrs:
        config = parse_json(as_text(read_attribute(root, "model_config"), "the model_config attribute"), "model_config attribute")
        weights = resolve(h5py, root, "model_weights")
        if weights is None:
            raise FormatError("a Keras model_config without a model_weights group: the model was saved without weights")
        if not isinstance(weights, h5py.Group):
            raise FormatError("its model_weights is not a group")
        return read_legacy(h5py, weights, root, config)
    if has_attribute(root, "layer_names"):
        return read_legacy(h5py, root, root, None)
    if any(has_link(root, name) for name in ("layers", "_layer_checkpoint_dependencies", "vars")):
        return read_keras3(h5py, root, None, Version(None), "Keras 3 weights file (.weights.h5)")
    listed = ", ".join(printable(name) for name in sorted(link_names(root), key=natural_order)[:12]) or "none"
    raise FormatError(f"an HDF5 file without Keras layers (top-level groups: {listed})")
