#!/usr/bin/env bash
# Make this machine ready for `make bench`: nginx and wrk from Debian (only if missing; the
# system nginx service is never started), and LiteLLM's proxy in its own virtual environment
# bench/.venv-litellm, installed with uv from the pinned litellm/requirements.txt. Idempotent.
set -euo pipefail
cd "$(dirname "$0")"

log() { echo "bench/setup: $*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to run: $*"; exit 1; fi
}

missing=()
for pkg in nginx wrk; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  # The bench runs nginx from its own config; keep the package from starting the system one.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy"
    trap 'as_root rm -f '"$policy" EXIT
  fi
  as_root apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >&2
fi

UV="${UV:-$(command -v uv || echo ../.tools/bin/uv)}"
VENV=.venv-litellm
# Changing the requirements or how they are installed reinstalls.
stamp="$( (cat litellm/requirements.txt; echo "compile-bytecode") | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$stamp" ]; then
  log "installing LiteLLM's proxy into bench/$VENV (litellm/requirements.txt)"
  python="$(command -v python3.11 || command -v python3)"
  UV_PYTHON_DOWNLOADS=never "$UV" venv --quiet --allow-existing --python "$python" "$VENV" >&2
  # Compiled bytecode: LiteLLM starts in seconds instead of compiling its sources each time.
  UV_PYTHON_DOWNLOADS=never "$UV" pip sync --quiet --compile-bytecode \
    --python "$VENV/bin/python" litellm/requirements.txt >&2
  echo "$stamp" > "$VENV/.requirements.sha256"
fi
