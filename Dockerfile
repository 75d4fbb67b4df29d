# syntax=docker/dockerfile:1
# rotator: multi-stage build. The builder makes a virtualenv at /opt/venv with the runtime
# dependencies pinned, with their hashes, in requirements.lock (`make lock` refreshes it), then
# rotator itself (no dev group); the runtime stage copies only that venv into a slim Python of
# the very same tag, so the venv's interpreter link stays valid.
#
#   make image        (docker build with VERSION from rotator/__init__.py, REVISION = git HEAD)
#   docker run --read-only --tmpfs /tmp -e VAULT_ADDR=... -e VAULT_TOKEN=... \
#       -e ROTATOR_ACCOUNTS=name=hash -p 8080:8080 rotator:0.1.0
#
# tests/test_deploy.py lints this file with hadolint and replays the builder's ARG, COPY and RUN
# steps and the ENTRYPOINT/CMD/HEALTHCHECK in a fresh virtualenv: keep them plain.

FROM python:3.11.14-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# The version `make image` passes (rotator.__version__): the build stops if the installed
# rotator reports another one. Empty (a plain `docker build`), nothing is compared.
ARG VERSION=""

WORKDIR /src
COPY requirements.lock pyproject.toml README.md LICENSE ./
COPY rotator/ rotator/

# The runtime dependencies exactly as locked, each file checked against its hash; then rotator
# itself, non-editable, without dependencies (pip check: the lock left none missing). pip
# compiles the bytecode now, so the read-only runtime never needs to write any.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --no-cache-dir --compile --require-hashes \
        -r requirements.lock \
    && /opt/venv/bin/python -m pip install --no-cache-dir --compile --no-deps . \
    && /opt/venv/bin/python -m pip check \
    && /opt/venv/bin/rotator --version \
    && { [ -z "$VERSION" ] || [ "$(/opt/venv/bin/rotator --version)" = "rotator $VERSION" ]; }

FROM python:3.11.14-slim-bookworm

# OCI annotations; `make image` fills the three arguments.
ARG VERSION=""
ARG REVISION=""
ARG SOURCE=""
LABEL org.opencontainers.image.title="rotator" \
      org.opencontainers.image.description="Keeps Encord service-account keys and bearer tokens fresh in HashiCorp Vault" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$REVISION" \
      org.opencontainers.image.source="$SOURCE" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed numeric UID/GID, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
RUN groupadd --system --gid 10001 rotator \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin rotator

COPY --from=builder /opt/venv /opt/venv

# Nothing is written outside /tmp: no bytecode, no home directory, logs go to stdout.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    TMPDIR=/tmp

WORKDIR /tmp
USER 10001:10001
EXPOSE 8080

# No curl or wget in a slim image: the venv's Python asks /healthz on the port that
# ROTATOR_HTTP_ADDR names (default 8080). Any answer but 2xx, or none, is an exception: exit 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('ROTATOR_HTTP_ADDR', '0.0.0.0:8080').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

# Exec form: rotator is PID 1 and receives SIGTERM itself (it stops within 10 s, exit 0).
ENTRYPOINT ["rotator"]
CMD ["run"]
