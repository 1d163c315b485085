# Two commands matter: `make run` (the demo) and `make test` (everything CI checks).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test bench lint typecheck unit integration venv kafka-jars prometheus openssl asyncapi-parser schemas asyncapi soak-memory clean

$(STAMP): pyproject.toml constraints.txt
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

kafka-jars: venv
	$(BIN)/python -m devtools.local_kafka fetch

## prometheus and promtool on PATH: the monitoring tests run a real Prometheus.
prometheus:
	bash deploy/prometheus/install.sh

## openssl on PATH: the security tests make their certificates with it.
openssl:
	bash deploy/kafka/install-openssl.sh

## @asyncapi/parser (npm, from its lock) for the AsyncAPI test: installed once per lock.
PARSER := tools/asyncapi/node_modules/.installed-stamp
$(PARSER): tools/asyncapi/package-lock.json
	cd tools/asyncapi && npm ci --prefer-offline --no-audit --no-fund --ignore-scripts
	@touch $(PARSER)

asyncapi-parser: $(PARSER)

## The demo: local Kafka + upstream simulator + processor on demo records, with a summary.
run: venv kafka-jars
	$(BIN)/python -m devtools.demo

## Lint, type-check, then the whole test suite against a real broker.
test: venv kafka-jars prometheus openssl asyncapi-parser lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider --durations=20

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

unit: venv asyncapi-parser
	$(BIN)/pytest -q -m "not integration and not e2e" tests/unit tests/devtools

integration: venv kafka-jars prometheus openssl
	$(BIN)/pytest -q tests/integration tests/e2e

## Throughput, latency and memory against the stack's limits (minutes; not part of `make test`).
## Writes bench/results/<timestamp>.json, .md and .png. BENCH_ARGS="--only schema-only --scale 0.5"
## narrows a run; PROFILE=pyinstrument|cprofile profiles the processor (.run/bench/<run>/).
BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

## Quix Streams caps pydantic below the project's pin: its contestant gets its own venv.
QUIX_STAMP := .venv-quix/.stamp
$(QUIX_STAMP): devtools/bench/quix.txt
	python3 -m venv .venv-quix
	.venv-quix/bin/python -m pip install -q -r devtools/bench/quix.txt
	@touch $(QUIX_STAMP)

bench: venv kafka-jars $(BENCH_STAMP) $(QUIX_STAMP)
	$(BIN)/python -m devtools.bench $(BENCH_ARGS) $(if $(PROFILE),--profile $(PROFILE))

## Resident memory of the processor working through a 1,000,000-record backlog.
soak-memory: venv kafka-jars
	$(BIN)/python -m devtools.soak_memory

## Re-record the JSON Schema snapshots and the API's OpenAPI snapshot after a deliberate change.
schemas: venv
	$(BIN)/python -m schemas.export --write
	$(BIN)/python -m processor.api.openapi --write

## Regenerate docs/asyncapi.yaml from the models and validate it with @asyncapi/parser (npm).
asyncapi: venv asyncapi-parser
	$(BIN)/python -m schemas.asyncapi --write
	cd tools/asyncapi && node validate.mjs ../../docs/asyncapi.yaml

clean:
	rm -rf $(VENV) .venv-quix .mypy_cache .ruff_cache .pytest_cache .run build *.egg-info
