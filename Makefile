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

.PHONY: lab test test-bare check-python hub bench lint check clean notebooks solutions \
	screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.lab-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# the test extra, and the hub extra with its proxy (tests/test_hub.py runs a real JupyterHub)
$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,hub]'
	$(MAKE) --no-print-directory $(CHP)
	touch $@ $(VENV)/.lab-installed

# JupyterHub's proxy, configurable-http-proxy, from npm (Node.js: apt-get install nodejs npm);
# without npm the hub tests skip and say so
CHP := $(VENV)/node/node_modules/.bin/configurable-http-proxy
$(CHP):
	@if command -v npm >/dev/null; then \
	    npm install --silent --no-fund --no-audit --prefix $(VENV)/node configurable-http-proxy@5; \
	else echo "npm not found: the hub tests will skip (apt-get install nodejs npm)"; fi

hub: $(VENV)/.test-installed
	$(BIN)/python deploy/local_hub.py

lab: $(VENV)/.lab-installed
	@echo "labkit: open http://localhost:$(PORT)/lab?token=$(TOKEN)"
	$(BIN)/jupyter lab --notebook-dir=notebooks --port=$(PORT) --IdentityProvider.token=$(TOKEN) $(ALLOW_ROOT)

# every test, in JOBS processes (pytest-xdist; tests sharing a module or session fixture
# run in one, tests/conftest.py); each notebook is executed once here (tests/test_notebooks.py
# compares that run with the stored outputs cell by cell: nbval's check, not run again)
JOBS ?= 2
XDIST = $(if $(filter 1,$(JOBS)),,-n $(JOBS) --dist loadgroup)
test: lint
	$(BIN)/python -m pytest tests $(XDIST)

# the browser test's screenshots at 1280x800 (it writes into artifacts/ only) copied into
# docs/, where the README shows them
screenshots: $(VENV)/.test-installed
	LABKIT_BROWSER_VIEWPORTS=1280x800 $(BIN)/python -m pytest -q tests/test_browser.py
	cp artifacts/docs/*.png docs/

# a machine without QEMU or Chromium (.ci/run runs it under .ci/without-qemu-chromium):
# the QEMU tests (they skip, naming the packages), the fast tests (some use a stand-in
# QEMU and must not need the real one's qemu-img) and the notebooks' nbval (notebook 06
# shows its recorded comparison)
test-bare: $(VENV)/.test-installed
	$(BIN)/python -m pytest tests -q -p no:cacheprovider -m "not browser and not slow"
	$(BIN)/python -m pytest -q -p no:cacheprovider --nbval notebooks \
	    --nbval-sanitize-with tests/sanitize.cfg

# the fast tests on another Python (3.12, 3.13): make check-python PY=/path/to/python3.13
PY ?= python3.13
PYVENV = .venv-$(notdir $(PY))
check-python:
	$(PY) -m venv $(PYVENV)
	$(PYVENV)/bin/python -m pip install --quiet --upgrade pip
	$(PYVENV)/bin/python -m pip install --quiet -e '.[test]'
	$(PYVENV)/bin/python -m pytest tests -q -p no:cacheprovider -m "$(FAST)"

# lint plus the fast tests (no QEMU, no browser, nothing slow): about a minute
check: lint
	$(BIN)/python -m pytest tests -q -m "$(FAST)" $(XDIST)

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
	$(BIN)/ruff check labkit labkit_entry tests tools benchmarks deploy
	$(BIN)/python -m mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .venv-python3.* .pytest_cache .ruff_cache .mypy_cache .hypothesis artifacts
