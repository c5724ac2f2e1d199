# dbhealth: `make run` serves /metrics on the embedded SQLite default; `make test` runs everything;
# `make bench` compares it with the Debian exporters.
HOST ?= 127.0.0.1
PORT ?= 10433
VENV := .venv

.PHONY: run test lint format bench

run:
	scripts/setup
	$(VENV)/bin/python manage.py serve --bind $(HOST):$(PORT)

test:
	scripts/setup --test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/python -m pytest

# Side by side with Debian's postgres_exporter and mysqld_exporter; writes bench/results/.
# BENCH_ARGS="--scrapes 1000" for more iterations, "--skip hung" to drop a phase.
bench:
	scripts/setup --bench
	$(VENV)/bin/python -m bench.compare $(BENCH_ARGS)

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format:
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
