# syntax=docker/dockerfile:1
# dbhealth standalone service. Configure with environment variables (DBHEALTH_*) and a TOML file
# mounted at /etc/dbhealth/dbhealth.toml (see config/dbhealth.example.toml).
#   docker build --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg SOURCE="$(git remote get-url origin)" \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" -t dbhealth .
#   docker run --read-only -p 10433:10433 -v ./dbhealth.toml:/etc/dbhealth/dbhealth.toml:ro dbhealth
#
# The service writes nothing (no state on disk, no .pyc, no temp files), so it runs with a
# read-only root filesystem as it is: no tmpfs is needed, not even for /tmp. Only the demo mode
# (DBHEALTH_CONFIG set empty) writes: its SQLite file, in DBHEALTH_DATA_DIR.
#
# Builders: the RUN --mount below needs BuildKit (Docker's default builder since 23.0), Buildah
# or Podman, which read the same syntax. Podman and Buildah build OCI images by default, and the
# OCI image format has no HEALTHCHECK: they drop it unless built with `--format docker`
# (`podman build --format docker -t dbhealth .`). Kubernetes ignores it either way and uses
# the probes of deploy/kubernetes/ (/livez, /readyz).

# Build stage: mysqlclient has no Linux wheel on PyPI, so it is compiled here, once.
FROM python:3.11-slim-bookworm AS build
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev libmariadb-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY exporter ./exporter
COPY config ./config
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[serve,mysql,http-metrics]"

FROM python:3.11-slim-bookworm
# VERSION follows pyproject.toml's (tests/test_dockerfile.py checks it); REVISION is the commit,
# shown as dbhealth_build_info{revision}; SOURCE is the URL of the repository it was built from
# and CREATED the build's time (RFC 3339), both given by the builder (the command above,
# scripts/check-image) so that the image says where and when it came from.
ARG VERSION=0.1.0
ARG REVISION=""
ARG SOURCE=""
ARG CREATED=""
LABEL org.opencontainers.image.title="dbhealth" \
      org.opencontainers.image.description="Prometheus exporter that probes every database alias of a Django project" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# Run-time library of mysqlclient only; versions follow the Debian release of the base image.
# The service runs as 10001:10001, both named dbhealth.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libmariadb3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 dbhealth \
    && useradd --system --uid 10001 --gid dbhealth --home-dir /var/lib/dbhealth --no-create-home \
        --shell /usr/sbin/nologin dbhealth \
    && install -d -o dbhealth -g dbhealth -m 0700 /var/lib/dbhealth \
    && install -d -m 0755 /etc/dbhealth
# The wheels are mounted from the build stage for this step only: they never become a layer.
# pip compiles every module it installs, so nothing needs a .pyc written at run time.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels "dbhealth[serve,mysql,http-metrics]"
COPY docker/healthcheck.py /usr/local/lib/dbhealth/healthcheck.py

# One process serves every scrape and holds all probe state in memory (exporter/dbhealth/serving/server.py).
# DBHEALTH_BIND is where it listens, and where the HEALTHCHECK calls it.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=dbhealth.settings \
    DBHEALTH_CONFIG=/etc/dbhealth/dbhealth.toml \
    DBHEALTH_DATA_DIR=/var/lib/dbhealth \
    DBHEALTH_ALLOWED_HOSTS=* \
    DBHEALTH_BIND=0.0.0.0:10433 \
    DBHEALTH_REVISION=${REVISION}

# Numeric, so that Kubernetes runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /var/lib/dbhealth
EXPOSE 10433
# Liveness only (/livez: the process answers; no token, no database): a down database must not
# get the exporter restarted. Dropped by Podman/Buildah unless built with --format docker.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
    CMD ["python", "/usr/local/lib/dbhealth/healthcheck.py"]
# No access log: every scrape and healthcheck would be a line. Add `--access-log` to the command
# to get one.
CMD ["python", "-m", "dbhealth", "serve"]
