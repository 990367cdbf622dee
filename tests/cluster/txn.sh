#!/bin/sh
# Commits across controllers (two-phase commit over Raft groups), transferObject
# between controllers, and composed commits (bundles), on three avmd processes with
# two controllers "A" and "B" replicated on all three:
#  1. a bank of four accounts (two under A, two under B) and a ledger (under A):
#     every transfer moves 1 from an A account to a B account and counts itself in
#     the ledger, in one transaction over both controllers. Three executions on the
#     three nodes at once (conflicts make some commits return false): the total stays
#     400, the ledger equals the transfers applied (B's gain), and it equals the sum
#     of the committed counts the programs returned;
#  2. the same under faults, round after round (AVM_TXN_ROUNDS, default 6): a bank run
#     goes on one node while a random node (the leader of A or B, the coordinator of
#     the commits the node running it drives, or that node itself) is SIGKILLed or
#     SIGSTOPped at a random moment, then restarted or resumed; after each round the
#     total is 400, the ledger equals B's gain (no transfer half-applied or applied
#     twice), every acknowledged transfer is applied (when the node running the
#     program survived, the ledger grew by exactly its committed count), and within
#     a bound no intent or unfinished decision remains in either group;
#  3. transferObject between the controllers while other transactions increment the
#     object: the count equals the increments committed (no commit accepted by both
#     controllers, none lost), every node then agrees on its controller, and the
#     record lives under that controller only;
#  4. composed commits: three executions on three nodes join a bundle; one aborts:
#     nothing applies, every member's commit returns false; all commit: everything
#     applies; a member started after another reads its writes (run --bundle), one
#     that joins with the instruction joinBundle counts as a member too;
#  4b. intent matching: examples/intents/settle.sh's scenarios (a swap across A and B
#     settled by the solver at the bundle's home, one no price suits, a three-party
#     ring trade, and a pair of it that cannot settle: nothing moves).
#  5. a transaction over A and a controller that is not replicated is refused with an
#     error that says so; a transaction begun for A alone that strays into B fails
#     with ErrCrossControllerTx;
#  6. (as root, where network namespaces work; else it says it skipped) a new cluster
#     in three namespaces on a bridge: while a run of transfers goes on, the leader of
#     A, then of B, is cut off with iptables for 2 s and healed: after recovery no
#     intent or decision is left, the total is 400 and the ledger equals B's gain.
# Usage: txn.sh AVMD AVMCTL
# Environment: AVM_TIME_FACTOR scales the bounds; AVM_TXN_ROUNDS the fault rounds;
# AVM_KEEP keeps the temp directory and the logs.
set -u
AVMD=$1 AVMCTL=$2
F=${AVM_TIME_FACTOR:-1}
ROUNDS=${AVM_TXN_ROUNDS:-6}
dir=$(mktemp -d "${TMPDIR:-/tmp}/avm-txn-XXXXXX") || exit 2
D=$dir # the nodes' sockets, data and logs
pid_n1= pid_n2= pid_n3= NETNS=
. "$(dirname "$0")/netns.sh"
cleanup() {
  for p in "$pid_n1" "$pid_n2" "$pid_n3"; do
    [ -n "$p" ] && kill -CONT "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null
  done
  wait 2>/dev/null
  for ns in $NETNS; do ip netns del "$ns" 2>/dev/null; done
  [ -n "${AVM_KEEP:-}" ] && echo "kept $dir" || rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
pass=0 fails=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fails=$((fails + 1)); }
check() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got '$2', expected '$3'"; fi; }
ms() { date +%s%3N; }
t() { echo $(($1 * F)); }
ctl() { node=$1; shift; "$AVMCTL" "$@" --node "ipc://$D/$node.sock"; }
pid_of() { eval "echo \$pid_$1"; }
alive() { [ -n "$(pid_of "$1")" ]; }
others() { for o in n1 n2 n3; do [ "$o" != "$1" ] && echo "$o"; done; }
rand() { od -An -N2 -tu2 /dev/urandom | awk -v n="$1" '{print $1 % n}'; }

start() {
  name=$1
  join=""
  for o in $(others "$name"); do
    alive "$o" && { join="--join ipc://$D/$o.sock"; break; }
  done
    pre="" listen=tcp://127.0.0.1:0
  ns=$(eval "echo \${ns_$name:-}")
  if [ -n "$ns" ]; then
    pre="ip netns exec $ns"
    listen="tcp://$NET.${name#n}:0"
  fi
  # shellcheck disable=SC2086
  $pre "$AVMD" --name "$name" --controller "c$name" --data "$D/$name" \
    --control "ipc://$D/$name.sock" --listen "$listen" --log-format json \
    --fd-bound-ms "$(t 1000)" $join 2>>"$D/$name.log" &
  eval "pid_$name=$!"
  end=$(($(ms) + $(t 10000)))
  while [ "$(ms)" -lt $end ]; do
    ctl "$name" status --timeout 200 >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "avmd $name did not come up:"; tail -20 "$D/$name.log"; exit 1
}
kill9() { p=$(pid_of "$1"); kill -9 "$p"; wait "$p" 2>/dev/null; eval "pid_$1="; }
wait_for() {
  end=$(($(ms) + $1)); shift
  while :; do
    eval "$*" && return 0
    [ "$(ms)" -ge $end ] && return 1
    sleep 0.1
  done
}
leader_of() {
  ctl "${2:-n1}" controller status "$1" --json --timeout 2000 2>/dev/null |
    jq -r 'select(.quorum == true) | .leader // empty' 2>/dev/null
}
# pending GROUP: intents + decisions the group's leader holds.
pending() {
  ctl n1 controller status "$1" --json --timeout 2000 2>/dev/null |
    jq -r '(.intents // 99) + (.decisions // 99)' 2>/dev/null
}
# run_wait NODE ID MS: waits for execution ID to end; prints its JSON.
run_wait() {
  wait_for "$(t "$3")" "[ \"\$(ctl $1 exec show $2 --json 2>/dev/null | jq -r .status)\" != running ]"
  ctl "$1" exec show "$2" --json 2>/dev/null
}

# --- Programs -----------------------------------------------------------------------
cat >"$dir/setup.avm" <<'EOF'
(behavior account
  (let ((msg (input)))
    (if (= (nth msg 0) 'add)
        (let ((bal (if (= (length (getState)) 0) 0 (nth (getState) 0))))
          (setState (list (+ bal (nth msg 1))))
          (list (+ bal (nth msg 1))))
        (list (if (= (length (getState)) 0) 0 (nth (getState) 0))))))
(defun make (c amt)
  (let ((tx (beginTx c))
        (a (createObj "account" c)))
    (call a (list 'add amt))
    (commitTx tx)
    a))
(main (list (make #ctl"A" 100) (make #ctl"A" 100) (make #ctl"B" 100) (make #ctl"B" 100)
            (make #ctl"A" 0) (make #ctl"A" 0)))
EOF

start n1
start n2
start n3
for g in A B; do
  out=$(ctl n1 controller create $g --replicas n1,n2,n3 --json 2>&1)
  check "controller create $g --replicas n1,n2,n3" "$(echo "$out" | jq -r .name 2>/dev/null)" $g
done
wait_for "$(t 5000)" '[ -n "$(leader_of A)" ] && [ -n "$(leader_of B)" ]' &&
  ok "A and B have leaders" || bad "no leaders: $(ctl n1 controller ls 2>&1)"
# Every node knows the leaders (gossip) before programs use the controllers.
wait_for "$(t 5000)" '[ "$(ctl n2 controller ls --json 2>/dev/null | jq -r "[.controllers[] | .[1] // empty] | length")" = 2 ] && [ "$(ctl n3 controller ls --json 2>/dev/null | jq -r "[.controllers[] | .[1] // empty] | length")" = 2 ]' ||
  bad "not every node knows the leaders: $(ctl n3 controller ls 2>&1)"

ids=$(ctl n1 run "$dir/setup.avm" --timeout "$(t 20000)" 2>&1)
set -- $(echo "$ids" | grep -o '#obj"[^"]*"')
if [ $# -ne 6 ]; then
  bad "setup made six objects: $ids"
  echo "txn: $pass passed, $fails failed"; exit 1
fi
A1=$1 A2=$2 B1=$3 B2=$4 L=$5 X=$6
ok "setup: accounts $A1 $A2 (A), $B1 $B2 (B), ledger $L, object $X"

programs() {
# xfer.avm N: N transfers of 1 from an A account to a B account, each counted in the
# ledger, in one transaction over A and B; returns how many committed.
cat >"$dir/xfer.avm" <<EOF
(defun transfer (a b)
  (let ((tx (beginTx (list #ctl"A" #ctl"B"))))
    (call a (list 'add -1))
    (call b (list 'add 1))
    (call $L (list 'add 1))
    (commitTx tx)))
(defun loop (n ok)
  (if (= n 0) ok
      (loop (- n 1) (if (transfer (if (= (mod n 2) 0) $A1 $A2) (if (= (mod n 3) 0) $B1 $B2))
                        (+ ok 1) ok))))
(main (loop 40 0))
(defun long () (loop 400 0))
EOF
# check.avm: (total ledger gainB)
cat >"$dir/check.avm" <<EOF
(defun bal (o) (call o (list 'get)))
(main (let ((a (+ (bal $A1) (bal $A2))) (b (+ (bal $B1) (bal $B2))))
  (list (+ a b) (bal $L) (- b 200))))
EOF
}
programs
# state [NODE]: (total ledger gainB), asked again for a while if the machine holding
# the accounts is not reachable yet (just healed or restarted).
state() {
  end=$(($(ms) + $(t 15000)))
  while :; do
    st_=$(ctl "${1:-n1}" run "$dir/check.avm" --timeout "$(t 20000)" 2>&1)
    case "$st_" in '('*) break ;; esac
    [ "$(ms)" -ge $end ] && break
    sleep 0.3
  done
  echo "$st_"
}
# bank_whole LABEL NODE MS: once recovery has finished what a fault left in doubt (no
# intent or decision left, within MS), the bank is whole: total 400, ledger = B's gain
# (a read outside transactions may see one participant's part before the other's, so
# it waits first). Sets bank_ledger.
bank_whole() {
  wait_for "$(t "$3")" '[ "$(pending A)" = 0 ] && [ "$(pending B)" = 0 ]' &&
    ok "$1: no intent or decision left" ||
    bad "$1: left in A: $(pending A), in B: $(pending B)"
  bw_=$(state "$2")
  set -- "$1" $(echo "$bw_" | tr -d '()')
  if [ "${2:-}" = 400 ] && [ "${3:-x}" = "${4:-y}" ]; then
    ok "$1: total 400, ledger = B's gain ($3)"
  else
    bad "$1: $bw_ (total, ledger, B's gain)"
  fi
  bank_ledger=${3:-0}
}
ledger() { state "${1:-n1}" | awk '{gsub(/[()]/, ""); print $2}'; }

# --- 1. Concurrent transfers over both controllers -----------------------------------
echo "--- 1. transfers over A and B from three nodes at once"
ids=""
for n in n1 n2 n3; do ids="$ids $n:$(ctl $n run "$dir/xfer.avm" --detach 2>&1)"; done
sum=0 lost=0
for e in $ids; do
  n=${e%%:*} id=${e#*:}
  js=$(run_wait "$n" "$id" 60000)
  r=$(echo "$js" | jq -r '.result // empty')
  case "$r" in
    ''|*[!0-9]*)
      # A run may fail when the machine it visits is deemed unreachable (a loaded
      # machine); it must say so, and what it committed still counts below.
      case "$(echo "$js" | jq -r .error)" in
        *nreachable*) ok "$id failed with a clear error: $(echo "$js" | jq -r .error)"; lost=1 ;;
        *) bad "$id did not return a count: $js" ;;
      esac
      r=0 ;;
  esac
  sum=$((sum + r))
done
[ $sum -gt 0 ] && ok "transfers committed: $sum of 120" || bad "no transfer committed"
wait_for "$(t 10000)" '[ "$(pending A)" = 0 ] && [ "$(pending B)" = 0 ]' &&
  ok "no intent or decision left in A or B" ||
  bad "left in A: $(pending A), in B: $(pending B)"
s=$(state)
set -- $(echo "$s" | tr -d '()')
if [ $lost -eq 0 ]; then
  check "total 400, ledger = transfers applied = committed counts" "$s" "(400 $sum $sum)"
elif [ "${1:-}" = 400 ] && [ "${2:-x}" = "${3:-y}" ] && [ "${2:-0}" -ge $sum ]; then
  ok "total 400, ledger = transfers applied ($2) >= the counts returned ($sum)"
else
  bad "total 400, ledger = transfers applied >= committed counts: $s, counts $sum"
fi

# --- 2. Faults ------------------------------------------------------------------------
echo "--- 2. transfers while nodes are killed or paused ($ROUNDS rounds)"
round=1
while [ $round -le "$ROUNDS" ]; do
  T=n$(( $(rand 3) + 1 ))
  before=$(ledger "$T")
  id=$(ctl "$T" run "$dir/xfer.avm" --entry long --detach 2>&1)
  case "$id" in "$T"/x*) ;; *) bad "round $round: the run did not start on $T: $id"; round=$((round + 1)); continue ;; esac
  sleep "0.$(( $(rand 9) + 1 ))"
  case $(rand 4) in
    0) V=$(leader_of A "$T") ;;
    1) V=$(leader_of B "$T") ;;
    2) V=$T ;;
    *) V=n$(( $(rand 3) + 1 )) ;;
  esac
  [ -z "$V" ] && V=$T
  if [ $(rand 3) -eq 0 ]; then
    how=paused
    p=$(pid_of "$V"); kill -STOP "$p"; sleep 1.5; kill -CONT "$p"
  else
    how=killed
    kill9 "$V"; sleep 0.5; start "$V"
  fi
  js=$(run_wait "$T" "$id" 120000)
  out=$(echo "$js" | jq -r .outcome 2>/dev/null)
  committed=$(echo "$js" | jq -r '.result // empty' 2>/dev/null)
  bank_whole "round $round ($V $how while $T ran it)" "$T" 15000
  after=$bank_ledger
  if [ "$out" = done ] && [ "$V" != "$T" -o $how = paused ]; then
    check "round $round: the ledger grew by the $committed transfers the run committed" \
      $((after - before)) "$committed"
  elif [ "$out" = done ]; then
    [ $((after - before)) -ge "${committed:-0}" ] &&
      ok "round $round: every acknowledged transfer is applied ($((after - before)) >= $committed; the run resumed after its node died)" ||
      bad "round $round: the ledger grew by $((after - before)), the run committed $committed"
  else
    e=$(echo "$js" | jq -r .error 2>/dev/null)
    case "$e" in
      *'#ctl"'*|*controller*|*nreachable*) ok "round $round: the run failed with a clear error: $e" ;;
      *) bad "round $round: the run ended $out: $js" ;;
    esac
  fi
  round=$((round + 1))
done

# --- 3. transferObject between controllers under concurrent commits -------------------
echo "--- 3. transferObject back and forth while others commit on the object"
cat >"$dir/mover.avm" <<EOF
(defun move ()
  (let ((tx (beginTx)))
    (let ((c (getController $X)))
      (transferObject $X (if (= c #ctl"A") #ctl"B" #ctl"A"))
      (commitTx tx))))
(defun loop (n ok) (if (= n 0) ok (loop (- n 1) (if (move) (+ ok 1) ok))))
(main (loop 60 0))
EOF
cat >"$dir/incr.avm" <<EOF
(defun inc ()
  (let ((tx (beginTx)))
    (call $X (list 'add 1))
    (commitTx tx)))
(defun loop (n ok) (if (= n 0) ok (loop (- n 1) (if (inc) (+ ok 1) ok))))
(main (loop 100 0))
EOF
cat >"$dir/where.avm" <<EOF
(main (list (getController $X) (call $X (list 'get))))
EOF
m=$(ctl n1 run "$dir/mover.avm" --detach 2>&1)
i2=$(ctl n2 run "$dir/incr.avm" --detach 2>&1)
i3=$(ctl n3 run "$dir/incr.avm" --detach 2>&1)
moves=$(run_wait n1 "$m" 60000 | jq -r '.result // empty')
c2=$(run_wait n2 "$i2" 60000 | jq -r '.result // empty')
c3=$(run_wait n3 "$i3" 60000 | jq -r '.result // empty')
case "$moves$c2$c3" in *[!0-9]*|'') bad "a run failed: moves '$moves', increments '$c2' '$c3'" ;; esac
[ "${moves:-0}" -gt 0 ] && ok "$moves transfers between A and B committed" || bad "no transfer committed"
inc=$((${c2:-0} + ${c3:-0}))
w1=$(ctl n1 run "$dir/where.avm" 2>&1)
check "the object counts exactly the $inc increments committed" "$(echo "$w1" | awk '{gsub(/[()]/, ""); print $2}')" "$inc"
want=$([ $((${moves:-0} % 2)) -eq 0 ] && echo A || echo B)
check "its controller is $want after $moves transfers" "$w1" "(#ctl\"$want\" $inc)"
for n in n2 n3; do
  check "$n agrees" "$(ctl $n run "$dir/where.avm" 2>&1)" "$w1"
done
for n in n1 n2 n3; do
  check "$n holds the record under $want" \
    "$(ctl $n obj show "$(echo "$X" | sed 's/#obj"\(.*\)"/\1/')" --json 2>/dev/null | jq -r .current.controller)" "$want"
done
wait_for "$(t 10000)" '[ "$(pending A)" = 0 ] && [ "$(pending B)" = 0 ]' &&
  ok "no intent or decision left" || bad "left in A: $(pending A), in B: $(pending B)"

# --- 4. Composed commits -------------------------------------------------------------
echo "--- 4. composed commits (bundles)"
seg() { # seg FILE OBJ AMOUNT CTRL [abort]
  if [ -n "${5:-}" ]; then end="(abortTx tx) 'aborted"; else end="(commitTx tx)"; fi
  printf '(main (let ((tx (beginTx %s)))\n  (call %s (list (quote add) %s))\n  %s))\n' \
    "$4" "$2" "$3" "$end" >"$1"
}
seg "$dir/s1.avm" "$A1" -5 '#ctl"A"'
seg "$dir/s2.avm" "$B1" 5 '#ctl"B"'
seg "$dir/s3.avm" "$L" 1 '#ctl"A"'
seg "$dir/s3x.avm" "$L" 1 '#ctl"A"' abort
printf '(main (do (joinBundle "%s")\n  (let ((tx (beginTx #ctl"A")))\n    (call %s (list (quote add) 1))\n    (commitTx tx))))\n' \
  "jb@n2" "$L" >"$dir/sj.avm"
before=$(state n1)
ctl n1 bundle create bad 3 >/dev/null
i1=$(ctl n1 run "$dir/s1.avm" --bundle bad@n1 --detach 2>&1)
i2=$(ctl n2 run "$dir/s2.avm" --bundle bad@n1 --detach 2>&1)
r3=$(ctl n3 run "$dir/s3x.avm" --bundle bad@n1 2>&1)
check "the third member aborts" "$r3" '"aborted"'
check "the first member's commit returns false" "$(run_wait n1 "$i1" 20000 | jq -r .result)" false
check "the second member's commit returns false" "$(run_wait n2 "$i2" 20000 | jq -r .result)" false
check "the bundle is aborted" "$(ctl n2 bundle status bad@n1 --json | jq -r .state)" aborted
check "nothing applied" "$(state n1)" "$before"
ctl n1 bundle create good 3 >/dev/null
i1=$(ctl n1 run "$dir/s1.avm" --bundle good@n1 --detach 2>&1)
i2=$(ctl n2 run "$dir/s2.avm" --bundle good@n1 --detach 2>&1)
r3=$(ctl n3 run "$dir/s3.avm" --bundle good@n1 2>&1)
check "all three members' commits return true" \
  "$r3 $(run_wait n1 "$i1" 20000 | jq -r .result) $(run_wait n2 "$i2" 20000 | jq -r .result)" "#t true true"
set -- $(echo "$before" | tr -d '()')
check "everything applied (A1 -5, B1 +5, ledger +1)" "$(state n1)" "($1 $(($2 + 1)) $(($3 + 5)))"
ctl n2 bundle create seq 2 >/dev/null
ctl n2 bundle create jb 2 >/dev/null
# where.avm reads n1's replica of X's group outside a transaction: it may lag the
# group's leader by a heartbeat. Start from a value every replica agrees on, and give
# n1's replica a bounded time to apply the bundle's commit.
count_on() { ctl "$1" run "$dir/where.avm" 2>&1 | awk '{gsub(/[()]/, ""); print $2}'; }
wait_for "$(t 5000)" '[ "$(count_on n1)" = "$(count_on n2)" ] && [ "$(count_on n2)" = "$(count_on n3)" ]'
v0=$(count_on n1)
seg "$dir/x1.avm" "$X" 10 '(getController '"$X"')'
i1=$(ctl n1 run "$dir/x1.avm" --bundle seq@n2 --detach 2>&1)
wait_for "$(t 5000)" '[ "$(ctl n1 bundle status seq@n2 --json | jq -r .joined)" = 1 ]'
r2=$(ctl n3 run "$dir/x1.avm" --bundle seq@n2 2>&1)
check "a member started after another builds on its writes: both commit" \
  "$r2 $(run_wait n1 "$i1" 20000 | jq -r .result)" "#t true"
wait_for "$(t 5000)" '[ "$(count_on n1)" = $((v0 + 20)) ]'
check "... and the object counts both (+10 +10)" "$(count_on n1)" $((v0 + 20))
wait_for "$(t 5000)" '[ "$(ledger n1)" = "$(ledger n2)" ] && [ "$(ledger n2)" = "$(ledger n3)" ]'
l0=$(ledger n1)
i1=$(ctl n1 run "$dir/sj.avm" --detach 2>&1)
r2=$(ctl n3 run "$dir/s3.avm" --bundle jb@n2 2>&1)
check "a member that joined with joinBundle and one with run --bundle both commit" \
  "$r2 $(run_wait n1 "$i1" 20000 | jq -r .result)" "#t true"
wait_for "$(t 5000)" '[ "$(ledger n1)" = $((l0 + 2)) ]'
check "... the ledger counts both" "$(ledger n1)" $((l0 + 2))

# --- 4b. Intent matching (nondeterministic choices settled across members) ----------
echo "--- 4b. intent matching (examples/intents/settle.sh)"
for sc in swap swap-refused ring ring-pair; do
  out=$(AVMCTL=$AVMCTL sh "$(dirname "$0")/../../examples/intents/settle.sh" "$sc" \
    "ipc://$D/n1.sock" "ipc://$D/n2.sock" "ipc://$D/n3.sock" 2>&1)
  rc=$?
  last=$(echo "$out" | tail -1)
  if [ $rc -eq 0 ]; then ok "$sc: $last"; else bad "$sc: $(echo "$out" | tr '\n' ' ')"; fi
done

# --- 5. Refusals ----------------------------------------------------------------------
echo "--- 5. refusals"
printf '(behavior nop (list 0))\n(main (let ((tx (beginTx (list #ctl"A" #ctl"cn1"))))\n  (call %s (list (quote add) 1))\n  (createObj "nop" #ctl"cn1")\n  (commitTx tx)))\n' \
  "$A1" >"$dir/unrep.avm"
out=$(ctl n1 run "$dir/unrep.avm" 2>&1)
case "$out" in
  *"not replicated"*) ok "a transaction over A and cn1 (not replicated) is refused: $out" ;;
  *) bad "a transaction over A and cn1: $out" ;;
esac
printf '(main (let ((tx (beginTx #ctl"A")))\n  (call %s (list (quote add) 1))\n  (call %s (list (quote add) 1))\n  (commitTx tx)))\n' \
  "$A1" "$B1" >"$dir/stray.avm"
out=$(ctl n1 run "$dir/stray.avm" 2>&1)
case "$out" in
  *ErrCrossControllerTx*) ok "a transaction of A that strays into B fails: $out" ;;
  *) bad "a transaction of A that strays into B: $out" ;;
esac

# --- The end of the first cluster, and 6. Partitions ----------------------------------
stop_all() {
  for n in n1 n2 n3; do
    p=$(pid_of $n)
    kill -TERM "$p"
    wait "$p"
    rc=$?
    check "$n stops cleanly on SIGTERM" "$rc" 0
    [ "$rc" -eq 0 ] || { echo "  the end of $n's log:"; tail -20 "$D/$n.log" | sed 's/^/  /'; }
    eval "pid_$n="
  done
  for n in n1 n2 n3; do
    e=$(grep -E 'AddressSanitizer|LeakSanitizer|runtime error:' "$D/$n.log" | head -3)
    [ -z "$e" ] || bad "$n: a sanitizer report in its log: $e"
    e=$(grep '"level":"error"' "$D/$n.log" | grep -v 'no leader committed\|did not answer' | head -3)
    [ -z "$e" ] && ok "$n logged no errors" || bad "$n logged errors: $e"
  done
}
stop_all

echo "--- 6. transfers while the leader of A, then of B, is cut off (network namespaces)"
if ! netns_setup "avt$$" >"$dir/netns.why"; then
  echo "SKIP partition: $(cat "$dir/netns.why")"
else
  D=$dir/p
  mkdir -p "$D"
  start n1
  start n2
  start n3
  for g in A B; do ctl n1 controller create $g --replicas n1,n2,n3 >/dev/null 2>&1; done
  wait_for "$(t 10000)" '[ "$(ctl n2 controller ls --json 2>/dev/null | jq -r "[.controllers[] | .[1] // empty] | length")" = 2 ] && [ "$(ctl n3 controller ls --json 2>/dev/null | jq -r "[.controllers[] | .[1] // empty] | length")" = 2 ]' ||
    bad "partition: no leaders: $(ctl n1 controller ls 2>&1)"
  ok "namespaces up: the links are on $NET.0/24"
  set -- $(ctl n1 run "$dir/setup.avm" --timeout "$(t 20000)" 2>&1 | grep -o '#obj"[^"]*"')
  A1=${1:-} A2=${2:-} B1=${3:-} B2=${4:-} L=${5:-} X=${6:-}
  programs
  for g in A B; do
    T=n$(( $(rand 3) + 1 ))
    id=$(ctl "$T" run "$dir/xfer.avm" --entry long --detach 2>&1)
    sleep 0.5
    V=$(leader_of $g "$T")
    [ -z "$V" ] && V=n1
    nsV=$(eval "echo \$ns_$V")
    ip netns exec "$nsV" iptables -A INPUT ! -i lo -j DROP &&
      ip netns exec "$nsV" iptables -A OUTPUT ! -o lo -j DROP
    check "the leader of $g ($V) is cut off while $T runs transfers" "$?" 0
    sleep 2
    ip netns exec "$nsV" iptables -F
    js=$(run_wait "$T" "$id" 120000)
    case "$(echo "$js" | jq -r .outcome 2>/dev/null)" in
      done) ok "the run on $T completed: $(echo "$js" | jq -r .result) transfers committed" ;;
      *) case "$(echo "$js" | jq -r .error)" in
           *'#ctl"'*|*controller*|*nreachable*) ok "the run on $T failed with a clear error: $(echo "$js" | jq -r .error)" ;;
           *) bad "the run on $T: $js" ;;
         esac ;;
    esac
        bank_whole "$g's leader cut off, healed" "$T" 20000
  done
  stop_all
fi
echo "txn: $pass passed, $fails failed"
[ $fails -eq 0 ]
