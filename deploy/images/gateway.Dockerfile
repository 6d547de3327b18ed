# tiergate gateway: the public OpenAI-compatible API (routing, streaming relay, limits).
# Build context: the repository root.  deploy/images/build.sh builds all five images;
# alone: docker buildx build -f deploy/images/gateway.Dockerfile -t tiergate/gateway .
#
# Base image: python:3.11-slim-bookworm (CPython 3.11.16, Debian 12), pinned to its
# multi-platform OCI index digest as Docker Hub's tag API listed it on 2026-09-21
# (hub.docker.com/v2/repositories/library/python/tags/3.11-slim-bookworm), cross-checked on
# 2026-09-22 against docker-library/repo-info; found on 2026-12-01 through public repositories
# that pin it (nothing can be pulled on the machine these files were written on). The five
# Dockerfiles pin the same digest; bump them together, with the digest from
# `docker buildx imagetools inspect python:3.11-slim-bookworm`.

# ---- builder: uv installs the member and its locked dependencies into /app/.venv ----
FROM python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b AS builder
# The uv that scripts/bootstrap.sh installs (UV_VERSION there), from PyPI.
ARG UV_VERSION=0.13.8
RUN pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
# Manifests first (every workspace member's, which uv needs to read the lock): the dependency
# layer below is rebuilt only when one of them changes, not on every source edit.
COPY pyproject.toml uv.lock ./
COPY proto/pyproject.toml proto/
COPY libs/runtime/pyproject.toml libs/runtime/
COPY libs/state/pyproject.toml libs/state/
COPY services/auth/pyproject.toml services/auth/
COPY services/gpu-llm/pyproject.toml services/gpu-llm/
COPY services/rag/pyproject.toml services/rag/
COPY services/gateway/pyproject.toml services/gateway/
COPY services/cpu-llm/pyproject.toml services/cpu-llm/
COPY testkit/pyproject.toml testkit/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --package tiergate-gateway --no-dev --no-editable --no-install-workspace
# The sources of the member and of the workspace members it depends on, built as wheels.
COPY proto/src proto/src
COPY libs/runtime/src libs/runtime/src
COPY libs/state/src libs/state/src
COPY services/gateway/src services/gateway/src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --package tiergate-gateway --no-dev --no-editable

# ---- runtime: the venv, the config, nothing else; non-root; read-only root filesystem ----
FROM python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b AS runtime
ARG TIERGATE_VERSION=0.1.0
ARG TIERGATE_REVISION=unknown
ARG TIERGATE_SOURCE=https://github.com/tiergate/tiergate
ARG TIERGATE_CREATED=1970-01-01T00:00:00Z
ARG TIERGATE_LICENSES=NOASSERTION
LABEL org.opencontainers.image.title="tiergate-gateway" \
      org.opencontainers.image.description="tiergate gateway: OpenAI-compatible API, routing, limits" \
      org.opencontainers.image.source="${TIERGATE_SOURCE}" \
      org.opencontainers.image.revision="${TIERGATE_REVISION}" \
      org.opencontainers.image.version="${TIERGATE_VERSION}" \
      org.opencontainers.image.created="${TIERGATE_CREATED}" \
      org.opencontainers.image.licenses="${TIERGATE_LICENSES}" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm" \
      org.opencontainers.image.base.digest="sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b"
RUN groupadd --system --gid 10001 tiergate \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin tiergate
# Owned by root: the service cannot change its own code or config.
COPY --from=builder /app/.venv /app/.venv
COPY config/gateway.toml /etc/tiergate/gateway.toml
# The web chat, built before the image (deploy/images/build.sh, or `make setup`): the page at
# / and the widget under /widget/.
COPY web/dist /app/web
WORKDIR /app
# HOME=/tmp: anything a library writes under ~ lands in the one writable tmpfs (tiergate itself
# writes nothing there). Bytecode was compiled at build time; nothing is written next to it.
ENV PATH=/app/.venv/bin:$PATH \
    HOME=/tmp \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TIERGATE_GATEWAY_CONFIG=/etc/tiergate/gateway.toml \
    TIERGATE_GATEWAY_WEB__DIST_DIR=/app/web \
    TIERGATE_GATEWAY_SERVER__HOST=0.0.0.0
USER 10001:10001
EXPOSE 8080
# No curl in the slim image: the venv's Python asks /healthz (any non-2xx or no answer: exit 1).
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/app/.venv/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
CMD ["/app/.venv/bin/python", "-m", "tiergate_gateway"]
