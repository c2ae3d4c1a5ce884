"""The promises about start-up: --help never imports torch, --version and python -m work."""

import subprocess
import sys

from lstm_cli import __version__


def _python(*code_and_args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *code_and_args], capture_output=True, text=True, timeout=60)


def test_help_does_not_import_torch():
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['lstm-cli', '--help']\n"
        "try:\n"
        "    runpy.run_module('lstm_cli', run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "heavy = sorted(m for m in ('torch', 'numpy') if m in sys.modules)\n"
        "print('IMPORTED:' + ','.join(heavy))\n"
    )
    result = _python("-c", probe)
    assert result.returncode == 0, result.stderr
    assert "IMPORTED:\n" in result.stdout


def test_command_help_does_not_import_torch():
    probe = (
        "import sys\n"
        "from lstm_cli.cli import main\n"
        "code = main(['inspect', '--help'])\n"
        "print('CODE', code, 'TORCH', 'torch' in sys.modules)\n"
    )
    result = _python("-c", probe)
    assert "CODE 0 TORCH False" in result.stdout, result.stdout + result.stderr
    assert "--hidden-size" in result.stdout


def test_version_and_python_dash_m():
    result = _python("-m", "lstm_cli", "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"lstm-cli {__version__}"


def test_torch_s_import_leaves_nothing_for_the_garbage_collector_to_walk():
    """A command's torch side freezes what importing torch made, so no full collection walks it."""
    probe = (
        "import gc, torch\n"
        "before = gc.get_freeze_count()\n"
        "import lstm_cli.runtime\n"
        "print('FROZEN', before, gc.get_freeze_count() > 100_000)\n"
    )
    result = _python("-c", probe)
    assert "FROZEN 0 True" in result.stdout, result.stdout + result.stderr
