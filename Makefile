# yidi: the two commands a newcomer needs are `make demo` and `make test`; both set up .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
BENCH  ?=
# make test's pytest processes (pytest-xdist, a test file per process at a time: its fixtures stay together); most
# tests wait on a server, a subprocess or the database, so two processes on two cores finish in about 2/3 the time
TEST_WORKERS ?= 2
export YIDI_HOME ?= $(CURDIR)/.yidi
# The local Prefect server's port (make up / make demo); another port when 4200 is taken: make up PREFECT_PORT=4300
PREFECT_PORT ?= 4200
export YIDI_PREFECT_PORT ?= $(PREFECT_PORT)
# make up DB=postgres WORKERS=2: store and Prefect server databases on PostgreSQL at 127.0.0.1:5432 (created when
# absent; another server: YIDI_STACK_POSTGRES=postgresql://user@host:5432), N process workers (app/stack_postgres.py)
DB ?= sqlite
WORKERS ?= 1
export YIDI_STACK_DB ?= $(DB)
export YIDI_STACK_WORKERS ?= $(WORKERS)
# Listen beyond loopback only with PREFECT_SERVER_API_AUTH_STRING set (make up refuses otherwise; README: production)
PREFECT_HOST ?= 127.0.0.1
export YIDI_PREFECT_HOST ?= $(PREFECT_HOST)

# make sandbox (or make up SANDBOX=1): every stand-in as a local service and the channels pointed at them (demo/sandbox.py)
SANDBOX ?=

.PHONY: help venv test lint demo up sandbox sandbox-test down bench bench-report peak clean

help:
	@echo "make demo   run the whole order lifecycle on SQLite + a local Prefect server against the stand-ins"
	@echo "make test   ruff + import contracts + the test suite (PostgreSQL cases need 127.0.0.1:5432 or are skipped)"
	@echo "make up     order store initialised/upgraded, local Prefect server (PREFECT_PORT=4200), worker, deployments"
	@echo "make sandbox  make up with every stand-in as a local service and new orders arriving (make up SANDBOX=1)"
	@echo "make down   stop what make up, make sandbox (or make demo) started"
	@echo "make browser-test  the rendered Prefect UI in Debian's chromium (local stack + short demo; a few minutes)"
	@echo "make sandbox-test  make sandbox through the scheduler until orders reach every stage, every run green (minutes)"
	@echo "make bench  benchmarks beside their baselines (BENCH=name for one, BENCH_N=rows to scale down)"
	@echo "make bench-report  the README's benchmark table from the committed bench/results/*.json"
	@echo "make peak   a normal day then a 10x burst on PostgreSQL with 1, 2, 4 workers (PEAK_N=day's orders, 100)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# Screenshots and page text of a failed check: .yidi/browser-shots/ (YIDI_BROWSER_SHOTS). Needs /usr/bin/chromium
# and /usr/bin/chromedriver (Debian: chromium chromium-driver fonts-noto-cjk; .ci/run installs them).
browser-test: venv
	YIDI_BROWSER_TEST=1 $(BIN)/python -m pytest -q -p no:randomly tests/test_browser_ui.py

# The whole sandbox on a compressed clock, every run green (tests/test_sandbox_live.py; several minutes)
sandbox-test: venv
	YIDI_SANDBOX_TEST=1 $(BIN)/python -m pytest -q -p no:randomly tests/test_sandbox_live.py

demo: venv
	$(BIN)/yidi demo

up: venv
	$(BIN)/python -m app.local_stack $(if $(SANDBOX),sandbox,up)

sandbox: venv
	$(BIN)/python -m app.local_stack sandbox

down: venv
	$(BIN)/python -m app.local_stack down

bench: venv
	$(BIN)/python -m bench $(BENCH)

bench-report: venv
	$(BIN)/python -m bench.report

# Singles' Day at compressed time (bench/peak.py): writes bench/results/peak.md and peak.png; needs 127.0.0.1:5432
peak: venv
	$(BIN)/python -m bench.peak

clean:
	rm -rf $(VENV) .yidi .pytest_cache .ruff_cache
