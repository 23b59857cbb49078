# Two entry points (see README): `make tour` runs the main job, `make test` the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# PyTorch pinned exactly: this version's CPU build is what the test machines hold; a looser pin pulls CUDA builds.
TORCH  := torch==2.13.0

.PHONY: tour test venv lint typecheck pytest clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.tour-installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e ".[plot,data,progress]"
	touch $@

$(VENV)/.dev-installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[all,dev]"
	touch $@

tour: $(VENV)/.tour-installed
	$(BIN)/preflight tour

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy --strict src

pytest: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -q

test: lint typecheck pytest

clean:
	rm -rf $(VENV) preflight-report .pytest_cache .mypy_cache .ruff_cache
