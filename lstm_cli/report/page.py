"""One self-contained HTML file: assets/template.html with assets/report.css, assets/report.js
and the page's data (JSON) inlined, written atomically. Nothing in the page refers to anything
outside it: no URL, no font, no image file, no request; a Content-Security-Policy in the page
forbids any request, so a mistake would show up as a console error rather than as a leak."""

from __future__ import annotations

import json
import os
import re
import secrets
from importlib import resources
from pathlib import Path

from lstm_cli.errors import UsageError

ASSETS = ("template.html", "report.css", "report.js")
_SLOT = re.compile(r"\{\{(TITLE|CSS|JS|DATA)\}\}")


def asset(name: str) -> str:
    """One of the package's static files (installed as package data)."""
    return resources.files("lstm_cli.report").joinpath("assets", name).read_text(encoding="utf-8")


def data_json(data: dict) -> str:
    """JSON that is safe inside <script type="application/json">: no '<', '>', '&' (so no
    '</script>' or '<!--' from a text), no U+2028/2029, no NaN."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text


def _escape_html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def build_html(data: dict, title: str) -> str:
    template, css, js = (asset(name) for name in ASSETS)
    for name, code in (("report.css", css), ("report.js", js)):
        if re.search(r"</(script|style)", code, re.IGNORECASE):
            raise ValueError(f"{name} must not contain a closing script or style tag")
    values = {"TITLE": _escape_html(title), "CSS": css, "JS": js, "DATA": data_json(data)}
    # One pass over the template: what is substituted is never scanned again.
    return _SLOT.sub(lambda match: values[match.group(1)], template)


def write_atomically(path: Path, content: str, flag: str = "--html") -> int:
    """Write `content` (UTF-8) to a new file next to `path`, then rename it over `path`: a reader
    never sees half a page, and a failed write leaves the old file. The file's permissions
    follow the umask, as any new file's. Returns the bytes written."""
    raw = content.encode("utf-8")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        try:
            temporary.unlink()
        except OSError:
            pass
        raise UsageError(f"{flag} {path}: cannot be written ({exc.strerror or exc})") from None
    return len(raw)
