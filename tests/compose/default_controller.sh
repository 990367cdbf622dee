#!/bin/sh
# avmd --default-controller GROUP, on three avmd processes on loopback (what the
# compose testbed runs in containers):
#  1. refused without --listen, and when it names the node's own --controller;
#  2. before GROUP exists, a transaction that creates an object without naming a
#     controller does not commit, and says why; objects made outside transactions
#     are not affected;
#  3. once GROUP is created on n1,n2,n3: such objects are under GROUP (from any
#     node), `status` names GROUP as the default controller, and a transaction
#     naming the node's own controller still uses it;
#  4. transfers between accounts made that way, through n1 while the other nodes are
#     SIGKILLed one at a time (main's leader first when it is not n1): every run
#     completes, the total is conserved and the ledger equals the acknowledged
#     commits, read through each node after the restarts;
#  5. docs/operations.md's runbook for a node whose data is lost: n3 killed and its
#     data removed, `controller remove main n3`, n3 started empty, `controller add
#     main n3`: it catches up and the bank read through it is whole.
# Usage: default_controller.sh AVMD AVMCTL
set -u
AVMD=$1 AVMCTL=$2
dir=$(mktemp -d "${TMPDIR:-/tmp}/avm-defctl-XXXXXX") || exit 2
pid_n1= pid_n2= pid_n3=
cleanup() {
  for p in "$pid_n1" "$pid_n2" "$pid_n3"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  [ -n "${AVM_KEEP:-}" ] && echo "kept $dir" || rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
pass=0 fails=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fails=$((fails + 1)); }
check() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got '$2', expected '$3'"; fi; }
ms() { date +%s%3N; }
wait_for() {
  end=$(($(ms) + $1)); shift
  while :; do
    eval "$*" && return 0
    [ "$(ms)" -ge $end ] && return 1
    sleep 0.1
  done
}
ctl() { node=$1; shift; "$AVMCTL" "$@" --node "ipc://$dir/$node.sock"; }
pid_of() { eval "echo \$pid_$1"; }
others() { for o in n1 n2 n3; do [ "$o" != "$1" ] && echo "$o"; done; }
start() {
  name=$1
  join=""
  for o in $(others "$name"); do
    [ -n "$(pid_of "$o")" ] && { join="--join ipc://$dir/$o.sock"; break; }
  done
  # shellcheck disable=SC2086
  "$AVMD" --name "$name" --controller "$name-local" --default-controller main \
    --data "$dir/$name" --control "ipc://$dir/$name.sock" --listen tcp://127.0.0.1:0 \
    --log-format json $join 2>>"$dir/$name.log" &
  eval "pid_$name=$!"
  wait_for 10000 "ctl $name status --timeout 200 >/dev/null 2>&1" && return 0
  echo "avmd $name did not come up:"; tail -20 "$dir/$name.log"; exit 1
}
kill9() { p=$(pid_of "$1"); kill -9 "$p"; wait "$p" 2>/dev/null; eval "pid_$1="; }

# --- 1. Refusals -------------------------------------------------------------------
"$AVMD" --default-controller main --data "$dir/x" --control "ipc://$dir/x.sock" \
  >/dev/null 2>"$dir/err1"
check "--default-controller without --listen: exit 2" "$?" 2
grep -q 'needs --listen' "$dir/err1" && ok "... saying it needs --listen" ||
  bad "... message: $(cat "$dir/err1")"
"$AVMD" --controller main --default-controller main --listen tcp://127.0.0.1:0 \
  --data "$dir/x" --control "ipc://$dir/x.sock" >/dev/null 2>&1
check "--default-controller equal to --controller: exit 2" "$?" 2

# --- 2. Before the group exists ----------------------------------------------------------
start n1
start n2
start n3
cat >"$dir/one.avm" <<'EOF'
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
    (if (commitTx tx) a 'not-committed)))
(main (make 100))
(defun outside () (createObj "account"))
(defun own () (let ((tx (beginTx #ctl"n2-local")) (a (createObj "account"))) (commitTx tx) a))
EOF
out=$(ctl n1 run "$dir/one.avm" --timeout 20000 2>&1)
case "$out" in
  *'#obj'*) bad "before main exists, a transaction creating an object committed: $out" ;;
  *) ok "before main exists, a transaction creating an object does not commit: $out" ;;
esac
o=$(ctl n1 run "$dir/one.avm" --entry outside 2>&1)
check "an object made outside a transaction has no controller" \
  "$(ctl n1 obj show "$o" --json 2>&1 | jq -r .current)" null

# --- 3. Once it exists -----------------------------------------------------------------
ctl n1 controller create main --replicas n1,n2,n3 >/dev/null 2>&1
check "controller create main --replicas n1,n2,n3" "$?" 0
leader() {
  ctl "${1:-n1}" controller status main --json --timeout 2000 2>/dev/null |
    jq -r 'select(.quorum == true) | .leader // empty'
}
wait_for 10000 '[ -n "$(leader)" ] && [ -n "$(leader n2)" ] && [ -n "$(leader n3)" ]' &&
  ok "main has a leader ($(leader)), known to every node" || bad "main has no leader"
for n in n1 n2 n3; do
  o=$(ctl $n run "$dir/one.avm" --timeout 20000 2>&1)
  check "through $n, (beginTx) + (createObj) makes an object under main" \
    "$(ctl $n obj show "$o" --json 2>&1 | jq -r .current.controller)" main
  check "$n's status names main as its default controller" \
    "$(ctl $n status --json | jq -r .controller.controller)" main
done
o=$(ctl n2 run "$dir/one.avm" --entry own 2>&1)
check "a transaction naming n2-local still creates under it" \
  "$(ctl n2 obj show "$o" --json 2>&1 | jq -r .current.controller)" n2-local

# --- 4. Transfers under SIGKILL --------------------------------------------------------------
cat >"$dir/setup.avm" <<'EOF'
(behavior account
  (let ((msg (input)))
    (if (= (nth msg 0) 'add)
        (let ((bal (if (= (length (getState)) 0) 0 (nth (getState) 0))))
          (setState (list (+ bal (nth msg 1))))
          (list (+ bal (nth msg 1))))
        (list (if (= (length (getState)) 0) 0 (nth (getState) 0))))))
(defun make (amt)
  (let ((tx (beginTx)) (a (createObj "account")))
    (call a (list 'add amt))
    (commitTx tx)
    a))
(main (list (make 100) (make 100) (make 100) (make 0)))
EOF
set -- $(ctl n1 run "$dir/setup.avm" --timeout 20000 2>&1 | grep -o '#obj"[^"]*"')
[ $# -eq 4 ] || { bad "bank setup: $*"; echo "default_controller: $pass passed, $fails failed"; exit 1; }
A1=$1 A2=$2 A3=$3 L=$4
cat >"$dir/xfer.avm" <<EOF
(defun pick (i) (nth (list $A1 $A2 $A3) (mod i 3)))
(defun transfer (a b)
  (let ((tx (beginTx)))
    (call a (list 'add -1)) (call b (list 'add 1)) (call $L (list 'add 1))
    (commitTx tx)))
(defun loop (n ok) (if (= n 0) ok (loop (- n 1) (if (transfer (pick n) (pick (+ n 1))) (+ ok 1) ok))))
(main (loop 30 0))
EOF
cat >"$dir/check.avm" <<EOF
(defun bal (o) (call o (list 'get)))
(main (list (+ (bal $A1) (+ (bal $A2) (bal $A3))) (bal $L)))
EOF
acked=0
xfer() {
  r=$(ctl n1 run "$dir/xfer.avm" --timeout 60000 2>&1)
  case "$r" in
    '' | *[!0-9]*) bad "$1: transfers through n1 failed: $r" ;;
    *) acked=$((acked + r)); [ "$r" -gt 0 ] && ok "$1: $r of 30 transfers committed" ||
         bad "$1: nothing committed" ;;
  esac
}
xfer "all up"
L0=$(leader)
first=n2; [ "$L0" = n3 ] && first=n3
for v in $first $(others n1 | grep -v "^$first\$"); do
  kill9 $v
  xfer "$v killed"
  start $v
  wait_for 10000 '[ -n "$(leader $v)" ]' || bad "$v restarted: no leader known to it"
done
for n in n1 n2 n3; do
  want="(300 $acked)"
  wait_for 15000 '[ "$(ctl $n run "$dir/check.avm" --timeout 20000 2>&1)" = "$want" ]'
  check "through $n: (total ledger) = (300 acknowledged)" \
    "$(ctl $n run "$dir/check.avm" --timeout 20000 2>&1)" "$want"
done

# --- 5. docs/operations.md's "replace a failed node whose data is lost" ---------------------
kill9 n3
rm -rf "${dir:?}/n3"
# (n3 may have led main: the remove goes through once the two others elect a leader.)
first_err=""
rm3() {
  out=$(ctl n1 controller remove main n3 2>&1) && return 0
  [ -z "$first_err" ] && first_err=$out
  return 1
}
wait_for 15000 rm3 && ok "controller remove main n3 (its node dead, its data gone)${first_err:+; first try: $first_err}" ||
  bad "controller remove main n3: $out"
xfer "n3 removed"
start n3
out=$(ctl n1 controller add main n3 2>&1)
check "controller add main n3 (restarted on an empty data directory)" "$?" 0
caught3() {
  s_=$(ctl n1 controller status main --json 2>/dev/null)
  m_=$(echo "$s_" | jq -r '.members[] | select(.[0] == "n3" and .[1] == "voter") | .[3]')
  [ -n "$m_" ] && [ "$m_" -ge "$(echo "$s_" | jq -r .commit)" ]
}
wait_for 20000 caught3 && ok "n3 is a voter again and has caught up" ||
  bad "n3 did not catch up: $(ctl n1 controller status main 2>&1)"
want="(300 $acked)"
wait_for 15000 '[ "$(ctl n3 run "$dir/check.avm" --timeout 20000 2>&1)" = "$want" ]'
check "through the replaced n3: (total ledger) = (300 acknowledged)" \
  "$(ctl n3 run "$dir/check.avm" --timeout 20000 2>&1)" "$want"

for n in n1 n2 n3; do
  kill -TERM "$(pid_of $n)"; wait "$(pid_of $n)"; check "$n stops cleanly" "$?" 0; eval "pid_$n="
done
echo "default_controller: $pass passed, $fails failed"
[ $fails -eq 0 ]
