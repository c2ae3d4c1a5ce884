"""Keras LSTMs: HDF5 files from Keras 2, tf.keras and Keras 3 (full models and weights only),
Keras 3 .keras archives and .weights.h5 files, read with h5py alone (no TensorFlow, no Keras).

The layouts, as Keras' own saving code writes them:

- Legacy HDF5 (keras/saving/hdf5_format.py, keras/src/legacy/saving/legacy_h5_format.py). A full
  model has the root attribute model_config (JSON) and the group model_weights; a weights-only
  file has that group's contents at its root: attributes layer_names, keras_version, backend,
  and one group per layer whose attribute weight_names lists its datasets in order, as paths
  inside the layer group ('lstm_1/lstm_cell/kernel:0' for tf.keras, 'lstm_1/kernel:0' for older
  Keras 2). An attribute over 64 KB is split into name0, name1, ...
- Keras 3 (keras/src/saving/saving_lib.py). A .keras file is a zip of config.json, metadata.json
  and model.weights.h5; a .weights.h5 file is that HDF5 file alone. A layer's variables are the
  datasets vars/0, vars/1, ... under layers/<its class in snake_case>, numbered lstm, lstm_1, ...
  per class in model order (Keras 2.13-2.15 wrote _layer_checkpoint_dependencies/ and counted
  each layer with weights twice: lstm, lstm_2, ...). An LSTM's are cell/vars/0..2 (kernel,
  recurrent_kernel, bias); a Bidirectional's are under forward_layer/ and backward_layer/.

Keras computes z = x @ kernel + h @ recurrent_kernel + bias with kernel (I, 4H), recurrent_kernel
(H, 4H) and the gate blocks in the order i, f, c, o, which is nn.LSTM's i, f, g, o: the matrices
are transposed and nothing is reordered. CuDNNLSTM stores each gate's input block so that its
row-major bytes are cuDNN's (H, I) matrix, its recurrent blocks already as (out, in), and two
biases (8H) where nn.LSTM also has two (Keras' _convert_rnn_weights does the same conversion).

The file is untrusted: no link (soft, external, user-defined) is followed, no dataset stored in
or mapped from another file is read, every group walk is bounded and stops at a second link to a
group already seen, every dataset's declared size and dtype are checked before it is read, and a
.keras archive is read in place (never extracted). h5py is an optional extra, imported per read.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lstm_cli.formats.base import Contents, FormatError, Found, Rejected

MAX_ELEMENTS = 2**28  # per dataset, declared: 1 GiB of float32
MAX_DEPTH = 32  # HDF5 path components followed, and model nesting in a config
MAX_GROUPS = 100_000  # groups visited when walking a Keras 3 weights file without a config
MAX_ATTRIBUTE_BYTES = 64 * 2**20  # one attribute's declared size (model_config JSON included)
MAX_ATTRIBUTE_CHUNKS = 10_000  # layer_names0, layer_names1, ...
MAX_JSON_BYTES = 64 * 2**20  # config.json and metadata.json in a .keras archive
MAX_MEMBER_BYTES = 2**32  # a compressed model.weights.h5, decompressed into memory
MAX_CONFIG_NODES = 1_000_000  # JSON values searched for LSTM classes in a wrapper's config

GATE_ORDER = "gate order i,f,c,o = PyTorch i,f,g,o: no reorder"
BATCH_FIRST = "Keras input is (batch, time, features): batch_first=True"
TIME_MAJOR = "time_major=True: Keras input is (time, batch, features): batch_first=False"

# Layer class -> whether its weights are in CuDNNLSTM's layout.
LSTM_CLASSES = {"LSTM": False, "CuDNNLSTM": True}
OTHER_RECURRENT = {"GRU", "CuDNNGRU", "SimpleRNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"}
NESTED_MODELS = {"Sequential", "Functional", "Model"}
WEIGHT_KINDS = ("kernel", "recurrent_kernel", "bias")
# Keras 3's vars/<i> of an LSTM cell, in LSTMCell.build's order.
CELL_VARS = {"0": "kernel", "1": "recurrent_kernel", "2": "bias"}
# Groups of a Keras 3 weights file that hold no layers: optimizer slots mirror the weights' shapes.
NOT_LAYERS = {"vars", "optimizer"}


class _Refused(Exception):
    """This layer cannot become an nn.LSTM; the message is the one-sentence Rejected reason."""


@dataclass
class _Spec:
    """A recurrent layer as its config describes it (or as its weights suggest, without one)."""

    cudnn: bool  # weights in CuDNNLSTM's layout
    forward: dict[str, Any]  # the LSTM's settings (an RNN's LSTMCell settings merged in)
    bidirectional: bool = False
    backward: dict[str, Any] | None = None  # a Bidirectional's backward layer, when recorded
    merge_mode: str | None = "concat"


@dataclass
class _Version:
    """Who wrote the file, as far as it says."""

    text: str | None  # keras_version as written: "2.4.0", "2.2.4-tf", "3.3.3"; None: not recorded

    @property
    def keras3(self) -> bool:
        return self.text is not None and self.text.startswith("3")


@dataclass
class _Target:
    """One LSTM-like layer found in a file, before conversion."""

    name: str
    spec: _Spec
    sets: list[dict[str, np.ndarray]]  # per direction: kernel, recurrent_kernel, [bias]
    notes: list[str] = field(default_factory=list)


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
        return _read_archive(file, h5py)
    if zip_start:  # a zip's first entry without its end record: cut short
        raise FormatError("a truncated or damaged zip archive (.keras files are zips)")
    with _hdf5(h5py, str(file)) as root:
        return _read_hdf5(h5py, root)


# -- containers -------------------------------------------------------------------------------


@contextlib.contextmanager
def _hdf5(h5py, source: Any) -> Iterator[Any]:
    """The open HDF5 file; h5py's errors for damaged bytes, at opening or later, become one
    FormatError (ours pass through untouched). h5py raises TypeError for a damaged datatype."""
    try:
        handle = h5py.File(source, "r")
    except (OSError, ValueError) as exc:
        raise FormatError(f"not a readable HDF5 file (truncated or corrupt?): {_first_line(exc)}") from None
    try:
        with handle:
            yield handle
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise FormatError(f"not a readable HDF5 file (truncated or corrupt?): {_first_line(exc)}") from None


def _read_archive(file: Path, h5py) -> Contents:
    """A Keras 3 (or Keras 2.13-2.15) .keras zip, read in place."""
    try:
        with zipfile.ZipFile(file) as archive:
            names = set(archive.namelist())
            if "config.json" not in names:
                raise FormatError("a zip archive without config.json, so not a .keras file")
            if "model.weights.h5" not in names:
                if "model.weights.npz" in names:
                    raise FormatError(
                        "a .keras archive whose weights are in model.weights.npz, which needs pickle to read; "
                        "save it with Keras' default weights format (model.weights.h5)"
                    )
                raise FormatError("a .keras archive without model.weights.h5")
            config = _json_member(archive, "config.json")
            metadata = _json_member(archive, "metadata.json") if "metadata.json" in names else {}
            written = metadata.get("keras_version") if isinstance(metadata, dict) else None
            version = _Version(written if isinstance(written, str) else None)
            if version.keras3:
                what = f"Keras 3 .keras archive (Keras {version.text})"
            else:
                what = f"Keras .keras archive (Keras {version.text or 'version not recorded'})"
            info = archive.getinfo("model.weights.h5")
            with archive.open(info) as member:
                if info.compress_type == zipfile.ZIP_STORED:
                    # Keras stores the member uncompressed: h5py seeks in it directly, no copy.
                    source: Any = member
                else:
                    # Seeking back in a compressed member restarts its decompression, so a
                    # recompressed archive is decompressed once, into memory, bounded.
                    data = member.read(MAX_MEMBER_BYTES + 1)
                    if len(data) > MAX_MEMBER_BYTES:
                        raise FormatError(f"its model.weights.h5 is over {MAX_MEMBER_BYTES >> 30} GiB decompressed")
                    source = io.BytesIO(data)
                with _hdf5(h5py, source) as root:
                    return _read_keras3(h5py, root, config, version, what)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise FormatError(f"a damaged zip archive: {_first_line(exc)}") from None
    except OSError as exc:
        raise FormatError(f"could not read the archive: {exc.strerror or _first_line(exc)}") from None


def _json_member(archive: zipfile.ZipFile, name: str) -> Any:
    with archive.open(name) as member:
        text = member.read(MAX_JSON_BYTES + 1)
    if len(text) > MAX_JSON_BYTES:
        raise FormatError(f"its {name} is over {MAX_JSON_BYTES >> 20} MiB")
    return _parse_json(text, name)


def _parse_json(text: str | bytes, what: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise FormatError(f"its {what} is not valid JSON") from None


def _read_hdf5(h5py, root) -> Contents:
    """Which kind of Keras HDF5 file this is, from its attributes and top-level groups."""
    if "model_config" in root.attrs:
        config = _parse_json(_text(_attribute(root, "model_config"), "the model_config attribute"), "model_config attribute")
        weights = _resolve(h5py, root, "model_weights")
        if weights is None:
            raise FormatError("a Keras model_config without a model_weights group: the model was saved without weights")
        if not isinstance(weights, h5py.Group):
            raise FormatError("its model_weights is not a group")
        return _read_legacy(h5py, weights, root, config)
    if _has_attribute(root, "layer_names"):
        return _read_legacy(h5py, root, root, None)
    if any(_has(root, name) for name in ("layers", "_layer_checkpoint_dependencies", "vars")):
        return _read_keras3(h5py, root, None, _Version(None), "Keras 3 weights file (.weights.h5)")
    listed = ", ".join(_printable(name) for name in sorted(_names(root), key=_natural)[:12]) or "none"
    raise FormatError(f"an HDF5 file without Keras layers (top-level groups: {listed})")


# -- legacy HDF5: Keras 2, tf.keras, Keras 3's .h5 --------------------------------------------


def _read_legacy(h5py, weights, root, config: Any) -> Contents:
    written = _attribute(weights, "keras_version")
    if written is None:
        written = _attribute(root, "keras_version")
    if written is None:
        # Keras' own loader takes such a file for Keras 1, whose LSTMs had 12 weights.
        raise FormatError("a Keras 1 HDF5 file (no keras_version attribute): lstm-cli reads files from Keras 2 and later")
    version = _Version(_text(written, "the keras_version attribute"))
    contents = Contents(format=f"Keras HDF5 ({'full model' if config is not None else 'weights only'}, Keras {version.text})")
    if config is None:
        contents.notes.append(
            "a weights-only file records no layer configs: LSTMs are recognised by their weight names and shapes"
        )
        configs: dict[str, dict[str, Any]] = {}
    else:
        configs = {name: layer for name, layer in _named_layers(config)}
    for name in _text_list(weights, "layer_names"):
        group = _resolve(h5py, weights, name)
        if not isinstance(group, h5py.Group):
            raise FormatError(f"layer_names lists '{_printable(name)}', which is not a group in the file")
        weight_names = _text_list(group, "weight_names")
        if not weight_names:
            continue
        try:
            target = _legacy_layer(h5py, group, name, weight_names, configs.get(name), config is not None)
            if target is not None:
                contents.found.append(_convert(target, version))
        except _Refused as refused:
            contents.rejected.append(Rejected(name, str(refused)))
    return contents


def _legacy_layer(h5py, group, name: str, weight_names: list[str], layer: dict | None, full: bool) -> _Target | None:
    """The layer's LSTM weights, or None for a layer that is not recurrent (Dense, Embedding, ...)."""
    if layer is not None:
        spec = _spec(layer)
        if spec is None:
            _refuse_hidden_lstm(layer, nested_reason="its weights are stored flattened into the outer model's group")
            return None
    bases = [_weight_base(weight_name) for weight_name in weight_names]
    if layer is None and "recurrent_kernel" not in bases:
        return None  # no config: a layer without a recurrent kernel is not recurrent
    sets = _legacy_sets(h5py, group, weight_names, bases)
    notes: list[str] = []
    if layer is None:
        spec = _spec_from_shapes(sets)
        notes.append(
            ("" if not full else "the model_config has no entry for this layer: ")
            + "recognised as an LSTM by its weight shapes; go_backwards, stateful and dropout are not recorded"
        )
    return _Target(name, spec, sets, notes)


def _weight_base(weight_name: str) -> str:
    """'lstm_1/lstm_cell/kernel:0' -> 'kernel'."""
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def _legacy_sets(h5py, group, weight_names: list[str], bases: list[str]) -> list[dict[str, np.ndarray]]:
    """The weights of each direction, in Keras' order: kernel, recurrent_kernel[, bias] per set;
    a Bidirectional's forward set first (Keras' loader takes the first half as forward too)."""
    not_lstm = f"its weights ({_printable(', '.join(weight_names))}) are not a Keras LSTM's kernel, recurrent_kernel and bias"
    sets: list[dict[str, np.ndarray]] = []
    for weight_name, base in zip(weight_names, bases):
        if base == "kernel":
            sets.append({})
        if base not in WEIGHT_KINDS or not sets or base in sets[-1]:
            raise _Refused(not_lstm)
        where = f"{group.name}/{weight_name}"
        found = _resolve(h5py, group, weight_name)
        if found is None:
            raise FormatError(f"weight_names lists '{_printable(where)}', which is not in the file")
        sets[-1][base] = _array(h5py, found, where)
    if not sets or any("recurrent_kernel" not in weights for weights in sets) or len(sets) > 2:
        raise _Refused(not_lstm)
    return sets


def _named_layers(config: Any) -> list[tuple[str, dict[str, Any]]]:
    """(layer name, layer dict) for the top-level layers of a Sequential or Functional config."""
    return [(_layer_name(layer), layer) for layer in _layer_list(config)]


def _layer_list(config: Any) -> list[dict[str, Any]]:
    inner = config.get("config") if isinstance(config, dict) else None
    # Keras before 2.2.3 wrote a Sequential's config as the bare list of its layers.
    layers = inner if isinstance(inner, list) else inner.get("layers") if isinstance(inner, dict) else None
    return [layer for layer in layers if isinstance(layer, dict)] if isinstance(layers, list) else []


def _layer_name(layer: dict[str, Any]) -> str:
    settings = layer.get("config")
    name = layer.get("name") or (settings.get("name") if isinstance(settings, dict) else None)
    return str(name) if name is not None else "?"


# -- Keras 3 weights (.keras archives, .weights.h5) ----------------------------------------------


def _read_keras3(h5py, root, config: Any, version: _Version, what: str) -> Contents:
    contents = Contents(format=what)
    layers = _layer_list(config)
    if layers:
        # No layers group at all (nothing was built): each LSTM is then rejected as unmatched.
        _keras3_configured(h5py, _container(h5py, root), layers, "", 0, version, contents)
        return contents
    if config is None:
        contents.notes.append(
            "a .weights.h5 file records no layer configs or names: LSTMs are recognised by where Keras stores "
            "them and their shapes, and named by that place (lstm, lstm_1, ...)"
        )
    else:
        contents.notes.append(
            "config.json lists no layers (a subclassed model?): LSTMs are recognised by where Keras stores them "
            "and their shapes, and named by that place"
        )
    _keras3_walk(h5py, root, contents, version)
    return contents


def _container(h5py, group):
    """The group holding a model's layers: layers/, or _layer_checkpoint_dependencies/ in files
    from Keras 2.13-2.15 (as Keras 3's own loader falls back to)."""
    for name in ("layers", "_layer_checkpoint_dependencies"):
        found = _resolve(h5py, group, name)
        if isinstance(found, h5py.Group):
            return found
    return None


def _keras3_configured(h5py, container, layers: list[dict], prefix: str, depth: int, version: _Version, contents: Contents) -> None:
    """Pair each config layer with its group: per class, the groups lstm, lstm_<n>, ... in the
    order of n are that class's layers in model order (Keras numbers them so, by counting)."""
    if depth > MAX_DEPTH:
        raise FormatError(f"its config nests models deeper than {MAX_DEPTH} levels")
    children = _names(container) if container is not None else []
    same_class: dict[str, list[dict]] = {}
    for layer in layers:
        if isinstance(layer.get("class_name"), str):
            same_class.setdefault(_snake_case(layer["class_name"]), []).append(layer)
    groups: dict[str, list[str]] = {}
    for snake in same_class:
        numbered = re.compile(rf"{re.escape(snake)}(?:_(\d+))?")
        groups[snake] = sorted(
            (name for name in children if numbered.fullmatch(name)),
            key=lambda name, numbered=numbered: int(numbered.fullmatch(name).group(1) or 0),
        )
    seen: dict[str, int] = {}
    for layer in layers:  # in model order, so that what is found is listed in that order
        if not isinstance(layer.get("class_name"), str):
            continue
        snake = _snake_case(layer["class_name"])
        index, count = seen.get(snake, 0), len(same_class[snake])
        seen[snake] = index + 1
        name = prefix + _layer_name(layer)
        try:
            nested = _layer_list(layer) if layer["class_name"] in NESTED_MODELS else []
            spec = None if nested else _spec(layer)
            if not nested and spec is None:
                _refuse_hidden_lstm(layer, nested_reason=None)
                continue
            if len(groups[snake]) != count:
                raise _Refused(
                    f"its weights could not be matched: model.weights.h5 has {len(groups[snake])} '{snake}' group(s) "
                    f"for {count} such layer(s) (was every layer built before saving?)"
                )
            where = f"{container.name}/{groups[snake][index]}"
            group = _resolve(h5py, container, groups[snake][index])
            if nested:
                inner = _container(h5py, group) if isinstance(group, h5py.Group) else None
                if inner is None:
                    raise _Refused(f"a nested model without a layers group at '{_printable(where)}'")
                _keras3_configured(h5py, inner, nested, name + "/", depth + 1, version, contents)
                continue
            sets = _keras3_sets(h5py, group, spec.bidirectional, where)
            contents.found.append(_convert(_Target(name, spec, sets), version))
        except _Refused as refused:
            contents.rejected.append(Rejected(name, str(refused)))


def _keras3_walk(h5py, root, contents: Contents, version: _Version) -> None:
    """Without layer configs: every group holding cell/vars (an RNN) or forward_layer and
    backward_layer (a Bidirectional), found by a bounded walk that follows hard links only."""
    seen = {_object_key(h5py, root)}

    def visit(group, parts: list[str]) -> None:
        if len(parts) >= MAX_DEPTH:
            raise FormatError(f"'{_printable(group.name)}' is nested deeper than {MAX_DEPTH} groups")
        for child_name in sorted(_names(group), key=_natural):
            if child_name in NOT_LAYERS:
                continue
            child = _link(h5py, group, child_name, f"{group.name.rstrip('/')}/{child_name}")
            if not isinstance(child, h5py.Group):
                continue
            key = _object_key(h5py, child)
            if key in seen:
                raise FormatError(
                    f"'{_printable(child.name)}' links back to a group already read (an HDF5 cycle or shared group), "
                    "which Keras never writes"
                )
            seen.add(key)
            if len(seen) > MAX_GROUPS:
                raise FormatError(f"it has over {MAX_GROUPS:,} groups, far more than a Keras weights file")
            here = parts + [child_name]
            bidirectional = _has(child, "forward_layer") and _has(child, "backward_layer")
            if bidirectional or _has(child, "cell"):
                name = "/".join(part for part in here if part not in ("layers", "_layer_checkpoint_dependencies"))
                try:
                    sets = _keras3_sets(h5py, child, bidirectional, child.name)
                    target = _Target(name, _spec_from_shapes(sets), sets)
                    target.notes.append("recognised as an LSTM by its weight shapes; go_backwards, stateful and dropout are not recorded")
                    contents.found.append(_convert(target, version))
                except _Refused as refused:
                    contents.rejected.append(Rejected(name, str(refused)))
            else:
                visit(child, here)

    visit(root, [])


def _keras3_sets(h5py, group, bidirectional: bool, where: str) -> list[dict[str, np.ndarray]]:
    """cell/vars/0..2 of an RNN layer group, or of its forward_layer and backward_layer."""
    if not isinstance(group, h5py.Group):
        raise _Refused(f"no weights at '{_printable(where)}' (was the layer built before saving?)")
    layers = ["forward_layer", "backward_layer"] if bidirectional else [None]
    sets = []
    for sub in layers:
        path = f"{sub}/cell/vars" if sub else "cell/vars"
        variables = _resolve(h5py, group, path)
        if not isinstance(variables, h5py.Group):
            raise _Refused(f"no weights at '{_printable(where)}/{path}' (was the layer built before saving?)")
        names = sorted(_names(variables), key=_natural)
        if names not in (["0", "1"], ["0", "1", "2"]):
            raise _Refused(
                f"'{_printable(where)}/{path}' holds {_printable(', '.join(names)) or 'nothing'}, not a Keras LSTM "
                "cell's kernel, recurrent_kernel and bias (0, 1, 2)"
            )
        sets.append(
            {CELL_VARS[n]: _array(h5py, _link(h5py, variables, n, f"{variables.name}/{n}"), f"{variables.name}/{n}") for n in names}
        )
    return sets


def _snake_case(name: str) -> str:
    """Keras' naming.to_snake_case, which names a layer's group after its class."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _natural(name: str) -> list:
    """lstm, lstm_1, lstm_2, ..., lstm_10 in that order."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


# -- what a layer config says -------------------------------------------------------------------


def _spec(layer: dict[str, Any]) -> _Spec | None:
    """The LSTM a layer config describes; None for a layer that is not recurrent; _Refused for a
    recurrent layer that is not an LSTM (GRU, SimpleRNN, ...)."""
    class_name = layer.get("class_name")
    settings = layer.get("config") if isinstance(layer.get("config"), dict) else {}
    if class_name != "Bidirectional":
        unit = _unit(layer)
        return _Spec(cudnn=unit[0], forward=unit[1]) if unit else None
    inner = settings.get("layer")
    try:
        unit = _unit(inner) if isinstance(inner, dict) else None
    except _Refused:
        raise _Refused(f"a Keras Bidirectional({_printable(str(inner.get('class_name')))}) layer, not an LSTM") from None
    if unit is None:
        inner_class = inner.get("class_name") if isinstance(inner, dict) else None
        raise _Refused(f"a Keras Bidirectional wrapper around {_printable(str(inner_class or 'an unrecorded layer'))}, not an LSTM")
    backward = settings.get("backward_layer")
    backward_settings = None
    if isinstance(backward, dict):
        try:
            backward_unit = _unit(backward)
        except _Refused:
            backward_unit = None
        if backward_unit is None or backward_unit[0] != unit[0]:
            raise _Refused(
                f"its backward layer is a {_printable(str(backward.get('class_name')))}, not the same kind of LSTM as its forward layer"
            )
        backward_settings = backward_unit[1]
    merge_mode = settings.get("merge_mode", "concat")
    return _Spec(unit[0], unit[1], True, backward_settings, merge_mode if isinstance(merge_mode, str) else None)


def _unit(layer: dict[str, Any]) -> tuple[bool, dict[str, Any]] | None:
    """(CuDNN layout?, settings) of one LSTM layer config; None when it is not recurrent."""
    class_name = layer.get("class_name")
    settings = layer.get("config") if isinstance(layer.get("config"), dict) else {}
    if class_name in LSTM_CLASSES:
        return LSTM_CLASSES[class_name], settings
    if class_name in OTHER_RECURRENT:
        raise _Refused(f"a Keras {class_name} layer, not an LSTM")
    if class_name != "RNN":
        return None
    cell = settings.get("cell") if isinstance(settings.get("cell"), dict) else {}
    cell_class = cell.get("class_name")
    if cell_class == "LSTMCell":
        # RNN(LSTMCell(...)) is an LSTM layer: the cell holds the activations and dropout, the
        # RNN go_backwards, stateful and time_major.
        cell_settings = cell.get("config") if isinstance(cell.get("config"), dict) else {}
        return False, {**cell_settings, **{k: v for k, v in settings.items() if k != "cell"}}
    if cell_class == "StackedRNNCells":
        raise _Refused("a Keras RNN of stacked cells (StackedRNNCells), which lstm-cli does not read: use one LSTM layer per cell")
    if cell_class == "PeepholeLSTMCell":
        raise _Refused("a Keras RNN of PeepholeLSTMCell cells: peephole connections, which nn.LSTM does not have")
    raise _Refused(f"a Keras RNN layer of {_printable(str(cell_class or 'unrecorded'))} cells, not an LSTM")


def _refuse_hidden_lstm(layer: dict[str, Any], nested_reason: str | None) -> None:
    """A layer lstm-cli does not unpack (a nested model in a legacy file, TimeDistributed, a custom
    wrapper) is refused when its config holds an LSTM, and skipped silently otherwise."""
    if not _holds_lstm(layer.get("config")):
        return
    class_name = layer.get("class_name")
    if class_name in NESTED_MODELS and nested_reason:
        raise _Refused(f"a nested Keras model holding LSTM layers, which lstm-cli does not read in this format ({nested_reason})")
    raise _Refused(f"a Keras {_printable(str(class_name))} wrapper around an LSTM, which lstm-cli does not read")


def _holds_lstm(config: Any) -> bool:
    """Whether a config holds an LSTM anywhere, searched iteratively and bounded (JSON is a tree)."""
    pending, seen = [config], 0
    while pending and seen < MAX_CONFIG_NODES:
        value = pending.pop()
        seen += 1
        if isinstance(value, dict):
            if value.get("class_name") in ("LSTM", "CuDNNLSTM", "LSTMCell"):
                return True
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


def _spec_from_shapes(sets: list[dict[str, np.ndarray]]) -> _Spec:
    """Without a config: an LSTM by its shapes (4 gate blocks), CuDNNLSTM by its 8H bias, as
    Keras' own loader tells them apart; a GRU (3 blocks) or SimpleRNN (1) is refused."""
    kernel, recurrent = sets[0]["kernel"], sets[0]["recurrent_kernel"]
    gates = _gates(kernel.shape, recurrent.shape)
    if gates == 3:
        raise _Refused("a Keras GRU layer, not an LSTM (judged by its weight shapes)")
    if gates == 1:
        raise _Refused("a Keras SimpleRNN layer, not an LSTM (judged by its weight shapes)")
    if gates != 4:
        raise _Refused(f"weights of shapes {_shape(kernel)} and {_shape(recurrent)}, which fit no Keras LSTM")
    bias = sets[0].get("bias")
    cudnn = bias is not None and bias.shape == (8 * recurrent.shape[0],)
    return _Spec(cudnn=cudnn, forward={}, bidirectional=len(sets) == 2)


def _gates(kernel_shape: tuple[int, ...], recurrent_shape: tuple[int, ...]) -> int | None:
    """How many gate blocks kernel (I, nH) and recurrent_kernel (H, nH) hold; None if no n fits."""
    if len(kernel_shape) != 2 or len(recurrent_shape) != 2:
        return None
    hidden, columns = recurrent_shape
    if hidden == 0 or columns % hidden or kernel_shape[1] != columns:
        return None
    return columns // hidden


def _settings(target: _Target, version: _Version) -> tuple[str, bool, list[str]]:
    """(recurrent activation, batch_first, notes) from the config; _Refused when nn.LSTM (with
    the recurrent activations base.py knows) cannot compute what Keras computes."""
    spec, notes = target.spec, []
    activation = _activations(spec.forward, spec.cudnn, version, notes)
    if spec.backward is not None and _activations(spec.backward, spec.cudnn, version, []) != activation:
        raise _Refused("its forward and backward layers use different activations")
    forward = spec.forward
    if forward.get("go_backwards"):
        if spec.bidirectional:
            raise _Refused("its forward layer has go_backwards=True, so its directions are the reverse of nn.LSTM's")
        raise _Refused("go_backwards=True: it reads the sequence in reverse, and nn.LSTM has no reverse-only layer")
    if forward.get("stateful"):
        notes.append("stateful=True: Keras carried the state from one batch into the next; here each run starts from the given (or zero) state")
    dropout, recurrent_dropout = forward.get("dropout") or 0, forward.get("recurrent_dropout") or 0
    if dropout or recurrent_dropout:
        notes.append(f"dropout={_printable(str(dropout))}, recurrent_dropout={_printable(str(recurrent_dropout))} act only in training; inference ignores them")
    if spec.bidirectional and spec.merge_mode != "concat":
        notes.append(
            f"merge_mode='{_printable(str(spec.merge_mode))}': Keras combines the two directions' outputs that way, nn.LSTM concatenates them "
            "(the weights are the same)"
        )
    return activation, not forward.get("time_major", False), notes


def _activations(settings: dict[str, Any], cudnn: bool, version: _Version, notes: list[str]) -> str:
    """The recurrent activation key for base.RECURRENT_ACTIVATIONS; the cell activation must be tanh."""
    if cudnn:
        return "sigmoid"  # cuDNN's LSTM is fixed: sigmoid gates, tanh cell
    activation = _activation_name(settings.get("activation", "tanh"))
    if activation != "tanh":
        raise _Refused(f"its activation is '{_printable(activation)}', not tanh, and nn.LSTM's cell and output activations are tanh")
    if "recurrent_activation" in settings:
        recurrent = _activation_name(settings["recurrent_activation"])
    else:
        recurrent, why = _default_recurrent(version)
        notes.append(why)
    if recurrent == "sigmoid":
        return "sigmoid"
    if recurrent == "hard_sigmoid":
        # Keras 2's hard_sigmoid is clip(0.2 z + 0.5, 0, 1); Keras 3's is relu6(z + 3) / 6.
        return "hard_sigmoid_keras3" if version.keras3 else "hard_sigmoid"
    raise _Refused(f"its recurrent_activation is '{_printable(recurrent)}'; lstm-cli runs LSTMs whose gates use sigmoid or hard_sigmoid")


def _activation_name(value: Any) -> str:
    """'tanh' from 'tanh' or from a serialized builtin function; custom ones keep their name."""
    if value is None:
        return "linear"  # Keras: activation=None applies no activation
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        inner = value.get("config")
        module = value.get("module")
        if isinstance(inner, str) and isinstance(module, str) and module.startswith("keras"):
            return inner  # a builtin serialized as {"module": "keras.activations", "config": "tanh", ...}
        return f"custom {inner if isinstance(inner, str) else value.get('class_name', 'activation')}"
    return str(value)


def _default_recurrent(version: _Version) -> tuple[str, str]:
    """LSTM's default recurrent_activation in the Keras that wrote the file, and a note saying it
    was assumed: hard_sigmoid before Keras 2.3 ("Change default recurrent activation to sigmoid
    (from hard_sigmoid) in all RNN layers", Keras 2.3.0) and in TensorFlow 1.x's tf.keras,
    sigmoid in tf.keras 2.x and Keras 3."""
    written = version.text
    if written is None:
        return "sigmoid", (
            "the file records no recurrent_activation and no Keras version: assumed sigmoid, the default of "
            "tf.keras 2.x and Keras >= 2.3 (Keras < 2.3 defaulted to hard_sigmoid)"
        )
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", written)
    if match is None:
        return "sigmoid", f"the file records no recurrent_activation and an unrecognised keras_version '{_printable(written)}': assumed sigmoid"
    number = tuple(int(part or 0) for part in match.groups())
    prefix = "the file records no recurrent_activation: assumed"
    if number >= (2, 3, 0):
        return "sigmoid", f"{prefix} sigmoid, LSTM's default in Keras {written} (the default since Keras 2.3)"
    if written.endswith("-tf") and number == (2, 2, 4):
        return "sigmoid", (
            f"{prefix} sigmoid, LSTM's default in TensorFlow 2.0-2.1, whose tf.keras wrote '2.2.4-tf'; late TensorFlow "
            "1.x releases wrote the same version with a hard_sigmoid default, so an LSTM saved there will not match"
        )
    if written.endswith("-tf"):
        return "hard_sigmoid", f"{prefix} hard_sigmoid, LSTM's default in TensorFlow 1.x's tf.keras {written}"
    return "hard_sigmoid", f"{prefix} hard_sigmoid, LSTM's default in Keras {written} (before Keras 2.3)"


# -- conversion ------------------------------------------------------------------------------


def _convert(target: _Target, version: _Version) -> Found:
    """Keras kernel, recurrent_kernel and bias (per direction) as nn.LSTM's parameters."""
    activation, batch_first, notes = _settings(target, version)
    sets, spec = target.sets, target.spec
    if len(sets) != (2 if spec.bidirectional else 1):
        raise _Refused(f"it holds {len(sets)} set(s) of LSTM weights, and its config says {'2' if spec.bidirectional else '1'}")
    shapes = {tuple((kind, weights[kind].shape) for kind in WEIGHT_KINDS if kind in weights) for weights in sets}
    if len(shapes) > 1:
        raise _Refused("its forward and backward layers differ in shape or bias, which one nn.LSTM cannot hold")
    state: dict[str, torch.Tensor] = {}
    conversions: list[str] = []
    for weights, direction, suffix in zip(sets, ("forward ", "backward ") if len(sets) == 2 else ("",), ("", "_reverse")):
        state.update(_direction(weights, spec.cudnn, direction, suffix, conversions))
    if "bias_ih_l0" not in state:
        conversions.append("use_bias=False: no bias tensors (nn.LSTM(bias=False))")
    conversions.append(GATE_ORDER)
    conversions.append(BATCH_FIRST if batch_first else TIME_MAJOR)
    return Found(
        name=target.name,
        state=state,
        conversions=conversions,
        notes=target.notes + notes,
        recurrent_activation=activation,
        batch_first=batch_first,
    )


def _direction(weights: dict[str, np.ndarray], cudnn: bool, label: str, suffix: str, conversions: list[str]) -> dict[str, torch.Tensor]:
    kernel, recurrent, bias = weights["kernel"], weights["recurrent_kernel"], weights.get("bias")
    if _gates(kernel.shape, recurrent.shape) != 4:
        raise _Refused(
            f"its {label}kernel {_shape(kernel)} and recurrent_kernel {_shape(recurrent)} are not "
            "(input, 4*units) and (units, 4*units)"
        )
    hidden, inputs = recurrent.shape[0], kernel.shape[0]
    blocks = range(4)
    if cudnn:
        # Keras' _convert_rnn_weights: a gate's (I, H) input block holds cuDNN's (H, I) matrix in
        # row-major order (reshape, not transpose); its (H, H) recurrent block is already (out, in).
        weight_ih = np.concatenate([kernel[:, g * hidden : (g + 1) * hidden].reshape(hidden, inputs) for g in blocks])
        weight_hh = np.concatenate([recurrent[:, g * hidden : (g + 1) * hidden] for g in blocks])
        conversions.append(
            f"{label}kernel {_shape(kernel)} in CuDNNLSTM's layout: each gate's ({inputs}, {hidden}) block "
            f"reshaped row-major to ({hidden}, {inputs}), not transposed -> weight_ih_l0{suffix} {_shape(weight_ih)}"
        )
        conversions.append(
            f"{label}recurrent_kernel {_shape(recurrent)} in CuDNNLSTM's layout: each gate's ({hidden}, {hidden}) "
            f"block is already (out, in), stacked -> weight_hh_l0{suffix} {_shape(weight_hh)}"
        )
    else:
        weight_ih, weight_hh = kernel.T, recurrent.T
        conversions.append(f"{label}kernel {_shape(kernel)} transposed -> weight_ih_l0{suffix} {_shape(weight_ih)}")
        conversions.append(f"{label}recurrent_kernel {_shape(recurrent)} transposed -> weight_hh_l0{suffix} {_shape(weight_hh)}")
    state = {f"weight_ih_l0{suffix}": _tensor(weight_ih), f"weight_hh_l0{suffix}": _tensor(weight_hh)}
    if bias is None:
        return state
    if cudnn:
        if bias.shape != (8 * hidden,):
            raise _Refused(f"its {label}bias is {_shape(bias)}, and a CuDNNLSTM's is (8*units,) = ({8 * hidden},)")
        bias_ih, bias_hh = bias[: 4 * hidden], bias[4 * hidden :]
        conversions.append(
            f"{label}bias {_shape(bias)} split: [:{4 * hidden}] input biases -> bias_ih_l0{suffix}, "
            f"[{4 * hidden}:] recurrent biases -> bias_hh_l0{suffix}"
        )
    else:
        if bias.shape != (4 * hidden,):
            raise _Refused(f"its {label}bias is {_shape(bias)}, and an LSTM's is (4*units,) = ({4 * hidden},)")
        bias_ih, bias_hh = bias, np.zeros_like(bias)
        conversions.append(
            f"{label}bias {_shape(bias)} -> bias_ih_l0{suffix}; bias_hh_l0{suffix} = zeros "
            "(Keras has one bias, nn.LSTM adds bias_ih + bias_hh)"
        )
    state[f"bias_ih_l0{suffix}"] = _tensor(bias_ih)
    state[f"bias_hh_l0{suffix}"] = _tensor(bias_hh)
    return state


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))


def _shape(array: np.ndarray) -> str:
    return "(" + ", ".join(map(str, array.shape)) + ("," if array.ndim == 1 else "") + ")"


# -- safe HDF5 access ---------------------------------------------------------------------------


def _link(h5py, group, name: str, where: str):
    """The object `name` in `group` when a hard link leads there; None when there is no such
    link. Soft, external and user-defined links are refused, never followed."""
    link = group.get(name, getlink=True)
    if link is None:
        return None
    if isinstance(link, h5py.ExternalLink):
        raise FormatError(f"'{_printable(where)}' links to another file '{_printable(link.filename)}'; lstm-cli reads only the given file")
    if isinstance(link, h5py.SoftLink):
        raise FormatError(f"'{_printable(where)}' is a soft link to '{_printable(link.path)}', which Keras never writes; lstm-cli follows no HDF5 links")
    if not isinstance(link, h5py.HardLink):
        raise FormatError(f"'{_printable(where)}' is a user-defined HDF5 link, which lstm-cli does not follow")
    return group[name]


def _resolve(h5py, group, path: str):
    """The object at a relative path, one component at a time through hard links only, bounded."""
    parts = [part for part in path.split("/") if part]
    if any(part in (".", "..") for part in parts):
        return None  # Keras never writes them; "." would name the group itself
    if len(parts) > MAX_DEPTH:
        raise FormatError(f"'{_printable(path)}' is nested deeper than {MAX_DEPTH} groups")
    current = group
    for index, part in enumerate(parts):
        if not isinstance(current, h5py.Group):
            return None
        current = _link(h5py, current, part, f"{group.name.rstrip('/')}/{'/'.join(parts[: index + 1])}")
        if current is None:
            return None
    return current


def _names(group) -> list[str]:
    """The link names in a group, without following any; h5py gives bytes for one that is not
    valid text, which Keras never writes."""
    names = list(group.keys())
    if not all(isinstance(name, str) for name in names):
        raise FormatError(f"'{_printable(group.name)}' holds a link whose name is not valid UTF-8 text")
    return names


def _has(group, name: str) -> bool:
    """Whether `group` has a link `name`, without following it."""
    return group.get(name, getlink=True) is not None


def _object_key(h5py, obj) -> tuple[int, int]:
    """The same group reached by two paths (a cycle) has one key."""
    info = h5py.h5o.get_info(obj.id)
    return info.fileno, info.addr


def _array(h5py, dataset, where: str) -> np.ndarray:
    """A dataset's values after checking, from its metadata alone, that reading them is sane."""
    if not isinstance(dataset, h5py.Dataset):
        raise FormatError(f"'{_printable(where)}' is not a dataset")
    if dataset.shape is None:
        raise FormatError(f"'{_printable(where)}' is an empty dataset without a shape")
    count = math.prod(dataset.shape)
    if count > MAX_ELEMENTS:
        raise FormatError(
            f"'{_printable(where)}' declares shape {dataset.shape} = {count:,} values, over lstm-cli's limit of {MAX_ELEMENTS:,} per tensor"
        )
    if dataset.dtype.kind != "f":
        if _text_or_none(_attribute(dataset, "dtype")) == "bfloat16":
            raise FormatError(f"'{_printable(where)}' is stored as bfloat16, which lstm-cli does not read from Keras files")
        raise FormatError(f"'{_printable(where)}' has dtype {dataset.dtype}, not a float type")
    if dataset.is_virtual:
        raise FormatError(f"'{_printable(where)}' is a virtual dataset mapped from other files; lstm-cli reads only the given file")
    if dataset.id.get_create_plist().get_external_count():
        raise FormatError(f"'{_printable(where)}' keeps its values in an external file; lstm-cli reads only the given file")
    try:
        return np.asarray(dataset[()])
    except (OSError, RuntimeError, ValueError) as exc:
        raise FormatError(f"'{_printable(where)}' could not be read (truncated or corrupt?): {_first_line(exc)}") from None


def _has_attribute(obj, name: str) -> bool:
    return name in obj.attrs or f"{name}0" in obj.attrs


def _attribute(obj, name: str) -> Any:
    """An attribute's value, None when absent, after checking its declared size."""
    if name not in obj.attrs:
        return None
    attribute = obj.attrs.get_id(name)
    count = math.prod(attribute.shape) if attribute.shape else 1
    if count * max(attribute.dtype.itemsize, 1) > MAX_ATTRIBUTE_BYTES:
        raise FormatError(f"the attribute '{name}' of '{obj.name}' declares {count:,} values, far more than Keras writes")
    return obj.attrs[name]


def _text(value: Any, what: str) -> str:
    text = _text_or_none(value)
    if text is None:
        raise FormatError(f"{what} is not text")
    return text


def _text_or_none(value: Any) -> str | None:
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return str(value) if isinstance(value, str) else None


def _text_list(obj, name: str) -> list[str]:
    """A list-of-strings attribute, joined from name0, name1, ... when Keras had to split it."""
    if name in obj.attrs:
        chunks = [_attribute(obj, name)]
    else:
        chunks = []
        while f"{name}{len(chunks)}" in obj.attrs:
            if len(chunks) >= MAX_ATTRIBUTE_CHUNKS:
                raise FormatError(f"the attribute '{name}' of '{obj.name}' is split into over {MAX_ATTRIBUTE_CHUNKS:,} parts")
            chunks.append(_attribute(obj, f"{name}{len(chunks)}"))
    texts = []
    for chunk in chunks:
        for value in np.atleast_1d(np.asarray(chunk, dtype=object)).ravel():
            texts.append(_text(value, f"an entry of the attribute '{name}' of '{obj.name}'"))
    return texts


def _printable(text: str) -> str:
    """A name from the file, fit for a one-line message."""
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= 200 else text[:200] + "..."


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__
