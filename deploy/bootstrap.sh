#!/usr/bin/env bash
# Installs every Debian package the build and the tests need, on Debian 12 as root.
# Idempotent: a second run changes nothing and is fast.
#
# canonical/raft comes from bookworm-backports (libraft-dev 0.22.1), never from the
# main archive (0.15.0 breaks Raft's commit rule; see docs/architecture.md).
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config ninja-build git
  clang llvm libclang-rt-14-dev
  libuv1-dev libnng-dev liblmdb-dev lmdb-utils libmsgpack-dev libz3-dev libgecode-dev
  libssl-dev openssl libmbedtls-dev
  python3 jq curl
  iproute2 iptables
  debootstrap
)
BACKPORT_PKGS=(libraft-dev)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "bootstrap: must run as root (or with sudo available)" >&2; exit 1
  fi
fi

have_all() {
  local p
  for p in "${PKGS[@]}" "${BACKPORT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || return 1
  done
  # libraft must be the backports version (>= 0.22), not bookworm's 0.15.0.
  local v
  v=$(dpkg-query -W -f='${Version}' libraft-dev 2>/dev/null || true)
  dpkg --compare-versions "$v" ge 0.17 || return 1
  return 0
}

if have_all; then
  echo "bootstrap: all packages present"
  exit 0
fi

. /etc/os-release
codename=${VERSION_CODENAME:-bookworm}
bp_list=/etc/apt/sources.list.d/${codename}-backports.list
if ! grep -rqs "${codename}-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "bootstrap: enabling ${codename}-backports"
  echo "deb http://deb.debian.org/debian ${codename}-backports main" | $SUDO tee "$bp_list" >/dev/null
fi

export DEBIAN_FRONTEND=noninteractive
# A third-party source that cannot be reached must not stop us: the packages we need
# all come from Debian's archive. apt-get update exits non-zero when any list fails.
$SUDO apt-get update -q || echo "bootstrap: apt-get update reported errors (continuing)" >&2
$SUDO apt-get install -y -q --no-install-recommends "${PKGS[@]}"
$SUDO apt-get install -y -q --no-install-recommends -t "${codename}-backports" "${BACKPORT_PKGS[@]}"

v=$(dpkg-query -W -f='${Version}' libraft-dev)
if ! dpkg --compare-versions "$v" ge 0.17; then
  echo "bootstrap: libraft-dev $v is too old; need 0.22.1 from ${codename}-backports" >&2
  exit 1
fi
echo "bootstrap: done (libraft-dev $v)"
