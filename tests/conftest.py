import json
from dataclasses import dataclass

import os

import pytest
import torch
from hypothesis import settings

# CI explores the same generated cases every run (a red CI run must be reproducible);
# local runs keep exploring new ones.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

# One thread for the in-process tests: with OpenMP's busy-waiting barriers, a busy second
# core stalled every nn.LSTM call here (0.3 ms became 500 ms) and the suite with it.
torch.set_num_threads(1)


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        return json.loads(self.stdout)


@pytest.fixture
def run_cli(capsys, monkeypatch):
    """Run `lstm-cli ARGS` in this process (torch is imported once for the whole suite)."""
    from lstm_cli.cli import main

    monkeypatch.setenv("COLUMNS", "100")

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


def pytest_collection_modifyitems(config, items):
    """GPU tests run only where CUDA is; elsewhere they skip with the reason."""
    if not any("gpu" in item.keywords for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
