#!/bin/sh
# Exactly-once commits through replicated controllers when the executing node dies:
# three avmd processes, controllers A and B replicated on all three, three list
# objects (LA and LA2 under A, LB under B). Executions started on n1 each append
# values unique to them: an odd value to LA alone (one transaction of A: a proposal
# of A's group), an even value to LA2 and LB in one transaction over A and B (a
# two-phase commit); a commit that returns false is retried with the same value, so a
# commit reported false although it applied shows up as a duplicate too. While they
# run, n1 (the node running them) is SIGKILLed at random moments, round after round,
# and restarted: its executions resume from their checkpoints. Then:
#  - no value appears twice in any list (a commit applied twice, or reported false
#    although applied, then retried);
#  - every value an execution that ended done reports as committed is in its
#    list(s) exactly once;
#  - LA2 and LB hold the same values (the commits across A and B are atomic);
#  - every execution ends (done, or failed with a clear error).
# Usage: once.sh AVMD AVMCTL [pipelined|durable] (n1's commit mode; default pipelined)
# Environment: AVM_TIME_FACTOR scales the bounds; AVM_ONCE_ROUNDS the kills (default
# 4); AVM_ONCE_EXECS executions per round (default 4); AVM_ONCE_VALUES values per
# execution (default 10); AVM_ONCE_REPLICAS the replicas of A and B (default
# n1,n2,n3); AVM_KEEP keeps the logs.
set -u
AVMD=$1 AVMCTL=$2 MODE=${3:-pipelined}
F=${AVM_TIME_FACTOR:-1}
ROUNDS=${AVM_ONCE_ROUNDS:-4}
NEX=${AVM_ONCE_EXECS:-4}
M=${AVM_ONCE_VALUES:-10} # values per execution
dir=$(mktemp -d "${TMPDIR:-/tmp}/avm-once-XXXXXX") || exit 2
D=$dir
pid_n1= pid_n2= pid_n3=
cleanup() {
  for p in "$pid_n1" "$pid_n2" "$pid_n3"; do
    [ -n "$p" ] && kill -CONT "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null
  done
  wait 2>/dev/null
  [ -n "${AVM_KEEP:-}" ] && echo "kept $dir" || rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
pass=0 fails=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fails=$((fails + 1)); }
ms() { date +%s%3N; }
t() { echo $(($1 * F)); }
ctl() { node=$1; shift; "$AVMCTL" "$@" --node "ipc://$D/$node.sock"; }
pid_of() { eval "echo \$pid_$1"; }
alive() { [ -n "$(pid_of "$1")" ]; }
others() { for o in n1 n2 n3; do [ "$o" != "$1" ] && echo "$o"; done; }
rand() { od -An -N2 -tu2 /dev/urandom | awk -v n="$1" '{print $1 % n}'; }
start() {
  name=$1 join=""
  for o in $(others "$name"); do
    alive "$o" && { join="--join ipc://$D/$o.sock"; break; }
  done
  # shellcheck disable=SC2086
  "$AVMD" --name "$name" --controller "c$name" --data "$D/$name" --commit "$MODE" \
    --control "ipc://$D/$name.sock" --listen tcp://127.0.0.1:0 --log-format json \
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
    sleep 0.2
  done
}
leader_of() {
  ctl "${2:-n1}" controller status "$1" --json --timeout 2000 2>/dev/null |
    jq -r 'select(.quorum == true) | .leader // empty' 2>/dev/null
}

start n1
start n2
start n3
for g in A B; do
  ctl n1 controller create $g --replicas "${AVM_ONCE_REPLICAS:-n1,n2,n3}" --json >/dev/null 2>&1 ||
    bad "controller create $g"
done
wait_for "$(t 8000)" '[ -n "$(leader_of A)" ] && [ -n "$(leader_of B)" ]' ||
  bad "no leaders: $(ctl n1 controller ls 2>&1)"
wait_for "$(t 8000)" '[ "$(ctl n2 controller ls --json 2>/dev/null | jq -r "[.controllers[] | .[1] // empty] | length")" = 2 ] && [ "$(ctl n3 controller ls --json 2>/dev/null | jq -r "[.controllers[] | .[1] // empty] | length")" = 2 ]' ||
  bad "not every node knows the leaders"

LST='(behavior lst
  (let ((m (input)))
    (if (= (nth m 0) (quote a))
        (do (setState (append (getState) (list (nth m 1)))) (list 0))
        (list (getState)))))'
printf '%s\n(defun mk (c) (let ((tx (beginTx c)) (o (createObj "lst" c))) (commitTx tx) o))\n(main (list (mk #ctl"A") (mk #ctl"A") (mk #ctl"B")))\n' \
  "$LST" >"$dir/setup.avm"
ids=""
for _ in 1 2 3 4 5; do
  ids=$(ctl n2 run "$dir/setup.avm" --timeout "$(t 20000)" 2>&1 | grep -o '#obj"[^"]*"')
  [ "$(echo "$ids" | grep -c .)" = 3 ] && break
  sleep 1
done
set -- $ids
if [ $# -ne 3 ]; then
  bad "setup made three objects: $ids"
  echo "once: $pass passed, $fails failed"; exit 1
fi
LA=$1 LA2=$2 LB=$3
ok "setup: $LA $LA2 (A), $LB (B)"

# app.avm K: appends K*100+1 .. K*100+M; returns the values whose commit said true.
app() {
  cat >"$dir/app.$1.avm" <<EOF
(defun one (v) (let ((tx (beginTx #ctl"A"))) (call $LA (list (quote a) v)) (commitTx tx)))
(defun two (v) (let ((tx (beginTx (list #ctl"A" #ctl"B"))))
  (call $LA2 (list (quote a) v)) (call $LB (list (quote a) v)) (commitTx tx)))
(defun try (v n) (if (= n 0) #f (if (if (= (mod v 2) 0) (two v) (one v)) #t (try v (- n 1)))))
(defun loop (n acc) (if (= n 0) acc
  (loop (- n 1) (if (try (+ $(($1 * 100)) n) 40) (cons (+ $(($1 * 100)) n) acc) acc))))
(main (loop $M (quote ())))
EOF
}
cat >"$dir/read.avm" <<EOF
(main (list (call $LA (list (quote r))) (call $LA2 (list (quote r))) (call $LB (list (quote r)))))
EOF

# --- Rounds: executions on n1, n1 SIGKILLed while they commit, restarted -----------
k=1 all=""
r=1
while [ $r -le "$ROUNDS" ]; do
  i=0
  while [ $i -lt "$NEX" ]; do
    app $k
    id=$(ctl n1 run "$dir/app.$k.avm" --detach 2>&1)
    case "$id" in n1/x*) all="$all $id"; echo "$id $k" >>"$dir/runs" ;; *) bad "round $r: run $k did not start: $id" ;; esac
    k=$((k + 1)) i=$((i + 1))
  done
  # While they commit: a run takes about a second (more on a loaded machine).
  sleep "0.$(( $(rand 5) ))$(( $(rand 9) + 1 ))"
  kill9 n1
  echo "round $r: n1 SIGKILLed"
  sleep 0.3
  start n1
  r=$((r + 1))
done

# Every execution ends.
running() {
  for id in $all; do
    s=$(ctl n1 exec show "$id" --json --timeout 2000 2>/dev/null | jq -r .status 2>/dev/null)
    [ "$s" = running ] || [ -z "$s" ] && { echo "$id"; return; }
  done
}
if wait_for "$(t 60000)" '[ -z "$(running)" ]'; then
  ok "every execution ended"
else
  bad "executions still running: $(running)"
fi
: >"$dir/acked"
: >"$dir/donek"
ndone=0
for id in $all; do
  js=$(ctl n1 exec show "$id" --json 2>/dev/null)
  case "$(echo "$js" | jq -r .outcome 2>/dev/null)" in
    done)
      ndone=$((ndone + 1))
      awk -v id="$id" '$1 == id {print $2}' "$dir/runs" >>"$dir/donek"
      echo "$js" | jq -r '.result[]?' >>"$dir/acked" ;;
    *)
      e=$(echo "$js" | jq -r .error 2>/dev/null)
      case "$e" in
        *'#ctl"'*|*controller*|*nreachable*|*leader*) echo "  $id failed: $e" ;;
        *) bad "$id ended without a clear error: $js" ;;
      esac ;;
  esac
done
[ "$ndone" -gt 0 ] && ok "$ndone of $((k - 1)) executions done" || bad "no execution done"

out=""
for _ in 1 2 3 4 5 6 7 8 9 10; do
  out=$(ctl n2 run "$dir/read.avm" --json --timeout "$(t 20000)" 2>/dev/null)
  [ "$(echo "$out" | jq -r .outcome 2>/dev/null)" = done ] && break
  sleep 1
done
echo "$out" | jq -r '.result[0][]?' | sort -n >"$dir/la"
echo "$out" | jq -r '.result[1][]?' | sort -n >"$dir/la2"
echo "$out" | jq -r '.result[2][]?' | sort -n >"$dir/lb"
echo "  LA: $(wc -l <"$dir/la") values, LA2: $(wc -l <"$dir/la2"), LB: $(wc -l <"$dir/lb"); acknowledged: $(wc -l <"$dir/acked")"
[ -s "$dir/la" ] || bad "LA is empty (read: $(echo "$out" | head -c 300))"
for l in la la2 lb; do
  d=$(uniq -d "$dir/$l" | tr '\n' ' ')
  [ -z "$d" ] && ok "no value twice in $l" || bad "values twice in $l: $d"
done
cmp -s "$dir/la2" "$dir/lb" && ok "LA2 and LB hold the same values (atomic across A and B)" ||
  bad "LA2 and LB differ: $(diff "$dir/la2" "$dir/lb" | grep '^[<>]' | tr '\n' ' ')"
miss=""
for v in $(cat "$dir/acked"); do
  if [ $((v % 2)) = 0 ]; then l=la2; else l=la; fi
  [ "$(grep -cx "$v" "$dir/$l")" = 1 ] || miss="$miss $v"
done
[ -z "$miss" ] && ok "every acknowledged value is in its list exactly once" ||
  bad "acknowledged values not exactly once:$miss"
# A value of an execution that ended done is in a list only if its commit said true
# (else the commit returned false although it applied).
extra=""
for v in $(cat "$dir/la" "$dir/la2"); do
  grep -qx "$((v / 100))" "$dir/donek" && ! grep -qx "$v" "$dir/acked" && extra="$extra $v"
done
[ -z "$extra" ] && ok "no value applied whose commit returned false" ||
  bad "values applied although their commit returned false:$extra"

echo "once: $pass passed, $fails failed"
[ $fails -eq 0 ]
