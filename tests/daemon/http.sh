#!/bin/sh
# avmd's observability endpoint (--http): /healthz, /metrics as Prometheus text that
# moves with a workload, /events as Server-Sent Events (one execution's history, and
# a live stream of all), and garbage from the network that must not hurt the node.
# Usage: http.sh AVMD AVMCTL
set -u
AVMD=$1 AVMCTL=$2
command -v curl >/dev/null 2>&1 || { echo "skip: curl is not installed"; exit 77; }
command -v jq >/dev/null 2>&1 || { echo "skip: jq is not installed"; exit 77; }
command -v python3 >/dev/null 2>&1 || { echo "skip: python3 is not installed"; exit 77; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/avm-http-XXXXXX") || exit 2
pid= bg=
cleanup() {
  [ -n "$bg" ] && kill "$bg" 2>/dev/null
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
pass=0 fails=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fails=$((fails + 1)); }
check() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got '$2', expected '$3'"; fi; }

URL="ipc://$dir/ctl.sock"
ctl() { "$AVMCTL" "$@" --node "$URL"; }

"$AVMD" --data "$dir/data" --control "$URL" --http 127.0.0.1:0 --log-format json \
  2>>"$dir/avmd.log" &
pid=$!
port=
i=0
while [ $i -lt 100 ]; do
  port=$(jq -r 'select(.event == "http.listen") | .port' "$dir/avmd.log" 2>/dev/null)
  [ -n "$port" ] && ctl status --timeout 200 >/dev/null 2>&1 && break
  sleep 0.1; i=$((i + 1))
done
[ -n "$port" ] || { echo "avmd did not log http.listen:"; cat "$dir/avmd.log"; exit 1; }
H="http://127.0.0.1:$port"
echo "avmd pid $pid, http port $port"

# code PATH [curl options]: the status code (000: no answer).
code() { p=$1; shift; curl -s -o "$dir/body" -w '%{http_code}' --max-time 10 "$@" "$H$p"; }
# metric NAME{LABELS}: its value in a fresh scrape.
metric() { curl -s --max-time 10 "$H/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }

# --- Health -----------------------------------------------------------------------
check "/healthz is 200" "$(code /healthz)" 200
check "/healthz says ok" "$(cat "$dir/body")" ok
check "/readyz is 200" "$(code /readyz)" 200
check "an unknown path is 404" "$(code /nope)" 404

# --- Metrics: the exposition format -----------------------------------------------
ct=$(curl -s -o "$dir/m1" -w '%{content_type}' --max-time 10 "$H/metrics")
case $ct in text/plain*version=0.0.4*) ok "content type $ct" ;; *) bad "content type '$ct'" ;; esac
# Every sample line: name, optional {label="value",...}, a value.
badlines=$(grep -v '^#' "$dir/m1" | grep -v '^$' |
  grep -Ev '^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")*\})? (-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|\+Inf|-Inf|NaN)$')
check "every sample line is NAME{LABELS} VALUE" "$badlines" ""
# Every # TYPE names a known type; counters end in _total; every sample belongs to a
# declared family.
python3 - "$dir/m1" >"$dir/fmt" <<'PY'
import re, sys
types, errs = {}, []
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    m = re.match(r"# TYPE (\S+) (\S+)$", line)
    if m:
        name, t = m.groups()
        if t not in ("counter", "gauge", "histogram", "summary", "untyped"):
            errs.append("type " + line)
        if t == "counter" and not name.endswith("_total"):
            errs.append("counter without _total: " + name)
        if name in types:
            errs.append("declared twice: " + name)
        types[name] = t
        continue
    if line.startswith("#") or not line:
        continue
    name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    if name not in types and not (base in types and types[base] == "histogram"):
        errs.append("undeclared: " + name)
print("\n".join(errs))
PY
check "TYPE lines, _total counters, declared families" "$(cat "$dir/fmt")" ""
missing=
for n in avm_build_info avm_process_start_time_seconds avm_commits_total \
  avm_commit_conflicts_total avm_group_commits_total avm_executions \
  avm_executions_runnable avm_objects avm_commit_duration_seconds_bucket \
  avm_commit_duration_seconds_sum avm_commit_duration_seconds_count avm_cross_tx_total \
  avm_cross_tx_started_total avm_bundles avm_cluster_member avm_event_streams; do
  grep -q "^$n[ {]" "$dir/m1" || missing="$missing $n"
done
check "documented metrics present" "$missing" ""
for s in running waiting_message waiting_commit suspended terminated; do
  grep -q "^avm_executions{status=\"$s\"} " "$dir/m1" || missing="$missing $s"
done
check "executions by status" "$missing" ""
inf=$(awk '$1 == "avm_commit_duration_seconds_bucket{path=\"local\",le=\"+Inf\"}" { print $2 }' "$dir/m1")
cnt=$(awk '$1 == "avm_commit_duration_seconds_count{path=\"local\"}" { print $2 }' "$dir/m1")
check "histogram +Inf bucket = count" "$inf" "$cnt"

# --- A workload moves the counters --------------------------------------------------
c0=$(metric avm_commits_total)
h0=$(metric 'avm_commit_duration_seconds_count{path="local"}')
cat >"$dir/count.avm" <<'AVM'
(behavior counter
  (let ((s (getState)) (n (if (null? s) 0 (head s))))
    (do (setState (list (+ n 1))) (list (+ n 1)))))
(defun go (o i) (if (= i 0) 0 (let ((t (beginTx))) (do (call o 1) (commitTx t) (go o (- i 1))))))
(main (let ((t (beginTx)) (o (createObj "counter"))) (do (commitTx t) (go o 20) (call o 0))))
AVM
id=$(ctl run "$dir/count.avm" --detach)
r=$(ctl exec result "$id" --wait 20000 2>&1)
check "workload result" "$r" 21
c1=$(metric avm_commits_total)
h1=$(metric 'avm_commit_duration_seconds_count{path="local"}')
[ $((c1 - c0)) -ge 21 ] && ok "avm_commits_total rose by $((c1 - c0))" || bad "avm_commits_total $c0 -> $c1"
[ $((h1 - h0)) -ge 21 ] && ok "commit histogram count rose by $((h1 - h0))" || bad "histogram count $h0 -> $h1"
check "histogram count = commits" "$h1" "$c1"
check "terminated executions gauge" "$(metric 'avm_executions{status="terminated"}')" 1

# --- /events?exec=ID: one execution's history, then the stream ends --------------------
curl -s -N --max-time 15 "$H/events?exec=$id" >"$dir/ev1"
sed -n 's/^data: //p' "$dir/ev1" >"$dir/ev1.json"
n=$(wc -l <"$dir/ev1.json")
[ "$n" -gt 40 ] && ok "history of $id: $n entries" || bad "history of $id: $n entries"
check "entries carry the execution" "$(jq -r .exec "$dir/ev1.json" | sort -u)" "$id"
check "first entry is index 0, seq 0" "$(head -1 "$dir/ev1.json" | jq -c '[.index, .seq]')" "[0,0]"
check "indexes are 0..n-1" "$(jq -r .index "$dir/ev1.json" | tr '\n' ' ')" \
  "$(seq 0 $((n - 1)) | tr '\n' ' ')"
# The entries are avmctl's: exec trace --format json, field for field.
ctl exec trace "$id" --format json | jq -c '.entries[]' >"$dir/trace.json"
jq -c 'del(.seq, .exec, .index)' "$dir/ev1.json" >"$dir/ev1.entries"
if cmp -s "$dir/trace.json" "$dir/ev1.entries"; then ok "entries = avmctl exec trace --format json"
else bad "entries differ from avmctl's:"; diff "$dir/trace.json" "$dir/ev1.entries" | head -5; fi
commits=$(jq -r 'select(.kind == "event") | .event.type // .event.event // empty' "$dir/ev1.json" | grep -c Commit)
[ "$commits" -ge 21 ] && ok "$commits commit events in the history" || bad "commit events: $commits ($(head -c 300 "$dir/ev1.json"))"
curl -s -N --max-time 15 "$H/events?exec=$id&since=5" | sed -n 's/^data: //p' >"$dir/ev2.json"
check "?since=5 starts at index 5" "$(head -1 "$dir/ev2.json" | jq .index)" 5
check "?since=5 has the rest" "$(wc -l <"$dir/ev2.json")" "$((n - 5))"
check "unknown execution is 404" "$(code '/events?exec=node1/x999999')" 404
check "bad since is 400" "$(code '/events?since=abc')" 400

# --- A live stream of all executions -------------------------------------------------------
curl -s -N --max-time 20 "$H/events" >"$dir/live" 2>/dev/null &
bg=$!
i=0
while [ $i -lt 100 ] && [ "$(metric avm_event_streams)" != 1 ]; do sleep 0.1; i=$((i + 1)); done
check "the stream is open" "$(metric avm_event_streams)" 1
id2=$(ctl run "$dir/count.avm" --detach)
ctl exec result "$id2" --wait 20000 >/dev/null
i=0
while [ $i -lt 100 ]; do
  m=$(sed -n 's/^data: //p' "$dir/live" | jq -r --arg id "$id2" 'select(.exec == $id) | .index' | wc -l)
  [ "$m" -ge "$n" ] && break
  sleep 0.1; i=$((i + 1))
done
check "the live stream has every entry of $id2" "$m" "$n"
old=$(sed -n 's/^data: //p' "$dir/live" | jq -r --arg id "$id" 'select(.exec == $id)' | wc -l)
check "and none of the earlier execution" "$old" 0
seqs=$(sed -n 's/^data: //p' "$dir/live" | jq -r .seq)
check "feed sequence numbers increase by one" "$(echo "$seqs" | awk 'NR > 1 && $1 != p + 1 { print "gap at " $1 } { p = $1 }')" ""
first=$(echo "$seqs" | head -1)
curl -s -N --max-time 2 "$H/events?since=$first" 2>/dev/null | sed -n 's/^data: //p' >"$dir/since"
check "?since=N replays the feed from N" "$(head -1 "$dir/since" | jq .seq)" "$first"
kill "$bg" 2>/dev/null; wait "$bg" 2>/dev/null; bg=

# --- A client that does not read: the node goes on, the client misses entries -------------
sed 's/(go o 20)/(go o 3000)/' "$dir/count.avm" >"$dir/many.avm"
python3 - "$port" "$dir/slow.done" >"$dir/slow" 2>&1 <<'PY' &
import os, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
deadline = time.time() + 60
while not os.path.exists(sys.argv[2]) and time.time() < deadline:
    time.sleep(0.1)   # not reading
s.settimeout(2)
data = b""
try:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
except socket.timeout:
    pass
print("entries", data.count(b"\ndata: {\"seq\""))
print("dropped", data.count(b"event: dropped"))
PY
slowpid=$!
i=0
while [ $i -lt 100 ] && [ "$(metric avm_event_streams)" != 1 ]; do sleep 0.1; i=$((i + 1)); done
t0=$(date +%s%N)
big=$(ctl run "$dir/many.avm" --detach)
ctl exec result "$big" --wait 60000 >/dev/null
t1=$(date +%s%N)
check "/healthz while a client stalls" "$(code /healthz)" 200
touch "$dir/slow.done"
wait "$slowpid"
e=$(sed -n 's/^entries //p' "$dir/slow"); d=$(sed -n 's/^dropped //p' "$dir/slow")
[ "${d:-0}" -ge 1 ] && [ "${e:-0}" -ge 1 ] && ok "the stalled client got $e entries and $d dropped notices ($(( (t1 - t0) / 1000000 )) ms workload)" \
  || bad "stalled client: $(cat "$dir/slow")"
drop=$(metric avm_event_stream_dropped_total)
[ "${drop:-0}" -gt 0 ] && ok "avm_event_stream_dropped_total $drop" || bad "avm_event_stream_dropped_total '$drop'"

# --- Garbage from the network ---------------------------------------------------------------
check "POST is 405" "$(code /metrics -X POST -d x=1)" 405
check "DELETE is 405" "$(code /metrics -X DELETE)" 405
big=$(head -c 10000 /dev/zero | tr '\0' a)
c=$(code /metrics -H "X-Big: $big")
case $c in 4??|000) ok "an oversized head gets $c" ;; *) bad "an oversized head gets $c" ;; esac
python3 - "$port" >"$dir/raw" 2>&1 <<'PY'
import os, socket, sys, time
port = int(sys.argv[1])
def talk(data, close_early=False):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(data)
        if close_early:
            s.close()
            return "closed"
        out = b""
        while True:
            try:
                chunk = s.recv(4096)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            out += chunk
        return (out.split(b"\r\n")[0] or b"closed").decode("latin-1")
    finally:
        s.close()
print("blob", talk(os.urandom(4096)))
print("nul", talk(b"\x00" * 100))
print("line", talk(b"GET /metrics\r\n\r\n"))
print("version", talk(b"GET /metrics HTTP/9.9\r\n\r\n"))
print("header", talk(b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n"))
print("body", talk(b"GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"))
print("chunked", talk(b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"))
print("half", talk(b"GET /metr", close_early=True))
print("ok10", talk(b"GET /healthz HTTP/1.0\r\n\r\n"))
print("bare-lf", talk(b"GET /healthz HTTP/1.1\nHost: x\n\n"))
# More connections than the server takes: the excess gets 503 at once.
idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(70)]
time.sleep(0.3)
busy = 0
for s in idle:
    s.setblocking(False)
    try:
        if s.recv(64).startswith(b"HTTP/1.1 503"):
            busy += 1
    except BlockingIOError:
        pass
print("busy", busy)
for s in idle:
    s.close()
PY
# Mutated requests (seeded): every one gets an answer or a closed connection, and
# clients that hang up before the answer are no harm (SIGPIPE is ignored).
python3 - "$port" >"$dir/mut" 2>&1 <<'PY'
import os, random, socket, sys
port = int(sys.argv[1]); random.seed(7)
seeds = [b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
         b"GET /events?exec=node1/x1&since=3 HTTP/1.1\r\n\r\n",
         b"GET /events?since=0 HTTP/1.0\r\n\r\n",
         b"GET /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n"]
bad = 0
for i in range(400):
    b = bytearray(random.choice(seeds))
    for _ in range(random.randint(0, 6)):
        op = random.random(); pos = random.randint(0, len(b))
        if op < 0.3: b[pos:pos] = os.urandom(random.randint(1, 20))
        elif op < 0.6 and len(b) > 0: del b[pos:pos + random.randint(1, 10)]
        elif op < 0.8: b[pos:pos] = random.choice([b"\r\n", b"\n", b" ", b":", b"%", b"?", b"&", b"=", b"%zz", b"%00"])
        else: b[pos:pos] = b"A" * random.randint(1, 9000)
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(bytes(b))
        if i % 3 == 0:
            s.close()   # hang up before the answer
            continue
        s.shutdown(socket.SHUT_WR)
        r = s.recv(20)
        if r and not r.startswith(b"HTTP/1.1 "):
            bad += 1
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        s.close()
print("bad", bad)
PY
check "400 mutated requests: answers are HTTP or a close" "$(cat "$dir/mut")" "bad 0"
grep -q '^blob HTTP/1.1 400\|^blob closed' "$dir/raw" && ok "a binary blob: $(grep ^blob "$dir/raw")" || bad "blob: $(cat "$dir/raw")"
grep -q '^nul HTTP/1.1 400\|^nul closed' "$dir/raw" && ok "NUL bytes: 400" || bad "nul: $(grep ^nul "$dir/raw")"
for k in line version header body chunked; do
  check "malformed ($k) is 400" "$(grep "^$k " "$dir/raw" | cut -d' ' -f2-3)" "HTTP/1.1 400"
done
check "a half request then close" "$(grep '^half' "$dir/raw")" "half closed"
check "HTTP/1.0 is served" "$(grep '^ok10' "$dir/raw" | cut -d' ' -f2-3)" "HTTP/1.1 200"
check "bare LF line ends are served" "$(grep '^bare-lf' "$dir/raw" | cut -d' ' -f2-3)" "HTTP/1.1 200"
b=$(grep '^busy' "$dir/raw" | cut -d' ' -f2)
[ "${b:-0}" -ge 1 ] && ok "connections past the bound get 503 ($b)" || bad "no 503 past the bound: $(cat "$dir/raw")"
i=0
while [ $i -lt 50 ] && [ "$(code /healthz)" != 200 ]; do sleep 0.1; i=$((i + 1)); done
check "still serving after the garbage" "$(code /healthz)" 200
kill -0 "$pid" 2>/dev/null && ok "avmd is alive" || bad "avmd died: $(tail -5 "$dir/avmd.log")"
r=$(ctl run "$dir/count.avm" 2>&1)
check "and still runs programs" "$r" 21

# --- Config file key, and a clean stop with a stream open -------------------------------------
curl -s -N --max-time 20 "$H/events" >/dev/null 2>&1 &
bg=$!
sleep 0.3
kill -TERM "$pid"
i=0
while [ $i -lt 100 ] && kill -0 "$pid" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
if kill -0 "$pid" 2>/dev/null; then bad "avmd did not stop on SIGTERM with a stream open"; else
  wait "$pid"; check "SIGTERM with a stream open: exit 0" "$?" 0; fi
pid=
wait "$bg" 2>/dev/null; bg=
printf 'http = 127.0.0.1:0\n' >"$dir/avmd.conf"
: >"$dir/avmd2.log"
"$AVMD" --config "$dir/avmd.conf" --data "$dir/data" --control "$URL" --log-format json \
  2>>"$dir/avmd2.log" &
pid=$!
port=
i=0
while [ $i -lt 100 ] && [ -z "$port" ]; do
  port=$(jq -r 'select(.event == "http.listen") | .port' "$dir/avmd2.log" 2>/dev/null)
  sleep 0.1; i=$((i + 1))
done
H="http://127.0.0.1:$port"
check "config key http: /healthz" "$(code /healthz)" 200
check "the executions survive the restart" "$(metric avm_executions'{status="terminated"}')" 4
"$AVMD" --http nonsense --data "$dir/x" >/dev/null 2>&1
check "--http without a port is refused (exit 2)" "$?" 2
kill -TERM "$pid"; wait "$pid"; check "clean stop: exit 0" "$?" 0; pid=

# --- Three nodes: peers' reachability and the Raft groups ------------------------------------
# cstart NAME: a cluster member with its own HTTP port (n1 starts the cluster).
cstart() {
  name=$1
  join=""
  [ "$name" != n1 ] && join="--join ipc://$dir/n1.sock"
  "$AVMD" --name "$name" --controller "c$name" --data "$dir/$name" \
    --control "ipc://$dir/$name.sock" --listen tcp://127.0.0.1:0 --http 127.0.0.1:0 \
    --fd-bound-ms 1000 --log-format json $join 2>>"$dir/$name.log" &
  eval "pid_$name=$!"
  i=0
  while [ $i -lt 100 ]; do
    "$AVMCTL" status --timeout 200 --node "ipc://$dir/$name.sock" >/dev/null 2>&1 && break
    sleep 0.1; i=$((i + 1))
  done
  eval "port_$name=$(jq -r 'select(.event == "http.listen") | .port' "$dir/$name.log")"
}
cmetric() { eval "p=\$port_$1"; curl -s --max-time 10 "http://127.0.0.1:$p/metrics" | awk -v k="$2" '$1 == k { print $2 }'; }
cstop() { for n in n1 n2 n3; do eval "q=\${pid_$n:-}"; [ -n "$q" ] && kill -9 "$q" 2>/dev/null; done; }
trap 'cstop; cleanup' EXIT
cstart n1; cstart n2; cstart n3
i=0
while [ $i -lt 100 ]; do
  [ "$(cmetric n1 'avm_peer_reachable{peer="n2"}')$(cmetric n1 'avm_peer_reachable{peer="n3"}')" = 11 ] && break
  sleep 0.1; i=$((i + 1))
done
check "n1 sees n2 and n3 reachable" \
  "$(cmetric n1 'avm_peer_reachable{peer="n2"}') $(cmetric n1 'avm_peer_reachable{peer="n3"}')" "1 1"
check "avm_cluster_member on n2" "$(cmetric n2 avm_cluster_member)" 1
"$AVMCTL" controller create g --replicas n1,n2,n3 --node "ipc://$dir/n1.sock" >/dev/null 2>&1
i=0
while [ $i -lt 100 ]; do
  l=0
  for n in n1 n2 n3; do
    v=$(cmetric $n 'avm_raft_is_leader{controller="g"}')
    l=$((l + ${v:-0}))
  done
  [ "$l" = 1 ] && break
  sleep 0.1; i=$((i + 1))
done
check "exactly one replica of g leads" "$l" 1
t1=$(cmetric n1 'avm_raft_term{controller="g"}'); t2=$(cmetric n2 'avm_raft_term{controller="g"}')
[ -n "$t1" ] && [ "$t1" -ge 1 ] && ok "g's term on n1: $t1 (n2: $t2)" || bad "g's term on n1: '$t1'"
[ -n "$(cmetric n1 'avm_raft_commit_index{controller="g"}')" ] && ok "g's commit index" || bad "no avm_raft_commit_index for g"
# Commits through g's group: the replicated latency histogram and the commit index move.
cat >"$dir/g.avm" <<'AVM'
(behavior counter
  (let ((s (getState)) (n (if (null? s) 0 (head s))))
    (do (setState (list (+ n 1))) (list (+ n 1)))))
(defun go (o i) (if (= i 0) 0 (let ((t (beginTx #ctl"g"))) (do (call o 1) (commitTx t) (go o (- i 1))))))
(main (let ((t (beginTx #ctl"g")) (o (createObj "counter" #ctl"g"))) (do (commitTx t) (go o 5) (call o 0))))
AVM
ci0=$(cmetric n1 'avm_raft_commit_index{controller="g"}')
r=$("$AVMCTL" run "$dir/g.avm" --node "ipc://$dir/n1.sock" 2>&1)
check "commits through g" "$r" 6
hr=$(cmetric n1 'avm_commit_duration_seconds_count{path="replicated"}')
[ "${hr:-0}" -ge 6 ] && ok "replicated commit histogram count $hr" || bad "replicated histogram count '$hr'"
ci1=$(cmetric n1 'avm_raft_commit_index{controller="g"}')
[ "${ci1:-0}" -gt "${ci0:-0}" ] && ok "g's commit index $ci0 -> $ci1" || bad "g's commit index $ci0 -> $ci1"
eval "p1=\$port_n1"
check "n1 /healthz with g led" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p1/healthz")" 200
kill -9 "$pid_n3"; pid_n3=
i=0
while [ $i -lt 50 ] && [ "$(cmetric n1 'avm_peer_reachable{peer="n3"}')" != 0 ]; do sleep 0.1; i=$((i + 1)); done
check "n3 killed: n1 reports it unreachable" "$(cmetric n1 'avm_peer_reachable{peer="n3"}')" 0
phi=$(cmetric n1 'avm_peer_phi{peer="n3"}')
[ -n "$phi" ] && ok "n3's phi on n1: $phi" || bad "no avm_peer_phi for n3"
cstop

# Under the sanitizers, a report in any node's log is a failure.
san=$(grep -l 'Sanitizer' "$dir"/*.log 2>/dev/null)
check "no sanitizer report in the logs" "$san" ""
[ -n "$san" ] && grep -h -A30 'Sanitizer' $san | head -60

echo "http: $pass passed, $fails failed"
[ "$fails" -eq 0 ] && [ -n "${KEEP_LOG:-}" ] && cat "$dir/avmd.log"
[ "$fails" -eq 0 ] || { echo "--- avmd.log (tail)"; tail -20 "$dir/avmd.log"; }
[ "$fails" -eq 0 ]
