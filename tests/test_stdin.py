"""`--text -` and `--text-file -` read standard input (fed through typer's CliRunner with
input=); pipes, FIFOs and devices named as files are "not a regular file", never "empty"."""

import os
import sys

import pytest
from typer.testing import CliRunner

from lstm_cli.cli import main

from tests.test_text_input import TEXT, char_model


def run_with_stdin(args: list[str], stdin: str | bytes | None):
    """lstm-cli ARGS in this process with `stdin` as standard input: (exit code, stdout, stderr)."""
    with CliRunner().isolation(input=stdin) as (out, err, _):
        code = main(list(args))
        sys.stdout.flush()
        sys.stderr.flush()
        return code, out.getvalue().decode(), err.getvalue().decode()


@pytest.mark.parametrize("flag", ["--text", "--text-file"])
def test_dash_reads_standard_input(tmp_path, run_cli, flag):
    path, _ = char_model(tmp_path)
    code, out, err = run_with_stdin(["gates", "--weights", str(path), flag, "-", "--json"], TEXT)
    assert code == 0, err
    import json

    piped = json.loads(out)
    given = run_cli("gates", "--weights", str(path), "--text", TEXT, "--json").json()
    assert piped["config"]["seq_len"] == len(TEXT) and piped["layers"] == given["layers"]


def test_units_reads_standard_input(tmp_path):
    path, _ = char_model(tmp_path)
    code, out, err = run_with_stdin(["units", "--weights", str(path), "--text-file", "-"], TEXT.encode("utf-8"))
    assert code == 0, err
    assert f"text of {len(TEXT)} characters" in " ".join(out.split())


@pytest.mark.parametrize("stdin, message", [
    ("", "--text -: standard input is empty"),
    (b"ab\xe9", "--text -: standard input is not UTF-8 text (byte 2 cannot be decoded)"),
    ("ab@", "--text: character '@' at 1:3 is not in the vocabulary"),
])
def test_bad_standard_input_is_one_line_exit_2(tmp_path, stdin, message):
    path, _ = char_model(tmp_path)
    code, out, err = run_with_stdin(["inspect", "--weights", str(path), "--text", "-"], stdin)
    assert code == 2 and out == ""
    (line,) = err.splitlines()
    assert line.startswith(f"lstm-cli: error: {message}")


def test_a_terminal_is_not_read(tmp_path, monkeypatch, run_cli):
    """Nothing piped in: say how to pipe instead of waiting for typing."""
    path, _ = char_model(tmp_path)

    class Terminal:
        def isatty(self):
            return True

        def read(self):
            raise AssertionError("read a terminal")

    monkeypatch.setattr(sys, "stdin", Terminal())
    result = run_cli("inspect", "--weights", str(path), "--text-file", "-")
    assert result.code == 2
    assert result.stderr.strip() == (
        "lstm-cli: error: --text-file -: standard input is a terminal; pipe the text in, "
        "e.g. cat FILE | lstm-cli ... --text-file -"
    )


def test_text_checks_come_before_reading(tmp_path):
    """--text - without --weights is refused without reading (or waiting for) standard input."""
    code, _, err = run_with_stdin(["inspect", "--text", "-"], "abc")
    assert code == 2 and "give --weights too" in err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_and_device_are_not_regular_files(tmp_path, run_cli):
    path, _ = char_model(tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for file, kind in ((fifo, "a pipe or FIFO"), ("/dev/zero", "a device")):
        result = run_cli("inspect", "--weights", str(path), "--text-file", str(file))
        assert result.code == 2
        assert result.stderr.strip() == (
            f"lstm-cli: error: --text-file {file}: not a regular file (it is {kind}); "
            "to read standard input give --text-file -"
        )
    result = run_cli("inspect", "--weights", "/dev/zero")  # other flags: no stdin hint
    assert result.stderr.strip() == "lstm-cli: error: --weights /dev/zero: not a regular file (it is a device)"
