#!/bin/sh
# avmd driven by avmctl: examples give the embedded results, many concurrent
# transactions keep the bank invariant, lifecycle operations, mailboxes, bad
# requests, and SIGKILL / SIGTERM with executions in flight.
# Usage: daemon.sh AVMD AVMCTL CTL_PROBE SOURCE_DIR [pipelined|durable]
set -u
AVMD=$1 AVMCTL=$2 PROBE=$3 SRC=$4 COMMIT=${5:-pipelined}
dir=$(mktemp -d "${TMPDIR:-/tmp}/avm-daemon-XXXXXX") || exit 2
pid=
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
pass=0 fails=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fails=$((fails + 1)); }
check() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got '$2', expected '$3'"; fi; }

URL="ipc://$dir/ctl.sock"
N="--node $URL"
ctl() { "$AVMCTL" "$@" $N; }

start_node() {
  "$AVMD" --data "$dir/data" --control "$URL" --log-format json --slice 2000 --commit "$COMMIT" \
    2>>"$dir/avmd.log" &
  pid=$!
  i=0
  while [ $i -lt 100 ]; do
    ctl status --timeout 200 >/dev/null 2>&1 && return 0
    sleep 0.1; i=$((i + 1))
  done
  echo "avmd did not come up:"; cat "$dir/avmd.log"; exit 1
}

# Waits until no execution is running (at most $1 tenths of a second).
settle() {
  i=0
  while [ $i -lt "$1" ]; do
    r=$(ctl status --json | jq '.executions.running')
    [ "$r" = 0 ] && return 0
    sleep 0.1; i=$((i + 1))
  done
  return 1
}

norm() { sed 's#node1/[0-9][0-9]*#OBJ#g'; }

# until_eq DESC EXPECTED SHELL-EXPRESSION: polls the expression (at most 20 s) until it
# prints EXPECTED, then checks. Lifecycle requests take effect at the node's next
# round, whose time depends on the machine's load.
until_eq() {
  j=0
  while [ $j -lt 200 ]; do
    v=$(eval "$3")
    [ "$v" = "$2" ] && break
    sleep 0.1; j=$((j + 1))
  done
  check "$1" "$v" "$2"
}

start_node

# --- The examples give the embedded results ---------------------------------------
for entry in main test-simple; do
  e=""; [ "$entry" = main ] || e="--entry $entry"
  a=$(ctl run "$SRC/examples/ping_pong.avm" $e 2>&1 | norm)
  b=$("$AVMCTL" run "$SRC/examples/ping_pong.avm" $e --ephemeral 2>&1 | norm)
  check "ping_pong $entry: daemon = embedded" "$a" "$b"
done
for entry in test-hit test-miss setup-game play-full-game play-game-with-player-type \
             game-with-rollback; do
  a=$(ctl run "$SRC/examples/battleship.avm" --entry $entry 2>&1 | norm)
  b=$("$AVMCTL" run "$SRC/examples/battleship.avm" --entry $entry --ephemeral 2>&1 | norm)
  check "battleship $entry: daemon = embedded" "$a" "$b"
done

# --- Many concurrent transactions over shared accounts ------------------------------
cat >"$dir/bank.avm" <<'AVM'
(behavior account
  (let ((s (getState)) (bal (if (null? s) 100 (head s))))
    (if (= (input) 'get) (list bal)
        (do (setState (list (+ bal (input)))) (list (+ bal (input)))))))
(main (let ((t (beginTx))
            (l (list (createObj "account") (createObj "account") (createObj "account")
                     (createObj "account"))))
        (do (commitTx t) l)))
AVM
accts=$(ctl run "$dir/bank.avm" --json | jq -r '.result[] | .object')
set -- $accts
[ $# -eq 4 ] && ok "four accounts" || bad "four accounts: $accts"
a1=$1 a2=$2 a3=$3 a4=$4
# A gate: every transfer waits (polling, outside transactions) until it opens, so that
# all of them run their transactions at once, whatever the speed of this machine.
cat >"$dir/gate.avm" <<'AVM'
(behavior gate
  (let ((s (getState)))
    (if (= (input) 'open) (do (setState (list 1)) (list 1))
        (list (if (null? s) 0 (head s))))))
(main (let ((t (beginTx)) (g (createObj "gate"))) (do (commitTx t) g)))
AVM
gate=$(ctl run "$dir/gate.avm" --json | jq -r .result.object)
GATED="(defun gated () (if (= (call #obj\"$gate\" 'get) 1) 0 (do (wait 1000) (gated))))"
nx=0
for i in $(seq 1 150); do
  case $((i % 4)) in 0) f=$a1 t=$a2 ;; 1) f=$a2 t=$a3 ;; 2) f=$a3 t=$a4 ;; *) f=$a4 t=$a1 ;; esac
  amt=$((i % 9 + 1))
  # Half retry until they commit; half try once and report false on a conflict.
  # Each waits inside its transaction (a loop over several slices), so that
  # transactions overlap.
  if [ $((i % 2)) = 0 ]; then
    printf '(defun wait (i) (if (= i 0) 0 (wait (- i 1))))\n%s\n(defun go (n) (let ((t (beginTx))) (do (call #obj"%s" %d) (wait 20000) (call #obj"%s" %d) (if (commitTx t) n (go (+ n 1))))))\n(main (do (gated) (go 1)))\n' \
      "$GATED" "$f" "-$amt" "$t" "$amt" >"$dir/t$i.avm"
  else
    printf '(defun wait (i) (if (= i 0) 0 (wait (- i 1))))\n%s\n(main (do (gated) (let ((t (beginTx))) (do (call #obj"%s" %d) (wait 20000) (call #obj"%s" %d) (commitTx t)))))\n' \
      "$GATED" "$f" "-$amt" "$t" "$amt" >"$dir/t$i.avm"
  fi
  ctl run "$dir/t$i.avm" --detach >>"$dir/ids" 2>&1 && nx=$((nx + 1))
done
check "150 executions started" "$nx" 150
printf '(main (call #obj"%s" (quote open)))\n' "$gate" >"$dir/open.avm"
ctl run "$dir/open.avm" >/dev/null
settle 600 && ok "all transfers ended" || bad "transfers still running"
total=0
for a in $a1 $a2 $a3 $a4; do
  v=$(ctl obj show "$a" --json | jq '.state[0] // 100')
  total=$((total + v))
done
check "bank invariant: total is 400" "$total" 400
done_n=0 false_n=0
for id in $(cat "$dir/ids"); do
  j=$(ctl exec show "$id" --json)
  [ "$(echo "$j" | jq -r .outcome)" = done ] && done_n=$((done_n + 1))
  [ "$(echo "$j" | jq -r .result)" = false ] && false_n=$((false_n + 1))
done
check "every transfer execution done" "$done_n" 150
[ "$done_n" = 150 ] || for id in $(cat "$dir/ids"); do ctl exec show "$id" --json | grep -v '"outcome":"done"'; done
conflicts=$(ctl status --json | jq .conflicts)
[ "$false_n" -gt 0 ] && [ "$conflicts" -ge "$false_n" ] && ok "conflicts reported as false commits ($false_n false, $conflicts conflicts)" \
  || bad "conflicts $conflicts < false commits $false_n"
# The balances are what the committed transfers say, and nothing else.
exp1=100 exp2=100 exp3=100 exp4=100
i=0
for id in $(cat "$dir/ids"); do
  i=$((i + 1))
  r=$(ctl exec show "$id" --json | jq -r .result)
  [ "$r" = false ] && continue
  amt=$((i % 9 + 1))
  case $((i % 4)) in
    0) exp1=$((exp1 - amt)); exp2=$((exp2 + amt)) ;;
    1) exp2=$((exp2 - amt)); exp3=$((exp3 + amt)) ;;
    2) exp3=$((exp3 - amt)); exp4=$((exp4 + amt)) ;;
    *) exp4=$((exp4 - amt)); exp1=$((exp1 + amt)) ;;
  esac
done
got=""
for a in $a1 $a2 $a3 $a4; do got="$got $(ctl obj show "$a" --json | jq '.state[0] // 100')"; done
check "balances = committed transfers applied once" "$got" " $exp1 $exp2 $exp3 $exp4"

# --- Lifecycle: fairness, suspend, resume, kill ---------------------------------------
echo '(defun spin (i) (spin (+ i 1))) (main (spin 0))' >"$dir/spin.avm"
spin=$(ctl run "$dir/spin.avm" --detach)
r=$(timeout 20 "$AVMCTL" run "$SRC/examples/ping_pong.avm" $N 2>&1 | norm)
check "a program finishes beside an endless loop" "$r" '("complete" "ping-continue")'
ctl exec suspend "$spin" >/dev/null
until_eq "suspend" suspended 'ctl exec show "$spin" --json | jq -r .status'
s1=$(ctl exec show "$spin" --json | jq -r '.status + " " + (.steps|tostring)')
sleep 0.3
s2=$(ctl exec show "$spin" --json | jq -r '.status + " " + (.steps|tostring)')
check "a suspended execution does not run" "$s2" "$s1"
ctl exec resume "$spin" >/dev/null
until_eq "resume" running 'ctl exec show "$spin" --json | jq -r .status'
ctl exec kill "$spin" >/dev/null
until_eq "kill" killed 'ctl exec show "$spin" --json | jq -r .outcome'
ctl exec result "$spin" >/dev/null 2>&1
check "result of a killed execution exits 1" "$?" 1
ctl exec kill "$spin" >/dev/null 2>&1
check "killing it again is refused (exit 2)" "$?" 2

# --- The transaction registry -------------------------------------------------------------
printf '(behavior k (list 1))\n(defun wait (i) (if (= i 0) 0 (wait (- i 1))))\n(main (let ((t (beginTx)) (o (createObj "k"))) (do (commitTx t) (let ((u (beginTx))) (do (call o 0) (wait 300000000) (commitTx u))))))\n' >"$dir/slow.avm"
slow=$(ctl run "$dir/slow.avm" --detach)
until_eq "txs lists the open transaction" "1 1 false" 'ctl txs --json | jq -r --arg id "$slow" ".transactions[] | select(.exec == \$id) | \"\\(.depth) \\(.reads) \\(.stale)\""'
ctl exec kill "$slow" >/dev/null
until_eq "a killed execution's transaction is gone" 0 'ctl txs --json | jq ".transactions | length"'

# --- Mailboxes: receive blocks, send wakes ---------------------------------------------
cat >"$dir/inbox.avm" <<'AVM'
(behavior inbox (let ((a (receive)) (b (receive))) (list (list a b))))
(main (let ((t (beginTx)) (o (createObj "inbox"))) (do (commitTx t) o)))
AVM
box=$(ctl run "$dir/inbox.avm" --json | jq -r .result.object)
printf '(main (call #obj"%s" 0))\n' "$box" >"$dir/recv.avm"
recv=$(ctl run "$dir/recv.avm" --detach)
until_eq "receive waits for a message" message 'ctl exec show "$recv" --json | jq -r .waiting'
ctl send "$box" '(hello 1)' --from alice >/dev/null
ctl send "$box" '"world"' --from alice >/dev/null
r=$(ctl exec result "$recv" --wait 10000 2>&1)
check "messages delivered in order" "$r" '(("hello" 1) "world")'
ctl send node1/999999 1 >/dev/null 2>&1
check "a message to no object is refused (exit 2)" "$?" 2
tr=$(ctl exec trace "$recv" --format mermaid | head -1)
check "trace as a Mermaid sequence diagram" "$tr" sequenceDiagram
ctl exec trace "$recv" --format json | jq -e '.entries | map(select(.kind == "message")) | length == 2' >/dev/null \
  && ok "trace as JSON, with both messages" || bad "trace as JSON"
ctl exec trace "$recv" --format text | grep -q 'alice' && ok "trace as text names the sender" \
  || bad "trace as text"

# --- Bad requests and a client that leaves early ----------------------------------------
"$PROBE" "$URL" >"$dir/probe.out" 2>&1 && ok "bad control requests get error replies" \
  || { bad "bad control requests"; cat "$dir/probe.out"; }
recv2=$(ctl run "$dir/recv.avm" --detach)
timeout 0.5 "$AVMCTL" exec result "$recv2" --wait 20000 $N >/dev/null 2>&1
ctl status >/dev/null && ok "a client gone mid-request leaves the node serving" \
  || bad "node after a client left"
ctl send "$box" 1 >/dev/null; ctl send "$box" 2 >/dev/null
check "its execution still completes" "$(ctl exec result "$recv2" --wait 10000)" "(1 2)"

# --- SIGKILL with executions in flight ---------------------------------------------------
cat >"$dir/count.avm" <<'AVM'
(behavior counter
  (let ((s (getState)) (n (if (null? s) 0 (head s))))
    (if (= (input) 'get) (list n)
        (do (setState (list (+ n 1))) (list (+ n 1))))))
(defun loop (c i)
  (if (= i 0) (call c 'get)
      (let ((t (beginTx))) (do (call c 'inc) (commitTx t) (loop c (- i 1))))))
(main (let ((t (beginTx)) (c (createObj "counter"))) (do (commitTx t) (loop c 2000))))
AVM
c1=$(ctl run "$dir/count.avm" --detach)
c2=$(ctl run "$dir/count.avm" --detach)
recv3=$(ctl run "$dir/recv.avm" --detach)
sleep 0.4
kill -9 "$pid"; wait "$pid" 2>/dev/null; pid=
start_node
check "after SIGKILL: counter 1 commits each transaction once" "$(ctl exec result "$c1" --wait 60000)" 2000
check "after SIGKILL: counter 2 too" "$(ctl exec result "$c2" --wait 60000)" 2000
until_eq "after SIGKILL: a waiting receiver waits again" message 'ctl exec show "$recv3" --json | jq -r .waiting'
check "after SIGKILL: earlier results are kept" "$(ctl exec show "$spin" --json | jq -r .outcome)" killed
check "after SIGKILL: names are kept" "$(ctl exec show "$c1" --json | jq -r .name) $(ctl exec ls --json | jq -r --arg id "$spin" '.executions[] | select(.id == $id) | .name')" "count.avm spin.avm"
ctl exec trace "$c1" --format json >"$dir/c1.json"
jq -e '[.entries[] | select(.kind == "runtime" and .event == "ExecutionStarted")] | length == 1' "$dir/c1.json" >/dev/null \
  && jq -e '[.entries[] | select(.kind == "call")] | length >= 2000' "$dir/c1.json" >/dev/null \
  && ok "after SIGKILL: the sequence chart spans the crash (one ExecutionStarted, 2000 calls)" \
  || bad "sequence chart after SIGKILL: $(jq -c '[.entries[] | .kind] | group_by(.) | map({(.[0]): length}) | add' "$dir/c1.json")"
lam=$(jq '[.entries[] | select(.kind != "event") | .lamport] | . == sort and (. | length) == (unique | length)' "$dir/c1.json")
check "after SIGKILL: Lamport times strictly increase" "$lam" true

# --- SIGTERM: park, checkpoint, resume -------------------------------------------------
c3=$(ctl run "$dir/count.avm" --detach)
sus=$(ctl run "$dir/spin.avm" --detach)
ctl exec suspend "$sus" >/dev/null
sleep 0.3
kill -TERM "$pid"; wait "$pid"; code=$?; pid=
check "SIGTERM stops the node with exit 0" "$code" 0
grep -q '"event":"node.parked"' "$dir/avmd.log" && ok "it parked the executions" || bad "no node.parked in the log"
start_node
check "after SIGTERM: the counter resumes and finishes" "$(ctl exec result "$c3" --wait 60000)" 2000
check "after SIGTERM: a suspended execution stays suspended" "$(ctl exec show "$sus" --json | jq -r .status)" suspended
ctl exec kill "$sus" >/dev/null
ctl send "$box" 7 >/dev/null; ctl send "$box" 8 >/dev/null
check "after SIGTERM: the receiver gets its messages" "$(ctl exec result "$recv3" --wait 10000)" "(7 8)"
grep -q '"level":"info","event":"node.ready"' "$dir/avmd.log" && ok "structured JSON logs" || bad "logs"

kill -TERM "$pid"; wait "$pid"; pid=

# --- Configuration: a file, flags over it, and clear refusals -----------------------
cat >"$dir/avmd.conf" <<CONF
# a node's configuration
name = alpha
controller = ctl-a
data = $dir/data2
control = ipc://$dir/other.sock
log-level = warn
CONF
"$AVMD" --config "$dir/avmd.conf" --control "$URL" 2>"$dir/avmd2.log" &
pid=$!
i=0
while [ $i -lt 100 ] && ! ctl status --timeout 200 >/dev/null 2>&1; do sleep 0.1; i=$((i + 1)); done
check "config file: name" "$(ctl status --json | jq -r .name)" alpha
check "config file: controller" "$(ctl status --json | jq -r .controller.controller)" ctl-a
check "flags override the file's control address" "$(ctl status --json | jq -r .data)" "$dir/data2"
[ -s "$dir/avmd2.log" ] && bad "log level warn still logs info: $(head -1 "$dir/avmd2.log")" \
  || ok "log level from the file"
kill -TERM "$pid"; wait "$pid"; pid=
printf 'name = beta\nbogus = 1\n' >"$dir/bad.conf"
"$AVMD" --config "$dir/bad.conf" 2>"$dir/bad.err"
check "an unknown config key is refused (exit 2)" "$?" 2
grep -q "bad.conf:2: unknown option 'bogus'" "$dir/bad.err" && ok "the refusal names file and line" \
  || bad "refusal message: $(cat "$dir/bad.err")"
"$AVMD" --log-level loud 2>"$dir/bad.err"
check "a bad flag value is refused (exit 2)" "$?" 2
"$AVMD" --data "$dir/data" --control "$URL" 2>/dev/null &
p2=$!
i=0
while [ $i -lt 100 ] && ! ctl status --timeout 200 >/dev/null 2>&1; do sleep 0.1; i=$((i + 1)); done
timeout 10 "$AVMD" --data "$dir/data" --control "ipc://$dir/third.sock" 2>"$dir/busy.err"
check "a second node on the same data directory is refused (exit 1)" "$?" 1
grep -q "in use" "$dir/busy.err" && ok "it says the directory is in use" || bad "busy: $(cat "$dir/busy.err")"
# exec constraints and solve (executeSolver): an execution waiting inside a
# transaction with unsettled choices shows its problem, as SMT-LIB2 that the solver
# runs.
cat >"$dir/nd.avm" <<'EOF2'
(main (let ((t (beginTx)) (x (choose (list 1 2 3 4 5 6 7 8 9 10))) (y (choose (list #t #f))))
  (require (> (* x x) 40))
  (require (any y (< x 3)))
  (receive)
  (list (commitTx t) x y)))
EOF2
nid=$(ctl run "$dir/nd.avm" --detach)
i=0
while [ $i -lt 50 ] && [ "$(ctl exec show "$nid" --json | jq -r .status)" = running ]; do sleep 0.1; i=$((i + 1)); done
check "exec constraints: 2 choices, 2 requirements" \
  "$(ctl exec constraints "$nid" --json | jq -c '[.choices, .requirements]')" "[2,2]"
ctl exec constraints "$nid" --smtlib >"$dir/nd.smt2"
grep -q '(declare-const |[^|]*| Bool)' "$dir/nd.smt2" && ok "--smtlib declares the choices" \
  || bad "--smtlib: $(cat "$dir/nd.smt2")"
check "avmctl solve runs it: sat" "$("$AVMCTL" solve "$dir/nd.smt2" | head -1)" sat
printf '(assert (> y 3))\n' | "$AVMCTL" solve - >/dev/null 2>"$dir/solve.err"
check "a script with an error: exit 1" "$?" 1
grep -q "unknown constant y" "$dir/solve.err" && ok "the solver's error is shown" \
  || bad "solve error: $(cat "$dir/solve.err")"
ctl exec kill "$nid" >/dev/null
kill -TERM "$p2"; wait "$p2"
echo "$pass passed, $fails failed"
[ "$fails" -eq 0 ]
