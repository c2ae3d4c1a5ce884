"""lstm-cli: see inside a PyTorch LSTM.

The command line is `lstm-cli`; the Python API for scripts and notebooks is `watch`:

    import lstm_cli
    with lstm_cli.watch(model) as w:
        model(batch)
    print(w.gates(w.names[0]))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch stays out of `import lstm_cli` (and so of `lstm-cli --help`)
    from lstm_cli.insitu.api import Watched

__version__ = "0.1.0"
__all__ = ["watch", "__version__"]


def watch(model: Any, max_sequences: int = 4096, max_steps: int = 100_000) -> Watched:
    """Hook every nn.LSTM and nn.LSTMCell of `model` while a `with` block runs it; then run
    lstm-cli's commands on what each received (`w.gates(name)`, `w.inspect(name)`,
    `w.compare_cell(name)`, `w.units(name, text=...)`). The model's outputs are bit-identical with and without it; sequences
    beyond `max_sequences` (and LSTMCell calls beyond `max_steps`) are not kept, with a note."""
    from lstm_cli.insitu.api import Watched

    return Watched(model, max_sequences=max_sequences, max_steps=max_steps)
