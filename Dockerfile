# One image for both wasp programs: the chart runs `wasp-operator` from it and
# the operator runs `wasp-session` from it in every session pod (each sets the
# command; the image has no ENTRYPOINT). The `wasp` CLI is in it too.
#
#   docker build -t ghcr.io/wasp-dev/wasp:0.1.0.dev0 .
#
# Dependencies come from uv.lock, exactly (--frozen: a lock that does not
# match pyproject.toml fails the build), with the operator and session extras.

ARG PYTHON_IMAGE=python:3.11-slim
ARG UV_VERSION=0.13.9

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

# ---------------------------------------------------------------- build
FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PROJECT_ENVIRONMENT=/opt/wasp \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
WORKDIR /src

# The locked dependencies first: this layer is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --extra operator --extra session --no-install-project

# Then wasp itself, built as a wheel and installed (not editable) into /opt/wasp.
COPY README.md ./
COPY src/ src/
COPY operator/src/ operator/src/
COPY session-pod/src/ session-pod/src/
RUN uv sync --frozen --no-dev --extra operator --extra session --no-editable

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE}
# libmagic: neonize imports python-magic, which loads it when imported.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmagic1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/wasp /opt/wasp
ENV PATH=/opt/wasp/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
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
