#!/bin/sh
# Makes a Debian 12 base image without an image registry: debootstrap a minimal
# bookworm into a directory and `docker import` it. The avm image builds on it with
#   docker build -f deploy/Dockerfile --build-arg BASE=avm-base:bookworm ...
# (deploy/build-image.sh does both). With a registry, BASE=debian:12-slim needs none
# of this.
#
# Usage: make-base-image.sh [IMAGE]      (default avm-base:bookworm)
# Environment: AVM_DEBIAN_MIRROR (default http://deb.debian.org/debian);
#   AVM_REBUILD_BASE=1 makes it again when the image exists (else: nothing to do).
# Needs root (debootstrap) and a Docker engine. Installs debootstrap if missing.
set -eu
IMAGE=${1:-avm-base:bookworm}
MIRROR=${AVM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm

if [ -z "${AVM_REBUILD_BASE:-}" ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "make-base-image: $IMAGE exists (AVM_REBUILD_BASE=1 makes it again)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "make-base-image: needs root" >&2; exit 1; }
  SUDO=sudo
fi
if ! command -v debootstrap >/dev/null 2>&1 && [ ! -x /usr/sbin/debootstrap ]; then
  echo "make-base-image: installing debootstrap"
  $SUDO apt-get update -q || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends debootstrap
fi

rootfs=$(mktemp -d "${TMPDIR:-/tmp}/avm-rootfs-XXXXXX")
cleanup() {
  # debootstrap mounts /proc and /sys inside the tree: never delete through a mount.
  for m in proc sys dev/pts dev; do
    mountpoint -q "$rootfs/$m" 2>/dev/null && $SUDO umount -l "$rootfs/$m"
  done
  $SUDO rm -rf --one-file-system "$rootfs"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$(date +%s)
echo "make-base-image: debootstrap --variant=minbase $SUITE from $MIRROR"
if ! $SUDO debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1; then
  tail -20 "$rootfs.log" >&2
  [ -f "$rootfs/debootstrap/debootstrap.log" ] && tail -20 "$rootfs/debootstrap/debootstrap.log" >&2
  rm -f "$rootfs.log"
  echo "make-base-image: debootstrap failed" >&2
  exit 1
fi
rm -f "$rootfs.log"
# The same suites as Debian's own images: bookworm, its updates and security.
# (deploy/bootstrap.sh and the Dockerfile add bookworm-backports.)
$SUDO sh -c "cat >'$rootfs/etc/apt/sources.list'" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb ${MIRROR%/debian}/debian-security $SUITE-security main
EOF
# Small like debian:12-slim: no package lists or caches in the image.
$SUDO sh -c "rm -rf '$rootfs'/var/lib/apt/lists/* '$rootfs'/var/cache/apt/*.bin \
  '$rootfs'/var/cache/apt/archives/*.deb '$rootfs'/var/log/*.log"

echo "make-base-image: importing into $IMAGE"
$SUDO tar -C "$rootfs" --numeric-owner -c . |
  docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV LANG=C.UTF-8' \
    -c 'CMD ["bash"]' \
    -m "debootstrap --variant=minbase $SUITE $MIRROR" - "$IMAGE" >/dev/null
echo "make-base-image: $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" |
  awk '{printf "%d MB", $1 / 1e6}')) in $(($(date +%s) - t0)) s"
