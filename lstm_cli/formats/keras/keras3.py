"""The Keras 3 layout: .keras zip archives (read in place, never extracted) and .weights.h5 files.

As keras/src/saving/saving_lib.py writes it: a .keras file is a zip of config.json, metadata.json
and model.weights.h5; a .weights.h5 file is that HDF5 file alone. A layer's variables are the
datasets vars/0, vars/1, ... under layers/<its class in snake_case>, numbered lstm, lstm_1, ...
per class in model order (Keras 2.13-2.15 wrote _layer_checkpoint_dependencies/ and counted
each layer with weights twice: lstm, lstm_2, ...). An LSTM's are cell/vars/0..2 (kernel,
recurrent_kernel, bias); a Bidirectional's are under forward_layer/ and backward_layer/.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from lstm_cli.formats.base import Contents, FormatError, Rejected
from lstm_cli.formats.keras.config import (
    NESTED_MODELS,
    Refused,
    Version,
    layer_list,
    layer_name,
    layer_spec,
    parse_json,
    refuse_hidden_lstm,
)
from lstm_cli.formats.keras.convert import Target, convert, spec_from_shapes
from lstm_cli.formats.keras.hdf5 import (
    MAX_DEPTH,
    hard_link,
    has_link,
    link_names,
    object_key,
    open_hdf5,
    read_dataset,
    resolve,
)
from lstm_cli.formats.text import first_line, printable

MAX_GROUPS = 100_000  # groups visited when walking a Keras 3 weights file without a config
MAX_JSON_BYTES = 64 * 2**20  # config.json and metadata.json in a .keras archive
MAX_MEMBER_BYTES = 2**32  # a compressed model.weights.h5, decompressed into memory

# Keras 3's vars/<i> of an LSTM cell, in LSTMCell.build's order.
CELL_VARS = {"0": "kernel", "1": "recurrent_kernel", "2": "bias"}
# Groups of a Keras 3 weights file that hold no layers: optimizer slots mirror the weights' shapes.
NOT_LAYERS = {"vars", "optimizer"}


def read_archive(file: Path, h5py) -> Contents:
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
            version = Version(written if isinstance(written, str) else None)
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
                with open_hdf5(h5py, source) as root:
                    return read_keras3(h5py, root, config, version, what)
    except (zipfile.BadZipFile, EOFError, NotImplementedError) as exc:  # NotImplementedError: a damaged method or flag field
        raise FormatError(f"a damaged zip archive: {first_line(exc)}") from None
    except OSError as exc:
        raise FormatError(f"could not read the archive: {exc.strerror or first_line(exc)}") from None


def _json_member(archive: zipfile.ZipFile, name: str) -> Any:
    with archive.open(name) as member:
        text = member.read(MAX_JSON_BYTES + 1)
    if len(text) > MAX_JSON_BYTES:
        raise FormatError(f"its {name} is over {MAX_JSON_BYTES >> 20} MiB")
    return parse_json(text, name)


def read_keras3(h5py, root, config: Any, version: Version, what: str) -> Contents:
    contents = Contents(format=what)
    layers = layer_list(config)
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
        found = resolve(h5py, group, name)
        if isinstance(found, h5py.Group):
            return found
    return None


def _keras3_configured(h5py, container, layers: list[dict], prefix: str, depth: int, version: Version, contents: Contents) -> None:
    """Pair each config layer with its group: per class, the groups lstm, lstm_<n>, ... in the
    order of n are that class's layers in model order (Keras numbers them so, by counting)."""
    if depth > MAX_DEPTH:
        raise FormatError(f"its config nests models deeper than {MAX_DEPTH} levels")
    children = link_names(container) if container is not None else []
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
        name = prefix + layer_name(layer)
        try:
            nested = layer_list(layer) if layer["class_name"] in NESTED_MODELS else []
            spec = None if nested else layer_spec(layer)
            if not nested and spec is None:
                refuse_hidden_lstm(layer, nested_reason=None)
                continue
            if len(groups[snake]) != count:
                raise Refused(
                    f"its weights could not be matched: model.weights.h5 has {len(groups[snake])} '{snake}' group(s) "
                    f"for {count} such layer(s) (was every layer built before saving?)"
                )
            where = f"{container.name}/{groups[snake][index]}"
            group = resolve(h5py, container, groups[snake][index])
            if nested:
                inner = _container(h5py, group) if isinstance(group, h5py.Group) else None
                if inner is None:
                    raise Refused(f"a nested model without a layers group at '{printable(where)}'")
                _keras3_configured(h5py, inner, nested, name + "/", depth + 1, version, contents)
                continue
            sets = _keras3_sets(h5py, group, spec.bidirectional, where)
            contents.found.append(convert(Target(name, spec, sets), version))
        except Refused as refused:
            contents.rejected.append(Rejected(name, str(refused)))


def _keras3_walk(h5py, root, contents: Contents, version: Version) -> None:
    """Without layer configs: every group holding cell/vars (an RNN) or forward_layer and
    backward_layer (a Bidirectional), found by a bounded walk that follows hard links only."""
    seen = {object_key(h5py, root)}

    def visit(group, parts: list[str]) -> None:
        if len(parts) >= MAX_DEPTH:
            raise FormatError(f"'{printable(group.name)}' is nested deeper than {MAX_DEPTH} groups")
        for child_name in sorted(link_names(group), key=natural_order):
            if child_name in NOT_LAYERS:
                continue
            child = hard_link(h5py, group, child_name, f"{group.name.rstrip('/')}/{child_name}")
            if not isinstance(child, h5py.Group):
                continue
            key = object_key(h5py, child)
            if key in seen:
                raise FormatError(
                    f"'{printable(child.name)}' links back to a group already read (an HDF5 cycle or shared group), "
                    "which Keras never writes"
                )
            seen.add(key)
            if len(seen) > MAX_GROUPS:
                raise FormatError(f"it has over {MAX_GROUPS:,} groups, far more than a Keras weights file")
            here = parts + [child_name]
            bidirectional = has_link(child, "forward_layer") and has_link(child, "backward_layer")
            if bidirectional or has_link(child, "cell"):
                name = "/".join(part for part in here if part not in ("layers", "_layer_checkpoint_dependencies"))
                try:
                    sets = _keras3_sets(h5py, child, bidirectional, child.name)
                    target = Target(name, spec_from_shapes(sets), sets)
                    target.notes.append("recognised as an LSTM by its weight shapes; go_backwards, stateful and dropout are not recorded")
                    contents.found.append(convert(target, version))
                except Refused as refused:
                    contents.rejected.append(Rejected(name, str(refused)))
            else:
                visit(child, here)

    visit(root, [])


def _keras3_sets(h5py, group, bidirectional: bool, where: str) -> list[dict[str, np.ndarray]]:
    """cell/vars/0..2 of an RNN layer group, or of its forward_layer and backward_layer."""
    if not isinstance(group, h5py.Group):
        raise Refused(f"no weights at '{printable(where)}' (was the layer built before saving?)")
    layers = ["forward_layer", "backward_layer"] if bidirectional else [None]
    sets = []
    for sub in layers:
        path = f"{sub}/cell/vars" if sub else "cell/vars"
        variables = resolve(h5py, group, path)
        if not isinstance(variables, h5py.Group):
            raise Refused(f"no weights at '{printable(where)}/{path}' (was the layer built before saving?)")
        names = sorted(link_names(variables), key=natural_order)
        if names not in (["0", "1"], ["0", "1", "2"]):
            raise Refused(
                f"'{printable(where)}/{path}' holds {printable(', '.join(names)) or 'nothing'}, not a Keras LSTM "
                "cell's kernel, recurrent_kernel and bias (0, 1, 2)"
            )
        sets.append(
            {CELL_VARS[n]: read_dataset(h5py, hard_link(h5py, variables, n, f"{variables.name}/{n}"), f"{variables.name}/{n}") for n in names}
        )
    return sets


def _snake_case(name: str) -> str:
    """Keras' naming.to_snake_case, which names a layer's group after its class."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def natural_order(name: str) -> list:
    """lstm, lstm_1, lstm_2, ..., lstm_10 in that order."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]
