"""What a Keras model config says: its layers, each layer's LSTM settings, and its activations
(with the default recurrent activation of the Keras version that wrote the file)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from lstm_cli.formats.base import FormatError
from lstm_cli.formats.text import printable

MAX_CONFIG_NODES = 1_000_000  # JSON values searched for LSTM classes in a wrapper's config

# Layer class -> whether its weights are in CuDNNLSTM's layout.
LSTM_CLASSES = {"LSTM": False, "CuDNNLSTM": True}
OTHER_RECURRENT = {"GRU", "CuDNNGRU", "SimpleRNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"}
NESTED_MODELS = {"Sequential", "Functional", "Model"}


class Refused(Exception):
    """This layer cannot become an nn.LSTM; the message is the one-sentence Rejected reason."""


@dataclass
class Spec:
    """A recurrent layer as its config describes it (or as its weights suggest, without one)."""

    cudnn: bool  # weights in CuDNNLSTM's layout
    forward: dict[str, Any]  # the LSTM's settings (an RNN's LSTMCell settings merged in)
    bidirectional: bool = False
    backward: dict[str, Any] | None = None  # a Bidirectional's backward layer, when recorded
    merge_mode: str | None = "concat"


@dataclass
class Version:
    """Who wrote the file, as far as it says."""

    text: str | None  # keras_version as written: "2.4.0", "2.2.4-tf", "3.3.3"; None: not recorded

    @property
    def keras3(self) -> bool:
        return self.text is not None and self.text.startswith("3")


def parse_json(text: str | bytes, what: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise FormatError(f"its {what} is not valid JSON") from None


def named_layers(config: Any) -> list[tuple[str, dict[str, Any]]]:
    """(layer name, layer dict) for the top-level layers of a Sequential or Functional config."""
    return [(layer_name(layer), layer) for layer in layer_list(config)]


def layer_list(config: Any) -> list[dict[str, Any]]:
    inner = config.get("config") if isinstance(config, dict) else None
    # Keras before 2.2.3 wrote a Sequential's config as the bare list of its layers.
    layers = inner if isinstance(inner, list) else inner.get("layers") if isinstance(inner, dict) else None
    return [layer for layer in layers if isinstance(layer, dict)] if isinstance(layers, list) else []


def layer_name(layer: dict[str, Any]) -> str:
    settings = layer.get("config")
    name = layer.get("name") or (settings.get("name") if isinstance(settings, dict) else None)
    return str(name) if name is not None else "?"


def layer_spec(layer: dict[str, Any]) -> Spec | None:
    """The LSTM a layer config describes; None for a layer that is not recurrent; Refused for a
    recurrent layer that is not an LSTM (GRU, SimpleRNN, ...)."""
    class_name = layer.get("class_name")
    settings = layer.get("config") if isinstance(layer.get("config"), dict) else {}
    if class_name != "Bidirectional":
        unit = _unit(layer)
        return Spec(cudnn=unit[0], forward=unit[1]) if unit else None
    inner = settings.get("layer")
    try:
        unit = _unit(inner) if isinstance(inner, dict) else None
    except Refused:
        raise Refused(f"a Keras Bidirectional({printable(str(inner.get('class_name')))}) layer, not an LSTM") from None
    if unit is None:
        inner_class = inner.get("class_name") if isinstance(inner, dict) else None
        raise Refused(f"a Keras Bidirectional wrapper around {printable(str(inner_class or 'an unrecorded layer'))}, not an LSTM")
    backward = settings.get("backward_layer")
    backward_settings = None
    if isinstance(backward, dict):
        try:
            backward_unit = _unit(backward)
        except Refused:
            backward_unit = None
        if backward_unit is None or backward_unit[0] != unit[0]:
            raise Refused(
                f"its backward layer is a {printable(str(backward.get('class_name')))}, not the same kind of LSTM as its forward layer"
            )
        backward_settings = backward_unit[1]
    merge_mode = settings.get("merge_mode", "concat")
    return Spec(unit[0], unit[1], True, backward_settings, merge_mode if isinstance(merge_mode, str) else None)


def _unit(layer: dict[str, Any]) -> tuple[bool, dict[str, Any]] | None:
    """(CuDNN layout?, settings) of one LSTM layer config; None when it is not recurrent."""
    class_name = layer.get("class_name")
    settings = layer.get("config") if isinstance(layer.get("config"), dict) else {}
    if class_name in LSTM_CLASSES:
        return LSTM_CLASSES[class_name], settings
    if class_name in OTHER_RECURRENT:
        raise Refused(f"a Keras {class_name} layer, not an LSTM")
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
        raise Refused("a Keras RNN of stacked cells (StackedRNNCells), which lstm-cli does not read: use one LSTM layer per cell")
    if cell_class == "PeepholeLSTMCell":
        raise Refused("a Keras RNN of PeepholeLSTMCell cells: peephole connections, which nn.LSTM does not have")
    raise Refused(f"a Keras RNN layer of {printable(str(cell_class or 'unrecorded'))} cells, not an LSTM")


def refuse_hidden_lstm(layer: dict[str, Any], nested_reason: str | None) -> None:
    """A layer lstm-cli does not unpack (a nested model in a legacy file, TimeDistributed, a custom
    wrapper) is refused when its config holds an LSTM, and skipped silently otherwise."""
    if not _holds_lstm(layer.get("config")):
        return
    class_name = layer.get("class_name")
    if class_name in NESTED_MODELS and nested_reason:
        raise Refused(f"a nested Keras model holding LSTM layers, which lstm-cli does not read in this format ({nested_reason})")
    raise Refused(f"a Keras {printable(str(class_name))} wrapper around an LSTM, which lstm-cli does not read")


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


def recurrent_activation(settings: dict[str, Any], cudnn: bool, version: Version, notes: list[str]) -> str:
    """The recurrent activation key for base.RECURRENT_ACTIVATIONS; the cell activation must be tanh."""
    if cudnn:
        return "sigmoid"  # cuDNN's LSTM is fixed: sigmoid gates, tanh cell
    activation = _activation_name(settings.get("activation", "tanh"))
    if activation != "tanh":
        raise Refused(f"its activation is '{printable(activation)}', not tanh, and nn.LSTM's cell and output activations are tanh")
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
    raise Refused(f"its recurrent_activation is '{printable(recurrent)}'; lstm-cli runs LSTMs whose gates use sigmoid or hard_sigmoid")


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


def _default_recurrent(version: Version) -> tuple[str, str]:
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
        return "sigmoid", f"the file records no recurrent_activation and an unrecognised keras_version '{printable(written)}': assumed sigmoid"
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
