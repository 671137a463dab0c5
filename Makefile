# fieldpact — the two commands the README promises.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo bench lint clean

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

# mypy strict, then the layer contracts of pyproject's [tool.importlinter] (no cache: a fresh
# clone and a work tree give the same verdict).
lint: $(STAMP)
	$(BIN)/mypy --strict --ignore-missing-imports contracts transport runtime agent hub simulators fieldpact
	$(BIN)/lint-imports --no-cache

bench: $(STAMP)
	$(BIN)/python -m bench.engine
	$(BIN)/python -m bench.journal
	$(BIN)/python -m bench.scan
	$(BIN)/python -m bench.endpoints
	$(BIN)/python -m bench.sync
	$(BIN)/python -m bench.validate
	$(BIN)/python -m bench.safety
	$(BIN)/python -m bench.convergence
	$(BIN)/python -m bench.fleet
	$(BIN)/python -m bench.rollout
	$(BIN)/python -m bench.rollout_rollback
	$(BIN)/python -m bench.commission
	$(BIN)/python -m bench.hostile
	$(BIN)/python -m bench.fleet_view

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
