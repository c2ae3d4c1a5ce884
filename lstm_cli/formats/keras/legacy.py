"""The legacy Keras HDF5 layout: files from Keras 2, tf.keras and Keras 3's .h5 saving.

As keras/saving/hdf5_format.py and keras/src/legacy/saving/legacy_h5_format.py write it: a full
model has the root attribute model_config (JSON) and the group model_weights; a weights-only
file has that group's contents at its root: attributes layer_names, keras_version, backend,
and one group per layer whose attribute weight_names lists its datasets in order, as paths
inside the layer group ('lstm_1/lstm_cell/kernel:0' for tf.keras, 'lstm_1/kernel:0' for older
Keras 2). An attribute over 64 KB is split into name0, name1, ...
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lstm_cli.formats.base import Contents, FormatError, Rejected
from lstm_cli.formats.keras.config import (
    Refused,
    Version,
    layer_spec,
    named_layers,
    refuse_hidden_lstm,
)
from lstm_cli.formats.keras.convert import (
    WEIGHT_KINDS,
    Target,
    convert,
    spec_from_shapes,
)
from lstm_cli.formats.keras.hdf5 import (
    as_text,
    read_attribute,
    read_dataset,
    read_text_list,
    resolve,
)
from lstm_cli.formats.text import printable


def read_legacy(h5py, weights, root, config: Any) -> Contents:
    written = read_attribute(weights, "keras_version")
    if written is None:
        written = read_attribute(root, "keras_version")
    if written is None:
        # Keras' own loader takes such a file for Keras 1, whose LSTMs had 12 weights.
        raise FormatError("a Keras 1 HDF5 file (no keras_version attribute): lstm-cli reads files from Keras 2 and later")
    version = Version(as_text(written, "the keras_version attribute"))
    contents = Contents(format=f"Keras HDF5 ({'full model' if config is not None else 'weights only'}, Keras {version.text})")
    if config is None:
        contents.notes.append(
            "a weights-only file records no layer configs: LSTMs are recognised by their weight names and shapes"
        )
        configs: dict[str, dict[str, Any]] = {}
    else:
        configs = {name: layer for name, layer in named_layers(config)}
    for name in read_text_list(weights, "layer_names"):
        group = resolve(h5py, weights, name)
        if not isinstance(group, h5py.Group):
            raise FormatError(f"layer_names lists '{printable(name)}', which is not a group in the file")
        weight_names = read_text_list(group, "weight_names")
        if not weight_names:
            continue
        try:
            target = _legacy_layer(h5py, group, name, weight_names, configs.get(name), config is not None)
            if target is not None:
                contents.found.append(convert(target, version))
        except Refused as refused:
            contents.rejected.append(Rejected(name, str(refused)))
    return contents


def _legacy_layer(h5py, group, name: str, weight_names: list[str], layer: dict | None, full: bool) -> Target | None:
    """The layer's LSTM weights, or None for a layer that is not recurrent (Dense, Embedding, ...)."""
    if layer is not None:
        spec = layer_spec(layer)
        if spec is None:
            refuse_hidden_lstm(layer, nested_reason="its weights are stored flattened into the outer model's group")
            return None
    bases = [_weight_base(weight_name) for weight_name in weight_names]
    if layer is None and "recurrent_kernel" not in bases:
        return None  # no config: a layer without a recurrent kernel is not recurrent
    sets = _legacy_sets(h5py, group, weight_names, bases)
    notes: list[str] = []
    if layer is None:
        spec = spec_from_shapes(sets)
        notes.append(
            ("" if not full else "the model_config has no entry for this layer: ")
            + "recognised as an LSTM by its weight shapes; go_backwards, stateful and dropout are not recorded"
        )
    return Target(name, spec, sets, notes)


def _weight_base(weight_name: str) -> str:
    """'lstm_1/lstm_cell/kernel:0' -> 'kernel'."""
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def _legacy_sets(h5py, group, weight_names: list[str], bases: list[str]) -> list[dict[str, np.ndarray]]:
    """The weights of each direction, in Keras' order: kernel, recurrent_kernel[, bias] per set;
    a Bidirectional's forward set first (Keras' loader takes the first half as forward too)."""
    not_lstm = f"its weights ({printable(', '.join(weight_names))}) are not a Keras LSTM's kernel, recurrent_kernel and bias"
    sets: list[dict[str, np.ndarray]] = []
    for weight_name, base in zip(weight_names, bases):
        if base == "kernel":
            sets.append({})
        if base not in WEIGHT_KINDS or not sets or base in sets[-1]:
            raise Refused(not_lstm)
        where = f"{group.name}/{weight_name}"
        found = resolve(h5py, group, weight_name)
        if found is None:
            raise FormatError(f"weight_names lists '{printable(where)}', which is not in the file")
        sets[-1][base] = read_dataset(h5py, found, where)
    if not sets or any("recurrent_kernel" not in weights for weights in sets) or len(sets) > 2:
        raise Refused(not_lstm)
    return sets
