# The two commands that matter: `make demo` and `make test`. Both set up first: the demo
# installs only what it runs; the tests install the dev extra (Spark, the linters) and the
# services they talk to.
VENV ?= .venv
BIN := $(VENV)/bin
# feast 0.67 supports Python 3.11 and 3.12 (pyproject's requires-python): the first of these
# that is one, else python3 (the venv step then says what to do); override with PYTHON=….
SUPPORTED_PYTHON := import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 13))
ifndef PYTHON
PYTHON := $(or $(firstword $(foreach p,python3 python3.12 python3.11,$(shell command -v $(p) >/dev/null 2>&1 && $(p) -c '$(SUPPORTED_PYTHON)' 2>/dev/null && echo $(p)))),python3)
endif

.PHONY: install install-demo activate-settings demo-deps system-deps postgres-deps demo test test-fast test-clock test-unit test-deploy test-integration lint format bench-features bench-training bench-batch bench-spark bench-ingest bench-materialize bench-night wrk-deps bench-api bench-serving bench-models bench-estimate demo-dates feast clean

install: $(VENV)/.installed activate-settings

install-demo: $(VENV)/.installed-demo activate-settings

# The venv, with an interpreter feast supports. Debian and Ubuntu ship `venv` without pip
# (python3-venv): as root it is installed, otherwise the message names the package.
$(VENV)/bin/python:
	@$(PYTHON) -c '$(SUPPORTED_PYTHON)' 2>/dev/null || { \
		echo "error: $(PYTHON) is $$($(PYTHON) -V 2>&1); feast 0.67 needs Python 3.11 or 3.12." \
			"Install one (e.g. apt-get install python3.12-venv, pyenv install 3.12) and run" \
			"make $(MAKECMDGOALS) PYTHON=python3.12"; exit 1; }
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
		rm -rf $(VENV); \
		package="python$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv"; \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing $$package python3-venv (apt-get): $(PYTHON) -m venv needs it"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$package python3-venv >/dev/null \
			&& $(PYTHON) -m venv $(VENV); \
		else \
			echo "error: $(PYTHON) -m venv failed: install $$package (sudo apt-get install $$package) and run make $(MAKECMDGOALS) again"; \
			exit 1; \
		fi; }
	$(BIN)/pip install --quiet --upgrade pip

# What the demo runs: the package and its dependencies (no Spark, no test tools).
$(VENV)/.installed-demo: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e .
	touch $@

# Everything: the dev extra (Spark, PostgreSQL registry, pytest, the linters) as well.
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@ $(VENV)/.installed-demo

# `. .venv/bin/activate` also exports the settings as `churn env --reveal` gives them in
# this checkout (its churn.yaml; relative paths from here), so plain `feast` in
# feature_repo/ sees what the churn CLI sees (feature_repo/config.py says why), a Redis or
# registry password included (eval'd, never printed). They are read at activation. The
# line goes in once, and again whenever `python -m venv` rewrites the script.
ACTIVATE_MARK := \# churn: the settings, passwords included, exported for plain feast (make install)
activate-settings: | $(VENV)/bin/python
	@grep -qxF '$(ACTIVATE_MARK)' $(BIN)/activate || printf '\n%s\n%s\n' '$(ACTIVATE_MARK)' \
		'_churn_env="$$(cd "$(CURDIR)" && "$$VIRTUAL_ENV/bin/churn" env --reveal)" && eval "$$_churn_env"; unset _churn_env' \
		>> $(BIN)/activate

# Debian packages $(1) (a shell word list, empty when nothing is missing): as root we install
# them, otherwise say what is missing (the tests that need them are skipped).
define apt_install
	@missing="$$(echo $(strip $(1)))"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing $$missing (apt-get)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "note: not installed: $$missing (not root: what needs them is skipped or fails saying so)"; \
		fi; \
	fi
endef

# The demo needs a Redis: the one at CHURN_REDIS_URL, or a private redis-server it starts.
demo-deps:
	$(call apt_install,$$(command -v redis-server >/dev/null 2>&1 || echo redis-server))

# The tests and benchmarks need more: the Pushgateway, Prometheus (promtool) and kubectl
# (kustomize) for the deployment tests; Java (17, or the distribution's default, 21 on
# newer Debian) for Spark.
system-deps: demo-deps
	$(call apt_install,$$(command -v prometheus-pushgateway >/dev/null 2>&1 || echo prometheus-pushgateway) \
		$$(command -v promtool >/dev/null 2>&1 || echo prometheus) \
		$$(command -v kubectl >/dev/null 2>&1 || (apt-cache show kubectl >/dev/null 2>&1 && echo kubectl || echo kubernetes-client)) \
		$$(command -v java >/dev/null 2>&1 || (apt-cache show openjdk-17-jre-headless >/dev/null 2>&1 && echo openjdk-17-jre-headless || echo default-jre-headless)))

# The tests create databases of their own on a PostgreSQL: $CHURN_TEST_POSTGRES_URL, else
# root@127.0.0.1:5432 with trust auth. When nothing answers there: as root with apt, a local
# PostgreSQL is installed and started with a superuser role root trusted on loopback only;
# otherwise `make test` stops at once, naming what is missing.
TEST_POSTGRES_URL := $(or $(CHURN_TEST_POSTGRES_URL),postgresql://root@127.0.0.1:5432/postgres)
PG_ANSWERS := import socket, sys; from urllib.parse import urlsplit; u = urlsplit(sys.argv[1]); socket.create_connection((u.hostname or "127.0.0.1", u.port or 5432), 3).close()
postgres-deps:
	@if ! python3 -c '$(PG_ANSWERS)' '$(TEST_POSTGRES_URL)' 2>/dev/null; then \
		where="$$(python3 -c 'import sys; from urllib.parse import urlsplit; u = urlsplit(sys.argv[1]); print(u.hostname or "127.0.0.1", u.port or 5432, sep=":")' '$(TEST_POSTGRES_URL)')"; \
		if [ -z "$(CHURN_TEST_POSTGRES_URL)" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "make test needs PostgreSQL at $$where: installing and starting postgresql (apt-get)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
			version="$$(ls /etc/postgresql | sort -V | tail -1)"; \
			hba="/etc/postgresql/$$version/main/pg_hba.conf"; \
			grep -q '^host all root 127.0.0.1/32 trust' "$$hba" || sed -i '1i host all root 127.0.0.1/32 trust' "$$hba"; \
			pg_ctlcluster "$$version" main start 2>/dev/null || pg_ctlcluster "$$version" main reload; \
			su postgres -c "psql -qc 'CREATE ROLE root SUPERUSER LOGIN'" 2>/dev/null || true; \
			su postgres -c "createdb -O root test" 2>/dev/null || true; \
			python3 -c '$(PG_ANSWERS)' '$(TEST_POSTGRES_URL)' || { echo "error: PostgreSQL still does not answer at $$where"; exit 1; }; \
		else \
			echo "error: make test needs a PostgreSQL at $$where on which it may create databases" \
				"(none answers): install and start one (sudo apt-get install postgresql) or set" \
				"CHURN_TEST_POSTGRES_URL=postgresql://user@host:port/db"; \
			exit 1; \
		fi; \
	fi

# One OpenMP thread, as in the suite below and the ml image: on a laptop or a shared box the
# boosted model's threads otherwise spin against everything else (a demo train: 226 s with
# two threads, 34 s with one, see below; make demo's beside other jobs: 1,291 s with two).
demo: install-demo demo-deps
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/churn demo

# One OpenMP/BLAS thread per process: the suite runs servers and CLIs beside the models, and
# on a shared 2-core machine the boosted model's OpenMP threads spin against them (a demo
# train took 226 s with two threads, 34 s with one).
#
# The modules run in TEST_WORKERS processes (pytest-xdist), a module's tests in one process
# (its module-scoped world is built once), in the order tests/conftest.py sorts them, the
# slowest first (xdist would put the modules with the most tests first, and the slowest
# module, of one test, last and alone): most of the suite waits on servers, subprocesses
# and Redis, so two processes keep a 2-core machine busy. TEST_WORKERS=0 runs in one. It ends
# with the product's line coverage (pyproject's [tool.coverage]), a report with no threshold.
TEST_WORKERS ?= 2
test: postgres-deps install system-deps
	OMP_NUM_THREADS=1 $(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder \
		--cov --cov-report=term

# The whole suite with the clock moved (libfaketime, one offset shared by every process the
# tests start), so no test passes on some dates or times of day only: across the midnight
# into March 2027, and at noon of a leap day. The servers keep the real clock, as the
# machine's Redis does: Prometheus and the Pushgateway (Go reads the clock without libc),
# and redis-server and redis-cli (they hang under libfaketime), which shims on PATH run unfaked.
# Override with make test-clock CLOCKS="2030-01-01T00:00:00".
CLOCKS ?= 2027-02-28T23:45:00 2028-02-29T12:00:00
test-clock: install system-deps
	@if ! command -v faketime >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing faketime (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime >/dev/null; \
	fi
	@shim=$$(mktemp -d) && trap 'rm -rf "$$shim"' EXIT && \
	for tool in redis-server redis-cli; do \
		printf '#!/bin/sh\nunset LD_PRELOAD FAKETIME\nexec %s "$$@"\n' "$$(command -v $$tool)" > "$$shim/$$tool"; \
		chmod +x "$$shim/$$tool"; \
	done && \
	for at in $(CLOCKS); do \
		offset=$$(( $$(date -ud "$$at" +%s) - $$(date -u +%s) )); \
		echo "== the suite at $$at UTC (clock moved by $$offset s)"; \
		PATH="$$shim:$$PATH" OMP_NUM_THREADS=1 faketime -f "$$( [ $$offset -ge 0 ] && echo + )$$offset" $(BIN)/pytest $(ARGS) || exit 1; \
	done

test-unit: install
	OMP_NUM_THREADS=1 $(BIN)/pytest tests/unit

# The inner loop: the unit tier (no servers, no Feast registry), in TEST_WORKERS processes.
test-fast: install
	OMP_NUM_THREADS=1 $(BIN)/pytest tests/unit -n $(TEST_WORKERS) -q

# The deployment files, offline: compose, the Dockerfiles, the Kubernetes and Spark manifests
# (kubectl's kustomize), the alert rules (promtool) and the dashboards' JSON.
test-deploy: install system-deps
	OMP_NUM_THREADS=1 $(BIN)/pytest -m deploy

test-integration: install system-deps
	OMP_NUM_THREADS=1 $(BIN)/pytest -m integration

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench-features: install system-deps
	$(BIN)/python benchmarks/bench_features.py

bench-training: install system-deps
	$(BIN)/python benchmarks/bench_training.py

bench-batch: install system-deps
	$(BIN)/python benchmarks/bench_batch.py

# Both engines on the same 100k users: needs Java 17+ (the spark extra is in the dev install).
# Ingest from PostgreSQL (a database of its own on CHURN_TEST_POSTGRES_URL, default the
# local server): the backfill and a night. ARGS="--users 2000 --days 30" for a quick run.
bench-ingest: install system-deps
	$(BIN)/python benchmarks/bench_ingest.py $(ARGS)

# Materialize: Feast's writer against ours on one world, with a redis-server of its own
# (its memory per user). ARGS="--users 1000000 --writers fast" for the large run.
bench-materialize: install system-deps
	$(BIN)/python benchmarks/bench_materialize.py $(ARGS)

# A portal of N users on one box (issue 25): the backfill from PostgreSQL, training and a
# night, each stage in a fresh process; e.g. make bench-night ARGS="--users 1000000 --json 1m.json"
bench-night: install system-deps
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_night.py $(ARGS)

bench-spark: install system-deps
	$(BIN)/python benchmarks/bench_spark.py $(ARGS)

# wrk, the load generator of bench-api (api_load.py falls back to a Python one without it)
# and bench-serving.
wrk-deps:
	@if ! command -v wrk >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing wrk (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
	fi

bench-api: install system-deps wrk-deps
	$(BIN)/python benchmarks/api_load.py $(ARGS)

# The API while materialize writes Redis, while its redis-server restarts, while a model is
# promoted (issue 15): 100,000 users by default, e.g. make bench-serving ARGS="--users 2000".
bench-serving: install system-deps wrk-deps
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/serving_night.py $(ARGS)

# The demo's gate verdict and metrics on 14 consecutive end dates (the same world each).
demo-dates: install system-deps
	$(BIN)/python benchmarks/demo_dates.py $(ARGS)

# The nightly estimate against realized figures in three worlds, baseline, drift and concept
# (issue 27): about 10-18 min at 2,000 users on 2 shared cores.
bench-estimate: install system-deps
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/three_worlds.py --users 2000 --days 180 --drift-day 120 $(ARGS)

# Both demo worlds' model tables beside the references and the observable ceiling (seed 42).
bench-models: install system-deps
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/model_quality.py $(ARGS)

# Plain Feast with the current settings, e.g. make feast ARGS="materialize-incremental 2026-11-26T00:00:00"
feast: install
	eval "$$($(BIN)/churn env --reveal)" && cd feature_repo && ../$(BIN)/feast $(ARGS)

clean:
	rm -rf data artifacts .pytest_cache

# The reference pages (docs/reference/*.md) from the code: the CLI, the settings, the features,
# the metrics, the exit codes, the output layouts. No Redis, PostgreSQL or network needed;
# tests/unit/test_reference_docs.py fails when a committed page is stale.
.PHONY: docs
docs: install-demo
	$(BIN)/python -m churn.reference
