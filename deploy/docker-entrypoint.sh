#!/bin/sh
# The avm image's entrypoint: starts avmd with flags made from AVM_* environment
# variables (docker-compose.yml sets them), then from the arguments; or runs the
# command given (avmctl ..., sh, ...).
#
#   docker run avm                          avmd with the defaults below
#   docker run avm --name n1 --listen ...   avmd with these flags added
#   docker run avm avmctl --node HOST:7410 status
#
# Variables (each optional; flags given as arguments come after them, and avmd lets
# a later flag override an earlier one):
#   AVM_CONFIG      a config file (key = value lines, avmd --config); default
#                   /etc/avm/avmd.conf when it exists
#   AVM_NAME        --name                AVM_CONTROLLER          --controller
#   AVM_DATA        --data (default /var/lib/avm, the image's volume)
#   AVM_CONTROL     --control, space-separated (default: ipc://$AVM_DATA/avmd.sock
#                   tcp://0.0.0.0:7410)
#   AVM_LISTEN      --listen              AVM_ADVERTISE           --advertise
#   AVM_PEERS       --peer, space-separated NAME=tcp://HOST:PORT
#   AVM_JOIN        --join                AVM_DEFAULT_CONTROLLER  --default-controller
#   AVM_PLACEMENT   --placement           AVM_COMMIT              --commit
#   AVM_LOG_LEVEL   --log-level           AVM_LOG_FORMAT          --log-format
#   AVM_FD_BOUND_MS --fd-bound-ms         AVM_RAFT_ELECTION_MS    --raft-election-ms
#   AVM_TLS_DIR     mutual TLS on the links: --tls-cert DIR/NAME.crt --tls-key
#                   DIR/NAME.key --tls-ca DIR/ca.crt (NAME: AVM_NAME; files from
#                   deploy/make-certs.sh DIR NAME...)
#   AVM_ARGS        more avmd flags, space-separated
set -eu

case "${1:-}" in
  "" | --*) ;;
  avmd) shift ;;
  *) exec "$@" ;;
esac

AVM_DATA=${AVM_DATA:-/var/lib/avm}
set -- --data "$AVM_DATA" "$@"
conf=${AVM_CONFIG:-/etc/avm/avmd.conf}
if [ -n "${AVM_CONFIG:-}" ] || [ -f "$conf" ]; then
  set -- --config "$conf" "$@"
fi
# opt FLAG VALUE: adds the flag when VALUE is set (the flags go before the arguments).
pre=""
opt() { [ -n "$2" ] && pre="$pre $1 $2"; return 0; }
opt --name "${AVM_NAME:-}"
opt --controller "${AVM_CONTROLLER:-}"
opt --listen "${AVM_LISTEN:-}"
opt --advertise "${AVM_ADVERTISE:-}"
opt --join "${AVM_JOIN:-}"
opt --default-controller "${AVM_DEFAULT_CONTROLLER:-}"
opt --placement "${AVM_PLACEMENT:-}"
opt --commit "${AVM_COMMIT:-}"
opt --log-level "${AVM_LOG_LEVEL:-}"
opt --log-format "${AVM_LOG_FORMAT:-}"
opt --fd-bound-ms "${AVM_FD_BOUND_MS:-}"
opt --raft-election-ms "${AVM_RAFT_ELECTION_MS:-}"
for p in ${AVM_PEERS:-}; do opt --peer "$p"; done
if [ -n "${AVM_TLS_DIR:-}" ]; then
  [ -n "${AVM_NAME:-}" ] || { echo "avm: AVM_TLS_DIR needs AVM_NAME" >&2; exit 2; }
  opt --tls-cert "$AVM_TLS_DIR/$AVM_NAME.crt"
  opt --tls-key "$AVM_TLS_DIR/$AVM_NAME.key"
  opt --tls-ca "$AVM_TLS_DIR/ca.crt"
fi
# A config file's control addresses are kept unless AVM_CONTROL is set.
if [ -n "${AVM_CONTROL:-}" ] || ! grep -qs '^[[:space:]]*control[[:space:]]*=' "$conf"; then
  for u in ${AVM_CONTROL:-ipc://$AVM_DATA/avmd.sock tcp://0.0.0.0:7410}; do
    opt --control "$u"
  done
fi
# Values never hold spaces (names, URLs, numbers): word splitting is what we want.
# shellcheck disable=SC2086
exec avmd $pre ${AVM_ARGS:-} "$@"
