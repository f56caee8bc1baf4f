# The two set-up commands of the README: `make app` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
# CPU build for class machines; GPU users: make TORCH='torch' (or install CUDA torch into .venv first).
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin

.PHONY: app test lab install clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

app: $(VENV)/.installed
	$(BIN)/python app.py

test: $(VENV)/.installed
	$(BIN)/python -m pytest

lab: $(VENV)/.installed
	$(BIN)/jupyter lab notebooks/

clean-venv:
	rm -rf $(VENV)
