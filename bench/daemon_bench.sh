#!/bin/sh
# daemon_bench: the execution manager as the daemon runs it, end to end. Starts avmd
# on a fresh data directory, submits E executions over the control socket (each
# incrementing its own counter in K transactions), waits until they have all ended,
# and reports committed transactions per second from the node's own counters, beside
# storage_bench's group commit of 64 write sets measured in the same run, on the same
# file system. Both commit modes.
#
# Usage: bench/daemon_bench.sh BUILD_DIR [E] [K]      (defaults: 64 executions, 20000)
# Needs jq. Prints one line per mode; exit 1 if a counter is wrong.
set -u
B=${1:?usage: daemon_bench.sh BUILD_DIR [E] [K]}
E=${2:-64}
K=${3:-20000}
AVMD=$B/node/avmd AVMCTL=$B/cli/avmctl
dir=$(mktemp -d "${TMPDIR:-/tmp}/avm-daemon-bench-XXXXXX") || exit 2
pid=
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$dir"' EXIT
cat >"$dir/count.avm" <<AVM
(behavior counter
  (let ((s (getState)) (n (if (null? s) 0 (head s))))
    (if (= (input) 'get) (list n)
        (do (setState (list (+ n 1))) (list (+ n 1))))))
(defun loop (c i)
  (if (= i 0) (call c 'get)
      (let ((t (beginTx))) (do (call c 'inc) (commitTx t) (loop c (- i 1))))))
(main (let ((t (beginTx)) (c (createObj "counter"))) (do (commitTx t) (loop c $K))))
AVM
now() { date +%s.%N; }
bad=0
raw=$("$B/bench/storage_bench" --json --dir "$dir" | jq '.cases[] | select(.batch == 64) | .commits_s')
for mode in pipelined durable; do
  URL="ipc://$dir/$mode.sock"
  "$AVMD" --data "$dir/$mode" --control "$URL" --commit $mode --log-level warn 2>"$dir/$mode.log" &
  pid=$!
  i=0
  while [ $i -lt 100 ] && ! "$AVMCTL" status --node "$URL" --timeout 200 >/dev/null 2>&1; do
    sleep 0.1; i=$((i + 1))
  done
  # Suspended until all are submitted, so that they run together.
  : >"$dir/ids"
  for n in $(seq 1 "$E"); do
    id=$("$AVMCTL" run "$dir/count.avm" --node "$URL" --detach) || bad=1
    "$AVMCTL" exec suspend "$id" --node "$URL" >/dev/null 2>&1 # may have ended
    echo "$id" >>"$dir/ids"
  done
  c0=$("$AVMCTL" status --node "$URL" --json | jq .commits)
  t0=$(now)
  for id in $(cat "$dir/ids"); do "$AVMCTL" exec resume "$id" --node "$URL" >/dev/null 2>&1; done
  while [ "$("$AVMCTL" status --node "$URL" --json | jq '.executions.running + .executions.suspended')" != 0 ]; do
    sleep 0.02
  done
  t1=$(now)
  c1=$("$AVMCTL" status --node "$URL" --json | jq .commits)
  for id in $(cat "$dir/ids"); do
    r=$("$AVMCTL" exec result "$id" --node "$URL")
    [ "$r" = "$K" ] || { echo "daemon_bench: $id counted $r, not $K" >&2; bad=1; }
  done
  rate=$(echo "$c1 $c0 $t1 $t0" | awk '{printf "%.0f", ($1 - $2) / ($3 - $4)}')
  ratio=$(echo "$rate $raw" | awk '{printf "%.2f", $1 / $2}')
  echo "daemon $mode: $E executions x $K transactions: $rate commits/s; storage group commit (64): $raw/s; ratio ${ratio}x"
  kill -TERM $pid; wait $pid; pid=
done
[ $bad -eq 0 ] && echo "results correct" || { echo "RESULTS WRONG"; exit 1; }
