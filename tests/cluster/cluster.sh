#!/bin/sh
# Three avmd processes on loopback form a cluster (n2 and n3 join n1 through its
# control socket) and are driven by avmctl: membership and reachability as every
# member sees it; the spec's examples with their objects spread over the three
# nodes give the single-node results; remote calls inside a transaction;
# executeRemote (run --on) with the result and trace from any node; teleport;
# moveObject then call; fetch, a write elsewhere, freeze; SIGSTOP and SIGKILL of a
# member: reachability flips within the bound and recovers, calls fail cleanly with
# ErrMachineUnreachable and later succeed, and a counter driven through pauses
# counts every call exactly once.
# Usage: cluster.sh AVMD AVMCTL SOURCE_DIR [pipelined|durable [LINK_PROBE]]
set -u
AVMD=$1 AVMCTL=$2 SRC=$3 COMMIT=${4:-pipelined} PROBE=${5:-}
dir=$(mktemp -d "${TMPDIR:-/tmp}/avm-cluster-XXXXXX") || exit 2
pid_n1= pid_n2= pid_n3=
cleanup() {
  for p in "$pid_n1" "$pid_n2" "$pid_n3"; do
    [ -n "$p" ] && kill -CONT "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null
  done
  [ -n "${AVM_KEEP:-}" ] && echo "kept $dir" || rm -rf "$dir"
}
trap cleanup EXIT
pass=0 fails=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fails=$((fails + 1)); }
check() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got '$2', expected '$3'"; fi; }
# The failure detector's bound (ms): a member silent this long is unreachable.
BOUND=1000

ctl() { node=$1; shift; "$AVMCTL" "$@" --node "ipc://$dir/$node.sock"; }
ms() { date +%s%3N; }

# start NAME [avmd flags...]: n1 starts the cluster, the others join it.
start() {
  name=$1; shift
  join=""
  [ "$name" != n1 ] && join="--join ipc://$dir/n1.sock"
  # shellcheck disable=SC2086
  "$AVMD" --name "$name" --controller "c$name" --data "$dir/$name" \
    --control "ipc://$dir/$name.sock" --listen tcp://127.0.0.1:0 --commit "$COMMIT" \
    --fd-bound-ms $BOUND --log-format json $join "$@" 2>>"$dir/$name.log" &
  eval "pid_$name=$!"
  i=0
  while [ $i -lt 100 ]; do
    ctl "$name" status --timeout 200 >/dev/null 2>&1 && return 0
    sleep 0.1; i=$((i + 1))
  done
  echo "avmd $name did not come up:"; cat "$dir/$name.log"; exit 1
}
pid_of() { eval "echo \$pid_$1"; }

# up_count NODE: how many (viewer, member) pairs NODE's cluster status shows up.
up_count() {
  ctl "$1" cluster status --json 2>/dev/null |
    jq '[.views[] | .[1] | select(type == "array") | .[] | select(.[1] == true)] | length'
}
# seen_up FROM MEMBER: whether FROM's own view has MEMBER up (true/false).
seen_up() {
  ctl "$1" cluster status --json 2>/dev/null |
    jq --arg f "$1" --arg m "$2" \
      '.views[] | select(.[0] == $f) | .[1][] | select(.[0] == $m) | .[1]' 2>/dev/null
}
# until_eq DESC EXPECTED EXPR [TENTHS]: polls EXPR until it prints EXPECTED.
until_eq() {
  j=0 lim=${4:-200}
  while [ $j -lt "$lim" ]; do
    v=$(eval "$3")
    [ "$v" = "$2" ] && break
    sleep 0.1; j=$((j + 1))
  done
  check "$1" "$v" "$2"
}
# down_at NODE PEER: when NODE last logged PEER unreachable (ms since the epoch).
down_at() {
  ts=$(grep '"event":"peer.unreachable"' "$dir/$1.log" | grep "\"peer\":\"$2\"" | tail -1 |
    jq -r .ts)
  date -d "$ts" +%s%3N
}
norm() { sed -E 's#(node1|n[0-9])/[0-9]+#OBJ#g'; }

start n1
start n2
start n3 --placement spread

# --- Membership ---------------------------------------------------------------
until_eq "every member sees the two others up (from n2)" 6 "up_count n2"
check "n3 knows n2 through the member list (gossip)" \
  "$(ctl n3 cluster status --json | jq -c '[.members[][0]] | sort')" '["n1","n2","n3"]'
check "each member's controller is known" \
  "$(ctl n1 cluster status --json | jq -c '[.members[] | .[2]] | sort')" '["cn1","cn2","cn3"]'
out=$(ctl n1 cluster status)
rows=$(echo "$out" | grep -c '^n[123]  *tcp://127.0.0.1:[0-9]*  *cn[123]')
check "cluster status lists the three members as text" "$rows" 3
case "$out" in *"n2=up"*"n3=up"*) ok "cluster status shows reachability as text" ;;
  *) bad "cluster status as text: $out" ;; esac
"$AVMCTL" cluster status --node "ipc://$dir/n1.sock" --json >/dev/null 2>&1
check "cluster status exits 0" "$?" 0
msg=$("$AVMCTL" status --node "ipc://$dir/n1.sock" >/dev/null 2>&1; \
      "$AVMCTL" run "$SRC/examples/ping_pong.avm" --node "ipc://$dir/n1.sock" --on nX 2>&1)
case "$msg" in *"nX is not a member"*) ok "run --on an unknown machine is refused" ;;
  *) bad "run --on an unknown machine: $msg" ;; esac

# --- The examples with their objects spread over the three nodes -----------------
for entry in main test-simple; do
  e=""; [ "$entry" = main ] || e="--entry $entry"
  a=$(ctl n3 run "$SRC/examples/ping_pong.avm" $e 2>&1 | norm)
  b=$("$AVMCTL" run "$SRC/examples/ping_pong.avm" $e --ephemeral 2>&1 | norm)
  check "ping_pong $entry spread over 3 nodes = one node" "$a" "$b"
done
for entry in test-hit test-miss setup-game play-full-game play-game-with-player-type \
             game-with-rollback; do
  a=$(ctl n3 run "$SRC/examples/battleship.avm" --entry $entry 2>&1 | norm)
  b=$("$AVMCTL" run "$SRC/examples/battleship.avm" --entry $entry --ephemeral 2>&1 | norm)
  check "battleship $entry spread over 3 nodes = one node" "$a" "$b"
done
moves=$(ctl n3 run "$SRC/examples/ping_pong.avm" --trace 2>&1 | grep -c 'ExecutionLeft')
[ "$moves" -ge 2 ] && ok "spread ping_pong really crosses machines ($moves moves)" ||
  bad "spread ping_pong crossed machines $moves times"

# --- Remote calls, inside a transaction -------------------------------------------
cat >"$dir/tx.avm" <<'AVM'
(behavior counter
  (let ((st (getState))
        (n (if (= (length st) 0) 0 (nth st 0))))
    (setState (list (+ n (input))))
    (list (list (+ n (input)) (getCurrentMachine)))))
(main
  (do
    (teleport (machine "n2"))
    (let ((tx (beginTx))
          (c (createObj "counter")))
      (commitTx tx)
      (teleport (machine "n1"))
      (let ((tx2 (beginTx))
            (a (call c 5))
            (b (call c 7)))
        (let ((ok (commitTx tx2)))
          (list a b ok (getController c) (getMachine c) (getCurrentMachine)
                (call c 0)))))))
AVM
check "remote calls in a transaction: the context travels and comes back" \
  "$(ctl n1 run "$dir/tx.avm" 2>&1)" \
  '((5 #mach"n2") (12 #mach"n2") #t #ctl"cn2" #mach"n2" #mach"n1" (12 #mach"n2"))'

# --- executeRemote -------------------------------------------------------------------
id=$(ctl n2 run "$dir/tx.avm" --on n3 --detach 2>&1)
case "$id" in n3/x*) ok "run --on n3 from n2 starts it on n3 ($id)" ;; *) bad "run --on: $id" ;; esac
until_eq "its result from n1" \
  '((5 #mach"n2") (12 #mach"n2") #t #ctl"cn2" #mach"n2" #mach"n1" (12 #mach"n2"))' \
  "ctl n1 exec result $id 2>&1"
t1=$(ctl n1 exec trace "$id" 2>&1) t3=$(ctl n3 exec trace "$id" 2>&1)
check "its trace is the same from n1 and from n3" "$t1" "$t3"
case "$t1" in *"ExecutionMoved"*) ok "its trace shows ExecutionMoved" ;;
  *) bad "trace without ExecutionMoved: $t1" ;; esac
check "exec ls on n3 lists it" "$(ctl n3 exec ls --json | jq -r --arg i "$id" '.executions[] | select(.id == $i) | .outcome')" done

# --- Messages to an object of another member ---------------------------------------------
printf '(behavior box (list (receive)))\n(main (let ((b (createObj "box"))) (call b 0)))\n' \
  >"$dir/recv.avm"
rid=$(ctl n1 run "$dir/recv.avm" --on n2 --detach 2>&1)
until_eq "a receiver on n2 waits for a message (seen from n3)" message \
  "ctl n3 exec show $rid --json | jq -r .waiting"
box=$(ctl n3 exec show "$rid" --json | jq -r .blocked_on.object)
ctl n1 send "$box" '"hello"' >/dev/null 2>&1
check "avmctl send through n1 reaches the object on n2" "$?" 0
until_eq "the receiver got it" '"hello"' "ctl n3 exec result $rid 2>&1"
check "obj show through n3 shows n2's object" \
  "$(ctl n3 obj show "$box" --json | jq -r .machine.machine)" n2

# A receiver on an object moved to n2 (its record stays on n1): a message sent through
# n3 goes to n1 (the machine the id names), then to n2 (where its receive runs).
printf '%s\n%s\n' '(behavior box (list (receive)))' \
  '(main (let ((tx (beginTx)) (b (createObj "box"))) (commitTx tx) (moveObject b (machine "n2")) (list (call b 0) (getMachine b))))' \
  >"$dir/mrecv.avm"
mid=$(ctl n1 run "$dir/mrecv.avm" --detach 2>&1)
until_eq "the receiver on the moved object is away on n2" n2 \
  "ctl n1 exec show $mid --json | jq -r .away.machine"
mbox=$(ctl n1 exec trace "$mid" | grep -o 'ObjectCreated #obj"[^"]*"' | head -1 |
  sed 's/.*#obj"\(.*\)"/\1/')
ctl n3 send "$mbox" '"moved-hello"' >/dev/null 2>&1
check "a message through n3 to the moved object is accepted" "$?" 0
until_eq "it reaches the receiver on n2" '("moved-hello" #mach"n2")' \
  "ctl n2 exec result $mid 2>&1"

# --- teleport --------------------------------------------------------------------------
cat >"$dir/tp.avm" <<'AVM'
(main
  (let ((a (getCurrentMachine))
        (t1 (teleport (machine "n2")))
        (b (getCurrentMachine))
        (t2 (teleport (machine "n3")))
        (c (getCurrentMachine)))
    (list a b c)))
(defun to-nowhere () (teleport (machine "nowhere")))
(defun in-tx () (let ((tx (beginTx))) (teleport (machine "n2"))))
AVM
check "teleport n1 -> n2 -> n3" "$(ctl n1 run "$dir/tp.avm" 2>&1)" '(#mach"n1" #mach"n2" #mach"n3")'
check "teleport to an unknown machine fails cleanly" \
  "$(ctl n1 run "$dir/tp.avm" --entry to-nowhere 2>&1 | sed 's/ (at.*//')" \
  'error: MachineError.ErrMachineUnreachable #mach"nowhere"'
check "teleport inside a transaction is refused" \
  "$(ctl n1 run "$dir/tp.avm" --entry in-tx 2>&1 | sed 's/ (at.*//')" \
  'error: TxError.ErrInvalidDuringTx "teleport"'

# --- moveObject, fetch, a write elsewhere, freeze ------------------------------------------
cat >"$dir/mf.avm" <<'AVM'
(behavior box
  (if (= (input) 'get)
      (list (list (getState) (getCurrentMachine)))
      (do (setState (list (input))) (list (list (input) (getCurrentMachine))))))
(main
  (let ((tx (beginTx)) (b (createObj "box")))
    (commitTx tx)
    (let ((r1 (call b 1))
          (m1 (moveObject b (machine "n3")))
          (r2 (call b 'get))
          (t1 (teleport (machine "n2")))
          (f (fetch b))
          (r3 (call b 'get))
          (t2 (teleport (machine "n3")))
          (tx2 (beginTx))
          (r4 (call b 5))
          (ok (commitTx tx2))
          (t3 (teleport (machine "n2")))
          (tx3 (beginTx (controller "cn1")))
          (fr (freeze b))
          (ok3 (commitTx tx3))
          (r6 (call b 'get)))
      (list r1 r2 (getMachine b) r3 r4 ok fr r6))))
AVM
check "moveObject then call runs there; fetch makes a replica; freeze reconciles" \
  "$(ctl n1 run "$dir/mf.avm" 2>&1)" \
  '((1 #mach"n1") ((1) #mach"n3") #mach"n2" ((1) #mach"n2") (5 #mach"n2") #t #t ((5) #mach"n2"))'

# --- Failures: SIGSTOP ----------------------------------------------------------------------
cat >"$dir/mk.avm" <<'AVM'
(behavior counter
  (let ((st (getState)) (n (if (= (length st) 0) 0 (nth st 0))))
    (setState (list (+ n (input))))
    (list (+ n (input)))))
(main (let ((tx (beginTx)) (c (createObj "counter"))) (commitTx tx) c))
AVM
oid=$(ctl n1 run "$dir/mk.avm" --on n2 2>&1 | sed 's/#obj"\(.*\)"/\1/')
case "$oid" in n2/*) ok "a counter on n2 ($oid)" ;; *) bad "counter on n2: $oid" ;; esac
cat >"$dir/spin.avm" <<AVM
(defun spin (c i n) (if (< i n) (do (call c 1) (spin c (+ i 1) n)) i))
(main (spin (object-id "$oid") 0 100000000))
(defun once () (call (object-id "$oid") 0))
(defun counted () (spin (object-id "$oid") 0 300))
AVM
check "a call from n1 to n2's counter" "$(ctl n1 run "$dir/spin.avm" --entry once 2>&1)" 0
sid=$(ctl n1 run "$dir/spin.avm" --detach 2>&1)
sleep 0.5
check "calls from n1 to n2 in a loop are running" \
  "$(ctl n1 exec show "$sid" --json | jq -r .status)" running
kill -STOP "$pid_n2"
t0=$(ms)
until_eq "n1 sees n2 DOWN after SIGSTOP" false "seen_up n1 n2" 50
t_down=$(($(down_at n1 n2) - t0))
[ $t_down -le $((BOUND + 200)) ] && ok "n1 marked n2 unreachable within the bound ($t_down ms, bound $BOUND ms)" ||
  bad "n1 marked n2 unreachable after $t_down ms (bound $BOUND ms)"
until_eq "the looping execution fails with ErrMachineUnreachable" \
  'MachineError.ErrMachineUnreachable #mach"n2"' \
  "ctl n1 exec show $sid --json | jq -r .error | sed 's/ (at.*//'" 50
t_fail=$(($(ms) - t0))
[ $t_fail -le $((BOUND + 2500)) ] && ok "the call in flight failed within its deadline ($t_fail ms)" ||
  bad "the call in flight failed after $t_fail ms"
t0=$(ms)
out=$(ctl n1 run "$dir/spin.avm" --entry once 2>&1 | sed 's/ (at.*//')
t_new=$(($(ms) - t0))
check "a new call to the stopped machine fails cleanly" "$out" 'error: MachineError.ErrMachineUnreachable #mach"n2"'
[ $t_new -le 2000 ] && ok "... at once ($t_new ms), it does not hang" || bad "a call to a stopped machine took $t_new ms"
kill -CONT "$pid_n2"
until_eq "n1 sees n2 up again after SIGCONT" true "seen_up n1 n2" 50
until_eq "calls to n2 succeed again" yes \
  "ctl n1 run $dir/spin.avm --entry once 2>&1 | grep -qx '[0-9][0-9]*' && echo yes"

# Exactly once, in order: 300 calls while n2 pauses briefly (well under the bound).
before=$(ctl n1 run "$dir/spin.avm" --entry once 2>&1)
cid=$(ctl n1 run "$dir/spin.avm" --entry counted --detach 2>&1)
for k in 1 2 3; do
  sleep 0.1; kill -STOP "$pid_n2"; sleep 0.1; kill -CONT "$pid_n2"
done
until_eq "300 calls through pauses all return" 300 "ctl n1 exec result $cid 2>&1"
after=$(ctl n1 run "$dir/spin.avm" --entry once 2>&1)
check "the counter counted each of them exactly once" "$((after - before))" 300

# --- Failures: SIGKILL and restart ----------------------------------------------------------
oid3=$(ctl n1 run "$dir/mk.avm" --on n3 2>&1 | sed 's/#obj"\(.*\)"/\1/')
printf '(main (call (object-id "%s") 2))\n' "$oid3" >"$dir/c3.avm"
check "a counter on n3 counts" "$(ctl n2 run "$dir/c3.avm" 2>&1)" 2
kill -9 "$pid_n3"; wait "$pid_n3" 2>/dev/null; pid_n3=
t0=$(ms)
until_eq "n1 sees n3 DOWN after SIGKILL" false "seen_up n1 n3" 50
t_down=$(($(down_at n1 n3) - t0))
[ $t_down -le $((BOUND + 200)) ] && ok "n1 marked n3 unreachable within the bound ($t_down ms)" ||
  bad "n1 marked n3 unreachable after $t_down ms"
check "a call to the killed machine fails cleanly" \
  "$(ctl n2 run "$dir/c3.avm" 2>&1 | sed 's/ (at.*//')" 'error: MachineError.ErrMachineUnreachable #mach"n3"'
start n3 --placement spread
until_eq "n1 sees the restarted n3 up" true "seen_up n1 n3" 50
until_eq "its counter kept its state across the crash (2 + 2)" 4 "ctl n2 run $dir/c3.avm 2>&1"
check "n3 answers for executions it ran before the crash" \
  "$(ctl n3 exec show "$id" --json | jq -r .outcome)" done

# --- Bad node-to-node requests and messages ------------------------------------------------
if [ -n "$PROBE" ]; then
  # A replicated controller of one replica (n1 leads it at once) for the probe's
  # proposals.
  check "a controller replicated on n1 alone is created" \
    "$(ctl n1 controller create probeg --replicas n1 --json 2>&1 | jq -r .name)" probeg
  until_eq "n1 leads it" n1 "ctl n1 controller status probeg --json 2>/dev/null | jq -r .leader" 50
  out=$("$PROBE" "ipc://$dir/n1.sock" probeg 2>&1)
  code=$?
  echo "$out" | sed 's/^/  probe: /'
  check "link_probe: every bad request and message is refused or dropped, proposals to the group commit once, one breaking the authority rule is refused, n1 still answers" \
    "$code" 0
  check "n1 logged the refused execution" \
    "$(grep -c '"event":"exec.arrive"' "$dir/n1.log" | awk '{print ($1 > 0)}')" 1
fi

# --- A clean stop ---------------------------------------------------------------------------
for n in n1 n2 n3; do
  p=$(pid_of $n)
  kill -TERM "$p"
  wait "$p"
  rc=$?
  check "$n stops cleanly on SIGTERM" "$rc" 0
  [ "$rc" -eq 0 ] || { echo "  the end of $n's log:"; tail -40 "$dir/$n.log" | sed 's/^/  /'; }
  eval "pid_$n="
done

# --- The logs ------------------------------------------------------------------------------
for n in n1 n2 n3; do
  grep -q '"level":"error"' "$dir/$n.log" && bad "$n logged errors: $(grep '"level":"error"' "$dir/$n.log" | head -3)"
done

echo "cluster ($COMMIT): $pass passed, $fails failed"
[ $fails -eq 0 ]
