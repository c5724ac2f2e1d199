# dbhealth standalone service. Configure with environment variables (DBHEALTH_*) and a TOML file
# mounted at /etc/dbhealth/dbhealth.toml (see config/databases.example.toml).
#   docker run -p 8000:8000 -v ./dbhealth.toml:/etc/dbhealth/dbhealth.toml:ro dbhealth

# Build stage: mysqlclient has no Linux wheel on PyPI, so it is compiled here, once.
FROM python:3.11-slim-bookworm AS build
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev libmariadb-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY config ./config
COPY exporter ./exporter
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[mysql]"

FROM python:3.11-slim-bookworm
# Run-time library of mysqlclient only; versions follow the Debian release of the base image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libmariadb3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/dbhealth dbhealth \
    && install -d -o dbhealth -g dbhealth -m 0700 /var/lib/dbhealth \
    && install -d -m 0755 /etc/dbhealth
COPY --from=build /wheels /wheels
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --no-index --find-links=/wheels "dbhealth[mysql]" \
    && rm -rf /wheels
COPY docker/healthcheck.py /usr/local/lib/dbhealth/healthcheck.py

# One process serves every scrape and holds all probe state in memory (exporter/server.py).
# DBHEALTH_BIND is where it listens, and where the HEALTHCHECK calls it.
ENV PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=config.settings \
    DBHEALTH_CONFIG=/etc/dbhealth/dbhealth.toml \
    DBHEALTH_DATA_DIR=/var/lib/dbhealth \
    DBHEALTH_ALLOWED_HOSTS=* \
    DBHEALTH_BIND=0.0.0.0:8000

# Numeric, so that Kubernetes runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /var/lib/dbhealth
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
    CMD ["python", "/usr/local/lib/dbhealth/healthcheck.py"]
CMD ["python", "-m", "django", "serve", "--access-log"]
