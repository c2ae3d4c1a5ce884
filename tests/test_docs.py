"""The README documents every command and every shared flag, and its Quickstart is what CI runs."""

import re
from pathlib import Path

import pytest

from lstm_cli.cli import SHARED_FLAGS, app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("command", [c.name for c in app.registered_commands])
def test_every_command_has_a_readme_section(command):
    assert f"### `lstm-cli {command}`" in README


@pytest.mark.parametrize("name", [name for name, _ in SHARED_FLAGS])
def test_every_shared_flag_is_in_the_readme_table(name):
    flag = "--" + name.replace("_", "-")
    assert re.search(rf"^\| `{re.escape(flag)}(/--no-[a-z-]+)?` \|", README, re.MULTILINE)


def test_quickstart_is_two_commands_and_ci_runs_the_second():
    block = re.search(r"## Quickstart.*?```sh\n(.*?)```", README, re.DOTALL).group(1)
    commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2
    assert commands[1] in (ROOT / ".ci" / "run").read_text()
