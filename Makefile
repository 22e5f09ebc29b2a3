# klio-dagster: `make demo` runs the product on a synthetic catalogue; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba
export KLIO_DATA ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(KLIO_DATA)/dagster_home
export KLIO_STORE ?= $(KLIO_DATA)/store
export KLIO_QUEUE ?= $(KLIO_DATA)/queue

.PHONY: setup browser postgres demo dev test test-unit test-sensor test-integration test-e2e bench lock proto clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	mkdir -p $(NUMBA_CACHE_DIR) $(DAGSTER_HOME)
	touch $@

demo: setup  ## generate 12 tracks, ingest them through the local queue, compute the graph, print a table
	$(BIN)/klio-dagster demo

dev: setup  ## the Dagster UI and daemon on the same instance (http://127.0.0.1:3000)
	$(BIN)/klio-dagster init > /dev/null
	DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=true DAGSTER_EVENT_BATCH_SIZE=1000 $(BIN)/dagster dev -w workspace.yaml

test: setup  ## the whole test suite, every layer (pytest's exit 5, "no tests collected", is reported and fails)
	@case "$(PYTEST_ARGS)" in *"-m unit"*|*"-m sensor"*|*"-m integration"*) ;; *) $(MAKE) --no-print-directory browser ;; esac
	@case "$(PYTEST_ARGS)" in *"-m unit"*|*"-m sensor"*|*"-m e2e"*) ;; *) $(MAKE) --no-print-directory postgres ;; esac
	@$(BIN)/pytest -q $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; fi; \
	exit $$status

test-unit test-sensor test-integration test-e2e: setup  ## one layer of the test pyramid
	@$(MAKE) --no-print-directory test PYTEST_ARGS="-m $(@:test-%=%)"

browser:  ## Chromium from the system packages, for the browser test (which skips, saying why, where none can be installed)
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Chromium from the system packages for tests/test_browser.py (once)"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	    || echo "warning: apt-get could not install chromium: the browser test will be skipped" >&2; \
	else echo "warning: no chromium, and installing it needs root and apt-get: the browser test will be skipped" >&2; fi

postgres:  ## Postgres 15 from the system packages, for the tests on Postgres storage (which skip, saying why, where none can be installed)
	@if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Postgres from the system packages for the Postgres storage tests (once)"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } \
	    || echo "warning: apt-get could not install postgresql: the Postgres tests will be skipped" >&2; \
	else echo "warning: no Postgres, and installing it needs root and apt-get: the Postgres tests will be skipped" >&2; fi

bench: setup  ## benchmarks B1-B3 and memory (minutes); figures go to docs/benchmarks.md by hand
	$(BIN)/python benchmarks/run_all.py

lock:  ## re-resolve and pin every dependency
	rm -rf /tmp/klio-lock && $(PYTHON) -m venv /tmp/klio-lock
	/tmp/klio-lock/bin/pip install --quiet -e '.[dev]'
	( echo "# Full lock of the tested environment (Python 3.11). Used as pip constraints by make setup."; \
	  /tmp/klio-lock/bin/pip freeze --exclude-editable ) > requirements.lock

proto:  ## regenerate klio_dagster/events/proto/klio_pb2.py (protoc 6.31 gencode, compatible with the pinned protobuf 6.33 runtime)
	rm -rf /tmp/klio-protoc && $(PYTHON) -m venv /tmp/klio-protoc
	/tmp/klio-protoc/bin/pip install --quiet grpcio-tools==1.76.0
	cd klio_dagster/events/proto && /tmp/klio-protoc/bin/python -m grpc_tools.protoc -I. \
	  -I$$(/tmp/klio-protoc/bin/python -c "import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), '_proto'))") \
	  --python_out=. klio.proto

clean:
	rm -rf $(KLIO_DATA) .pytest_cache
