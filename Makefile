# dbhealth: `make run` serves /metrics on the embedded SQLite default; `make test` runs everything.
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 2
THREADS ?= 4
VENV := .venv

.PHONY: run test lint format dashboards bench

run:
	scripts/setup
	$(VENV)/bin/gunicorn config.wsgi -b $(HOST):$(PORT) --workers $(WORKERS) --threads $(THREADS)

test:
	scripts/setup --test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/python -m pytest

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format:
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
