#!/bin/sh
# Bad input on every port of a node: two avmd nodes linked on loopback (n2 reaches
# n1's link port through a recording proxy, so that real frames can be replayed),
# n1 also serving --http and a TCP control endpoint. To n1's link port: random
# bytes, a garbage frame, a truncated frame, a stream cut inside a frame, an
# oversized length header, a frame over max_frame, a frame of another version, an
# unknown kind, a frame from a machine that is not a member, frames in n2's name
# without a session and with a seq n1 already had, and a recorded connection of
# n2's (an executeRemote request among its frames) sent again. To the control endpoint: garbage over TCP
# and ctl_probe's malformed frames, unknown ops and wrong field types. To the HTTP
# port: garbage. After each: n1 still answers; its log names the cause of each
# dropped link input (event link.drop); no execution starts and no commit happens
# because of the garbage (the log's exec.started events and avm_commits_total are
# unchanged); at the end a transaction commits on n1 and n2 is a reachable member
# again.
# Usage: garbage.sh AVMD AVMCTL CTL_PROBE
set -u
AVMD=$1 AVMCTL=$2 PROBE=$3
HERE=$(cd "$(dirname "$0")" && pwd)
for c in python3 jq curl; do
  command -v $c >/dev/null 2>&1 || { echo "skip: $c is not installed"; exit 77; }
done
dir=$(mktemp -d "${TMPDIR:-/tmp}/avm-garbage-XXXXXX") || exit 2
pid_n1= pid_n2= pid_px=
cleanup() {
  for p in "$pid_n1" "$pid_n2" "$pid_px"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null; done
  [ -n "${AVM_KEEP:-}" ] && echo "kept $dir" || rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
pass=0 fails=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fails=$((fails + 1)); }
check() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got '$2', expected '$3'"; fi; }
ctl() { node=$1; shift; "$AVMCTL" "$@" --node "ipc://$dir/$node.sock"; }
G() { python3 "$HERE/garbage.py" "$@"; }
up() {
  i=0
  while [ $i -lt 100 ]; do
    ctl "$1" status --timeout 200 >/dev/null 2>&1 && return 0
    sleep 0.1; i=$((i + 1))
  done
  echo "avmd $1 did not come up:"; cat "$dir/$1.log"; exit 1
}
ready() { jq -r "select(.event == \"node.ready\") | .$2" "$dir/$1.log" | sed -E 's/.*\(port ([0-9]+)\).*/\1/'; }

# The proxy n2 dials n1 through.
mkdir "$dir/rec"
python3 "$HERE/garbage.py" proxy "$dir/px.port" "$dir/up.port" "$dir/rec" &
pid_px=$!
i=0
while [ ! -s "$dir/px.port" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
PX=$(cat "$dir/px.port")

"$AVMD" --name node1 --controller cn1 --data "$dir/n1" --control "ipc://$dir/n1.sock" \
  --control tcp://127.0.0.1:0 --listen tcp://127.0.0.1:0 \
  --advertise "tcp://127.0.0.1:$PX" --http 127.0.0.1:0 --log-format json \
  --log-level debug 2>>"$dir/n1.log" &
pid_n1=$!
up n1
LINK=$(ready n1 link)
CTLP=$(jq -r 'select(.event == "node.ready") | .control' "$dir/n1.log" |
  sed -E 's/.*tcp:[^ ]*\(port ([0-9]+)\).*/\1/')
HTTP=$(jq -r 'select(.event == "http.listen") | .port' "$dir/n1.log")
echo "$LINK" >"$dir/up.port"
"$AVMD" --name n2 --controller cn2 --data "$dir/n2" --control "ipc://$dir/n2.sock" \
  --listen tcp://127.0.0.1:0 --join "ipc://$dir/n1.sock" --log-format json \
  2>>"$dir/n2.log" &
pid_n2=$!
up n2
echo "n1: link port $LINK (n2 through $PX), control tcp port $CTLP, http port $HTTP"

# Whether node1 (n1's name: ctl_probe's requests name it) sees n2 up.
seen_up() {
  ctl n1 cluster status --json 2>/dev/null |
    jq '.views[] | select(.[0] == "node1") | .[1][] | select(.[0] == "n2") | .[1]' 2>/dev/null
}
until_up() {
  j=0
  while [ $j -lt 100 ]; do
    [ "$(seen_up)" = true ] && return 0
    sleep 0.1; j=$((j + 1))
  done
  return 1
}
until_up && ok "n1 sees n2 up" || bad "n1 does not see n2 up"

# Real traffic from n2 to n1 through the proxy: an execution started on n1 by n2.
printf '(main (let ((t (beginTx)) (o (createObj "box"))) (commitTx t) 42))\n(behavior box (list (input)))\n' >"$dir/tx.avm"
id=$(ctl n2 run "$dir/tx.avm" --on node1 --detach 2>&1)
case "$id" in node1/x*) ok "run --on node1 from n2 starts $id" ;; *) bad "run --on node1: $id" ;; esac
j=0
while [ $j -lt 100 ] && [ "$(ctl n1 exec result "$id" 2>&1)" != 42 ]; do sleep 0.1; j=$((j + 1)); done
check "its result" "$(ctl n1 exec result "$id" 2>&1)" 42

commits() { curl -s --max-time 5 "http://127.0.0.1:$HTTP/metrics" | awk '$1 == "avm_commits_total" { print $2 }'; }
started() { grep -c '"event":"exec.started"' "$dir/n1.log"; }
objects() { curl -s --max-time 5 "http://127.0.0.1:$HTTP/metrics" | awk '$1 == "avm_objects" { print $2 }'; }
sleep 0.3
C0=$(commits) S0=$(started) O0=$(objects)
echo "before the garbage: commits $C0, executions started $S0, objects $O0"
[ -n "$C0" ] && [ "$C0" -ge 1 ] && ok "the workload committed ($C0)" || bad "no commit counted: '$C0'"

# after CASE NEEDLE: n1 answers, and its log has a link.drop (or, for a connection
# closed at its header, link.refused) naming the cause.
drops() {
  jq -r 'select(.event == "link.drop" or .event == "link.refused") | (.why // .error)' \
    "$dir/n1.log" 2>/dev/null
}
after() {
  ctl n1 status --timeout 2000 >/dev/null 2>&1 && ok "$1: n1 still answers" ||
    bad "$1: n1 does not answer"
  [ -z "$2" ] && return
  j=0
  while [ $j -lt 30 ]; do
    drops | grep -qF "$2" && break
    sleep 0.1; j=$((j + 1))
  done
  if drops | grep -qF "$2"; then
    ok "$1: logged ($(drops | grep -F "$2" | tail -1))"
  else
    bad "$1: no link.drop or link.refused naming '$2' in n1's log"
  fi
}

# --- The link port -----------------------------------------------------------------
for c in "random|its header is not SP push0" \
  "garbage-frame|not a link frame" \
  "truncated-frame|not a link frame" \
  "truncated-stream|ended inside a frame (100 of 500 bytes)" \
  "huge-length|over max_frame" \
  "over-max-frame|a frame of 16777217 bytes is over max_frame" \
  "wrong-version|unsupported link frame version" \
  "unknown-kind|unknown frame kind" \
  "unknown-peer|not a peer of ours" \
  "wrong-session|heartbeat without a session"; do
  case=${c%%|*} needle=${c#*|}
  echo "  $(G link "$LINK" "$case" 2>&1)"
  after "link $case" "$needle"
done
# The recorded connections of n2 (heartbeats, the run request, acks), again.
nrec=0
for f in "$dir"/rec/conn-*; do
  [ -s "$f" ] || continue
  nrec=$((nrec + 1))
  echo "  $(G link "$LINK" replay "$f" 2>&1) ($(wc -c <"$f") bytes)"
done
[ $nrec -ge 1 ] && ok "replayed $nrec recorded connection(s) of n2" || bad "nothing recorded from n2"
after "link replay" "a duplicate (seq already received)"

# --- The control endpoint -------------------------------------------------------------
echo "  $(G raw "$CTLP" 2>&1)"
after "control garbage over tcp" ""
if "$PROBE" "tcp://127.0.0.1:$CTLP" >"$dir/probe.out" 2>&1; then
  ok "ctl_probe: every bad control request refused with its cause ($(grep -c '^ok' "$dir/probe.out") checks)"
else
  bad "ctl_probe:"; cat "$dir/probe.out"
fi
after "control probe" ""

# --- The HTTP port ----------------------------------------------------------------------
echo "  $(G raw "$HTTP" 2>&1)"
st=$(printf 'GARBAGE \001\002 nonsense\r\n\r\n' | python3 -c '
import socket,sys
s=socket.create_connection(("127.0.0.1",int(sys.argv[1])),timeout=5)
s.sendall(sys.stdin.buffer.read()); print(s.recv(64).split(b"\r\n")[0].decode(errors="replace"))' "$HTTP")
case $st in "HTTP/1.1 4"*) ok "http: a garbage request line gets $st" ;; *) bad "http garbage: '$st'" ;; esac
after "http garbage" ""
check "http: /healthz still 200" "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$HTTP/healthz")" 200

# --- Nothing applied from the garbage ----------------------------------------------------
sleep 0.5
check "no commit from the garbage (avm_commits_total)" "$(commits)" "$C0"
check "no execution started by the garbage (exec.started events)" "$(started)" "$S0"
check "no object from the garbage (avm_objects)" "$(objects)" "$O0"
n=$(grep -c '"event":"link.drop"' "$dir/n1.log")
[ "$n" -le 40 ] && ok "link.drop reports are bounded ($n)" || bad "link.drop reports: $n"

# --- Still serving ------------------------------------------------------------------------
check "a transaction commits on n1" "$(ctl n1 run "$dir/tx.avm" 2>&1)" 42
[ "$(commits)" -gt "$C0" ] && ok "and is counted ($(commits) > $C0)" || bad "commit not counted"
until_up && ok "n1 sees n2 up again" || bad "n1 does not see n2 up again"
id2=$(ctl n2 run "$dir/tx.avm" --on node1 --detach 2>&1)
j=0
while [ $j -lt 100 ] && [ "$(ctl n1 exec result "$id2" 2>&1)" != 42 ]; do sleep 0.1; j=$((j + 1)); done
check "n2 still starts executions on n1 ($id2)" "$(ctl n1 exec result "$id2" 2>&1)" 42

echo "garbage: $pass passed, $fails failed"
[ $fails -eq 0 ] || { echo "--- n1.log (link.drop)"; grep link.drop "$dir/n1.log" | tail -30; }
[ $fails -eq 0 ]
