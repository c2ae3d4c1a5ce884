"""The two ways a run ends early on purpose. Neither imports torch."""


class UsageError(Exception):
    """Bad flags or bad input. The CLI prints the message as one line and exits 2."""
