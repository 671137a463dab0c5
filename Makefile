# fieldpact — the two commands the README promises.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/fieldpact demo

bench: $(STAMP)
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/scan.py
	$(BIN)/python bench/sync.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
