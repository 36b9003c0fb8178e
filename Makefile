# labkit: two commands.  `make lab` opens the lab, `make test` passes every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8888

# JupyterLab refuses to run as root unless told: pass --allow-root only then.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)
# one random token, made on first use (the URL printed and the server's must agree)
TOKEN ?= $(eval TOKEN := $(shell $(PYTHON) -c 'import secrets; print(secrets.token_hex(16))'))$(TOKEN)
FAST   := not qemu and not browser and not slow

.PHONY: lab test bench lint check clean notebooks solutions

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.lab-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.lab-installed

lab: $(VENV)/.lab-installed
	@echo "labkit: open http://localhost:$(PORT)/lab?token=$(TOKEN)"
	$(BIN)/jupyter lab --notebook-dir=notebooks --port=$(PORT) --IdentityProvider.token=$(TOKEN) $(ALLOW_ROOT)

test: lint
	$(BIN)/python -m pytest tests --nbval notebooks --nbval-sanitize-with tests/sanitize.cfg

# lint plus the fast tests (no QEMU, no browser, nothing slow): about a minute
check: lint
	$(BIN)/python -m pytest tests -q -m "$(FAST)"

bench: $(VENV)/.test-installed
	$(BIN)/python -m benchmarks

# the trainee edition, notebooks/*.ipynb, from notebooks/src/*.md (stored in git)
notebooks: $(VENV)/.test-installed
	$(BIN)/python tools/build_notebooks.py

# the solved edition, solutions/*.ipynb (gitignored), and docs/answer-key.md
solutions: $(VENV)/.test-installed
	$(BIN)/python tools/build_notebooks.py --edition solutions
	$(BIN)/python tools/answer_key.py

lint: $(VENV)/.test-installed
	$(BIN)/ruff check labkit tests tools benchmarks
	$(BIN)/python -m mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis artifacts
