#!/usr/bin/env bash
# Build the five tiergate images with one tag: gateway, auth, rag, cpu-llm, gpu-llm.
#
#   deploy/images/build.sh [--push] [--platform LIST] [SERVICE...]   (make images ARGS="...")
#
# Needs Docker with BuildKit and the buildx plugin (`docker buildx version`; Docker Engine 23+
# or Docker Desktop). Each image is `${TIERGATE_REGISTRY}/<service>:${TIERGATE_TAG}`:
#   TIERGATE_REGISTRY  default ghcr.io/tiergate
#   TIERGATE_TAG       default `git describe --always --dirty` (0.1.0 without git)
# cpu-llm's model (deploy/images/README.md): TIERGATE_MODEL=<catalog name>, or
# MODEL_FILE=<GGUF path inside the repository> with MODEL_ID=<id the engine reports>
# (and MODEL_REQUANTIZE=q8_0|"" ). Without --push the images are loaded into the local
# engine (`--load`, one platform); with --push they go to the registry (any platforms).
set -euo pipefail
cd "$(dirname "$0")/../.."

SERVICES=(gateway auth rag cpu-llm gpu-llm)

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

push=""
platform=""
selected=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --push) push=1 ;;
    --platform) platform="${2:?--platform needs a value}"; shift ;;
    --platform=*) platform="${1#--platform=}" ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "build.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) selected+=("$1") ;;
  esac
  shift
done
[ "${#selected[@]}" -gt 0 ] || selected=("${SERVICES[@]}")
for service in "${selected[@]}"; do
  case " ${SERVICES[*]} " in
    *" $service "*) ;;
    *) echo "build.sh: unknown service $service (one of: ${SERVICES[*]})" >&2; exit 2 ;;
  esac
done

if ! docker buildx version >/dev/null 2>&1; then
  echo "build.sh: needs Docker with the buildx plugin (BuildKit): docker buildx version" >&2
  exit 1
fi

# The gateway image serves the web chat: built here from the committed lockfile (as
# `make setup` does; a no-op when web/dist is current), then copied in (web/dist).
# TIERGATE_SKIP_WEB_BUILD=1: web/dist was built by an earlier step of the pipeline.
case " ${selected[*]} " in
  *" gateway "*) [ -n "${TIERGATE_SKIP_WEB_BUILD:-}" ] || scripts/web-build.sh ;;
esac

registry="${TIERGATE_REGISTRY:-ghcr.io/tiergate}"
registry="${registry%/}"
tag="${TIERGATE_TAG:-$(git describe --always --dirty 2>/dev/null || echo 0.1.0)}"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
source_url="${TIERGATE_SOURCE:-$(git remote get-url origin 2>/dev/null || echo https://github.com/tiergate/tiergate)}"
case "$source_url" in  # a remote such as git@github.com:org/repo.git as a browsable URL
  git@*:*) source_url="https://${source_url#git@}"; source_url="${source_url/://}" ;;
esac
source_url="${source_url%.git}"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n1)"
created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

common=(
  --build-arg "TIERGATE_VERSION=${version:-0.1.0}"
  --build-arg "TIERGATE_REVISION=$revision"
  --build-arg "TIERGATE_SOURCE=$source_url"
  --build-arg "TIERGATE_CREATED=$created"
)
[ -z "${TIERGATE_LICENSES:-}" ] || common+=(--build-arg "TIERGATE_LICENSES=$TIERGATE_LICENSES")
[ -z "$platform" ] || common+=(--platform "$platform")
if [ -n "$push" ]; then common+=(--push); else common+=(--load); fi

model_args=()
if [ -n "${MODEL_FILE:-}" ]; then
  if [ ! -f "$MODEL_FILE" ]; then
    echo "build.sh: MODEL_FILE $MODEL_FILE: no such file (a path inside the repository)" >&2
    exit 2
  fi
  if [ -z "${MODEL_ID:-}" ]; then
    echo "build.sh: MODEL_FILE needs MODEL_ID (the id the engine reports)" >&2
    exit 2
  fi
  model_args+=(--build-arg MODEL_SOURCE=file --build-arg "MODEL_FILE=$MODEL_FILE"
    --build-arg "MODEL_ID=$MODEL_ID")
  if [ -n "${MODEL_REQUANTIZE+set}" ]; then
    model_args+=(--build-arg "MODEL_REQUANTIZE=$MODEL_REQUANTIZE")
  fi
elif [ -n "${TIERGATE_MODEL:-}" ]; then
  model_args+=(--build-arg "TIERGATE_MODEL=$TIERGATE_MODEL")
fi

for service in "${selected[@]}"; do
  image="$registry/$service:$tag"
  extra=()
  [ "$service" != cpu-llm ] || extra=("${model_args[@]}")
  echo "build.sh: building $image" >&2
  docker buildx build \
    --file "deploy/images/$service.Dockerfile" \
    --tag "$image" \
    "${common[@]}" \
    ${extra[@]+"${extra[@]}"} \
    .
done
echo "build.sh: built ${selected[*]} as $registry/<service>:$tag" >&2
