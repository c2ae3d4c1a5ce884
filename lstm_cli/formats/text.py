"""Text from an untrusted file (names, library errors) made fit for one-line messages:
every reader words what it reports through these."""

from __future__ import annotations


def printable(value: str | bytes, limit: int = 80) -> str:
    """A string from the file, safe to show on one line: protobuf hands back invalid UTF-8 as
    bytes, and a name may hold control characters or run to megabytes."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    value = "".join(ch if ch.isprintable() else "?" for ch in value[: limit + 1])
    return value if len(value) <= limit else value[:limit] + "..."


def first_line(exc: BaseException) -> str:
    """The first line of an error, at most 160 characters (library errors run to pages)."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]


def a_type(value: object) -> str:
    """The type of `value` with its article: "a dict", "an OrderedDict", "an int"."""
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"
