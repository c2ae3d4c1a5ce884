"""Files named on the command line, checked before any work is done: inputs readable, outputs
writable. No torch here."""

from __future__ import annotations

import os
import stat
import sys
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
    """An existing, readable, non-empty regular file; anything else is a one-line UsageError
    naming the flag. A pipe, FIFO or device (/dev/zero, /dev/stdin from a pipe) is refused as
    "not a regular file" before its size is looked at: its size says nothing about its content."""
    file = Path(text)
    if not file.exists():
        raise UsageError(f"{flag} {text}: no such file")
    if file.is_dir():
        raise UsageError(f"{flag} {text}: is a directory, not a file")
    mode = file.stat().st_mode
    if not stat.S_ISREG(mode):
        kind = "a pipe or FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket or special file"
        hint = f"; to read standard input give {flag} -" if flag in STDIN_FLAGS else ""
        raise UsageError(f"{flag} {text}: not a regular file (it is {kind}){hint}")
    if not os.access(file, os.R_OK):
        raise UsageError(f"{flag} {text}: not readable (permission denied)")
    if file.stat().st_size == 0:
        raise UsageError(f"{flag} {text}: the file is empty")
    return file


# Flags whose value `-` means standard input (read once, in cli.spec_from_flags).
STDIN_FLAGS = ("--text", "--text-file")


def read_stdin(flag: str) -> str:
    """`flag -`: all of standard input as UTF-8 text. Refused in one line when standard input is
    a terminal (nothing piped in: reading would wait for typing), empty, or not UTF-8."""
    raw = read_stdin_bytes(flag, hint="pipe the text in, e.g. cat FILE")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{flag} -: standard input is not UTF-8 text (byte {exc.start} cannot be decoded)") from None


def read_stdin_bytes(flag: str, hint: str = "pipe the file in, e.g. cat x.npy") -> bytes:
    """`flag -`: all of standard input as bytes (a .pt or .npy file piped in, or text). Refused
    in one line when standard input is missing, closed, a terminal or empty; `hint` says what
    to pipe in."""
    stream = sys.stdin
    if stream is None:
        raise UsageError(f"{flag} -: there is no standard input to read")
    try:
        interactive = stream.isatty()
    except ValueError:  # closed
        raise UsageError(f"{flag} -: standard input is closed") from None
    if interactive:
        raise UsageError(f"{flag} -: standard input is a terminal; {hint} | lstm-cli ... {flag} -")
    data = stream.buffer.read() if hasattr(stream, "buffer") else stream.read().encode("utf-8")
    if not data:
        raise UsageError(f"{flag} -: standard input is empty")
    return data


def file_version(file: Path | str) -> tuple[int, int]:
    """(modification time, size): a cache key that changes when the file does."""
    stat = Path(file).stat()
    return stat.st_mtime_ns, stat.st_size
