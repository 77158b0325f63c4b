# The two commands of the README: `make run` and `make test`. Both install everything first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test lint bench clean-venv

$(BIN)/.installed: requirements.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -c constraints.txt
	touch $@

install: $(BIN)/.installed

## Install, then start the dashboard on the embedded default (SQLite under data/, demo cohort on first run).
run: install
	$(BIN)/python -m monitoring init
	$(BIN)/python -m monitoring users demo
	$(BIN)/streamlit run dashboard/server.py

## Install (Python packages, and Debian's chromium and postgresql for the browser and server tests), then lint, type-check monitoring/ (mypy, config in pyproject.toml) and test.
test: install
	bash scripts/install-system-deps.sh
	$(BIN)/ruff check .
	$(BIN)/mypy
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install
	$(BIN)/python -m bench

clean-venv:
	rm -rf $(VENV)
