#!/bin/sh
# Builds the avm image from this repository.
#
# Usage: build-image.sh [IMAGE]     (default avm:latest)
# Environment:
#   AVM_BASE   the base image: debian:12-slim (from a registry), or avm-base:bookworm,
#              made here by make-base-image.sh when it is named and missing; default:
#              debian:12-slim when it is present or can be pulled, else avm-base:bookworm
#
# The build context is the repository's own files (git ls-files: tracked and new,
# not ignored), so build directories and .git are not sent to the engine. Outside a
# git checkout the whole directory is sent.
set -eu
IMAGE=${1:-avm:latest}
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)

base=${AVM_BASE:-}
if [ -z "$base" ]; then
  if docker image inspect debian:12-slim >/dev/null 2>&1 ||
    timeout 30 docker pull -q debian:12-slim >/dev/null 2>&1; then
    base=debian:12-slim
  else
    base=avm-base:bookworm
  fi
fi
if [ "$base" = avm-base:bookworm ] || [ "${base%%:*}" = avm-base ]; then
  "$here/make-base-image.sh" "$base"
fi

t0=$(date +%s)
echo "build-image: $IMAGE on $base"
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
  # Files deleted in the work tree but still tracked are left out.
  (cd "$src" && git ls-files -z --cached --others --exclude-standard |
    xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
    tar --null -T - -c) |
    docker build -f deploy/Dockerfile --build-arg "BASE=$base" -t "$IMAGE" -
else
  docker build -f "$src/deploy/Dockerfile" --build-arg "BASE=$base" -t "$IMAGE" "$src"
fi
echo "build-image: $IMAGE built in $(($(date +%s) - t0)) s"
# What earlier builds left untagged: the image $IMAGE was before, and every build
# stage but the newest (which holds the cached layer of the build dependencies).
docker images -q --filter dangling=true --filter label=org.avm.stage=runtime |
  xargs -r docker rmi >/dev/null 2>&1 || true
docker images -q --filter dangling=true --filter label=org.avm.stage=build | tail -n +2 |
  xargs -r docker rmi >/dev/null 2>&1 || true
