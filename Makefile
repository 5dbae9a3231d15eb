# The README's commands. Each one creates .venv and installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

ORG ?= NCLCC
ROLE ?= issuer
CLEARANCE ?= OFFICIAL-SENSITIVE
SUB ?=

.PHONY: install run test demo fuzz drill token lint check bench bench-metrics bench-chase bench-instructions metrics-rebuild clean

# The services default to APP_ENV=production, which refuses the development secrets. These
# commands are for a developer's machine: they run in development unless told otherwise.
run demo token bench bench-metrics bench-chase metrics-rebuild: export APP_ENV ?= development

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) >&2
	@$(PY) -m pip install --quiet --upgrade pip >&2
	@$(PY) -m pip install --quiet -e '.[test]' >&2
	@rm -f $(VENV)/.installed-*; touch $@

# Under supervisord (docs/operations.md); its control socket and configuration are in
# RUN_DIR (var/run): `.venv/bin/supervisorctl -c var/run/supervisord.conf status`.
run: $(STAMP)
	$(PY) -m tools.run

# A year of history loaded into the system `make run` started (it must be running, with the same
# DATABASE_URL, REDIS_URL and ports), through the real APIs: docs/demo.md. Running it again
# creates nothing new. DEMO_PACKAGES packages, DEMO_SEED the random seed.
DEMO_PACKAGES ?= 150
DEMO_SEED ?= 11
demo: $(STAMP)
	$(PY) -m tools.demo --packages $(DEMO_PACKAGES) --seed $(DEMO_SEED)

# TEST_WORKERS pytest-xdist processes (auto: one per core); TEST_WORKERS=0 runs in this process.
TEST_WORKERS ?= auto
test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

# Schemathesis against each service's OpenAPI document, every check, with a centre and a recipient
# token; the services run in-process on the databases `make test` uses (fuzz/test_openapi.py).
# FUZZ_EXAMPLES=50 (examples per operation) and FUZZ_SEED=<n> explore further.
fuzz: $(STAMP)
	$(PY) -m pytest -p tests.conftest fuzz -q -p no:cacheprovider $(FUZZ_ARGS)

# Fault drills (docs/drills.md): the whole system as `make run` starts it, on its own RUN_DIR,
# redis-server and drill database (`<db>_drill` from DATABASE_URL; SQLite without it), through
# Redis stopped, worker and cron killed, metrics down, database connections cut; each asserts
# nothing lost or doubled and prints its figures. DRILL_ARGS="-k redis" runs one.
drill: $(STAMP)
	$(PY) -m pytest drills -p no:cacheprovider -q -s $(DRILL_ARGS)

token: $(STAMP)
	@$(PY) -m tools.token --org '$(ORG)' --role '$(ROLE)' --clearance '$(CLEARANCE)' --sub '$(SUB)'

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Lint, format and types (mypy: shared/ and the domain modules, see pyproject.toml). CI runs it.
# `ruff format .` puts the tree in the house style.
check: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) var .pytest_cache

# The hot paths under wrk against a minimal reference app, in alternating rounds (bench/http_load.py,
# docs/performance.md). BENCH_ROUNDS, BENCH_SECONDS, BENCH_PROFILE=1 (py-spy flame graphs).
bench: $(STAMP)
	$(PY) -m bench.http_load

bench-metrics: $(STAMP)
	$(PY) -m bench.metrics_read_model

# The chase sweep over 1M open returns, 1% due (bench/chase_sweep.py; BENCH_OPEN=100000 for a quick look).
bench-chase: $(STAMP)
	$(PY) -m bench.chase_sweep

# A request's CPU counted in instructions under valgrind (bench/instructions.py): a read, a
# filing and an access log line, exact where the machine's speed makes rates too noisy.
bench-instructions: $(STAMP)
	$(PY) -m bench.instructions

# Empties the metrics read model and replays the dissemination and outcomes services' event
# logs (both must be running, e.g. under `make run`).
metrics-rebuild: $(STAMP)
	$(VENV)/bin/flask --app services.metrics rebuild
