#!/bin/bash
# Fault injection ("nemesis") for an avmd cluster: NEMESIS_NODES avmd processes (3..5),
# each in its own network namespace on a bridge (loopback processes when namespaces
# are refused: partitions are then skipped), two replicated controllers A and B on
# every node, concurrent workloads (bank transfers within A, within B and across A<->B;
# Elle-style list-append transactions over objects of A and B), and faults injected at
# random (seeded): SIGKILL + restart, SIGSTOP/SIGCONT, partitions (majority/minority,
# isolated leader, bridge), SIGKILL of the node driving a cross-controller commit (or
# of the coordinator group's leader) while a commit is in flight, a full disk (tmpfs
# data directory and a ballast file), fsync failures (failsync.so LD_PRELOAD shim).
# At the end, everything healed: the bank total is conserved and every acknowledged
# transfer is applied exactly once, no acknowledged append is lost, and the checker
# (checker/elle_check.py) finds no anomaly in the list-append history.
# Usage: nemesis.sh AVMD AVMCTL SOURCE_DIR [FAILSYNC_SO]
# Environment (README.md): NEMESIS_PROFILE short|long, NEMESIS_SECONDS, NEMESIS_NODES,
# NEMESIS_SEED, NEMESIS_OUT, NEMESIS_APPEND_CLIENTS, NEMESIS_BANK_CLIENTS,
# NEMESIS_TMPFS_MB, NEMESIS_KEEP.
set -u
AVMD=$1 AVMCTL=$2 SRC=$3 SHIM=${4:-}
PROFILE=${NEMESIS_PROFILE:-short}
case $PROFILE in
  short) DEF_SECONDS=70 ;;
  long) DEF_SECONDS=600 ;;
  *) echo "NEMESIS_PROFILE must be short or long, not '$PROFILE'"; exit 2 ;;
esac
SECONDS_RUN=${NEMESIS_SECONDS:-$DEF_SECONDS}
N=${NEMESIS_NODES:-3}
case $N in 3|4|5) ;; *) echo "NEMESIS_NODES must be 3..5, not '$N'"; exit 2 ;; esac
SEED=${NEMESIS_SEED:-$(( $(od -An -N2 -tu2 /dev/urandom) ))}
NA=${NEMESIS_APPEND_CLIENTS:-3}
NB=${NEMESIS_BANK_CLIENTS:-2}
TMPFS_MB=${NEMESIS_TMPFS_MB:-64}
TXN_TIMEOUT=15000 # ms: above the 10 s commit deadline
KEY_WINDOW_S=8    # list-append: the active keys move on every 8 s
KEYS_ACTIVE=6     # active keys per controller
for v in "$SECONDS_RUN" "$SEED" "$NA" "$NB" "$TMPFS_MB"; do
  case $v in ''|*[!0-9]*) echo "bad numeric setting '$v'"; exit 2 ;; esac
done
[ -x "$AVMD" ] && [ -x "$AVMCTL" ] || { echo "no avmd or avmctl at '$AVMD' '$AVMCTL'"; exit 2; }
command -v jq >/dev/null && command -v python3 >/dev/null || { echo "SKIP: needs jq and python3"; exit 77; }
CHECKER=${NEMESIS_CHECKER:-$SRC/tests/nemesis/checker/elle_check.py}
ANALYZE=$SRC/tests/nemesis/analyze.py

if [ -n "${NEMESIS_OUT:-}" ]; then
  OUT=$NEMESIS_OUT; mkdir -p "$OUT" || exit 2; KEEP=1
else
  OUT=$(mktemp -d "${TMPDIR:-/tmp}/nemesis-out-XXXXXX") || exit 2; KEEP=${NEMESIS_KEEP:-}
fi
# Sockets and the tmpfs mount: a short path of their own.
RUN=$(mktemp -d /tmp/nmr-XXXXXX) || exit 2
PFX=nm$$
NETNS="" NS_OK=0 NET="" MNT="" FAILED=0
declare -A PID=()
CLIENTS=""
echo "nemesis: profile $PROFILE, $SECONDS_RUN s, $N nodes, seed $SEED (NEMESIS_SEED=$SEED repeats the faults' choices), output $OUT"
RANDOM=$SEED

cleanup() {
  touch "$RUN/stop" 2>/dev/null
  for p in $CLIENTS; do kill "$p" 2>/dev/null; done
  for i in "${!PID[@]}"; do
    p=${PID[$i]}
    [ -n "$p" ] && { kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; }
  done
  wait 2>/dev/null
  for ns in $NETNS; do ip netns del "$ns" 2>/dev/null; done
  [ -n "$MNT" ] && { umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null; }
  rm -rf "$RUN"
  if [ "$FAILED" -ne 0 ] || [ -n "$KEEP" ]; then
    echo "nemesis: histories, logs and checker output in $OUT"
  else
    rm -rf "$OUT"
  fi
}
trap cleanup EXIT
trap 'FAILED=1; exit 130' INT TERM

now_ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }
nanos() { echo "${EPOCHREALTIME/./}000"; }
log() { echo "[$(( ($(now_ms) - T0) / 1000 ))s] $*"; echo "[$(( ($(now_ms) - T0) / 1000 ))s] $*" >>"$OUT/nemesis.log"; }
finding() { FAILED=1; log "FINDING: $*"; echo "$*" >>"$OUT/findings.txt"; }
T0=$(now_ms)
declare -A FAULTS=() SKIPPED=()
count() { FAULTS[$1]=$(( ${FAULTS[$1]:-0} + 1 )); }
skipped() { SKIPPED[$1]=$(( ${SKIPPED[$1]:-0} + 1 )); }
rnd() { echo $(( RANDOM % $1 )); }

# --- Network namespaces (tests/cluster/netns.sh, for N nodes) -------------------------
netns_setup() {
  [ "$(id -u)" = 0 ] || { echo "not root"; return 1; }
  command -v ip >/dev/null && command -v iptables >/dev/null || { echo "no ip or iptables"; return 1; }
  ip netns add "$PFX-probe" 2>/dev/null || { echo "ip netns add fails"; return 1; }
  ip netns del "$PFX-probe"
  ip netns add "$PFX-hub" || { echo "the bridge's namespace cannot be made"; return 1; }
  NETNS="$PFX-hub"
  ip -n "$PFX-hub" link add br0 type bridge && ip -n "$PFX-hub" link set br0 up &&
    ip -n "$PFX-hub" link set lo up || { echo "the bridge cannot be set up"; return 1; }
  for i in $(seq 1 "$N"); do
    ns=$PFX-n$i
    ip netns add "$ns" || { echo "namespace $ns cannot be made"; return 1; }
    NETNS="$ns $NETNS"
    ip -n "$PFX-hub" link add "v$i" type veth peer name eth0 netns "$ns" &&
      ip -n "$PFX-hub" link set "v$i" master br0 up &&
      ip -n "$ns" addr add "$NET.$i/24" dev eth0 &&
      ip -n "$ns" link set eth0 up && ip -n "$ns" link set lo up ||
      { echo "the link of $ns cannot be set up"; return 1; }
  done
  ip netns exec "$PFX-n1" iptables -L -n >/dev/null 2>&1 || { echo "iptables fails in a namespace"; return 1; }
  return 0
}
NET=10.$((200 + $$ % 50)).$(($$ / 50 % 250))
if netns_setup >"$RUN/netns.why"; then
  NS_OK=1; log "network namespaces $PFX-n1..n$N on $NET.0/24"
else
  for ns in $NETNS; do ip netns del "$ns" 2>/dev/null; done; NETNS=""
  log "no network namespaces ($(cat "$RUN/netns.why")): nodes on loopback, partitions skipped"
fi
# The disk-full node: the last one, its data directory on a small tmpfs.
DISK_NODE=n$N
mkdir -p "$RUN/$DISK_NODE"
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size="${TMPFS_MB}m" nemesis "$RUN/$DISK_NODE" 2>/dev/null; then
  MNT=$RUN/$DISK_NODE
  log "$DISK_NODE's data directory on a ${TMPFS_MB} MiB tmpfs ($MNT)"
else
  log "no tmpfs mount (not root or refused): disk-full faults skipped"
fi
[ -n "$SHIM" ] && [ -f "$SHIM" ] || { [ -n "$SHIM" ] && log "no fsync shim at $SHIM: fsync faults skipped"; SHIM=""; }

# --- Nodes ---------------------------------------------------------------------------
ctl() { node=$1; shift; "$AVMCTL" "$@" --node "ipc://$RUN/$node.sock"; }
up() { [ -e "$RUN/up.$1" ]; }
nodes() { seq -f 'n%g' 1 "$N"; }
up_nodes() { for n in $(nodes); do up "$n" && echo "$n"; done; }
# start NAME: (re)starts a node, joining through a running member; waits until it answers.
start() {
  local name=$1 i=${1#n} join="" pre="" listen=tcp://127.0.0.1:0 envs="" try
  for try in 1 2 3; do
    join=""
    for o in $(up_nodes); do [ "$o" != "$name" ] && { join="--join ipc://$RUN/$o.sock"; break; }; done
    if [ "$NS_OK" = 1 ]; then pre="ip netns exec $PFX-$name"; listen="tcp://$NET.$i:0"; fi
    [ -n "$SHIM" ] && envs="LD_PRELOAD=$SHIM FAILSYNC_TRIGGER=$RUN/fsync.$name"
    # shellcheck disable=SC2086
    $pre env $envs "$AVMD" --name "$name" --controller "c$name" --data "$RUN/$name/data" \
      --control "ipc://$RUN/$name.sock" --listen "$listen" --log-format json \
      --fd-bound-ms 1000 $join 2>>"$OUT/$name.log" &
    PID[$name]=$!
    local end=$(( $(now_ms) + 15000 ))
    while [ "$(now_ms)" -lt $end ]; do
      if ctl "$name" status --timeout 300 >/dev/null 2>&1; then touch "$RUN/up.$name"; return 0; fi
      kill -0 "${PID[$name]}" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "${PID[$name]}" 2>/dev/null; wait "${PID[$name]}" 2>/dev/null
    log "$name did not come up (try $try): $(tail -2 "$OUT/$name.log" | tr '\n' ' ')"
    sleep 1
  done
  PID[$name]=""
  finding "$name does not start: $(tail -5 "$OUT/$name.log" | tr '\n' ' ')"
  return 1
}
# stop9 NAME: SIGKILL, reaped.
stop9() {
  local p=${PID[$1]:-}
  rm -f "$RUN/up.$1"
  [ -z "$p" ] && return 0
  kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null
  PID[$1]=""
}
# reap_dead: a node that exited by itself is reported (with its exit code and the end of
# its log) and restarted. EXPECT_EXIT names a node allowed to stop (disk full, fsync).
EXPECT_EXIT=""
reap_dead() {
  local n p rc
  for n in $(nodes); do
    p=${PID[$n]:-}
    [ -z "$p" ] && { up "$n" || start "$n"; continue; }
    kill -0 "$p" 2>/dev/null && continue
    wait "$p"; rc=$?
    rm -f "$RUN/up.$n"; PID[$n]=""
    if [ "$n" != "$EXPECT_EXIT" ]; then
      finding "$n exited by itself with code $rc: $(grep -v '"level":"debug"' "$OUT/$n.log" | tail -3 | tr '\n' ' ')"
    fi
    start "$n"
  done
}
# leader_of GROUP: its leader (with a quorum), asked through any running node.
leader_of() {
  local n
  for n in $(up_nodes); do
    l=$(ctl "$n" controller status "$1" --json --timeout 2000 2>/dev/null |
      jq -r 'select(.quorum == true) | .leader // empty' 2>/dev/null)
    [ -n "$l" ] && { echo "$l"; return 0; }
  done
  return 1
}
pending() {
  ctl "$(up_nodes | head -1)" controller status "$1" --json --timeout 2000 2>/dev/null |
    jq -r '(.intents // 99) + (.decisions // 99)' 2>/dev/null
}
wait_for() { # MS CMD...
  local end=$(( $(now_ms) + $1 )); shift
  while :; do
    eval "$*" && return 0
    [ "$(now_ms)" -ge $end ] && return 1
    sleep 0.2
  done
}

for n in $(nodes); do mkdir -p "$RUN/$n"; start "$n" || exit 1; done
REPL=$(nodes | paste -sd, -)
for g in A B; do
  out=$(ctl n1 controller create $g --replicas "$REPL" --json 2>&1)
  [ "$(echo "$out" | jq -r .name 2>/dev/null)" = $g ] || { finding "controller create $g: $out"; exit 1; }
done
wait_for 20000 '[ -n "$(leader_of A)" ] && [ -n "$(leader_of B)" ]' || { finding "no leaders for A and B"; exit 1; }
# every node knows both leaders (gossip) before programs use the controllers
for n in $(nodes); do
  wait_for 10000 "[ \"\$(ctl $n controller ls --json 2>/dev/null | jq -r '[.controllers[] | .[1] // empty] | length')\" = 2 ]" ||
    { finding "$n does not know the leaders: $(ctl $n controller ls 2>&1)"; exit 1; }
done
log "controllers A and B replicated on $REPL; leaders $(leader_of A), $(leader_of B)"

# --- Objects -------------------------------------------------------------------------
BEHAVIOURS='(behavior acct
  (let ((m (input)) (s (getState)))
    (cond ((= (nth m 0) (quote x))
           (do (setState (cons (+ (head s) (nth m 1)) (cons (nth m 2) (tail s)))) (list (head s))))
          ((= (nth m 0) (quote init)) (do (setState (list (nth m 1))) (list 0)))
          (else (list s)))))
(behavior lst
  (let ((m (input)))
    (if (= (nth m 0) (quote a))
        (do (setState (append (getState) (list (nth m 1)))) (list 0))
        (list (getState)))))
(defun mk (beh c n acc) (if (= n 0) acc (mk beh c (- n 1) (cons (createObj beh c) acc))))
(defun init (l v) (if (null? l) 0 (do (call (head l) (list (quote init) v)) (init (tail l) v))))'
# make BEH CTL COUNT [INIT [NODE]]: COUNT new objects of behaviour BEH under CTL (one
# transaction, run on NODE, default n1: their machine); prints their ids, one a line.
make() {
  local f=$RUN/make.avm r
  printf '%s\n(main (let ((tx (beginTx #ctl"%s")) (l (mk "%s" #ctl"%s" %d (quote ()))))\n  %s (if (commitTx tx) l (quote ()))))\n' \
    "$BEHAVIOURS" "$2" "$1" "$2" "$3" "${4:+(init l $4)}" >"$f"
  for _ in 1 2 3 4 5; do
    r=$(ctl "${5:-n1}" run "$f" --json --timeout 30000 2>&1 | jq -r '.result[]?.object' 2>/dev/null)
    [ "$(echo "$r" | grep -c .)" = "$3" ] && { echo "$r"; return 0; }
    sleep 1
  done
  return 1
}
# Accounts 0-3 under A, 4-7 under B; then for each node nI, 8+2(I-1) under A and
# 9+2(I-1) under B, made on nI (their machine): the coordinator-kill probes.
ACCTS=$( { make acct A 4 100 && make acct B 4 100 &&
  for n in $(nodes); do make acct A 1 100 "$n" && make acct B 1 100 "$n" || exit 1; done; } ) ||
  { finding "the bank accounts cannot be made"; exit 1; }
[ "$(echo "$ACCTS" | wc -l)" = $(( 8 + 2 * N )) ] || { finding "accounts: $ACCTS"; exit 1; }
mapfile -t ACCT <<<"$ACCTS"
NACCT=${#ACCT[@]}
NKEYS=$(( SECONDS_RUN / KEY_WINDOW_S + KEYS_ACTIVE + 2 ))
KA=() KB=()
while [ ${#KA[@]} -lt $NKEYS ]; do
  b=$(( NKEYS - ${#KA[@]} )); [ $b -gt 25 ] && b=25
  r=$(make lst A $b) || { finding "keys under A cannot be made"; exit 1; }
  mapfile -t -O ${#KA[@]} KA <<<"$r"
  r=$(make lst B $b) || { finding "keys under B cannot be made"; exit 1; }
  mapfile -t -O ${#KB[@]} KB <<<"$r"
done
log "bank: accounts ${ACCT[*]} (0-3 under A, 4-7 under B, then A and B probes of n1..n$N), 100 each; list-append: $NKEYS keys under A, $NKEYS under B"
{ for ((i = 0; i < NACCT; i++)); do echo "$i ${ACCT[$i]} $( { [ $i -lt 4 ] || { [ $i -ge 8 ] && [ $(( i % 2 )) = 0 ]; }; } && echo A || echo B)"; done; } >"$OUT/accounts.txt"
{ for i in "${!KA[@]}"; do echo "A$i ${KA[$i]}"; echo "B$i ${KB[$i]}"; done; } >"$OUT/keys.txt"

# --- Workloads -------------------------------------------------------------------------
# target CID: the node a client sends its next transaction to (its own, else any up).
target() {
  local t=n$(( ($1 + RANDOM % 2) % N + 1 ))
  up "$t" && { echo "$t"; return; }
  for t in $(up_nodes); do echo "$t"; return; done
  echo n1
}
scope_of() { # the controllers used: A, B or AB
  case $1 in A) echo '#ctl"A"' ;; B) echo '#ctl"B"' ;; *) echo '(list #ctl"A" #ctl"B")' ;; esac
}
# A list-append client: transactions of 1-4 micro-ops, append (a value unique to the
# key) or read, in one AVM transaction; an Elle history, one JSON event a line.
append_client() {
  local cid=$1 proc=$1 seq=0 hist=$OUT/hist.$1.jsonl prog=$RUN/append.$1.avm
  RANDOM=$(( SEED * 31 + cid ))
  while [ ! -e "$RUN/stop" ]; do
    seq=$((seq + 1))
    local w=$(( ( $(now_ms) - TW ) / 1000 / KEY_WINDOW_S )) mode=$(( RANDOM % 10 )) nops=$(( RANDOM % 4 + 1 ))
    local sc=A; [ $mode -ge 4 ] && sc=B; [ $mode -ge 8 ] && sc=AB
    local val="" body="" ret="" k c i used=" " op
    for ((i = 0; i < nops; i++)); do
      c=$sc; [ "$sc" = AB ] && { c=A; [ $(( (i + seq) % 2 )) = 1 ] && c=B; }
      k=$(( (w + RANDOM % KEYS_ACTIVE) % NKEYS ))
      case "$used" in *" $c$k "*) continue ;; esac
      used="$used$c$k "
      local oid; if [ $c = A ]; then oid=${KA[$k]}; else oid=${KB[$k]}; fi
      if [ $(( RANDOM % 2 )) = 0 ]; then
        local v=$(( seq * 100 + cid ))
        op="[\"append\",\"$c$k\",$v]"; body="$body (r$i (call #obj\"$oid\" (list (quote a) $v)))"
      else
        op="[\"r\",\"$c$k\",null]"; body="$body (r$i (call #obj\"$oid\" (list (quote r))))"
      fi
      val="$val${val:+,}$op"; ret="$ret r$i"
    done
    printf '(main (let ((tx (beginTx %s))%s)\n  (list (commitTx tx)%s)))\n' "$(scope_of $sc)" "$body" "$ret" >"$prog"
    local node; node=$(target "$cid")
    echo "{\"process\":$proc,\"type\":\"invoke\",\"f\":\"txn\",\"value\":[$val],\"time\":$(nanos),\"node\":\"$node\"}" >>"$hist"
    local out line
    out=$(ctl "$node" run "$prog" --json --timeout $TXN_TIMEOUT 2>>"$OUT/client.$cid.err")
    line=$(jq -c --argjson v "[$val]" --argjson p "$proc" --argjson t "$(nanos)" '
      . as $r
      | (if .outcome == "done" and .result[0] == true then "ok"
         elif .outcome == "done" and .result[0] == false then "fail" else "info" end) as $ty
      | {process: $p, type: $ty, f: "txn",
         value: (if $ty == "ok" then [$v | to_entries[] | if .value[0] == "r"
                   then [.value[0], .value[1], ($r.result[.key + 1] // [])] else .value end]
                 else $v end),
         time: $t}
      | if $ty == "info" then .error = (($r.error // $r.message // "no answer") | tostring) else . end' \
      <<<"$out" 2>/dev/null | head -1)
    [ -n "$line" ] || line="{\"process\":$proc,\"type\":\"info\",\"f\":\"txn\",\"value\":[$val],\"time\":$(nanos),\"error\":\"no reply\"}"
    echo "$line" >>"$hist"
    case "$line" in *'"type":"info"'*) proc=$((proc + NA)) ;; esac
  done
}
# A bank client: transfers of 1-5 between two accounts, within A, within B or across
# A and B (two-phase commit); each appends its id to both accounts' states.
bank_client() {
  local cid=$1 proc=$1 seq=0 hist=$OUT/bank.$1.jsonl prog=$RUN/bank.$1.avm
  RANDOM=$(( SEED * 37 + cid + 1000 ))
  while [ ! -e "$RUN/stop" ]; do
    seq=$((seq + 1))
    local id=$(( (cid + 1) * 1000000 + seq )) amt=$(( RANDOM % 5 + 1 )) kind=$(( RANDOM % 3 )) f t sc
    case $kind in
      0) f=$(( RANDOM % 4 )); t=$(( (f + 1 + RANDOM % 3) % 4 )); sc=A ;;
      1) f=$(( RANDOM % 4 + 4 )); t=$(( (f - 4 + 1 + RANDOM % 3) % 4 + 4 )); sc=B ;;
      *) f=$(( RANDOM % 4 )); t=$(( RANDOM % 4 + 4 )); sc=AB
         [ $(( RANDOM % 2 )) = 0 ] && { local x=$f; f=$t; t=$x; } ;;
    esac
    printf '(main (let ((tx (beginTx %s)))\n  (call #obj"%s" (list (quote x) %d %d))\n  (call #obj"%s" (list (quote x) %d %d))\n  (list (commitTx tx))))\n' \
      "$(scope_of $sc)" "${ACCT[$f]}" "-$amt" "$id" "${ACCT[$t]}" "$amt" "$id" >"$prog"
    local node; node=$(target "$cid")
    local v="[$id,$f,$t,$amt]"
    echo "{\"process\":$proc,\"type\":\"invoke\",\"f\":\"transfer\",\"value\":$v,\"kind\":\"$sc\",\"time\":$(nanos),\"node\":\"$node\"}" >>"$hist"
    local out ty
    out=$(ctl "$node" run "$prog" --json --timeout $TXN_TIMEOUT 2>>"$OUT/bclient.$cid.err")
    ty=$(jq -r 'if .outcome == "done" and .result[0] == true then "ok"
                elif .outcome == "done" and .result[0] == false then "fail" else "info" end' <<<"$out" 2>/dev/null)
    [ -n "$ty" ] || ty=info
    echo "{\"process\":$proc,\"type\":\"$ty\",\"f\":\"transfer\",\"value\":$v,\"kind\":\"$sc\",\"time\":$(nanos)}" >>"$hist"
    [ "$ty" = info ] && proc=$((proc + NB))
  done
}

# --- Faults ------------------------------------------------------------------------------
pick() { set -- $*; shift $(( RANDOM % $# )); echo "$1"; }   # one word of the list, at random
hold() { # a random pause of $1..$2 ms (short profile: the lower half)
  local lo=$1 hi=$2
  [ "$PROFILE" = short ] && hi=$(( (lo + hi) / 2 ))
  sleep "$(awk -v m=$(( lo + RANDOM % (hi - lo + 1) )) 'BEGIN { printf "%.3f", m / 1000 }')"
}
ipt() { ip netns exec "$PFX-$1" iptables "${@:2}"; }
cut_pair() { # cut X Y: no traffic between X and Y, either way
  ipt "$1" -A INPUT -s "$NET.${2#n}" -j DROP && ipt "$1" -A OUTPUT -d "$NET.${2#n}" -j DROP &&
    ipt "$2" -A INPUT -s "$NET.${1#n}" -j DROP && ipt "$2" -A OUTPUT -d "$NET.${1#n}" -j DROP
}
cut_sets() { # "X Y" "Z W": every pair across the two sets
  local x y
  for x in $1; do for y in $2; do cut_pair "$x" "$y" || return 1; done; done
}
heal() { [ "$NS_OK" = 1 ] && for n in $(nodes); do ipt "$n" -F; done; return 0; }
shuffled() { local l=$(nodes) o=""; while [ -n "$l" ]; do x=$(pick $l); o="$o $x"; l=$(echo $l | tr ' ' '\n' | grep -vx "$x" | tr '\n' ' '); done; echo $o; }

fault_kill() {
  local n; n=$(pick "$(nodes)")
  log "kill: SIGKILL $n"
  stop9 "$n"; count kill
  hold 300 3000
  start "$n"
}
fault_pause() {
  local n; n=$(pick "$(nodes)")
  up "$n" || return 0
  log "pause: SIGSTOP $n"
  kill -STOP "${PID[$n]}"; count pause
  hold 1000 5000
  kill -CONT "${PID[$n]}"
}
fault_partition() { # majority | leader | bridge
  [ "$NS_OK" = 1 ] || { skipped "partition-$1"; return 0; }
  local s; s=$(shuffled); set -- "$1" $s
  local kind=$1 a="" b=""
  shift
  case $kind in
    majority) # a minority of (N-1)/2 nodes cut from the rest
      local m=$(( (N - 1) / 2 )) i=0
      for x in "$@"; do if [ $i -lt $m ]; then a="$a $x"; else b="$b $x"; fi; i=$((i + 1)); done
      cut_sets "$a" "$b" ;;
    leader) # the leader of A or B cut from every other node
      local g; g=$(pick "A B"); a=$(leader_of $g) || { skipped partition-leader; return 0; }
      for x in "$@"; do [ "$x" != "$a" ] && b="$b $x"; done
      cut_sets "$a" "$b" ;;
    bridge) # the first node sees both halves of the others, which do not see each other
      local br=$1 i=0; shift
      for x in "$@"; do if [ $i -lt $(( $# / 2 )) ]; then a="$a $x"; else b="$b $x"; fi; i=$((i + 1)); done
      cut_sets "$a" "$b"; a="$a (bridge $br)" ;;
  esac
  [ $? = 0 ] || { finding "iptables failed for partition $kind"; heal; return 0; }
  log "partition-$kind: {$a } | {$b }"
  count "partition-$kind"
  hold 1500 6000
  heal
}
# Coordinator kill: the nemesis runs a transfer of its own between two probe accounts
# of a node (one under A, one under B, made on that node, so that the execution stays
# there: two-phase commit) through that node, polls its commits across controllers
# in flight (ctrl.latency's txn.inflight: the probe's, or a client's) and, once it
# sees one, SIGKILLs that node (the TM, which drives the protocol) or the leader of A
# (the coordinator's group unless the TM leads B). The probe's
# outcome goes to the bank ledger (kind "probe"), checked with the other transfers.
PROBE=0
inflight() { # true when NODE drives a commit across controllers now
  case $(ctl "$1" controller latency --json --timeout 500 2>/dev/null) in
    *'["inflight",0]'*) return 1 ;;
    *'["inflight",'*) return 0 ;;
  esac
  return 1
}
fault_coord() {
  local try tm v what rp hit f hist=$OUT/bank.probe.jsonl
  for try in 1 2 3 4 5 6 7 8; do
    tm=$(pick "$(up_nodes)"); [ -n "$tm" ] || return 0
    PROBE=$((PROBE + 1))
    local id=$(( 9000000 + PROBE )) proc=$(( 500000 + PROBE )) val
    local pa=$(( 8 + 2 * (${tm#n} - 1) )); local pb=$(( pa + 1 ))
    val="[$id,$pa,$pb,1]"
    printf '(main (let ((tx (beginTx (list #ctl"A" #ctl"B"))))\n  (call #obj"%s" (list (quote x) -1 %d))\n  (call #obj"%s" (list (quote x) 1 %d))\n  (list (commitTx tx))))\n' \
      "${ACCT[$pa]}" $id "${ACCT[$pb]}" $id >"$RUN/probe.avm"
    echo "{\"process\":$proc,\"type\":\"invoke\",\"f\":\"transfer\",\"value\":$val,\"kind\":\"probe\",\"time\":$(nanos)}" >>"$hist"
    ctl "$tm" run "$RUN/probe.avm" --json --timeout $TXN_TIMEOUT >"$RUN/probe.out" 2>/dev/null &
    rp=$!
    hit=""
    while kill -0 $rp 2>/dev/null; do
      inflight "$tm" && { hit=1; break; }
    done
    if [ -n "$hit" ]; then
      v=$tm what="the TM (it drives a commit across A and B now: the probe's or a client's)"
      if [ $(( RANDOM % 2 )) = 1 ]; then
        l=$(leader_of A) && { v=$l; what="the leader of A (the coordinator's group unless the TM leads B) while $tm drives a commit across A and B"; }
      fi
      stop9 "$v"; count coord-kill
      log "coord-kill: SIGKILL $v, $what (try $try)"
    fi
    wait $rp
    ty=$(jq -r 'if .outcome == "done" and .result[0] == true then "ok"
                elif .outcome == "done" and .result[0] == false then "fail" else "info" end' "$RUN/probe.out" 2>/dev/null)
    echo "{\"process\":$proc,\"type\":\"${ty:-info}\",\"f\":\"transfer\",\"value\":$val,\"kind\":\"probe\",\"time\":$(nanos)}" >>"$hist"
    if [ -n "$hit" ]; then
      hold 300 2000
      start "$v"
      return 0
    fi
  done
  log "coord-kill: the probe's commit was never seen in flight ($try tries)"; skipped coord-kill
}
# Disk full: the tmpfs of DISK_NODE's data directory filled with a ballast file. The
# node must stop cleanly naming the cause, or keep serving; the ballast removed, it
# comes back (restarted if it stopped) and nothing acknowledged is lost (checked at the end).
fault_disk() {
  [ -n "$MNT" ] || { skipped disk-full; return 0; }
  local n=$DISK_NODE p rc
  up "$n" || return 0
  EXPECT_EXIT=$n
  dd if=/dev/zero of="$MNT/ballast" bs=1M 2>/dev/null
  count disk-full
  log "disk-full: $n's tmpfs filled ($(df -h "$MNT" | awk 'NR == 2 {print $3 "/" $2}'))"
  hold 2000 6000
  p=${PID[$n]}
  if kill -0 "$p" 2>/dev/null; then
    if ctl "$n" status --timeout 3000 >/dev/null 2>&1; then
      log "disk-full: $n kept running and serving"; count disk-full-served
    else
      log "disk-full: $n is running but does not answer status"; count disk-full-silent
    fi
    rm -f "$MNT/ballast"
  else
    wait "$p"; rc=$?
    rm -f "$RUN/up.$n" "$MNT/ballast"; PID[$n]=""
    cause=$(grep -E 'No space left|ENOSPC|disk full|full' "$OUT/$n.log" | grep -E '"level":"(error|fatal)"' | tail -1 | jq -r '.error // .message // empty' 2>/dev/null)
    if [ $rc -ge 128 ] || [ -z "$cause" ]; then
      finding "disk-full: $n exited with code $rc without naming the cause: $(tail -3 "$OUT/$n.log" | tr '\n' ' ')"
    else
      log "disk-full: $n stopped (exit $rc): $cause"; count disk-full-stopped
    fi
    start "$n"
  fi
  EXPECT_EXIT=""
}
# fsync failure: failsync.so makes fsync & co fail with EIO on the node while its
# trigger file exists. The node must stop at the first failure (exit 70, a fatal
# line naming it); restarted without the trigger, nothing acknowledged is lost.
fault_fsync() {
  [ -n "$SHIM" ] || { skipped fsync; return 0; }
  local n p rc; n=$(pick "$(up_nodes)")
  [ -n "$n" ] || return 0
  p=${PID[$n]}; EXPECT_EXIT=$n
  rm -f "$RUN/fsync.$n.hits"
  touch "$RUN/fsync.$n"
  count fsync
  log "fsync: fsync fails with EIO on $n"
  wait_for 10000 "! kill -0 $p 2>/dev/null"
  rm -f "$RUN/fsync.$n"
  if kill -0 "$p" 2>/dev/null; then
    if [ -s "$RUN/fsync.$n.hits" ]; then
      finding "fsync: $n failed $(wc -l <"$RUN/fsync.$n.hits") sync calls and is still running"
    else
      log "fsync: $n made no sync call in 10 s"; skipped fsync-no-sync
    fi
  else
    wait "$p"; rc=$?
    rm -f "$RUN/up.$n"; PID[$n]=""
    line=$(grep '"event":"node.fatal"' "$OUT/$n.log" | tail -1)
    if [ $rc = 70 ] && [ -n "$line" ]; then
      log "fsync: $n stopped (exit 70): $(echo "$line" | jq -r .error 2>/dev/null)"; count fsync-stopped
    else
      finding "fsync: $n exited with code $rc (expected 70 and a node.fatal line): $(tail -2 "$OUT/$n.log" | tr '\n' ' ')"
    fi
    start "$n"
  fi
  EXPECT_EXIT=""
}
run_fault() {
  case $1 in
    kill) fault_kill ;;
    pause) fault_pause ;;
    partition-*) fault_partition "${1#partition-}" ;;
    coord-kill) fault_coord ;;
    disk-full) fault_disk ;;
    fsync) fault_fsync ;;
  esac
}

# --- The run ----------------------------------------------------------------------------
TW=$(now_ms)
: >"$OUT/findings.txt"
for ((c = 0; c < NA; c++)); do append_client $c & CLIENTS="$CLIENTS $!"; done
for ((c = 0; c < NB; c++)); do bank_client $c & CLIENTS="$CLIENTS $!"; done
log "$NA list-append and $NB bank clients started"
KINDS="kill pause coord-kill"
[ "$NS_OK" = 1 ] && KINDS="$KINDS partition-majority partition-leader partition-bridge"
[ -n "$MNT" ] && KINDS="$KINDS disk-full"
[ -n "$SHIM" ] && KINDS="$KINDS fsync"
[ "$NS_OK" = 1 ] || for k in majority leader bridge; do skipped "partition-$k"; done
[ -n "$MNT" ] || skipped disk-full
[ -n "$SHIM" ] || skipped fsync
# NEMESIS_FAULTS: only these kinds ("none": no fault)
if [ -n "${NEMESIS_FAULTS:-}" ]; then
  sel=""; for k in $NEMESIS_FAULTS; do case " $KINDS " in *" $k "*) sel="$sel $k" ;; esac; done
  KINDS=$sel
fi
# long: weighted (kill and pause 5, each partition 1, the others 1)
WEIGHTED=$KINDS
case " $KINDS " in *" kill "*) WEIGHTED="$WEIGHTED kill kill kill kill" ;; esac
case " $KINDS " in *" pause "*) WEIGHTED="$WEIGHTED pause pause pause pause" ;; esac
DEADLINE=$(( TW + SECONDS_RUN * 1000 ))
round=""
hold 1000 3000
while [ "$(now_ms)" -lt $DEADLINE ]; do
  [ -z "$KINDS" ] && { sleep 1; reap_dead; continue; }
  if [ "$PROFILE" = short ]; then
    [ -z "$round" ] && round=$(for k in $KINDS; do echo "$RANDOM $k"; done | sort -n | cut -d' ' -f2 | tr '\n' ' ')
    k=${round%% *}; round=${round#* }; round=${round# }
  else
    k=$(pick "$WEIGHTED")
  fi
  run_fault "$k"
  reap_dead
  hold 300 2000
done
log "faults over: healing"

# --- Heal, stop the clients, final state -----------------------------------------------------
heal
for n in $(nodes); do [ -n "${PID[$n]:-}" ] && kill -CONT "${PID[$n]}" 2>/dev/null; done
rm -f "$RUN"/fsync.n* ; [ -n "$MNT" ] && rm -f "$MNT/ballast"
reap_dead
wait_for 30000 '[ -n "$(leader_of A)" ] && [ -n "$(leader_of B)" ]' || finding "no leaders 30 s after healing"
touch "$RUN/stop"
for p in $CLIENTS; do wait "$p"; done
CLIENTS=""
log "clients stopped"
wait_for 30000 '[ "$(pending A)" = 0 ] && [ "$(pending B)" = 0 ]' ||
  finding "intents or decisions left 30 s after healing: A $(pending A), B $(pending B)"
# The final reads, in one transaction over A and B each (retried until it commits).
final_read() { # FILE: prints the result JSON once a read-only transaction commits
  local end=$(( $(now_ms) + 60000 )) r
  while [ "$(now_ms)" -lt $end ]; do
    for n in $(up_nodes); do
      r=$(ctl "$n" run "$1" --json --timeout $TXN_TIMEOUT 2>&1)
      [ "$(jq -r '.result[0]' <<<"$r" 2>/dev/null)" = true ] && { jq -c .result <<<"$r"; return 0; }
      echo "$(date +%T) $n: $r" >>"$OUT/final_read.err"
      case $r in *compile-error*) return 1 ;; esac
    done
    sleep 1
  done
  return 1
}
{ printf '(main (let ((tx (beginTx (list #ctl"A" #ctl"B")))'
  for ((i = 0; i < NACCT; i++)); do printf ' (s%d (call #obj"%s" (list (quote get))))' $i "${ACCT[$i]}"; done
  printf ')\n  (list (commitTx tx)'; for ((i = 0; i < NACCT; i++)); do printf ' s%d' $i; done; printf ')))\n'; } >"$RUN/bankread.avm"
final_read "$RUN/bankread.avm" >"$OUT/bank_final.json" || finding "the final bank read does not commit"
FINAL_P=1000000
val="" body="" ret=""
for i in "${!KA[@]}"; do
  for c in A B; do
    if [ $c = A ]; then oid=${KA[$i]}; else oid=${KB[$i]}; fi
    val="$val${val:+,}[\"r\",\"$c$i\",null]"; body="$body (r$c$i (call #obj\"$oid\" (list (quote r))))"; ret="$ret r$c$i"
  done
done
printf '(main (let ((tx (beginTx (list #ctl"A" #ctl"B")))%s)\n  (list (commitTx tx)%s)))\n' "$body" "$ret" >"$RUN/listread.avm"
echo "{\"process\":$FINAL_P,\"type\":\"invoke\",\"f\":\"txn\",\"value\":[$val],\"time\":$(nanos)}" >"$OUT/hist.final.jsonl"
if r=$(final_read "$RUN/listread.avm"); then
  jq -c --argjson v "[$val]" --argjson p $FINAL_P --argjson t "$(nanos)" '. as $r |
    {process: $p, type: "ok", f: "txn", value: [$v | to_entries[] | [.value[0], .value[1], ($r[.key + 1] // [])]], time: $t}' \
    <<<"$r" >>"$OUT/hist.final.jsonl"
else
  finding "the final list read does not commit"
  echo "{\"process\":$FINAL_P,\"type\":\"fail\",\"f\":\"txn\",\"value\":[$val],\"time\":$(nanos)}" >>"$OUT/hist.final.jsonl"
fi
# Clean stop of every node; their logs checked for crashes and sanitizer reports.
for n in $(nodes); do
  p=${PID[$n]:-}; [ -z "$p" ] && continue
  kill -TERM "$p"; wait "$p"; rc=$?; PID[$n]=""; rm -f "$RUN/up.$n"
  [ $rc = 0 ] || finding "$n did not stop cleanly on SIGTERM (exit $rc)"
  e=$(grep -E 'AddressSanitizer|LeakSanitizer|runtime error:' "$OUT/$n.log" | head -2)
  [ -z "$e" ] || finding "$n: a sanitizer report: $e"
done

# --- Checks and summary ------------------------------------------------------------------
python3 "$ANALYZE" "$OUT" >"$OUT/analysis.txt" 2>&1
arc=$?
[ $arc = 0 ] || [ $arc = 1 ] || finding "analyze.py failed ($arc): $(tail -3 "$OUT/analysis.txt")"
[ $arc = 1 ] && FAILED=1
if [ -f "$CHECKER" ]; then
  python3 "$CHECKER" "$OUT/history.jsonl" >"$OUT/checker.txt" 2>&1
  python3 "$CHECKER" "$OUT/history.jsonl" --json >"$OUT/checker.json" 2>"$OUT/checker.err"
  crc=$?
  case $crc in
    0) anomalies=0 ;;
    1) anomalies=$(jq -r '.stats.anomaly_counts // {} | to_entries | map("\(.key) \(.value)") | join(", ")' "$OUT/checker.json" 2>/dev/null)
       [ -n "$anomalies" ] || anomalies="some (see checker.txt)"
       finding "the checker found anomalies: $anomalies (explained in $OUT/checker.txt)" ;;
    *) anomalies="? (checker exit $crc)"; finding "the checker could not check the history (exit $crc): $(head -3 "$OUT/checker.err")" ;;
  esac
  [ $crc = 1 ] && sed -n '1,12p' "$OUT/checker.txt"
else
  anomalies="not checked"
  finding "no checker at $CHECKER: the list-append history is not checked"
fi
fk=""; for k in $(echo "${!FAULTS[@]}" | tr ' ' '\n' | sort); do fk="$fk $k=${FAULTS[$k]}"; done
sk=""; for k in $(echo "${!SKIPPED[@]}" | tr ' ' '\n' | sort); do sk="$sk $k=${SKIPPED[$k]}"; done
{
  echo "=== nemesis summary (profile $PROFILE, seed $SEED, $N nodes, $SECONDS_RUN s of faults, $(( ($(now_ms) - T0) / 1000 )) s in all)"
  cat "$OUT/analysis.txt"
  echo "faults injected:${fk:- none}"
  echo "faults skipped:${sk:- none}"
  echo "anomalies found by the checker: $anomalies"
  echo "findings: $(grep -c . "$OUT/findings.txt")"
  sed 's/^/  /' "$OUT/findings.txt"
} | tee "$OUT/summary.txt"
if [ "$FAILED" != 0 ]; then echo "nemesis: FAIL"; exit 1; fi
echo "nemesis: ok"
exit 0
