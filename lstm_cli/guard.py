"""How a run of the process ends: one documented exit code for every outcome, one line on
stderr for every failure, quiet closed pipes, prompt Ctrl-C, and torch's warnings as plain
sentences. No torch import here: it runs before and around everything else."""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from lstm_cli.errors import UsageError

PROG = "lstm-cli"
EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
INTERRUPT_GRACE_S = 1.0

# torch warnings we know, as the sentence a user needs instead of a raw UserWarning line.
_KNOWN_WARNINGS = (
    (
        "LSTM with projections is not supported with oneDNN",
        "oneDNN has no LSTM kernel with projections, so PyTorch used its default implementation",
    ),
    (
        "non-zero dropout expects num_layers greater than 1",
        "--dropout has no effect with one layer: PyTorch applies it between layers only",
    ),
    ("Failed to initialize NumPy", "NumPy could not be loaded by torch; install numpy"),
)


def plain_warning(message: str) -> str:
    for needle, sentence in _KNOWN_WARNINGS:
        if needle in message:
            return sentence
    return message.strip().splitlines()[0] if message.strip() else "a warning without text"


def fail(message: str, code: int = 2, json_errors: bool = False) -> None:
    """The one line every failure prints; with --json also `{"error": ..., "exit": code}` on
    stdout, so that a pipeline into jq fails visibly instead of reading nothing."""
    line = " ".join(message.split())
    print(f"{PROG}: error: {line}", file=sys.stderr)
    if json_errors:
        import json

        try:
            sys.stdout.write(json.dumps({"error": line, "exit": code}) + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, OSError):
            pass


def silence_stdout() -> None:
    """After a closed pipe, point stdout at /dev/null so the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _out_of_memory(exc: BaseException) -> str | None:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text.lower():
        return f"the device ran out of memory while running ({text[:200]}); use smaller sizes"
    if isinstance(exc, MemoryError) or "can't allocate memory" in text:
        return f"the machine ran out of memory while running ({text[:200] or 'MemoryError'}); use smaller sizes"
    return None


# Live displays (progress bars) to stop before the process ends on Ctrl-C: stopping one shows the
# cursor again and erases the bar, so "interrupted" is the last thing on the terminal.
LIVE_DISPLAYS: list[Any] = []
# Writing the output failed for a reason the user can act on (a full disk, a bad device).
_WRITE_ERRNOS = {errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG}


def stop_live_displays() -> None:
    for display in list(LIVE_DISPLAYS):
        try:
            display.stop()
        except Exception:  # noqa: BLE001 - ending the process matters more than a tidy bar
            pass


class _InterruptWatchdog:
    """Ctrl-C while torch runs one long C++ call (a fused nn.LSTM over 10^6 steps) reaches
    Python only when that call returns. The signal's wake-up fd lets a thread see it at once;
    if the main thread has not ended within INTERRUPT_GRACE_S, the thread ends the process with
    exit 130 and the usual line. Installed only by the real entry point, in the main thread."""

    def __init__(self) -> None:
        self.done = False
        self._previous_fd: int | None = None

    def __enter__(self) -> _InterruptWatchdog:
        if threading.current_thread() is not threading.main_thread():
            return self
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        self._previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        threading.Thread(target=self._watch, args=(read_fd,), daemon=True).start()
        return self

    def _watch(self, read_fd: int) -> None:
        while True:
            if signal.SIGINT in os.read(read_fd, 64):
                time.sleep(INTERRUPT_GRACE_S)
                if not self.done:
                    stop_live_displays()
                    sys.stderr.write(f"{PROG}: interrupted\n")
                    sys.stderr.flush()
                    os._exit(EXIT_INTERRUPTED)

    def __exit__(self, *exc_info: Any) -> None:
        self.done = True
        if self._previous_fd is not None:
            signal.set_wakeup_fd(self._previous_fd)


def _print_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    """Any warning not collected by a command: one `note:` line, each sentence once."""
    sentence = plain_warning(str(message))
    if sentence not in _printed_notes:
        _printed_notes.add(sentence)
        print(f"note: {sentence}", file=sys.stderr)


_printed_notes: set[str] = set()


# How alike a mistyped flag and a real one must be to suggest it (difflib's ratio): Click's own
# 0.6 offered --bias for --bogus; --hiden-size -> --hidden-size is 0.96.
SUGGEST_RATIO = 0.8


def _nearest_option(exc: Exception) -> str | None:
    """Click's "No such option" with only a flag close enough to be the one meant, or none."""
    if type(exc).__name__ != "NoSuchOption":
        return None
    import difflib

    wrong = getattr(exc, "option_name", "")
    close = difflib.get_close_matches(wrong, getattr(exc, "possibilities", None) or [], n=1, cutoff=SUGGEST_RATIO)
    return f"No such option: {wrong}" + (f" (did you mean {close[0]}?)" if close else "")


def run_guarded(call: Callable[[], Any], watch_interrupts: bool = False, json_errors: bool = False) -> int:
    """Run the CLI; map every outcome to 0, 1, 2 or 130 with at most one line on stderr (and,
    with `json_errors` (--json), a JSON error object on stdout)."""
    warnings.showwarning = _print_warning
    watchdog = _InterruptWatchdog() if watch_interrupts else None
    try:
        if watchdog:
            watchdog.__enter__()
        code = call()
        sys.stdout.flush()  # a full disk shows here, not at the interpreter's exit
    except UsageError as exc:
        fail(str(exc), EXIT_USAGE, json_errors)
        return EXIT_USAGE
    except KeyboardInterrupt:
        stop_live_displays()
        code = EXIT_INTERRUPTED
    except BrokenPipeError:
        silence_stdout()
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - the last line of defence, by design
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            # Click's parse errors (Typer may vendor Click, so matched by shape, not class).
            if exc.exit_code == EXIT_INTERRUPTED or type(exc).__name__ == "Abort":
                code = EXIT_INTERRUPTED
            else:
                message = _nearest_option(exc) or exc.format_message()
                if message.strip():  # no command given: the help above says it all
                    fail(message, exc.exit_code, json_errors)
                return exc.exit_code
        elif isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
            silence_stdout()
            fail(f"cannot write the output: {exc.strerror}")
            return EXIT_USAGE
        elif (reason := _out_of_memory(exc)) is not None:
            fail(reason, EXIT_USAGE, json_errors)
            return EXIT_USAGE
        elif os.environ.get("LSTM_CLI_DEBUG"):
            raise
        else:
            first_line = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            fail(f"internal error: {type(exc).__name__}: {first_line} (run with LSTM_CLI_DEBUG=1 for the traceback)",
                 EXIT_CHECK_FAILED, json_errors)
            return EXIT_CHECK_FAILED
    finally:
        if watchdog:
            watchdog.__exit__()
    if code == EXIT_INTERRUPTED:  # Typer turns Ctrl-C into exit code 130 itself
        print(f"{PROG}: interrupted", file=sys.stderr)
    return code if isinstance(code, int) else EXIT_OK
