# syntax=docker/dockerfile:1.7
# gpu-llm for one GPU box under compose: the supervisor plus both engines in one image, because
# the supervisor starts, sleeps and stops each engine as its own child process (the GPU mutex;
# see compose.gpu.yaml and README.md). Built FROM the real vLLM image, so `vllm serve ...` from
# config/gpu-llm.toml runs as shipped by vLLM; SGLang is added in an environment of its own
# (its torch/flashinfer pins differ from vLLM's) and the supervisor in /app/.venv from the
# workspace lock, on a uv-managed Python 3.11 that shares nothing with either engine.
# Never built here (no Docker engine on the machine this was written on): linted only.
# Build context: the repository root (compose.gpu.yaml sets it).

# vllm/vllm-openai:v0.24.0 (the same image deploy/k8s serves Qwen with); override with
# --build-arg VLLM_IMAGE=...
ARG VLLM_IMAGE=vllm/vllm-openai@sha256:251eba5cc7c12fed0b75da22a9240e582b1c9e39f6fbc064f86781b963bd814f
FROM ${VLLM_IMAGE}

ARG SGLANG_VERSION=0.4.9.post6
ARG TIERGATE_REVISION=unknown
ARG TIERGATE_VERSION=0.1.0
LABEL org.opencontainers.image.source="https://github.com/tiergate/tiergate" \
      org.opencontainers.image.revision="${TIERGATE_REVISION}" \
      org.opencontainers.image.version="${TIERGATE_VERSION}" \
      org.opencontainers.image.title="tiergate gpu-llm with vLLM and SGLang"

# The uv that scripts/bootstrap.sh and deploy/images/*.Dockerfile install, from PyPI.
ARG UV_VERSION=0.13.8
RUN python3 -m pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"
ENV UV_PYTHON_INSTALL_DIR=/opt/uv-python \
    UV_PYTHON_PREFERENCE=only-managed \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_NO_CACHE=1

# SGLang: `python -m sglang.launch_server` finds it through the engine's PATH
# (TIERGATE_GPU_LLM_ENGINES__MISTRAL__ENV in compose.gpu.yaml puts /opt/sglang/bin first).
RUN uv venv --python 3.12 /opt/sglang \
    && uv pip install --python /opt/sglang/bin/python "sglang[all]==${SGLANG_VERSION}"

# The supervisor, installed exactly as deploy/images/gpu-llm.Dockerfile does (the same lock).
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY proto proto
COPY libs libs
COPY services services
COPY testkit testkit
RUN UV_PROJECT_ENVIRONMENT=/app/.venv uv sync --frozen --no-dev --no-editable \
        --package tiergate-gpu-llm --python 3.11

COPY config/gpu-llm.toml /etc/tiergate/gpu-llm.toml
ENV TIERGATE_GPU_LLM_CONFIG=/etc/tiergate/gpu-llm.toml \
    TIERGATE_GPU_LLM_SERVER__HOST=0.0.0.0
EXPOSE 8084
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/app/.venv/bin/python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8084/healthz', timeout=4)"]
# Runs as root like the vLLM image it extends (the engines keep their caches under /root, and
# qwen's pre_start drops the page cache, which without privileges fails harmlessly).
ENTRYPOINT []
CMD ["/app/.venv/bin/python", "-m", "tiergate_gpu_llm"]
