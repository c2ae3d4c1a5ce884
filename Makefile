# Two targets a new user needs: `make demo` and `make test`. Both create .venv on first use.
# TORCH picks the torch build installed when .venv has none; it defaults to the CPU wheel that
# these machines serve offline. For a CUDA build: make demo TORCH="torch" (or install torch into
# .venv yourself first, as PyTorch's install selector says; an existing torch is kept).
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("lstm-cli needs Python 3.10 or newer") if sys.version_info < (3, 10) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c 'import torch' 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/lstm-cli inspect

test: $(VENV)/.installed
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
