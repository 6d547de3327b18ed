#!/usr/bin/env bash
# Build the web chat (web/ → web/dist, which the gateway serves): npm ci from the committed
# lockfile, then the Vite build. Each step is skipped while nothing it reads changed (a stamp
# of its inputs), so `make setup` and deploy/images/build.sh can call it every time.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "web-build: $*" >&2; }
[ -f web/package-lock.json ] || exit 0
if ! command -v npm >/dev/null; then
  log "npm is missing: install Node 20 and npm (Debian: apt-get install nodejs npm)"
  exit 1
fi
stamp="$(cat web/package.json web/package-lock.json | sha256sum | cut -c1-16)"
if [ "$(cat web/node_modules/.tiergate-stamp 2>/dev/null)" != "$stamp" ]; then
  log "installing the web chat's npm packages (web/package-lock.json)"
  npm ci --prefix web --no-audit --no-fund --loglevel=error >&2
  echo "$stamp" > web/node_modules/.tiergate-stamp
fi
inputs="$(find web -path web/node_modules -prune -o -path web/dist -prune -o -type f -print \
  | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-16)"
if [ "$(cat web/dist/.tiergate-stamp 2>/dev/null)" != "$inputs" ]; then
  log "building the web chat (web/dist)"
  npm run --prefix web build --silent >&2
  echo "$inputs" > web/dist/.tiergate-stamp
fi
