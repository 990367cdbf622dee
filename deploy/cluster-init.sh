#!/bin/sh
# avm-cluster-init: makes the cluster's default controller, a controller replicated
# on the members named, once they all see each other; does nothing when it exists.
# docker-compose.yml runs it once as the "init" service after the nodes are healthy.
#
#   avm-cluster-init [--node ADDR] [--controller NAME] [--replicas n1,n2,n3]
#                    [--wait SECONDS]
# Defaults: $AVM_NODE, main, n1,n2,n3, 60. Exit 0 once the controller exists and has
# a leader; 1 otherwise (with the reason on stderr).
set -eu
node=${AVM_NODE:-127.0.0.1:7410} ctrl=main replicas=n1,n2,n3 wait=60
while [ $# -gt 0 ]; do
  case "$1" in
    --node) node=$2; shift 2 ;;
    --controller) ctrl=$2; shift 2 ;;
    --replicas) replicas=$2; shift 2 ;;
    --wait) wait=$2; shift 2 ;;
    *) echo "avm-cluster-init: unknown argument $1" >&2; exit 2 ;;
  esac
done
ctl() { avmctl "$@" --node "$node" --timeout 3000; }
end=$(($(date +%s) + wait))
n=$(echo "$replicas" | tr ',' ' ' | wc -w)

# 1. Every replica is a member that the node asked sees up (the replicas must be
# reachable for the create).
while :; do
  up=$(ctl cluster status --json 2>/dev/null |
    jq -r --arg self "$(ctl status --json 2>/dev/null | jq -r .name)" \
      '[.views[] | select(.[0] == $self) | .[1][] | select(.[1] == true) | .[0]] + [$self] | .[]' \
      2>/dev/null || true)
  missing=""
  for r in $(echo "$replicas" | tr ',' ' '); do
    echo "$up" | grep -qx "$r" || missing="$missing $r"
  done
  [ -z "$missing" ] && break
  if [ "$(date +%s)" -ge $end ]; then
    echo "avm-cluster-init: members not reachable from $node after ${wait}s:$missing" >&2
    exit 1
  fi
  sleep 1
done

# 2. The controller, unless it exists.
if ctl controller status "$ctrl" --json >/dev/null 2>&1; then
  echo "avm-cluster-init: controller $ctrl exists"
else
  out=$(ctl controller create "$ctrl" --replicas "$replicas" 2>&1) || case "$out" in
    *"exists"*) ;;
    *) echo "avm-cluster-init: controller create $ctrl: $out" >&2; exit 1 ;;
  esac
  echo "avm-cluster-init: created controller $ctrl on $replicas"
fi

# 3. A leader with a quorum, known to the node asked.
while :; do
  st=$(ctl controller status "$ctrl" --json 2>/dev/null || true)
  l=$(echo "$st" | jq -r 'select(.quorum == true) | .leader // empty' 2>/dev/null || true)
  if [ -n "$l" ]; then
    echo "avm-cluster-init: controller $ctrl: leader $l, $n replicas"
    exit 0
  fi
  if [ "$(date +%s)" -ge $end ]; then
    echo "avm-cluster-init: controller $ctrl has no leader after ${wait}s: $st" >&2
    exit 1
  fi
  sleep 0.5
done
