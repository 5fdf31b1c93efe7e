# syntax=docker/dockerfile:1
# swarm-operator image: the operator in a venv on a slim Python base, run as a non-root user.
# Dependencies come only from requirements.lock, every file checked against its hash; regenerate it
# with the command written at its top when pyproject.toml's dependencies change
# (tests/unit/test_image.py fails when the two disagree).

# Pinned by exact version; pin by digest too (python:3.11.14-slim-bookworm@sha256:...) in your registry
# mirror if your policy requires it. The lock is resolved for CPython 3.11 on linux x86_64.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
COPY requirements.lock /src/requirements.lock
# Wheels only (no compiler in the image, no build scripts run), hashes required, nothing unlocked.
RUN /opt/venv/bin/pip install --require-hashes --no-deps --only-binary=:all: -r /src/requirements.lock
COPY pyproject.toml README.md /src/
COPY operator /src/operator
# The project itself: built with the locked setuptools/wheel, no network, no dependency resolution.
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation --no-index /src \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/swarm-operator version

FROM ${PYTHON_IMAGE}
# A fixed numeric uid/gid (the chart's runAsUser) with no home and no login shell.
RUN groupadd --system --gid 10001 swarm \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin swarm
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /tmp
# 8080: Prometheus metrics (SWARM_METRICS_PORT); 8081: kopf liveness (--liveness).
EXPOSE 8080 8081
ENTRYPOINT ["swarm-operator", "run"]
