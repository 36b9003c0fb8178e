# labkit: two commands.  `make lab` opens the lab, `make test` passes every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8888

.PHONY: lab test bench lint clean notebooks solutions

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
	$(BIN)/jupyter lab --notebook-dir=notebooks --port=$(PORT)

test: $(VENV)/.test-installed
	$(BIN)/ruff check labkit tests tools benchmarks
	$(BIN)/python -m pytest tests --nbval notebooks --nbval-sanitize-with tests/sanitize.cfg

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

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis artifacts
