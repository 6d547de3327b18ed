#!/usr/bin/env bash
# Make a fresh Debian machine ready for `make run` / `make test`: uv, Python 3.11, the
# Debian packages we need, and the synced workspace. Idempotent; prints the uv to use.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION="0.13.8"
# redis-server and prometheus (with promtool): the tests start their own, on free ports (the
# packages' services are not started). postgresql: the records tests use the server on
# 127.0.0.1:5432 where one runs, else start their own from its binaries (initdb). chromium:
# the browser the web chat's tests drive (Playwright's own download does not work here).
DEBIAN_PACKAGES=(${TIERGATE_DEBIAN_PACKAGES:-redis-server prometheus postgresql chromium})

log() { echo "bootstrap: $*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to run: $*"; exit 1; fi
}

apt_install() {
  [ "$#" -gt 0 ] || return 0
  log "installing Debian packages: $*"
  # Keep packages (redis-server) from starting system services: we run our own processes.
  local policy=/usr/sbin/policy-rc.d added=""
  if [ ! -e "$policy" ]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy" && added=1
  fi
  as_root apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >&2
  [ -z "$added" ] || as_root rm -f "$policy"
}

missing_debs=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing_debs+=("$pkg")
done
apt_install "${missing_debs[@]}"

find_python() {
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      # The real interpreter, not a shim (pyenv): uv then sees the same Python every time
      # and does not rebuild .venv when a plain `uv sync` resolved it differently.
      "$candidate" -c 'import sys; print(sys.executable)'; return 0
    fi
  done
  return 1
}
PYTHON="$(find_python || true)"
if [ -z "$PYTHON" ]; then
  apt_install python3.11 python3.11-venv
  PYTHON="$(find_python)"
fi

UV=""
if command -v uv >/dev/null && uv --version | grep -q "^uv 0\.1[3-9]"; then
  UV="$(command -v uv)"
elif [ -x .tools/bin/uv ]; then
  UV="$PWD/.tools/bin/uv"
else
  log "installing uv $UV_VERSION from PyPI into .tools/"
  if ! "$PYTHON" -m venv .tools >/dev/null 2>&1; then
    rm -rf .tools
    apt_install python3.11-venv
    "$PYTHON" -m venv .tools
  fi
  .tools/bin/python -m pip install -q --disable-pip-version-check "uv==$UV_VERSION" >&2
  UV="$PWD/.tools/bin/uv"
fi

# Never download a Python build: use the machine's 3.11.
UV_PYTHON_DOWNLOADS=never "$UV" sync --frozen --python "$PYTHON" >&2

# The web chat (web/): npm packages from the lockfile and the build the gateway serves. Node
# 20 or newer (Vite 8): these machines have it; Debian's own nodejs package is older.
if [ -f web/package-lock.json ] && ! command -v npm >/dev/null; then apt_install nodejs npm; fi
scripts/web-build.sh
echo "$UV"
