#!/bin/sh
# The docker-compose testbed (deploy/docker-compose.yml) end to end, on the local
# Docker engine, without an image registry:
#  1. the base image (deploy/make-base-image.sh: debootstrap + docker import; skipped
#     when it exists) and the avm image built from this repository (deploy/Dockerfile);
#  2. the three nodes up under a project name of their own (free subnet and host
#     ports), healthy, and the init service has made the controller "main" on
#     n1,n2,n3 with a leader; avmctl reaches them from the host (published ports),
#     through `exec` and through the `ctl` service;
#  3. ping-pong run through n3 (--placement spread there): its objects on different
#     nodes, the result that of the embedded single node;
#  4. a bank on the default controller: accounts made by transactions that name no
#     controller are under "main"; transfers (each counted in a ledger) through n1;
#     the total is conserved and the ledger equals the acknowledged commits;
#  5. `docker kill` of a node other than n1 (main's leader when that is not n1):
#     transfers through n1 go on (the two others are a quorum), nothing acknowledged
#     is lost; started again, it catches up (main's match index, the bank read
#     through it);
#  6. `docker network disconnect` of another node: n1's cluster status reports it
#     unreachable, transfers go on; reconnected, it is reachable again and catches up;
#  7. a live backup of a node's LMDB data with mdb_copy inside its container;
#  8. everything removed (containers, network, volumes; the images are kept).
# Prints the time of each step. Exit 77 (ctest: skipped) when there is no Docker
# engine or no Compose.
# Usage: compose.sh SOURCE_DIR [AVMCTL]   (AVMCTL: a host avmctl; default: none, then
#        the host checks go through `docker exec`)
# Environment: AVM_BASE (base image; default debian:12-slim if present locally, else
# avm-base:bookworm made by make-base-image.sh), AVM_TEST_IMAGE (default
# avm:compose-test), AVM_KEEP=1 (leave the testbed up for a look; remove it with the
# command printed).
set -u
SRC=$(cd "$1" && pwd)
AVMCTL=${2:-}
T0=$(date +%s)
ms() { date +%s%3N; }
step_t=$(ms)
step() { echo "--- $1 (at $(($(date +%s) - T0)) s)"; step_t=$(ms); }
took() { echo "    [$1: $(( ($(ms) - step_t) / 1000 )).$(( ($(ms) - step_t) % 1000 / 100 )) s]"; }

if ! docker info >/dev/null 2>&1; then
  echo "SKIP: no Docker engine (docker info fails)"
  exit 77
fi
if docker compose version >/dev/null 2>&1; then
  DCB="docker compose"
elif command -v docker-compose >/dev/null 2>&1 && docker-compose version >/dev/null 2>&1; then
  DCB=docker-compose
else
  echo "SKIP: no Docker Compose (neither docker compose nor docker-compose)"
  exit 77
fi
[ -n "$AVMCTL" ] && [ ! -x "$AVMCTL" ] && AVMCTL=""

pass=0 fails=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fails=$((fails + 1)); }
check() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got '$2', expected '$3'"; fi; }
wait_for() {
  end=$(($(ms) + $1)); shift
  while :; do
    eval "$*" && return 0
    [ "$(ms)" -ge $end ] && return 1
    sleep 0.3
  done
}

P=avmtest$$
IMAGE=${AVM_TEST_IMAGE:-avm:compose-test}
dir=$(mktemp -d "${TMPDIR:-/tmp}/avm-compose-XXXXXX") || exit 2
DC="$DCB -p $P -f $SRC/deploy/docker-compose.yml -f $SRC/tests/compose/override.yml"
up=false
cleanup() {
  if $up; then
    if [ -n "${AVM_KEEP:-}" ]; then
      echo "kept the testbed: $DC down -v  (with the environment in $dir/env)"
    else
      t=$(date +%s)
      [ $fails -gt 0 ] && $DC logs --no-color --tail 30 n1 n2 n3 init >"$dir/logs" 2>&1 &&
        { echo "the nodes' last log lines:"; sed 's/^/    /' "$dir/logs" | tail -120; }
      $DC down -v --remove-orphans -t 10 >/dev/null 2>&1 ||
        echo "note: '$DC down -v' failed; remove project $P by hand"
      echo "    [down -v: $(($(date +%s) - t)) s]"
    fi
  fi
  [ -n "${AVM_KEEP:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. Images -----------------------------------------------------------------------
step "1. images"
base=${AVM_BASE:-}
if [ -z "$base" ]; then
  if docker image inspect debian:12-slim >/dev/null 2>&1; then base=debian:12-slim
  else base=avm-base:bookworm; fi
fi
if [ "${base%%:*}" = avm-base ] && ! docker image inspect "$base" >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ] && ! sudo -n true 2>/dev/null; then
    echo "SKIP: no base image $base and no root to make it (deploy/make-base-image.sh)"
    exit 77
  fi
  "$SRC/deploy/make-base-image.sh" "$base" || { bad "make-base-image.sh $base"; exit 1; }
  took "base image $base"
  step_t=$(ms)
fi
AVM_BASE=$base "$SRC/deploy/build-image.sh" "$IMAGE" >"$dir/build.log" 2>&1
rc=$?
grep -E '^(build-image|make-base-image):|^Step [0-9]+/' "$dir/build.log" | cut -c1-100 |
  sed 's/^/    /' | tail -40
if [ $rc -ne 0 ]; then
  tail -40 "$dir/build.log"
  bad "the avm image builds on $base"
  exit 1
fi
ok "the avm image $IMAGE builds on $base"
took "avm image"
check "avmd --version in the image" \
  "$(docker run --rm "$IMAGE" avmd --version 2>&1 | cut -d' ' -f1)" avmd

# --- 2. The testbed -------------------------------------------------------------------
step "2. three nodes and the init service"
# A subnet and host ports nobody uses.
used=$(docker network inspect $(docker network ls -q) \
  -f '{{range .IPAM.Config}}{{.Subnet}} {{end}}' 2>/dev/null; ip -4 route 2>/dev/null)
SUBNET=""
x=$(( ($$ % 150) + 72 ))
i=0
while [ $i -lt 150 ]; do
  c=172.29.$(( (x + i - 72) % 150 + 72 ))
  case "$used" in *"$c."*) ;; *) SUBNET=$c; break ;; esac
  i=$((i + 1))
done
[ -n "$SUBNET" ] || { bad "no free 172.29.X.0/24 subnet"; exit 1; }
port_free() { ! ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
PB=$(( 20000 + ($$ % 2000) * 10 ))
while ! { port_free $PB && port_free $((PB + 1)) && port_free $((PB + 2)); }; do PB=$((PB + 3)); done
export AVM_IMAGE=$IMAGE AVM_SUBNET=$SUBNET AVM_N1_PORT=$PB AVM_N2_PORT=$((PB + 1)) \
  AVM_N3_PORT=$((PB + 2)) AVM_BASE=$base
env | grep '^AVM_' >"$dir/env"
echo "    project $P, network $SUBNET.0/24, host ports $PB-$((PB + 2))"
up=true
if ! $DC up -d --no-build >"$dir/up.log" 2>&1; then
  cat "$dir/up.log"
  bad "$DCB up -d"
  exit 1
fi
cid() { docker ps -aq --filter "label=com.docker.compose.project=$P" \
  --filter "label=com.docker.compose.service=$1" | head -1; }
health() { docker inspect -f '{{.State.Health.Status}}' "$(cid "$1")" 2>/dev/null; }
for n in n1 n2 n3; do
  wait_for 60000 '[ "$(health $n)" = healthy ]' && ok "$n is healthy" ||
    bad "$n is not healthy: $(health $n)"
done
init=$(cid init)
if [ -n "$init" ] && wait_for 90000 '[ "$(docker inspect -f "{{.State.Status}}" $init)" = exited ]'; then
  check "the init service made the default controller (exit code)" \
    "$(docker inspect -f '{{.State.ExitCode}}' "$init")" 0
  docker logs "$init" 2>&1 | sed 's/^/    init: /'
else
  bad "the init service did not run to its end: $(docker logs "$init" 2>&1 | tail -3)"
fi
took "up, healthy, main created"

port_of() { case $1 in n1) echo $PB ;; n2) echo $((PB + 1)) ;; n3) echo $((PB + 2)) ;; esac; }
# ctl NODE ARGS...: avmctl on NODE, from the host (published port) when we have an
# avmctl, else inside the node's container. Files named in ARGS must then be in $dir
# (copied into the container first).
ctl() {
  cn_=$1; shift
  if [ -n "$AVMCTL" ]; then
    "$AVMCTL" "$@" --node "127.0.0.1:$(port_of "$cn_")"
  else
    for a in "$@"; do case "$a" in "$dir"/*) docker cp "$a" "$(cid "$cn_"):/tmp/" >/dev/null 2>&1 ;; esac; done
    # shellcheck disable=SC2046
    docker exec "$(cid "$cn_")" avmctl $(for a in "$@"; do case "$a" in "$dir"/*) echo "/tmp/${a##*/}" ;; *) echo "$a" ;; esac; done)
  fi
}

if [ -n "$AVMCTL" ]; then
  check "avmctl from the host reaches n1 (127.0.0.1:$PB)" \
    "$("$AVMCTL" status --node 127.0.0.1:$PB --json 2>&1 | jq -r .name)" n1
fi
check "avmctl inside n2 (compose exec) reaches n2" \
  "$($DC exec -T n2 avmctl status --json 2>&1 | jq -r .name)" n2
check "the ctl service reaches n3 by its service name" \
  "$($DC run --rm -T ctl avmctl status --node n3:7410 --json 2>/dev/null | jq -r .name)" n3
check "n1's default controller is main" "$(ctl n1 status --json 2>&1 | jq -r .controller.controller)" main
check "n1 sees n2 and n3 up" \
  "$(ctl n1 cluster status --json | jq -c '[.views[] | select(.[0] == "n1") | .[1][] | select(.[1] == true) | .[0]] | sort')" \
  '["n2","n3"]'
check "main is replicated on n1,n2,n3" \
  "$(ctl n1 controller status main --json | jq -c '[.members[][0]] | sort')" '["n1","n2","n3"]'

# --- 3. Ping-pong over three nodes ---------------------------------------------------------
step "3. ping-pong with its objects on three nodes"
norm() { sed -E 's#(node1|n[0-9])/[0-9]+#OBJ#g'; }
cp "$SRC/examples/ping_pong.avm" "$dir/"
a=$(ctl n3 run "$dir/ping_pong.avm" 2>&1 | norm)
if [ -n "$AVMCTL" ]; then
  b=$("$AVMCTL" run "$SRC/examples/ping_pong.avm" --ephemeral 2>&1 | norm)
else
  b=$(docker run --rm "$IMAGE" sh -c 'cat >/tmp/p.avm; avmctl run /tmp/p.avm --ephemeral' \
    <"$SRC/examples/ping_pong.avm" 2>&1 | norm)
fi
check "ping_pong through n3 (spread) = the embedded node" "$a" "$b"
moves=$(ctl n3 run "$dir/ping_pong.avm" --trace 2>&1 | grep -c 'ExecutionLeft')
[ "$moves" -ge 2 ] && ok "ping_pong crosses machines ($moves moves)" ||
  bad "ping_pong crossed machines $moves times"
took "ping-pong"

# --- 4. A bank on the default (replicated) controller --------------------------------------
step "4. a bank on the default controller main"
cat >"$dir/setup.avm" <<'EOF'
(behavior account
  (let ((msg (input)))
    (if (= (nth msg 0) 'add)
        (let ((bal (if (= (length (getState)) 0) 0 (nth (getState) 0))))
          (setState (list (+ bal (nth msg 1))))
          (list (+ bal (nth msg 1))))
        (list (if (= (length (getState)) 0) 0 (nth (getState) 0))))))
(defun make (amt)
  (let ((tx (beginTx))
        (a (createObj "account")))
    (call a (list 'add amt))
    (commitTx tx)
    a))
(main (list (make 100) (make 100) (make 100) (make 100) (make 0)))
EOF
ids=$(ctl n1 run "$dir/setup.avm" --timeout 30000 2>&1)
set -- $(echo "$ids" | grep -o '#obj"[^"]*"')
if [ $# -ne 5 ]; then
  bad "the bank's setup made five objects: $ids"
  exit 1
fi
A1=$1 A2=$2 A3=$3 A4=$4 L=$5
ok "setup: accounts $A1 $A2 $A3 $A4, ledger $L"
check "an object made by (beginTx) + (createObj \"account\") is under main" \
  "$(ctl n1 obj show "$A1" --json 2>&1 | jq -r .current.controller)" main
cat >"$dir/xfer.avm" <<EOF
(defun pick (i) (nth (list $A1 $A2 $A3 $A4) (mod i 4)))
(defun transfer (a b)
  (let ((tx (beginTx)))
    (call a (list 'add -1))
    (call b (list 'add 1))
    (call $L (list 'add 1))
    (commitTx tx)))
(defun loop (n ok)
  (if (= n 0) ok
      (loop (- n 1) (if (transfer (pick n) (pick (+ n 1))) (+ ok 1) ok))))
(main (loop 25 0))
(defun long () (loop 600 0))
EOF
cat >"$dir/check.avm" <<EOF
(defun bal (o) (call o (list 'get)))
(main (list (+ (+ (bal $A1) (bal $A2)) (+ (bal $A3) (bal $A4))) (bal $L)))
EOF
acked=0
# xfer NODE LABEL: a run of 25 transfers through NODE; adds its committed count to
# acked (the commits acknowledged to the program).
xfer() {
  t=$(ms)
  r=$(ctl "$1" run "$dir/xfer.avm" --timeout 120000 2>&1)
  case "$r" in
    '' | *[!0-9]*) bad "$2: the run of transfers through $1 failed: $r"; return 1 ;;
  esac
  acked=$((acked + r))
  [ "$r" -gt 0 ] && ok "$2: $r of 25 transfers committed through $1 ($(($(ms) - t)) ms)" ||
    bad "$2: no transfer committed through $1"
}
# bank NODE LABEL: the total is 400 and the ledger the acknowledged commits, read
# through NODE (asked again for a few seconds: a node just back may be catching up).
bank() {
  want="(400 $acked)" bn=$1
  wait_for 15000 '[ "$(ctl $bn run "$dir/check.avm" --timeout 20000 2>&1)" = "$want" ]'
  check "$2: (total ledger) through $1 = (400 acknowledged)" \
    "$(ctl "$1" run "$dir/check.avm" --timeout 20000 2>&1)" "$want"
}
xfer n1 "before faults"
xfer n1 "before faults"
bank n1 "before faults"
took "bank"

leader() { ctl n1 controller status main --json 2>/dev/null | jq -r 'select(.quorum == true) | .leader // empty'; }
# caught_up NODE: main's leader has replicated its whole log to NODE (asked through n1).
caught_up() {
  st_=$(ctl n1 controller status main --json 2>/dev/null) || return 1
  m_=$(echo "$st_" | jq -r --arg n "$1" '.members[] | select(.[0] == $n and .[2] == true) | .[3]')
  c_=$(echo "$st_" | jq -r .commit)
  [ -n "$m_" ] && [ -n "$c_" ] && [ "$m_" -ge "$c_" ]
}
# seen_up NODE: true/false, NODE's reachability as n1 sees it.
seen_up() {
  ctl n1 cluster status --json 2>/dev/null |
    jq -r --arg m "$1" '.views[] | select(.[0] == "n1") | .[1][] | select(.[0] == $m) | .[1]'
}

# --- 5. docker kill ----------------------------------------------------------------------
step "5. docker kill of a node"
L0=$(leader)
V=n2; [ "$L0" = n3 ] && V=n3
echo "    main's leader: ${L0:-none}; killing $V while 600 transfers run through n1"
id=$(ctl n1 run "$dir/xfer.avm" --entry long --detach 2>&1)
case "$id" in n1/*) ;; *) bad "the run of 600 transfers did not start: $id" ;; esac
sleep 0.3
st=$(ctl n1 exec show "$id" --json 2>/dev/null | jq -r .status)
docker kill "$(cid $V)" >/dev/null
tk=$(ms)
check "the run of 600 transfers is running when $V is killed" "$st" running
check "$V is not running" "$(docker inspect -f '{{.State.Running}}' "$(cid $V)")" false
wait_for 5000 '[ "$(seen_up $V)" = false ]' &&
  ok "n1 reports $V unreachable ($(($(ms) - tk)) ms after the kill)" ||
  bad "n1 still reports $V reachable: $(ctl n1 cluster status 2>&1 | tail -4)"
r=$(ctl n1 exec result "$id" --wait 120000 2>&1)
case "$r" in
  '' | *[!0-9]*) bad "the run in flight when $V was killed did not return a count: $r" ;;
  *) acked=$((acked + r))
     ok "the run in flight when $V was killed completed: $r of 600 committed ($(($(ms) - tk)) ms after the kill)" ;;
esac
xfer n1 "$V killed"
wait_for 10000 '[ -n "$(leader)" ]' && ok "main has a leader ($(leader)) with $V down" ||
  bad "main has no leader with $V down"
bank n1 "$V killed"
docker start "$(cid $V)" >/dev/null
ts=$(ms)
wait_for 60000 '[ "$(health $V)" = healthy ]' && ok "$V restarted and healthy ($(($(ms) - ts)) ms)" ||
  bad "$V is not healthy after docker start: $(health $V)"
wait_for 30000 "caught_up $V" && ok "$V caught up with main's log ($(($(ms) - ts)) ms after its start)" ||
  bad "$V did not catch up: $(ctl n1 controller status main 2>&1)"
xfer n1 "$V back"
bank "$V" "$V back"
took "kill and restart"

# --- 6. docker network disconnect ----------------------------------------------------------
step "6. network disconnect of a node"
W=n3; [ "$V" = n3 ] && W=n2
NET=$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "$(cid $W)" | awk '{print $1}')
WIP=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$(cid $W)")
docker network disconnect -f "$NET" "$(cid $W)"
rc=$?
tp=$(ms)
check "$W disconnected from $NET" "$rc" 0
wait_for 5000 '[ "$(seen_up $W)" = false ]' &&
  ok "n1's cluster status reports $W unreachable ($(($(ms) - tp)) ms)" ||
  bad "n1 still reports $W reachable"
case "$(ctl n1 cluster status 2>&1)" in
  *"$W=DOWN"*) ok "cluster status (text) shows $W=DOWN" ;;
  *) bad "cluster status (text) does not show $W=DOWN: $(ctl n1 cluster status 2>&1)" ;;
esac
xfer n1 "$W cut off"
bank n1 "$W cut off"
docker network connect --ip "$WIP" --alias "$W" "$NET" "$(cid $W)"
rc=$?
th=$(ms)
check "$W reconnected on $WIP" "$rc" 0
wait_for 15000 '[ "$(seen_up $W)" = true ]' && ok "n1 reports $W reachable again ($(($(ms) - th)) ms)" ||
  bad "n1 does not report $W reachable after the reconnect"
wait_for 30000 "caught_up $W" && ok "$W caught up with main's log ($(($(ms) - th)) ms)" ||
  bad "$W did not catch up: $(ctl n1 controller status main 2>&1)"
xfer n1 "$W healed"
for n in n1 n2 n3; do bank $n "at the end"; done
took "partition and heal"

# --- 7. A live backup (LMDB on a Docker volume) ----------------------------------------------
step "7. mdb_copy of a running node's data"
docker exec "$(cid n2)" sh -c 'rm -rf /tmp/bk && mkdir /tmp/bk && mdb_copy -c /var/lib/avm /tmp/bk && mdb_stat -e /tmp/bk' \
  >"$dir/bk" 2>&1
check "mdb_copy -c of n2's live environment" "$?" 0
grep -q 'Number of pages used' "$dir/bk" && ok "the copy is an LMDB environment ($(grep 'Number of pages used' "$dir/bk" | tr -s ' '))" ||
  bad "the copy: $(cat "$dir/bk")"
took "backup"

echo "compose: $pass passed, $fails failed in $(($(date +%s) - T0)) s (project $P)"
[ $fails -eq 0 ]
