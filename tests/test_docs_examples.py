"""Every shell example in README.md and docs/*.md runs, against the shipped files.

Each ```sh block's lines that start with `lstm-cli` (after `\\` continuations are joined; a
`VAR=value` prefix such as `PYTHONPATH=examples` is honoured) run in-process with `run_cli`,
in the order the block gives them, with the working directory in a fresh temporary folder and
`examples/...` paths made absolute: files an example writes (`--plot`, `--export`,
`--save-weights`) land there, and a later line of the same block can read them. Only the
`lstm-cli` part of a pipe runs (`... --json | jq ...`, `... | head`).

Besides the shipped files, an example may read `textwrap.py`, a copy of Python's own
(`cp "$(python3 -c 'import textwrap; print(textwrap.__file__)')" .`, held out when the shipped
character model was trained): the test puts one in the working directory.

An example exits 0 unless its line ends in a comment saying otherwise:
- `# exits N`: it demonstrates a failing check or a refusal, and must exit N;
- `# ... not run in tests` (`# slow: not run in tests`, `# needs CUDA: not run in tests`): skipped,
  for the few examples that take too long here or need hardware these machines lack.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMON_KEYS = {"command", "config", "source", "passed", "checks", "notes"}  # docs/output.md
MOST_SKIPPED = 8  # "a handful": examples too slow for the suite, or needing CUDA

_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=\S*")
_ANSI_C = re.compile(r"\$'((?:[^'\\]|\\.)*)'")
_EXITS = re.compile(r"#\s*exits\s+(\d+)\b")
_NOT_RUN = re.compile(r"#[^#]*\bnot run in tests\b")


@dataclass
class Example:
    page: str
    line: int  # 1-based line of the example's first physical line
    text: str  # the whole logical line, continuations joined

    @property
    def expected_code(self) -> int:
        found = _EXITS.search(self.text)
        return int(found.group(1)) if found else 0

    @property
    def skipped(self) -> bool:
        return bool(_NOT_RUN.search(self.text))


def _blocks(page: Path) -> list[tuple[int, list[str]]]:
    """(line number of the block's first line, its lines) for every ```sh block."""
    blocks, current, start = [], None, 0
    for number, line in enumerate(page.read_text().splitlines(), start=1):
        if current is None:
            if line.strip() == "```sh":
                current, start = [], number + 1
        elif line.strip() == "```":
            blocks.append((start, current))
            current = None
        else:
            current.append(line)
    assert current is None, f"{page.name}: a ```sh block is never closed"
    return blocks


def _logical_lines(start: int, lines: list[str]) -> list[tuple[int, str]]:
    """Lines with `\\` continuations joined, each with the number of its first line."""
    joined, buffer, first = [], "", start
    for offset, line in enumerate(lines):
        if not buffer:
            first = start + offset
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        joined.append((first, buffer + line))
        buffer = ""
    if buffer:
        joined.append((first, buffer))
    return joined


def _is_example(text: str) -> bool:
    words = text.split()
    while words and _ENV.fullmatch(words[0]):
        words = words[1:]
    return bool(words) and words[0] == "lstm-cli"


def examples_by_block() -> list[tuple[str, list[Example]]]:
    found = []
    for page in PAGES:
        name = page.relative_to(ROOT).as_posix()
        for start, lines in _blocks(page):
            block = [Example(name, number, text.strip()) for number, text in _logical_lines(start, lines)
                     if _is_example(text.strip())]
            if block:
                found.append((f"{name}:{block[0].line}", block))
    return found


BLOCKS = examples_by_block()
ALL = [example for _, block in BLOCKS for example in block]


def _decode_ansi_c(match: re.Match) -> str:
    """bash's $'...' (ANSI-C quoting) as an ordinary single-quoted word."""
    return shlex.quote(match.group(1).encode("latin-1", "backslashreplace").decode("unicode_escape"))


def command_line(text: str) -> tuple[dict[str, str], list[str]]:
    """(environment assignments, lstm-cli's arguments) of an example: the part before the first
    `|`, shell-split, with `examples/` made absolute."""
    lexer = shlex.shlex(_ANSI_C.sub(_decode_ansi_c, text), posix=True, punctuation_chars="|&;<>")
    lexer.whitespace_split = True  # comments ('#' at a word's start) end the line
    words = list(lexer)
    for index, word in enumerate(words):
        if word and set(word) <= set("|&;<>"):
            assert word == "|", f"only pipes into other programs are supported in an example, not {word!r}: {text}"
            words = words[:index]
            break
    env = {}
    while words and _ENV.fullmatch(words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    assert words and words[0] == "lstm-cli", text
    absolute = str(EXAMPLES)
    env = {name: re.sub(r"^examples(?=/|$)", absolute, value) for name, value in env.items()}
    args = [re.sub(r"(^|=)examples/", rf"\g<1>{absolute}/", word) for word in words[1:]]
    return env, args


def test_the_pages_have_examples_and_few_are_skipped():
    assert len(ALL) >= 40, [page for page in PAGES]
    skipped = [f"{e.page}:{e.line}" for e in ALL if e.skipped]
    assert len(skipped) <= MOST_SKIPPED, skipped


@pytest.mark.parametrize("text", [
    "lstm-cli inspect --json | jq '.checks[] | select(.passed | not)'",
    "lstm-cli trace --text $'def f(x):\\n    return x\\n' --top 2   # exits 1",
    "PYTHONPATH=examples lstm-cli inspect --weights examples/recognizer_module.pt",
    "lstm-cli units --select-regex \"(?<=')[^']+(?=')\" --text-file=examples/recognizer.py | head -5",
])
def test_examples_are_read_as_the_shell_reads_them(text):
    env, args = command_line(text)
    if text.startswith("PYTHONPATH"):
        assert env == {"PYTHONPATH": str(EXAMPLES)} and args[-1] == str(EXAMPLES / "recognizer_module.pt")
    elif "jq" in text:
        assert args == ["inspect", "--json"]
    elif "$'" in text:
        assert args == ["trace", "--text", "def f(x):\n    return x\n", "--top", "2"]
        assert Example("x", 1, text).expected_code == 1
    else:
        assert args == ["units", "--select-regex", "(?<=')[^']+(?=')", f"--text-file={EXAMPLES}/recognizer.py"]


@pytest.mark.parametrize("block", [block for _, block in BLOCKS], ids=[name for name, _ in BLOCKS])
def test_example(block, run_cli, tmp_path, monkeypatch):
    """The block's examples in order, in one temporary working directory."""
    monkeypatch.chdir(tmp_path)
    if any("textwrap.py" in example.text for example in block):
        shutil.copyfile(textwrap.__file__, tmp_path / "textwrap.py")
    # `--model examples.recognizer:build` imports from the repository root, as from a checkout.
    monkeypatch.syspath_prepend(str(ROOT))
    failures = []
    ran = 0
    for example in block:
        if example.skipped:
            continue
        env, args = command_line(example.text)
        for name, value in env.items():
            if name == "PYTHONPATH":
                for entry in reversed(value.split(":")):
                    monkeypatch.syspath_prepend(entry)
            else:
                monkeypatch.setenv(name, value)
        result = run_cli(*args)
        ran += 1
        where = f"{example.page}:{example.line}: {example.text}"
        if result.code != example.expected_code:
            failures.append(f"{where}\n  exit {result.code}, expected {example.expected_code}\n"
                            f"  stderr: {result.stderr.strip()[-2000:]}")
            continue
        if "Traceback" in result.stderr:
            failures.append(f"{where}\n  a traceback on stderr:\n{result.stderr[-2000:]}")
        if "--json" in args and args[0] != "schema" and result.code in (0, 1):
            document = json.loads(result.stdout)
            missing = COMMON_KEYS - set(document)
            if missing:
                failures.append(f"{where}\n  JSON lacks the common keys {sorted(missing)}")
    if ran == 0:
        pytest.skip("every example of this block is marked 'not run in tests'")
    assert not failures, "\n\n".join(failures)
