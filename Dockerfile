# One image for both wasp programs: the chart runs `wasp-operator` from it and
# the operator runs `wasp-session` from it in every session pod (each sets the
# command; the image has no ENTRYPOINT). The `wasp` CLI is in it too.
#
#   docker build -t ghcr.io/wasp-dev/wasp:0.1.0.dev0 .
#
# Dependencies come from uv.lock, exactly (--frozen: a lock that does not
# match pyproject.toml fails the build), with every extra (the kubectl extra adds
# nothing the operator extra lacks).
# The bases are pinned to a precise version (Python 3.11.7 on Debian bookworm,
# uv 0.13.9); `make image` builds the same file with locally made stand-ins of
# both bases (tests/harness/image.py), so it needs no image registry.

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm
ARG UV_VERSION=0.13.9

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

# ---------------------------------------------------------------- build
FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PROJECT_ENVIRONMENT=/opt/wasp \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1
WORKDIR /src

# The locked dependencies first: this layer is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --extra operator --extra session --extra kubectl --no-install-project

# Then wasp itself, built as a wheel and installed (not editable) into /opt/wasp.
COPY README.md ./
COPY src/ src/
COPY operator/src/ operator/src/
COPY session-pod/src/ session-pod/src/
RUN uv sync --frozen --no-dev --extra operator --extra session --extra kubectl --no-editable

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE}
# libmagic: neonize imports python-magic, which loads it when imported.
# apt's lists and downloaded packages are removed in the same layer, whatever
# the base's apt configuration (no reliance on its docker-clean hook).
# /var/lib/wasp, the session's data dir (WASP_DATA_DIR), is made here owned by
# 65532 and declared a volume: `docker run --read-only` gets a writable one by
# itself; in Kubernetes the session pod mounts an emptyDir there (and on /tmp).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmagic1 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* \
 && install -d -o 65532 -g 65532 -m 0700 /var/lib/wasp
COPY --from=build /opt/wasp /opt/wasp
ENV PATH=/opt/wasp/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
VOLUME /var/lib/wasp
# 65532 is the user the chart and the operator's session pods run as
# (runAsNonRoot); the root filesystem may be read-only: bytecode is compiled.
USER 65532:65532
WORKDIR /tmp
LABEL org.opencontainers.image.title="wasp" \
      org.opencontainers.image.description="WhatsApp sessions for many tenants on Kubernetes: wasp-operator, wasp-session and the wasp CLI" \
      org.opencontainers.image.licenses="Apache-2.0"
# No ENTRYPOINT: Kubernetes sets the command (wasp-operator or wasp-session).
# Run bare, the image explains itself.
CMD ["wasp", "--help"]
