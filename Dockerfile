# syntax=docker/dockerfile:1
#
# The wsfleet container image: one wsfleet node, `wsfleet serve`, with the Redis broker
# extra. Public WebSocket port 8000, internal port 9000 (health, metrics, server API).
#
#   docker build -t wsfleet:0.1.0 \
#       --build-arg REVISION="$(git rev-parse HEAD)" \
#       --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
#   docker run --rm --read-only -p 8000:8000 -p 9000:9000 wsfleet:0.1.0 serve --dev
#
# Two stages: the builder turns wsfleet and its dependencies (with the `redis` extra) into
# wheels; the final stage installs only those wheels, offline, and keeps no compiler, no
# source tree and no pip. The final image:
#
# - runs as uid/gid 10001 (`wsfleet`, no home directory, login shell /usr/sbin/nologin);
#   the Kubernetes manifests set the same ids in runAsUser/runAsGroup;
# - works with a read-only root filesystem: wsfleet writes no file (its logs go to stderr,
#   its metrics live in memory), and PYTHONDONTWRITEBYTECODE=1 stops Python from trying
#   to cache bytecode next to the modules (pip compiled wsfleet's and its dependencies'
#   bytecode at install time). The manifests mount an emptyDir on /tmp all the same, for
#   a library that wants a temporary file;
# - runs `wsfleet` as PID 1 (exec form): it handles SIGTERM itself (the drain) and starts
#   no child processes, so it needs no init such as tini.
#
# Base image. Pinned to a Python patch release and Debian release (python:3.11.16-slim is
# Debian trixie) and to the digest of its multi-platform index, so a rebuild gets the same
# bytes. The tag is for humans; Docker pulls by the digest. The digest was published by the
# official image's maintainers for their build of 13 August 2026 (the docker-library
# repo-info record of `python:3.11.16-slim`); it has not been pulled yet, so the first
# real build is its check.
# To update (a new Python patch release, or a rebuilt base with Debian security fixes):
#
#   docker buildx imagetools inspect python:3.11-slim      # "Digest:" of the index
#   # or: crane digest python:3.11.17-slim    /    skopeo inspect docker://python:3.11.17-slim
#
# and replace both the tag and the digest below, or pass --build-arg PYTHON_IMAGE=... for a
# one-off build. Stay on one minor version (3.11) unless requires-python and CI move too.
# (checkov's CKV_DOCKER_7 cannot see through the ARG to the pinned tag below.)
# checkov:skip=CKV_DOCKER_7: FROM uses PYTHON_IMAGE, pinned to a version and a digest
ARG PYTHON_IMAGE=python:3.11.16-slim@sha256:8203f8b7cc03e7a0b2da2a7bfebdb7e39d985983791e2aba5b01cc535bf36f53

# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /build
# Only what the wheel is built from (.dockerignore keeps everything else out).
COPY pyproject.toml README.md ./
COPY src/ ./src/

# Every dependency has binary wheels for CPython 3.11 on manylinux x86_64 and aarch64
# (picows, uvloop, msgspec, hiredis, cryptography, ...), so no compiler is installed; on a
# platform without them pip falls back to a source build and says what is missing.
RUN python -m pip wheel --wheel-dir /wheels ".[redis]"

# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

# VERSION is the version of wsfleet in pyproject.toml: the install below asks for exactly
# that version, so a label that disagrees with the package fails the build. Pass REVISION
# and CREATED at build time.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="wsfleet" \
      org.opencontainers.image.description="Real-time WebSocket messaging server for Kubernetes fleets, speaking the Centrifugo client protocol" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.16-slim"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# A system user and group with fixed ids, no home directory and no login shell.
RUN groupadd --system --gid 10001 wsfleet \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin wsfleet

# Install the wheels from the builder without copying them into a layer (a bind mount),
# offline (--no-index: nothing but those wheels, whose versions the builder resolved), then
# remove the installers: nothing installs packages at run time.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --disable-pip-version-check --no-index \
        --find-links=/wheels "wsfleet[redis]==${VERSION}" \
 && python -m pip uninstall --yes --disable-pip-version-check pip setuptools wheel \
 && wsfleet --version

USER 10001:10001
WORKDIR /

EXPOSE 8000 9000
STOPSIGNAL SIGTERM

# For `docker run` and Compose only: Kubernetes ignores HEALTHCHECK (the manifests use
# startup, liveness and readiness probes on /livez and /readyz instead), and images built
# in the OCI format drop it. It asks /livez on the loopback, at the internal port from
# WSFLEET_SERVER_INTERNAL_PORT (default 9000); with server.internal_host bound to another
# address it cannot answer, so leave it out there (docker run --no-healthcheck).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('WSFLEET_SERVER_INTERNAL_PORT', '9000'), timeout=2)"]

ENTRYPOINT ["wsfleet"]
CMD ["serve"]
