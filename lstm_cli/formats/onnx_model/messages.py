"""Refused: the one-sentence reason an ONNX node cannot become an nn.LSTM."""

from __future__ import annotations


class Refused(Exception):
    """This node cannot become an nn.LSTM; the message is the one-sentence Rejected reason."""
