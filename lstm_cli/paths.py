"""Files named on the command line, checked before any work is done: inputs readable, outputs
writable. No torch here."""

from __future__ import annotations

import os
from pathlib import Path

from lstm_cli.errors import UsageError


def writable_file(flag: str, text: str, suffixes: tuple[str, ...]) -> Path:
    """A file ending in one of `suffixes` in an existing, writable folder (an existing file must
    be writable too); anything else is a one-line UsageError naming the flag."""
    path = Path(text).expanduser()
    if path.suffix.lower() not in suffixes:
        raise UsageError(f"{flag} file must end in {' or '.join(suffixes)} (got {text!r})")
    if path.is_dir():
        raise UsageError(f"{flag} {text}: is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{flag} {text}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"{flag} {text}: not writable")
    return path


def readable_file(flag: str, text: str) -> Path:
    """An existing, readable, non-empty file; anything else is a one-line UsageError naming the
    flag."""
    file = Path(text)
    if not file.exists():
        raise UsageError(f"{flag} {text}: no such file")
    if file.is_dir():
        raise UsageError(f"{flag} {text}: is a directory, not a file")
    if not os.access(file, os.R_OK):
        raise UsageError(f"{flag} {text}: not readable (permission denied)")
    if file.stat().st_size == 0:
        raise UsageError(f"{flag} {text}: the file is empty")
    return file


def file_version(file: Path | str) -> tuple[int, int]:
    """(modification time, size): a cache key that changes when the file does."""
    stat = Path(file).stat()
    return stat.st_mtime_ns, stat.st_size
