# Two entry points (see README): `make tour` runs the main job, `make test` the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# PyTorch pinned exactly: this version's CPU build is what the test machines hold; a looser pin pulls CUDA builds.
TORCH  := torch==2.13.0

.PHONY: tour test venv lint typecheck pytest browser docs clean

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
	$(BIN)/lint-imports

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy --strict src

# The report's browser test needs Debian's chromium; CI (root, CI=true) installs it, elsewhere the test is skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ -n "$$CI" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
	      || echo "could not install chromium: the browser test will be skipped"; \
	  else echo "chromium not installed: the report's browser test will be skipped"; fi; }

pytest: $(VENV)/.dev-installed browser
	$(BIN)/python -m pytest -q

# The documentation site (MkDocs; API reference from the docstrings) into site/. Strict: a broken link or reference,
# or a docstring mkdocstrings cannot read, fails the build.
docs: $(VENV)/.dev-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test: lint typecheck pytest docs

clean:
	rm -rf $(VENV) preflight-report site .pytest_cache .mypy_cache .ruff_cache
