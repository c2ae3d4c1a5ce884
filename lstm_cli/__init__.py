"""lstm-cli: see inside a PyTorch LSTM."""

__version__ = "0.1.0"
