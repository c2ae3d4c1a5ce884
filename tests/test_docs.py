"""The documentation: the README is a short landing page whose Quickstart is what CI runs; every
command has its page under docs/ and an example in the README; every shared flag is in
docs/flags.md's table; every relative link resolves; no page or figure names a machine path.
(tests/test_docs_examples.py runs the examples themselves.)"""

import re
import struct
import zlib
from pathlib import Path

import pytest

from lstm_cli.cli import SHARED_FLAGS, app

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text()
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
README_MOST_LINES = 250
# Commands whose page is still to come (the lead writes docs/report.md with the command).
NO_PAGE_YET: set[str] = set()
COMMANDS = [c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands]
# What a path on a developer's machine looks like: a home, a Python install, a temporary folder.
MACHINE_PATHS = ("/root/", "/home/", "/usr/", "/tmp/", "site-packages", ".venv")


def _without_code(text: str) -> str:
    """The Markdown with fenced blocks and inline code removed (links and headings in code are
    not links and headings)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
    return re.sub(r"`[^`\n]*`", "", text)


def _sh_lines(text: str) -> list[str]:
    blocks = re.findall(r"^```sh\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)
    return [line.strip() for block in blocks for line in block.splitlines()]


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for the page's headings: lower case, punctuation but `-` and `_` dropped,
    spaces as `-`; a repeated heading gets -1, -2, ..."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.DOTALL | re.MULTILINE)
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, flags=re.MULTILINE):
        heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(page: Path) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", _without_code(page.read_text()))


def test_quickstart_is_two_commands_and_ci_runs_the_second():
    block = re.search(r"## Quickstart.*?```sh\n(.*?)```", README, re.DOTALL).group(1)
    commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_the_readme_is_a_landing_page():
    lines = README.count("\n")
    assert lines <= README_MOST_LINES, f"README.md has {lines} lines; move detail into docs/"


@pytest.mark.parametrize("command", [c for c in COMMANDS if c not in NO_PAGE_YET])
def test_every_command_has_its_page(command):
    page = DOCS / f"{command}.md"
    assert page.is_file(), f"docs/{command}.md is missing"
    assert page.read_text().startswith(f"# `lstm-cli {command}`\n")
    assert f"](docs/{command}.md)" in README, f"the README does not link docs/{command}.md"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_a_readme_example(command):
    assert f"### `lstm-cli {command}`" in README or command in NO_PAGE_YET
    if command not in NO_PAGE_YET:
        assert any(re.match(rf"lstm-cli {re.escape(command)}( |$)", line) for line in _sh_lines(README))


@pytest.mark.parametrize("name", [name for name, _ in SHARED_FLAGS])
def test_every_shared_flag_is_in_the_flags_table(name):
    flag = "--" + name.replace("_", "-")
    table = (DOCS / "flags.md").read_text()
    assert re.search(rf"^\| `{re.escape(flag)}(/--no-[a-z-]+)?` \|", table, re.MULTILINE)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no file {path}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.relative_to(ROOT)}")
    assert not broken, broken


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in links(ROOT / "README.md")}
    assert not [p.name for p in DOCS.glob("*.md") if p.resolve() not in linked]


def _png_text(data: bytes) -> str:
    """The text chunks (tEXt, zTXt, iTXt) of a PNG, keywords and values."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    texts, offset = [], 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        body = data[offset + 8:offset + 8 + length]
        if kind == b"tEXt":
            texts.append(body.decode("latin-1"))
        elif kind == b"zTXt":
            keyword, _, rest = body.partition(b"\0")
            texts.append(keyword.decode("latin-1") + " " + zlib.decompress(rest[1:]).decode("latin-1"))
        elif kind == b"iTXt":
            keyword, _, rest = body.partition(b"\0")
            compressed = rest[0] == 1
            _, _, rest = rest[2:].partition(b"\0")  # language tag
            _, _, rest = rest.partition(b"\0")  # translated keyword
            texts.append(keyword.decode("latin-1") + " " + (zlib.decompress(rest) if compressed else rest).decode("utf-8"))
        offset += 12 + length
    return "\n".join(texts)


@pytest.mark.parametrize("path", [ROOT / "README.md", *sorted(p for p in DOCS.rglob("*") if p.is_file())],
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_machine_path_in_a_shipped_page_or_figure(path):
    """A figure's title is drawn as pixels, which this cannot read: figures are regenerated from
    relative paths (docs/development.md says how); their metadata is checked here."""
    data = path.read_bytes()
    text = _png_text(data) if path.suffix == ".png" else data.decode("utf-8", "replace")
    found = [p for p in MACHINE_PATHS if p in text]
    assert not found, f"{path.relative_to(ROOT)} names {found}"
