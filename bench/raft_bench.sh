#!/bin/sh
# raft_bench: replicated controllers (a controller as a 3-replica Raft group on three
# avmd nodes) beside their floors, measured in the same run on the same machine:
#
#   etcd       a 3-member etcd 3.4 (Debian's etcd-server) on 127.0.0.1: durable puts
#              from 1, 16 and 64 clients, each with its own gRPC connection and one
#              put in flight, all to the leader (bench/etcdbench, built here in GOPATH
#              mode against Debian's golang-etcd-server-dev: no module download)
#   raft       bare canonical/raft 0.22.1 (bench/bare_raft): 3 forked processes with
#              the library's own durable raft_uv log and TCP transport; the leader
#              keeps 1, 16 and 64 raft_apply() calls of 64 bytes in flight
#   avm        ours: 3 avmd nodes (TCP links on loopback, --peer), a controller with
#              replicas n1,n2,n3 (avmctl controller create); ctrl.put of a 64-byte
#              value from 1, 16 and 64 clients, each with its own control connection
#              and one request in flight, to the leader (bench/ctrl_bench)
#   failover   one client puts to the leader in a loop; the leader is sent SIGKILL;
#              the time from the kill to the first put the new leader acknowledges
#              (ctrl_bench failover). The killed node is restarted on its data and the
#              next trial waits until every node has applied the leader's commit
#              index (ctrl_bench wait). TRIALS trials: median and max
#
# Every figure: after a warm-up of 0.3 s, SECS seconds (default 2): ops/s, and p50/p99
# of the latency of the operations started in the window (apply -> apply callback
# on the leader for bare raft; request -> reply for the clients). CPU per operation
# of all three node processes (user + system, /proc/PID/stat) over the same window.
#
# The ratios the targets are stated in: ours / bare raft at equal depth (throughput;
# p50 at depth 1) and ours / etcd at 64 clients (throughput; p99). Reported, never
# checked: the exit code is 1 only when a result is wrong (a failed or misordered put,
# a failover that never completes) and 2 when something does not start.
#
# Usage: bench/raft_bench.sh AVMD AVMCTL BARE_RAFT CTRL_BENCH [quick]
# (the etcd part needs jq)
# quick: tiny counts, no etcd, 3 failover trials: a smoke test of the results (ctest
# raft_bench_smoke), no figures. Environment: SECS, TRIALS, PARTS (a subset of
# "etcd raft avm failover"), TLS_DIR (the avmd nodes' links with mutual TLS: a
# directory from deploy/make-certs.sh DIR n1 n2 n3), AVMD_FLAGS (extra avmd flags, e.g. --raft-election-ms
# 300), PORT_BASE (default 10000 + 10 x (PID mod 1500): bare raft uses PORT_BASE..+30,
# avmd +101..+113, etcd +201..+213),
# GO (default /usr/local/go/bin/go). etcd, etcdctl and the etcd Go sources are
# installed with apt-get when missing (the script says so); the built client is kept
# in /tmp/raftbench-etcdbench. RAFTBENCH_KEEP=1 keeps the run's directory (node logs).
set -u
usage="usage: raft_bench.sh AVMD AVMCTL BARE_RAFT CTRL_BENCH [quick]"
AVMD=${1:?$usage}
AVMCTL=${2:?$usage}
BARE_RAFT=${3:?$usage}
CTRL_BENCH=${4:?$usage}
MODE=${5:-full}
SRC=$(cd "$(dirname "$0")" && pwd)
SECS=${SECS:-2}
# Ports below the ephemeral range, from the PID so that two runs do not collide.
PORT_BASE=${PORT_BASE:-$((10000 + $$ % 1500 * 10))}
CTRL=bench
if [ "$MODE" = quick ]; then
  PARTS=${PARTS:-raft avm failover}
  TRIALS=${TRIALS:-3}
  RAFT_ARGS="--quick" PUT_ARGS="--warmup 0 --count 200 --clients 1,16"
else
  PARTS=${PARTS:-etcd raft avm failover}
  TRIALS=${TRIALS:-20}
  RAFT_ARGS="--secs $SECS" PUT_ARGS="--secs $SECS --clients 1,16,64"
fi
has() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }

dir=$(mktemp -d /tmp/raftbench-XXXXXX) || exit 2
pid_n1= pid_n2= pid_n3= etcd_pids=
cleanup() {
  for p in $pid_n1 $pid_n2 $pid_n3; do kill -9 "$p" 2>/dev/null; done
  etcd_stop
  if [ -n "${RAFTBENCH_KEEP:-}" ]; then echo "kept $dir" >&2; else rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 2' INT TERM HUP
: >"$dir/wrong"
: >"$dir/results"
wrong() { echo "raft_bench: $*" >&2; echo x >>"$dir/wrong"; }
# field LINE KEY: the value of KEY=... in a key=value line.
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }

# ---- (a) etcd ----------------------------------------------------------------
EC=$((PORT_BASE + 200)) # client ports EC+1..3, peer ports EC+11..13
etcd_eps="127.0.0.1:$((EC + 1)),127.0.0.1:$((EC + 2)),127.0.0.1:$((EC + 3))"
ETCDBENCH_DIR=/tmp/raftbench-etcdbench

# etcd runs under `timeout` so that it cannot outlive a killed script; TERM to
# timeout is passed on to etcd, which then shuts down.
etcd_stop() {
  for p in $etcd_pids; do
    kids=$(cat "/proc/$p/task/$p/children" 2>/dev/null)
    kill -TERM "$p" 2>/dev/null
    i=0
    while kill -0 "$p" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$p" $kids 2>/dev/null
  done
  etcd_pids=
}

etcd_prepare() {
  missing=
  command -v etcd >/dev/null 2>&1 || missing="$missing etcd-server"
  command -v etcdctl >/dev/null 2>&1 || missing="$missing etcd-client"
  [ -d /usr/share/gocode/src/go.etcd.io/etcd/clientv3 ] || missing="$missing golang-etcd-server-dev"
  if [ -n "$missing" ]; then
    echo "raft_bench: installing$missing with apt-get (the etcd peer needs them)" >&2
    { apt-get install -y $missing || { apt-get update && apt-get install -y $missing; }; } \
      >"$dir/apt.log" 2>&1 || { cat "$dir/apt.log" >&2; return 1; }
  fi
  GO=${GO:-/usr/local/go/bin/go}
  [ -x "$GO" ] || GO=$(command -v go) || { echo "raft_bench: no Go toolchain" >&2; return 1; }
  ETCDBENCH=$ETCDBENCH_DIR/etcdbench
  if [ ! -x "$ETCDBENCH" ] || [ "$SRC/etcdbench/main.go" -nt "$ETCDBENCH" ]; then
    echo "raft_bench: building etcdbench (GOPATH mode, Debian's etcd 3.4 sources)" >&2
    mkdir -p "$ETCDBENCH_DIR"
    (cd "$SRC/etcdbench" && GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= \
      GOCACHE="$ETCDBENCH_DIR/cache" "$GO" build -o "$ETCDBENCH" .) \
      >"$dir/go.log" 2>&1 || { cat "$dir/go.log" >&2; return 1; }
  fi
}

etcd_start() {
  cluster="e1=http://127.0.0.1:$((EC + 11)),e2=http://127.0.0.1:$((EC + 12)),e3=http://127.0.0.1:$((EC + 13))"
  for i in 1 2 3; do
    timeout -k 5 600 etcd --name "e$i" --data-dir "$dir/etcd/e$i" \
      --listen-client-urls "http://127.0.0.1:$((EC + i))" \
      --advertise-client-urls "http://127.0.0.1:$((EC + i))" \
      --listen-peer-urls "http://127.0.0.1:$((EC + 10 + i))" \
      --initial-advertise-peer-urls "http://127.0.0.1:$((EC + 10 + i))" \
      --initial-cluster "$cluster" --initial-cluster-token raftbench \
      --initial-cluster-state new --logger zap --log-level warn \
      >"$dir/etcd-e$i.log" 2>&1 &
    etcd_pids="$etcd_pids $!"
  done
  i=0
  until ETCDCTL_API=3 etcdctl --endpoints="$etcd_eps" endpoint health >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 150 ]; then
      echo "raft_bench: the etcd cluster did not become healthy" >&2
      cat "$dir"/etcd-e*.log >&2
      return 1
    fi
    sleep 0.1
  done
  # The leader's client address: the member whose id is the leader's.
  etcd_leader=$(ETCDCTL_API=3 etcdctl --endpoints="$etcd_eps" endpoint status -w json |
    jq -r '.[] | select(.Status.header.member_id == .Status.leader) | .Endpoint' | head -n 1)
  [ -n "$etcd_leader" ]
}

if has etcd; then
  mkdir -p "$dir/etcd"
  if etcd_prepare && etcd_start; then
    # The etcd processes themselves (children of their `timeout`), for their CPU.
    epids=$(for p in $etcd_pids; do cat "/proc/$p/task/$p/children" 2>/dev/null; done |
      tr -s ' \n' ',' | sed 's/,$//')
    for c in 1 16 64; do
      r=$("$ETCDBENCH" -endpoints "$etcd_leader" -clients $c -secs "$SECS" -pids "$epids") ||
        wrong "etcd put with $c clients failed: $r"
      echo "etcd $c $r" >>"$dir/results"
    done
    etcd_version=$(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p')
  else
    echo "raft_bench: etcd skipped" >&2
  fi
  etcd_stop
  rm -rf "$dir/etcd"
fi

# ---- (b) bare canonical/raft ---------------------------------------------------
if has raft; then
  # shellcheck disable=SC2086
  "$BARE_RAFT" $RAFT_ARGS --port "$PORT_BASE" --dir "$dir/bare" >"$dir/bare.txt" 2>"$dir/bare.err" ||
    wrong "bare_raft failed: $(cat "$dir/bare.err")"
  while read -r line; do
    d=$(field "$line" depth)
    echo "raft $d $line" >>"$dir/results"
  done <"$dir/bare.txt"
  rm -rf "$dir/bare"
fi

# ---- (c) our nodes -------------------------------------------------------------
AP=$((PORT_BASE + 100))
# ctrl_bench talks to the nodes over TCP control addresses (avmctl over ipc): with
# nng 1.5.2 an ipc control listener is replaced after an accept error (control.c,
# nng#1518) and closing the old one a second later drops every connection it had
# accepted, which cut all the benchmark's clients at once. TCP is not affected, and
# it is what etcd's clients use too.
MAP="n1=tcp://127.0.0.1:$((AP + 11)),n2=tcp://127.0.0.1:$((AP + 12)),n3=tcp://127.0.0.1:$((AP + 13))"
start_node() { # NAME
  n=$1 k=${1#n}
  peers=
  for j in 1 2 3; do
    [ "$j" = "$k" ] || peers="$peers --peer n$j=tcp://127.0.0.1:$((AP + j))"
  done
  # shellcheck disable=SC2086
  "$AVMD" --name "$n" --controller "c$n" --data "$dir/$n" \
    --control "ipc://$dir/$n.sock" --control "tcp://127.0.0.1:$((AP + 10 + k))" \
    --listen "tcp://127.0.0.1:$((AP + k))" $peers --log-level warn ${AVMD_FLAGS:-} \
    ${TLS_DIR:+--tls-cert $TLS_DIR/$n.crt --tls-key $TLS_DIR/$n.key --tls-ca $TLS_DIR/ca.crt} \
    2>>"$dir/$n.log" &
  eval "pid_$n=$!"
  i=0
  until "$AVMCTL" status --node "ipc://$dir/$n.sock" --timeout 200 >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 100 ]; then
      echo "raft_bench: avmd $n did not come up" >&2
      cat "$dir/$n.log" >&2
      exit 2
    fi
    sleep 0.05
  done
}

if has avm || has failover; then
  start_node n1
  start_node n2
  start_node n3
  "$AVMCTL" controller create "$CTRL" --replicas n1,n2,n3 --node "ipc://$dir/n1.sock" \
    >"$dir/create.txt" 2>&1 || {
    echo "raft_bench: controller create failed: $(cat "$dir/create.txt")" >&2
    exit 2
  }
  "$CTRL_BENCH" wait --nodes "$MAP" --controller "$CTRL" --timeout-ms 20000 >"$dir/wait.txt" || {
    echo "raft_bench: the controller has no leader: $(cat "$dir/wait.txt")" >&2
    "$CTRL_BENCH" status --nodes "$MAP" --controller "$CTRL" >&2
    exit 2
  }
fi

if has avm; then
  # shellcheck disable=SC2086
  "$CTRL_BENCH" put --nodes "$MAP" --controller "$CTRL" $PUT_ARGS \
    --pids "n1=$pid_n1,n2=$pid_n2,n3=$pid_n3" >"$dir/put.txt" \
    2>"$dir/put.err" || wrong "ctrl_bench put failed: $(cat "$dir/put.err")"
  while read -r line; do
    c=$(field "$line" clients)
    echo "avm $c $line" >>"$dir/results"
  done <"$dir/put.txt"
  # The replication layer alone: puts generated inside the leader (ctrl.bench),
  # DEPTH in flight, as bare_raft's leader keeps DEPTH raft_apply calls in flight.
  if [ "$MODE" = quick ]; then LDEPTHS="1 16"; LCOUNT=300; else LDEPTHS="1 16 64"; LCOUNT=0; fi
  for d in $LDEPTHS; do
    n=$LCOUNT
    # about 3 s of work at each depth (and under the 10 s forwarding deadline)
    [ "$n" = 0 ] && { case $d in 1) n=3000 ;; 16) n=20000 ;; *) n=50000 ;; esac; }
    out=$("$AVMCTL" controller bench "$CTRL" "$n" "$d" --json --timeout 60000 \
      --node "ipc://$dir/n1.sock" 2>"$dir/lbench.err") ||
      wrong "controller bench depth $d failed: $(cat "$dir/lbench.err")"
    f=$(echo "$out" | jq -r '"ops_s=\(.ops_per_s) p50_us=\(.p50_us) p99_us=\(.p99_us) failed=\(.failed)"')
    [ "$(echo "$out" | jq -r .failed)" = 0 ] || wrong "controller bench depth $d: failed puts"
    echo "layer $d $f" >>"$dir/results"
  done
fi

# ---- (d) failover --------------------------------------------------------------
if has failover; then
  : >"$dir/failover.txt"
  t=0
  while [ $t -lt "$TRIALS" ]; do
    t=$((t + 1))
    out=$("$CTRL_BENCH" failover --nodes "$MAP" --controller "$CTRL" \
      --pids "n1=$pid_n1,n2=$pid_n2,n3=$pid_n3" --timeout-ms 20000 2>>"$dir/failover.err")
    echo "$out" >>"$dir/failover.txt"
    killed=$(field "$out" killed)
    [ "$(field "$out" ok)" = 1 ] || wrong "failover trial $t: ${out:-$(tail -n 1 "$dir/failover.err")}"
    [ -n "$killed" ] || break
    wait "$(eval "echo \$pid_$killed")" 2>/dev/null
    start_node "$killed"
    "$CTRL_BENCH" wait --nodes "$MAP" --controller "$CTRL" --timeout-ms 30000 \
      >>"$dir/wait.txt" || {
      wrong "failover trial $t: $killed did not catch up: $(tail -n 1 "$dir/wait.txt")"
      break
    }
  done
fi

# ---- the table -----------------------------------------------------------------
load=$(cut -d ' ' -f 1-3 /proc/loadavg 2>/dev/null || echo "?")
echo "raft_bench ($MODE): 3 nodes on 127.0.0.1, $(nproc 2>/dev/null || echo '?') cores, load $load, disk $(df -T "$dir" | awk 'NR == 2 {print $2}'), avmd flags: ${AVMD_FLAGS:-(raft defaults)}${TLS_DIR:+, links with mutual TLS}"
[ "$MODE" = quick ] && echo "(quick: sizes far too small for figures; checks results only)"
printf '%-36s %10s %10s %10s %11s\n' "durable single-key writes" "ops/s" "p50 us" "p99 us" "cpu us/op"
row() { # LABEL KIND N
  line=$(grep "^$2 $3 " "$dir/results" | head -n 1)
  if [ -z "$line" ]; then
    printf '%-36s %10s\n' "$1" "-"
    return
  fi
  cpu=$(field "$line" cpu_us_per_op)
  printf '%-36s %10s %10s %10s %11s\n' "$1" "$(field "$line" ops_s)" \
    "$(field "$line" p50_us)" "$(field "$line" p99_us)" "${cpu:--}"
}
has etcd && for c in 1 16 64; do row "etcd ${etcd_version:-} put, $c client(s)" etcd $c; done
if [ "$MODE" = quick ]; then DEPTHS="1 16"; else DEPTHS="1 16 64"; fi
has raft && for d in $DEPTHS; do row "bare raft 0.22.1, depth $d" raft "$d"; done
has avm && for c in $DEPTHS; do row "avm ctrl.put, $c client(s)" avm "$c"; done
has avm && for d in $DEPTHS; do row "avm layer (in-leader puts), depth $d" layer "$d"; done

get() { grep "^$1 $2 " "$dir/results" | head -n 1 | tr ' ' '\n' | sed -n "s/^$3=//p"; }
ratio() { # A B -> A/B, or - when either is missing
  if [ -n "$1" ] && [ -n "$2" ]; then echo "$1 $2" | awk '{ if ($2 > 0) printf "%.2fx", $1 / $2; else print "-" }'; else echo "-"; fi
}
echo
printf '%-58s %s\n' "ratio" "value"
if has avm && has raft; then
  for d in $DEPTHS; do
    printf '%-58s %s\n' "ours / bare raft, throughput at depth $d" \
      "$(ratio "$(get avm "$d" ops_s)" "$(get raft "$d" ops_s)")"
  done
  printf '%-58s %s\n' "ours / bare raft, p50 latency at depth 1" \
    "$(ratio "$(get avm 1 p50_us)" "$(get raft 1 p50_us)")"
  for d in $DEPTHS; do
    printf '%-58s %s\n' "our layer / bare raft, throughput at depth $d" \
      "$(ratio "$(get layer "$d" ops_s)" "$(get raft "$d" ops_s)")"
  done
  printf '%-58s %s\n' "our layer / bare raft, p50 latency at depth 1" \
    "$(ratio "$(get layer 1 p50_us)" "$(get raft 1 p50_us)")"
fi
if has avm && has etcd; then
  printf '%-58s %s\n' "ours / etcd, throughput at 64 clients" \
    "$(ratio "$(get avm 64 ops_s)" "$(get etcd 64 ops_s)")"
  printf '%-58s %s\n' "ours / etcd, p99 latency at 64 clients" \
    "$(ratio "$(get avm 64 p99_us)" "$(get etcd 64 p99_us)")"
fi
if has failover; then
  echo
  sed -n 's/.* ms=\([0-9.]*\) leader_seen_ms=\([0-9.]*\).*/\1 \2/p' "$dir/failover.txt" |
    sort -n >"$dir/fo"
  n=$(wc -l <"$dir/fo")
  awk -v n="$n" -v want="$TRIALS" '
    { ms[NR] = $1; seen[NR] = $2 }
    END {
      if (n == 0) { print "failover: no trial completed"; exit }
      printf "failover (SIGKILL of the leader -> first put acknowledged by the new leader), %d of %d trials:\n", n, want
      printf "  median %.1f ms, max %.1f ms, min %.1f ms\n", ms[int((n + 1) / 2)], ms[n], ms[1]
    }' "$dir/fo"
  # The moment a surviving node first claimed the lead, for where the time goes.
  cut -d ' ' -f 2 "$dir/fo" | sort -n | awk '{v[NR] = $1} END {
    if (NR) printf "  (a new leader visible in ctrl.status after: median %.1f ms, max %.1f ms)\n", v[int((NR + 1) / 2)], v[NR] }'
fi
if [ ! -s "$dir/wrong" ]; then echo "results correct"; else echo "RESULTS WRONG"; exit 1; fi
