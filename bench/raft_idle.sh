#!/bin/sh
# raft_idle: the idle cost of many replicated controllers. Three avmd nodes on
# loopback; CPU of the three processes while idle with no controller, then with
# GROUPS controllers (default 100) each replicated on all three nodes (every group
# has a leader sending heartbeats to two followers), measured over SECONDS each
# (default 10) from /proc/PID/stat. Prints CPU per node (% of one core) for both,
# heartbeat messages per second, and the difference per group.
# Usage: raft_idle.sh AVMD AVMCTL [GROUPS [SECONDS]]   (quick: GROUPS=10 SECONDS=2)
set -u
AVMD=$1 AVMCTL=$2 GROUPS=${3:-100} SECS=${4:-10}
[ "$GROUPS" = quick ] && GROUPS=10 SECS=2
dir=$(mktemp -d "${TMPDIR:-/tmp}/avm-raftidle-XXXXXX") || exit 2
pids=""
cleanup() {
  for p in $pids; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$dir"
}
trap cleanup EXIT
ctl() { node=$1; shift; "$AVMCTL" "$@" --node "ipc://$dir/$node.sock"; }
start() {
  name=$1
  join=""
  [ "$name" != n1 ] && join="--join ipc://$dir/n1.sock"
  # shellcheck disable=SC2086
  "$AVMD" --name "$name" --controller "c$name" --data "$dir/$name" \
    --control "ipc://$dir/$name.sock" --listen tcp://127.0.0.1:0 $join \
    2>>"$dir/$name.log" &
  pids="$pids $!"
  eval "pid_$name=$!"
  i=0
  while [ $i -lt 100 ]; do
    ctl "$name" status --timeout 200 >/dev/null 2>&1 && return 0
    sleep 0.1; i=$((i + 1))
  done
  echo "avmd $name did not come up"; cat "$dir/$name.log"; exit 1
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
# cpu_of SECONDS: % of one core used by each node over the interval.
measure() {
  a1=$(ticks "$pid_n1") a2=$(ticks "$pid_n2") a3=$(ticks "$pid_n3")
  sleep "$SECS"
  b1=$(ticks "$pid_n1") b2=$(ticks "$pid_n2") b3=$(ticks "$pid_n3")
  echo "$((b1 - a1)) $((b2 - a2)) $((b3 - a3))" |
    awk -v hz="$hz" -v s="$SECS" '{printf "%.2f %.2f %.2f", 100*$1/hz/s, 100*$2/hz/s, 100*$3/hz/s}'
}
start n1; start n2; start n3
sleep 2
base=$(measure)
i=0
while [ $i -lt "$GROUPS" ]; do
  ctl n1 controller create "g$i" --replicas n1,n2,n3 >/dev/null || {
    echo "controller create g$i failed"; exit 1; }
  i=$((i + 1))
done
# Every group has a leader.
j=0
while [ $j -lt 100 ]; do
  led=$(ctl n1 controller ls --json | jq '[.controllers[] | select(.[1] != null)] | length')
  [ "$led" = "$GROUPS" ] && break
  sleep 0.2; j=$((j + 1))
done
[ "$led" = "$GROUPS" ] || { echo "only $led of $GROUPS groups have a leader"; exit 1; }
leaders=$(ctl n1 controller ls --json |
  jq -r '[.controllers[] | .[1]] | group_by(.) | map("\(.[0])=\(length)") | join(" ")')
sleep 1
with=$(measure)
echo "raft_idle: 3 nodes, $GROUPS controllers x 3 replicas, leaders: $leaders"
echo "$base" "$with" | awk -v g="$GROUPS" '{
  b = $1 + $2 + $3; w = $4 + $5 + $6;
  printf "  idle, no controllers      : n1 %5.2f%%  n2 %5.2f%%  n3 %5.2f%%  (sum %.2f%% of a core)\n", $1, $2, $3, b;
  printf "  idle, %3d controllers     : n1 %5.2f%%  n2 %5.2f%%  n3 %5.2f%%  (sum %.2f%% of a core)\n", g, $4, $5, $6, w;
  printf "  per controller            : %.3f%% of a core (all replicas together)\n", (w - b) / g;
}'
