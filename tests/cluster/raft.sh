#!/bin/sh
# Replicated controllers (Raft groups over avmd members) under real faults: real
# processes, sockets, disks, SIGKILL and, where network namespaces work, a network
# partition. Three avmd nodes (n2 and n3 join n1) and a controller "bank" replicated
# on the three:
#  1. a leader is elected within a bound; every node lists the controller; status
#     from any node names the leader and has a quorum;
#  2. a client puts kN=N through a follower while the leader is SIGKILLed, round after
#     round (AVM_RAFT_ROUNDS, default 5): a new leader is elected, puts resume within
#     a bound (the kill-to-first-ack time is reported), the killed node restarts on
#     its data and catches up; at the end every replica (each made leader in turn,
#     since reads go to the leader) returns N for every acknowledged kN; every member
#     learns a restarted node's new address; a node restarted through the leader,
#     that leader then killed at once, still lets the two others elect a leader;
#  3. bank_raft.avm's transactions run through a follower while the leader is
#     killed: it completes with a total of 400 and a ledger equal to its committed
#     count, or fails with an error naming #ctl"bank" (as it must without a quorum);
#     a fresh run is (100 400 100) through each node;
#  4. with --raft-snapshot-every 16, a follower down for 200 writes (more than the 128
#     entries a leader keeps behind its snapshot) catches up by installing a snapshot
#     (raft.install in its log, snapshot_index > 0) and has the latest values;
#  5. (as root with ip netns) the nodes in three namespaces on a bridge; the leader is
#     cut off with iptables: it acknowledges nothing, the majority elects a leader and
#     commits; healed, the old leader follows and has the majority's writes;
#  6. controller transfer hands leadership to the node named (or to another one).
# Usage: raft.sh AVMD AVMCTL SOURCE_DIR
# Environment: AVM_TIME_FACTOR scales every bound (the sanitizer build passes a larger
# one); AVM_RAFT_ROUNDS the kill rounds of 2; AVM_RAFT_ONLY the parts to run ("2 5",
# say; 1 comes with 2, 3 and 6); AVM_RAFT_FINDINGS the file that collects what looks
# like a product bug, with the nodes' log tails (default /tmp/raft_findings.md, empty:
# none); AVM_KEEP keeps the temp directory and the nodes' logs.
set -u
AVMD=$1 AVMCTL=$2 SRC=$3
. "$SRC/tests/cluster/netns.sh"
F=${AVM_TIME_FACTOR:-1}
ROUNDS=${AVM_RAFT_ROUNDS:-5}
FINDINGS=${AVM_RAFT_FINDINGS-/tmp/raft_findings.md}
ONLY=${AVM_RAFT_ONLY:-1 2 3 6 4 5}
G=bank
dir=$(mktemp -d "${TMPDIR:-/tmp}/avm-raft-XXXXXX") || exit 2
CL=a          # the cluster being driven: its sockets, data and logs are in $dir/$CL
pid_n1= pid_n2= pid_n3= ns_n1= ns_n2= ns_n3= client_pid=
NETNS=
cleanup() {
  [ -n "$client_pid" ] && kill "$client_pid" 2>/dev/null
  for p in "$pid_n1" "$pid_n2" "$pid_n3"; do
    [ -n "$p" ] && kill -CONT "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null
  done
  wait 2>/dev/null
  for ns in $NETNS; do ip netns del "$ns" 2>/dev/null; done
  [ -n "${AVM_KEEP:-}" ] && echo "kept $dir" || rm -rf "$dir"
}
trap cleanup EXIT
: >"$dir/kill_ack"
trap 'exit 130' INT TERM
pass=0 fails=0 skips=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fails=$((fails + 1)); }
skip() { echo "SKIP $1"; skips=$((skips + 1)); }
check() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got '$2', expected '$3'"; fi; }
ms() { date +%s%3N; }
# t MS: a bound in ms, scaled; tenths MS: the same as a count of 0.1 s polls.
t() { echo $(($1 * F)); }
tenths() { echo $(($1 * F / 100)); }

# finding TITLE DETAILS: a product problem, for the lead (the log tails follow).
finding() {
  echo "  finding: $1${FINDINGS:+ (details in $FINDINGS)}"
  [ -z "$FINDINGS" ] && return 0
  {
    echo
    echo "### raft.sh $(date -u +%FT%TZ) (cluster $CL): $1"
    echo "$2"
    for n in n1 n2 n3; do
      [ -f "$dir/$CL/$n.log" ] || continue
      echo "$n log (last lines, debug left out):"
      grep -v '"level":"debug"' "$dir/$CL/$n.log" | tail -8 | sed 's/^/    /'
    done
  } >>"$FINDINGS"
}

ctl() { node=$1; shift; "$AVMCTL" "$@" --node "ipc://$dir/$CL/$node.sock"; }
sj() { ctl "$1" controller status $G --json --timeout 2000 2>/dev/null; }
# jf NODE FILTER: a field of NODE's controller status (what its leader answers).
jf() { sj "$1" | jq -r "$2" 2>/dev/null; }
pid_of() { eval "echo \$pid_$1"; }
alive() { [ -n "$(pid_of "$1")" ]; }
others() { for o in n1 n2 n3; do [ "$o" != "$1" ] && echo "$o"; done; }

# start NAME [avmd flags...]: joins through a running node, $VIA if set (none running:
# it starts the cluster).
start() {
  name=$1; shift
  join=""
  for o in ${VIA:-} $(others "$name"); do
    alive "$o" && { join="--join ipc://$dir/$CL/$o.sock"; break; }
  done
  mkdir -p "$dir/$CL"
  pre="" listen=tcp://127.0.0.1:0
  ns=$(eval "echo \$ns_$name")
  if [ -n "$ns" ]; then
    pre="ip netns exec $ns"
    listen="tcp://$NET.${name#n}:0"
  fi
  # shellcheck disable=SC2086
  $pre "$AVMD" --name "$name" --controller "c$name" --data "$dir/$CL/$name" \
    --control "ipc://$dir/$CL/$name.sock" --listen "$listen" --log-format json \
    $join "$@" 2>>"$dir/$CL/$name.log" &
  eval "pid_$name=$!"
  i=0
  while [ $i -lt "$(tenths 10000)" ]; do
    ctl "$name" status --timeout 200 >/dev/null 2>&1 && return 0
    sleep 0.1; i=$((i + 1))
  done
  echo "avmd $name did not come up:"; tail -20 "$dir/$CL/$name.log"; exit 1
}
kill9() { p=$(pid_of "$1"); kill -9 "$p"; wait "$p" 2>/dev/null; eval "pid_$1="; }
stop_all() {
  for n in n1 n2 n3; do
    p=$(pid_of $n)
    [ -z "$p" ] && continue
    kill -TERM "$p"
    wait "$p"
    check "$CL/$n stops cleanly on SIGTERM" "$?" 0
    eval "pid_$n="
  done
  # Errors, but for the failed commits of executions while the controller had no
  # leader (those are the programs' errors, which part 3 provokes).
  for n in n1 n2 n3; do
    e=$(grep '"level":"error"' "$dir/$CL/$n.log" |
      grep -v '"event":"store.error".*no leader committed the write' | head -3)
    [ -z "$e" ] && ok "$CL/$n logged no errors" || bad "$CL/$n logged errors: $e"
    e=$(grep -E 'AddressSanitizer|LeakSanitizer|runtime error:' "$dir/$CL/$n.log" | head -3)
    [ -z "$e" ] || bad "$CL/$n: a sanitizer report in its log: $e"
  done
}

# wait_for TENTHS CMD...: polls CMD (0.1 s apart) until it succeeds; fails once TENTHS
# tenths of a second have passed (a clock, not a count: a probe may take seconds).
wait_for() {
  end=$(($(ms) + $1 * 100)); shift
  while :; do
    eval "$*" && return 0
    [ "$(ms)" -ge $end ] && return 1
    sleep 0.1
  done
}
# until_eq DESC EXPECTED EXPR [TENTHS]: polls EXPR until it prints EXPECTED (cluster.sh's).
until_eq() {
  end=$(($(ms) + ${4:-$(tenths 20000)} * 100))
  while :; do
    v=$(eval "$3")
    [ "$v" = "$2" ] && break
    [ "$(ms)" -ge $end ] && break
    sleep 0.1
  done
  check "$1" "$v" "$2"
}
# leader_from NODE: the leader NODE's status names, if it has a quorum.
leader_from() { jf "$1" 'select(.quorum == true) | .leader // empty'; }
# new_leader NODE OLD: NODE's status names a leader other than OLD (with a quorum).
new_leader() { l=$(leader_from "$1"); [ -n "$l" ] && [ "$l" != "$2" ]; }
# caught_up VIA NODE TARGET: the leader (asked through VIA) has replicated up to
# TARGET on NODE, and NODE is reachable.
caught_up() {
  m=$(sj "$1" | jq -r --arg n "$2" '.members[] | select(.[0] == $n and .[2] == true) | .[3]' 2>/dev/null)
  [ -n "$m" ] && [ "$m" -ge "$3" ]
}
# same_members: every running node has the same address for every member.
same_members() {
  v=""
  for n in n1 n2 n3; do
    alive $n || continue
    w=$(ctl $n cluster status --json --timeout 2000 2>/dev/null |
      jq -c '[.members[] | [.[0], .[1]]] | sort' 2>/dev/null)
    [ -z "$w" ] && return 1
    [ -n "$v" ] && [ "$w" != "$v" ] && return 1
    v=$w
  done
  return 0
}
members_of() {
  for n in n1 n2 n3; do
    alive $n && echo "$n: $(ctl $n cluster status --json --timeout 2000 2>/dev/null |
      jq -c '[.members[] | [.[0], .[1]]] | sort' 2>/dev/null)"
  done
}
# elected_at NODE: when NODE last logged that it became the leader (ms since the epoch).
elected_at() {
  ts=$(grep '"event":"raft.state"' "$dir/$CL/$1.log" | grep '"bank: leader, term' | tail -1 | jq -r .ts)
  date -d "$ts" +%s%3N
}
commit_of() { jf "$1" '.commit // empty'; }
# make_leader NODE: controller transfer to NODE; true once NODE's own status says leader.
make_leader() {
  [ "$(jf "$1" '.self + " " + .state')" = "$1 leader" ] && return 0
  ctl "$1" controller transfer $G "$1" --timeout "$(t 5000)" >/dev/null 2>&1
  wait_for "$(tenths 10000)" "[ \"\$(jf $1 '.self + \" \" + .state')\" = '$1 leader' ]"
}
# getv NODE KEY: the value of KEY (reads go to the leader).
getv() { ctl "$1" controller get $G "$2" --timeout "$(t 5000)" 2>&1; }
median_max() {
  sort -n | awk '{a[NR] = $1} END {
    if (NR == 0) { print "none"; exit }
    m = (NR % 2) ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2)
    printf "median %d ms, max %d ms (%d kills)", m, a[NR], NR }'
}

want() { case " $ONLY " in *" $1 "*) return 0 ;; esac; return 1; }

if want 1 || want 2 || want 3 || want 6; then
# === 1. Election =========================================================================
echo "--- 1. a controller replicated on three nodes"
CL=a
start n1
start n2
start n3
out=$(ctl n1 controller create $G --replicas n1,n2,n3 --json 2>&1)
check "controller create bank --replicas n1,n2,n3" "$(echo "$out" | jq -r .name 2>/dev/null)" $G
t0=$(ms)
if wait_for "$(tenths 5000)" '[ -n "$(leader_from n1)" ]'; then
  ok "a leader ($(leader_from n1)) is elected within $(t 5000) ms ($(($(ms) - t0)) ms)"
else
  bad "no leader within $(t 5000) ms: $(sj n1)"
  finding "no leader elected within $(t 5000) ms" "controller create bank on 3 fresh nodes; status: $(sj n1)"
fi
L=$(leader_from n1)
for n in n1 n2 n3; do
  until_eq "$n's controller ls shows bank, its replicas and leader $L" "bank $L n1,n2,n3" \
    "ctl $n controller ls --json 2>/dev/null | jq -r '.controllers[] | select(.[0] == \"bank\") | \"\\(.[0]) \\(.[1]) \\(.[3] | join(\",\"))\"'" \
    "$(tenths 5000)"
done
check "exactly one node says it leads (controller ls HERE)" \
  "$(for n in n1 n2 n3; do ctl $n controller ls --json | jq -r '.controllers[] | select(.[0] == "bank") | .[4]'; done | sort | tr '\n' ' ')" \
  "follower follower leader "
for n in n1 n2 n3; do
  check "status from $n: leader, quorum, three reachable voters" \
    "$(jf $n '"\(.leader) \(.quorum) \([.members[] | select(.[1] == "voter" and .[2] == true)] | length)"')" \
    "$L true 3"
done
case "$(ctl n2 controller status nosuch 2>&1)" in
  *"no replicated controller named nosuch"*) ok "status of an unknown controller is refused" ;;
  *) bad "status of an unknown controller: $(ctl n2 controller status nosuch 2>&1)" ;;
esac
check "text status names the leader and the quorum" \
  "$(ctl n3 controller status $G | sed -n 2p | sed 's/, term.*quorum/ quorum/')" "leader $L quorum yes"

# === 2. Kill the leader, round after round, under a stream of puts ====================
if want 2; then
echo "--- 2. SIGKILL of the leader under puts ($ROUNDS rounds)"
: >"$dir/acked"; : >"$dir/failed"
# The client: puts kN=N through the node in $dir/target, one at a time.
client() {
  n=1
  while [ ! -e "$dir/stop" ]; do
    tg=$(cat "$dir/target")
    s=$(ms)
    if err=$(ctl "$tg" controller put $G "k$n" "$n" --timeout "$(t 5000)" 2>&1 >/dev/null); then
      echo "$n $s $(ms) $tg" >>"$dir/acked"
    else
      echo "$n $s $(ms) $tg $err" >>"$dir/failed"
    fi
    n=$((n + 1))
    sleep 0.03
  done
}
L=$(leader_from n1)
for o in $(others "$L"); do echo "$o" >"$dir/target"; break; done
client &
client_pid=$!
r=1
while [ $r -le "$ROUNDS" ]; do
  L=$(leader_from "$(cat "$dir/target")")
  [ -z "$L" ] && L=$(leader_from n1)
  T=""
  for o in $(others "$L"); do alive "$o" && { T=$o; break; }; done
  echo "$T" >"$dir/target"
  # Some writes go through before the kill.
  a0=$(wc -l <"$dir/acked")
  wait_for "$(tenths 10000)" '[ $(wc -l <"$dir/acked") -ge $((a0 + 5)) ]' ||
    bad "round $r: puts through $T before the kill are not acknowledged: $(tail -2 "$dir/failed")"
  kill9 "$L"
  tk=$(ms)
  if wait_for "$(tenths 10000)" "new_leader $T $L"; then
    nl=$(leader_from "$T")
    ok "round $r: leader $L killed, $nl elected ($(($(elected_at "$nl") - tk)) ms, from its log)"
  else
    bad "round $r: no new leader $(t 10000) ms after killing $L: $(sj "$T")"
    finding "no new leader after SIGKILL of leader $L" "round $r; status from $T: $(sj "$T")"
  fi
  # The first put started after the kill and acknowledged.
  if wait_for "$(tenths 10000)" "awk -v t=$tk '\$2 >= t {f = 1} END {exit !f}' \"$dir/acked\""; then
    fa=$(awk -v t="$tk" '$2 >= t {print $3 - t; exit}' "$dir/acked")
    echo "$fa" >>"$dir/kill_ack"
    ok "round $r: puts through $T resume $fa ms after the kill"
  else
    bad "round $r: no put acknowledged within $(t 10000) ms of the kill: $(tail -3 "$dir/failed")"
    finding "puts do not resume after SIGKILL of leader $L" \
      "round $r; puts through $T; last failures: $(tail -3 "$dir/failed")"
  fi
  start "$L"
  target=$(commit_of "$T")
  if wait_for "$(tenths 20000)" "caught_up $T $L ${target:-0}"; then
    ok "round $r: $L restarted and caught up to $target"
  else
    bad "round $r: $L restarted but did not catch up to ${target:-?}: $(sj "$T")"
    finding "a restarted replica does not catch up" "round $r: $L restarted; status: $(sj "$T")"
  fi
  # Its new address reaches every member (else see the join-then-kill check below).
  if wait_for "$(tenths 5000)" same_members; then
    ok "round $r: every member has $L's new address"
  else
    bad "round $r: the members disagree on addresses: $(members_of | tr '\n' ' ')"
    finding "members keep a restarted member's old address" "round $r, $L restarted: $(members_of)"
  fi
  r=$((r + 1))
done
touch "$dir/stop"
wait "$client_pid"
client_pid=
nack=$(wc -l <"$dir/acked") nfail=$(wc -l <"$dir/failed")
[ "$nack" -ge $((ROUNDS * 10)) ] && ok "$nack puts acknowledged, $nfail failed" ||
  bad "only $nack puts acknowledged ($nfail failed)"
if [ "$nfail" -gt 0 ]; then
  echo "  the failed puts' errors:"
  cut -d' ' -f5- "$dir/failed" | sed 's#ipc://[^ ]*#SOCK#; s/index [0-9]*/index N/' | sort | uniq -c |
    sed 's/^/    /'
fi
dropped=$(grep -c 'closed before the reply' "$dir/failed")
[ "$dropped" -eq 0 ] && ok "no put's connection was dropped without an answer" || {
  bad "$dropped puts got no answer: the node closed the connection (see the errors above)"
  finding "puts through a live follower get no answer after the leader's SIGKILL" \
    "$dropped of $nfail failed puts ended with avmctl's 'closed before the reply' although the node they were sent to was alive: $(grep 'closed before' "$dir/failed" | head -2)"
}
# Every replica has every acknowledged write: each is made leader in turn (reads are
# served by the leader) and read back.
for n in n1 n2 n3; do
  if make_leader $n; then
    check "$n leads after controller transfer, applied = commit" \
      "$(jf $n '"\(.self) \(.applied == .commit)"')" "$n true"
  else
    bad "$n did not become leader for the read-back: $(sj $n)"
    continue
  fi
  miss=0 first=""
  while read -r k rest; do
    v=$(getv $n "k$k")
    if [ "$v" != "$k" ]; then
      sleep 0.5; v2=$(getv $n "k$k")
      [ "$v2" != "$k" ] && { miss=$((miss + 1)); [ -z "$first" ] && first="k$k -> '$v2'"; }
      [ "$v2" = "$k" ] && echo "  note: $n served k$k late ('$v', then '$v2')"
    fi
  done <"$dir/acked"
  if [ $miss -eq 0 ]; then ok "$n (leader) returns every one of the $nack acknowledged writes"
  else
    bad "$n (leader) misses $miss of $nack acknowledged writes (first: $first)"
    finding "acknowledged writes lost on $n" "$miss of $nack acknowledged kN=N are not N when $n leads; first $first"
  fi
done

fi
# === 3. The bank program while the leader dies =============================================
if want 3; then
echo "--- 3. bank transactions through a follower while the leader is killed"
BANK=$SRC/tests/cluster/bank_raft.avm
for round in 1 2; do
  L=$(leader_from n1)
  T=""; for o in $(others "$L"); do T=$o; break; done
  id=$(ctl "$T" run "$BANK" --entry long --detach 2>&1)
  case "$id" in "$T"/x*) ;; *) bad "bank run $round through $T did not start: $id"; continue ;; esac
  sleep 0.3
  st=$(ctl "$T" exec show "$id" --json 2>/dev/null | jq -r .status)
  kill9 "$L"
  check "bank run $round: the leader $L is killed while the program runs on $T" "$st" running
  wait_for "$(tenths 60000)" "[ \"\$(ctl $T exec show $id --json 2>/dev/null | jq -r .status)\" != running ]"
  js=$(ctl "$T" exec show "$id" --json 2>/dev/null)
  out=$(echo "$js" | jq -r .outcome)
  if [ "$out" = done ]; then
    res=$(echo "$js" | jq -r '.result | map(tostring) | join(" ")')
    set -- $res
    check "bank run $round completed: total" "${2:-}" 400
    check "bank run $round: ledger = transfers committed ($1 of 1000)" "${3:-}" "${1:-}"
    [ "${1:-0}" -ge 0 ] && [ "${1:-0}" -le 1000 ] && ok "bank run $round: $1 committed" ||
      bad "bank run $round: committed $1"
    if [ "${2:-}" != 400 ] || [ "${3:-}" != "${1:-}" ]; then
      finding "bank invariant broken across a leader kill" "bank_raft.avm long on $T, leader $L killed: $js"
    fi
  else
    e=$(echo "$js" | jq -r .error)
    case "$e" in
      *'#ctl"bank"'*) ok "bank run $round failed naming the controller: $e" ;;
      *) bad "bank run $round: $out, error '$e' does not name #ctl\"bank\""
         finding "a bank run failed without naming the controller" "bank_raft.avm long on $T, leader $L killed: $js" ;;
    esac
  fi
  start "$L"
  wait_for "$(tenths 10000)" "new_leader $T none" || bad "no leader after restarting $L"
  target=$(commit_of "$T")
  wait_for "$(tenths 20000)" "caught_up $T $L ${target:-0}" && ok "bank run $round: $L restarted and caught up" ||
    bad "bank run $round: $L did not catch up: $(sj "$T")"
  wait_for "$(tenths 5000)" same_members && ok "bank run $round: every member has $L's new address" ||
    bad "bank run $round: the members disagree on addresses: $(members_of | tr '\n' ' ')"
done
# Without a quorum (two replicas killed) a run through the third fails naming the
# controller; restarted, the three go on.
L=$(leader_from n1)
T=""; for o in $(others "${L:-n1}"); do T=$o; break; done
for o in $(others "$T"); do kill9 "$o"; done
t0=$(ms)
out=$(ctl "$T" run "$BANK" --timeout "$(t 60000)" 2>&1)
case "$out" in
  *'#ctl"bank"'*) ok "without a quorum a bank run through $T fails naming the controller ($(($(ms) - t0)) ms): $out" ;;
  *) bad "without a quorum, a bank run through $T: '$out' does not name #ctl\"bank\""
     finding "a bank run without a quorum fails without naming the controller" "$T alone (the two others SIGKILLed): $out" ;;
esac
for o in $(others "$T"); do start "$o"; done
wait_for "$(tenths 10000)" "new_leader $T none" || bad "no leader after restarting the two: $(sj "$T")"
target=$(commit_of "$T")
wait_for "$(tenths 20000)" "caught_up $T n1 ${target:-0} && caught_up $T n2 ${target:-0} && caught_up $T n3 ${target:-0} && same_members" &&
  ok "the two restarted replicas caught up" || bad "the replicas are not back in step: $(sj "$T") $(members_of | tr '\n' ' ')"
for n in n1 n2 n3; do
  check "a fresh bank run through $n: (committed total ledger)" \
    "$(ctl $n run "$BANK" --timeout "$(t 60000)" 2>&1)" "(100 400 100)"
done

fi
# === 6. Leadership transfer ===============================================================
if want 6; then
echo "--- 6. leadership transfer"
[ "$(leader_from n1)" = n2 ] && { make_leader n1 || bad "transfer to n1 (to start from another leader)"; }
out=$(ctl n3 controller transfer $G n2 --json 2>&1)
check "controller transfer bank n2 answers" "$(echo "$out" | jq -r .node 2>/dev/null)" n2
until_eq "n2 leads (status through n1)" "n2 n2 leader" "jf n1 '\"\\(.leader) \\(.self) \\(.state)\"'" \
  "$(tenths 5000)"
check "a put through n1 after the transfer" \
  "$(ctl n1 controller put $G tr1 after-transfer --json 2>&1 | jq -r '.index > 0' 2>/dev/null)" true
check "... and read back through n3" "$(getv n3 tr1)" after-transfer
ctl n2 controller transfer $G >/dev/null 2>&1
check "controller transfer bank (no node) answers" "$?" 0
wait_for "$(tenths 5000)" '[ -n "$(leader_from n3)" ] && [ "$(leader_from n3)" != n2 ]' &&
  ok "... and another replica ($(leader_from n3)) leads" || bad "transfer without a node: $(sj n3)"
check "a put after the second transfer" \
  "$(ctl n2 controller put $G tr2 again --json 2>&1 | jq -r '.index > 0' 2>/dev/null)" true
case "$(ctl n1 controller transfer $G nX 2>&1)" in
  *nX*) ok "transfer to a non-replica is refused, naming it" ;;
  *) bad "transfer to nX: $(ctl n1 controller transfer $G nX 2>&1)" ;;
esac
fi
if want 2; then
# A restarted member's new address must not depend on the member it joined through
# staying up: restart a follower X through the leader Y, kill Y at once; X and the
# third replica Z must still elect a leader.
L=$(leader_from n1); [ -z "$L" ] && L=$(leader_from n2)
X="" Z=""
for o in $(others "${L:-n1}"); do [ -z "$X" ] && X=$o || Z=$o; done
kill9 "$X"
VIA=$L start "$X"
kill9 "$L"
tk=$(ms)
if wait_for "$(tenths 10000)" "new_leader $Z $L"; then
  nl=$(leader_from "$Z")
  ok "$X restarted through $L, $L killed at once: $nl elected ($(($(elected_at "$nl") - tk)) ms, from its log)"
else
  bad "$X restarted through $L, $L killed at once: no leader among $X and $Z after $(t 10000) ms"
  finding "no leader when the member a restarted node joined through dies at once" \
    "$X killed, restarted with --join $L, $L SIGKILLed right after $X answered; members: $(members_of | tr '\n' ' '); status from $Z: $(sj "$Z"); from $X: $(sj "$X")"
fi
fi
stop_all
fi

# === 4. Catch-up through a snapshot ==========================================================
if want 4; then
echo "--- 4. a follower catches up through a snapshot (--raft-snapshot-every 16)"
CL=b
SNAP="--raft-snapshot-every 16"
start n1 $SNAP
start n2 $SNAP
start n3 $SNAP
ctl n1 controller create $G --replicas n1,n2,n3 >/dev/null 2>&1
wait_for "$(tenths 5000)" '[ -n "$(leader_from n1)" ]' || bad "no leader in cluster b"
L=$(leader_from n1)
Fo=""; for o in $(others "$L"); do Fo=$o; done
V=""; for o in $(others "$L"); do [ "$o" != "$Fo" ] && V=$o; done
i=1; pf=0
while [ $i -le 20 ]; do ctl "$V" controller put $G "s$i" "a$i" >/dev/null 2>&1 || pf=$((pf + 1)); i=$((i + 1)); done
m0=$(sj "$V" | jq -r --arg n "$Fo" '.members[] | select(.[0] == $n) | .[3]')
kill9 "$Fo"
i=1
while [ $i -le 200 ]; do
  ctl "$V" controller put $G "s$((i % 20 + 1))" "b$i" >/dev/null 2>&1 || pf=$((pf + 1)); i=$((i + 1))
done
check "220 puts with $Fo down are acknowledged" "$pf" 0
si=$(jf "$V" .snapshot_index)
[ "${si:-0}" -gt $((m0 + 128)) ] && ok "the leader's snapshot ($si) is past $Fo's log ($m0) and the 128 kept entries" ||
  bad "leader's snapshot $si, $Fo's match $m0: no compaction past it"
start "$Fo" $SNAP
target=$(commit_of "$V")
t0=$(ms)
if wait_for "$(tenths 20000)" "caught_up $V $Fo $target"; then
  ok "$Fo restarted and caught up to $target ($(($(ms) - t0)) ms)"
else
  bad "$Fo did not catch up to $target: $(sj "$V")"
  finding "a follower does not catch up after compaction" "cluster b: $Fo down for 200 puts, restarted; status: $(sj "$V")"
fi
if wait_for "$(tenths 5000)" "grep -q '\"event\":\"raft.install\"' $dir/$CL/$Fo.log"; then
  ok "$Fo's log shows a snapshot install: $(grep '"event":"raft.install"' "$dir/$CL/$Fo.log" | head -1 | jq -r '.group // .error')"
else
  bad "$Fo's log has no raft.install event"
  finding "no raft.install on a follower that was behind the leader's snapshot" \
    "cluster b (snapshot every 16): $Fo killed at match $m0, 200 puts, leader snapshot $si; restarted; no raft.install in its log"
fi
if make_leader "$Fo"; then
  check "$Fo (made leader) has applied everything and has a snapshot" \
    "$(jf "$Fo" '"\(.self) \(.applied == .commit) \(.snapshot_index > 0)"')" "$Fo true true"
else
  bad "$Fo did not become leader: $(sj "$Fo")"
fi
miss=0
j=1
while [ $j -le 20 ]; do
  # s$j's last write: the largest i <= 200 with i % 20 + 1 = j.
  last=$(awk -v j=$j 'BEGIN { for (i = 200; i >= 1; i--) if (i % 20 + 1 == j) { print "b" i; exit } }')
  v=$(getv "$Fo" "s$j")
  [ "$v" = "$last" ] || { miss=$((miss + 1)); echo "  s$j: '$v', expected '$last'"; }
  j=$((j + 1))
done
check "$Fo (leading) returns the latest value of the 20 keys" "$miss" 0
stop_all
fi

# === 5. Partition ==================================================================================
if want 5; then
echo "--- 5. partition of the leader (network namespaces)"
why=""
if ! netns_setup "avr$$" >"$dir/netns.why"; then
  why=$(cat "$dir/netns.why")
  [ -n "$why" ] || why="the namespaces cannot be set up"
fi
if [ -n "$why" ]; then
  skip "partition: $why"
else
  CL=c
  start n1
  start n2
  start n3
  ctl n1 controller create $G --replicas n1,n2,n3 >/dev/null 2>&1
  wait_for "$(tenths 5000)" '[ -n "$(leader_from n1)" ]' || bad "no leader in cluster c: $(sj n1)"
  L=$(leader_from n1)
fi
if [ -z "$why" ] && [ -z "$L" ]; then
  bad "partition: no leader in the namespaced cluster: $(sj n1) $(members_of | tr '\n' ' ')"
elif [ -z "$why" ]; then
  M=""; for o in $(others "$L"); do M=$o; break; done
  ok "namespaces up: the links are on $NET.0/24, leader $L"
  pf=0; i=1
  while [ $i -le 5 ]; do ctl "$M" controller put $G "p$i" "$i" >/dev/null 2>&1 || pf=$((pf + 1)); i=$((i + 1)); done
  check "puts before the partition" "$pf" 0
  nsL=$(eval "echo \$ns_$L")
  ip netns exec "$nsL" iptables -A INPUT ! -i lo -j DROP &&
    ip netns exec "$nsL" iptables -A OUTPUT ! -o lo -j DROP
  check "$L cut off (iptables in $nsL)" "$?" 0
  tp=$(ms)
  out=$(ctl "$L" controller put $G iso 1 --timeout "$(t 4000)" 2>&1)
  rc=$?
  [ $rc -ne 0 ] && ok "a put sent to the isolated old leader $L is not acknowledged ($(echo "$out" | head -1))" || {
    bad "the isolated old leader $L acknowledged a put: $out"
    finding "an isolated leader acknowledged a write" "cluster c: $L partitioned with iptables; put iso=1 sent to it: $out"
  }
  if wait_for "$(tenths 10000)" "new_leader $M $L"; then
    nl=$(leader_from "$M")
    ok "the majority elects $nl ($(($(elected_at "$nl") - tp)) ms after the partition, from its log)"
  else
    bad "the majority did not elect a new leader: $(sj "$M")"
    finding "no new leader in the majority partition" "cluster c: $L cut off; status from $M: $(sj "$M")"
    nl=""
  fi
  pf=0; i=1
  while [ $i -le 20 ]; do
    ctl "$M" controller put $G "q$i" "v$i" --timeout "$(t 5000)" >/dev/null 2>&1 || pf=$((pf + 1))
    i=$((i + 1))
  done
  check "20 puts through $M during the partition are acknowledged" "$pf" 0
  check "the isolated $L's own status has no quorum" "$(jf "$L" '"\(.self) \(.quorum)"')" "$L false"
  out=$(ctl "$L" controller put $G iso2 1 --timeout "$(t 3000)" 2>&1)
  [ $? -ne 0 ] && ok "a second put to the isolated $L fails too" || bad "isolated $L acknowledged: $out"
  ip netns exec "$nsL" iptables -F
  check "the partition healed" "$?" 0
  until_eq "$L follows $nl after the heal (its controller ls)" "$nl follower" \
    "ctl $L controller ls --json 2>/dev/null | jq -r '.controllers[] | select(.[0] == \"bank\") | \"\\(.[1]) \\(.[4])\"'"
  target=$(commit_of "$M")
  wait_for "$(tenths 20000)" "caught_up $M $L ${target:-0}" && ok "$L caught up to $target" ||
    bad "$L did not catch up: $(sj "$M")"
  if make_leader "$L"; then
    check "$L (made leader) has applied everything" "$(jf "$L" '"\(.self) \(.applied == .commit)"')" "$L true"
  else
    bad "$L did not become leader after the heal: $(sj "$L")"
  fi
  miss=0 i=1
  while [ $i -le 20 ]; do [ "$(getv "$L" "q$i")" = "v$i" ] || miss=$((miss + 1)); i=$((i + 1)); done
  check "$L returns the 20 values written during the partition" "$miss" 0
  if [ $miss -ne 0 ]; then
    finding "writes of the majority partition missing on the healed old leader" "cluster c: $L; $miss of 20"
  fi
  echo "  (the put sent to the isolated leader reads back as: $(getv "$L" iso))"
  check "a put through the healed $L" "$(ctl "$L" controller put $G after-heal 1 --json 2>&1 | jq -r '.index > 0' 2>/dev/null)" true
  stop_all
fi
fi

echo "raft: $pass passed, $fails failed, $skips skipped; kill to first acknowledged put: $(median_max <"$dir/kill_ack")"
[ $fails -eq 0 ]
