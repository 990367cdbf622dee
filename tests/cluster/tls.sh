#!/bin/sh
# Mutual TLS on the node-to-node links, with real avmd processes on loopback and
# certificates from deploy/make-certs.sh:
#  1. n1, n2, n3 with certificates from the cluster CA (n2 and n3 join n1); a
#     controller replicated on the three elects a leader and commits puts made
#     through n2 (read back through n3);
#  2. n2 and n3 reach n1 through a TCP forwarder that records every byte (n1
#     advertises the forwarder's address): the bytes are TLS records, and a
#     distinctive value put through the controller does not appear in them;
#  3. n4, with a certificate from another CA, and n5, without TLS, join through n1's
#     control endpoint (plain, outside the links) and peer with the three: the TLS
#     nodes log link.refused with the reason (a certificate that does not verify, a
#     plaintext peer), n4 and n5 log their side, the TLS nodes report n4 and n5
#     unreachable, and a put through n4 or n5 is not applied; openssl s_client with
#     an expired certificate from the cluster CA, and without a certificate, is
#     refused by n1 with those reasons;
#  4. avmd refuses to start (exit 2) with two of the three TLS options (flags or the
#     config file), a missing file, another node's key, a certificate from another CA, or a
#     certificate that does not name --name.
# Usage: tls.sh AVMD AVMCTL SOURCE_DIR
# Environment: AVM_TIME_FACTOR scales the bounds; AVM_KEEP keeps the directory.
set -u
AVMD=$1 AVMCTL=$2 SRC=$3
F=${AVM_TIME_FACTOR:-1}
G=bank
SECRET=avm-tls-secret-value-7f3a9c
dir=$(mktemp -d "${TMPDIR:-/tmp}/avm-tls-XXXXXX") || exit 2
pid_n1= pid_n2= pid_n3= pid_n4= pid_n5= fwd_pid=
cleanup() {
  for p in "$pid_n1" "$pid_n2" "$pid_n3" "$pid_n4" "$pid_n5" "$fwd_pid"; do
    [ -n "$p" ] && kill -9 "$p" 2>/dev/null
  done
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
tenths() { echo $(($1 * F / 100)); }
ctl() { node=$1; shift; "$AVMCTL" "$@" --node "ipc://$dir/$node.sock"; }
wait_for() {
  end=$(($(ms) + $1 * 100)); shift
  while :; do
    eval "$*" && return 0
    [ "$(ms)" -ge $end ] && return 1
    sleep 0.1
  done
}
tls_of() { echo "--tls-cert $dir/$1/$2.crt --tls-key $dir/$1/$2.key --tls-ca $dir/$1/ca.crt"; }

# start NAME [avmd flags...]
start() {
  name=$1; shift
  # shellcheck disable=SC2068
  "$AVMD" --name "$name" --controller "c$name" --data "$dir/$name" \
    --control "ipc://$dir/$name.sock" --fd-bound-ms 1000 --log-format json \
    "$@" 2>>"$dir/$name.log" &
  eval "pid_$name=$!"
  i=0
  while [ $i -lt "$(tenths 10000)" ]; do
    ctl "$name" status --timeout 200 >/dev/null 2>&1 && return 0
    sleep 0.1; i=$((i + 1))
  done
  echo "avmd $name did not come up:"; tail -20 "$dir/$name.log"; exit 1
}

sh "$SRC/deploy/make-certs.sh" "$dir/ca" n1 n2 n3 >/dev/null || { echo "make-certs failed"; exit 1; }
sh "$SRC/deploy/make-certs.sh" "$dir/other" n4 >/dev/null || { echo "make-certs failed"; exit 1; }
check "make-certs.sh: keys are 0600" "$(stat -c %a "$dir/ca/ca.key" "$dir/ca/n1.key" | sort -u)" 600
check "make-certs.sh: n2's certificate is CN=n2 with DNS:n2, signed by the CA" \
  "$(openssl x509 -in "$dir/ca/n2.crt" -noout -subject -ext subjectAltName | tr -d ' \n'; \
     openssl verify -CAfile "$dir/ca/ca.crt" "$dir/ca/n2.crt" >/dev/null 2>&1 && echo ' verified')" \
  "subject=CN=n2X509v3SubjectAlternativeName:DNS:n2 verified"
ca_before=$(md5sum <"$dir/ca/ca.crt")
sh "$SRC/deploy/make-certs.sh" "$dir/ca" n1 >/dev/null
check "make-certs.sh reuses an existing CA" "$(md5sum <"$dir/ca/ca.crt")" "$ca_before"

# --- 4. (first: quick) bad TLS options --------------------------------------------
echo "--- bad TLS options"
out=$("$AVMD" --name n9 --data "$dir/n9" --listen tcp://127.0.0.1:0 \
  --tls-cert "$dir/ca/n1.crt" --tls-key "$dir/ca/n1.key" 2>&1)
rc=$?
case "$rc $out" in
  "2 "*"go together (missing: --tls-ca)"*) ok "two of the three TLS options: exit 2, names the missing one" ;;
  *) bad "two of three TLS options: $rc $out" ;;
esac
out=$("$AVMD" --name n1 --data "$dir/n9" --listen tcp://127.0.0.1:0 \
  --tls-cert "$dir/ca/n1.crt" --tls-key "$dir/ca/n1.key" --tls-ca "$dir/nosuch.crt" 2>&1)
rc=$?
case "$rc $out" in
  "2 "*"CA $dir/nosuch.crt: No such file or directory"*) ok "a missing CA file: exit 2, names the file" ;;
  *) bad "a missing CA file: $rc $out" ;;
esac
out=$("$AVMD" --name n2 --data "$dir/n9" --listen tcp://127.0.0.1:0 $(tls_of ca n1) 2>&1)
rc=$?
case "$rc $out" in
  "2 "*"does not name n2"*) ok "a certificate for another name: exit 2" ;;
  *) bad "a certificate for another name: $rc $out" ;;
esac
out=$("$AVMD" --name n4 --data "$dir/n9" --listen tcp://127.0.0.1:0 \
  --tls-cert "$dir/other/n4.crt" --tls-key "$dir/other/n4.key" --tls-ca "$dir/ca/ca.crt" 2>&1)
rc=$?
case "$rc $out" in
  "2 "*"is not valid for CA"*) ok "a certificate from another CA than --tls-ca: exit 2" ;;
  *) bad "a certificate from another CA than --tls-ca: $rc $out" ;;
esac

printf 'name = n1\nlisten = tcp://127.0.0.1:0\ntls-cert = %s\ntls-key = %s\n' \
  "$dir/ca/n1.crt" "$dir/ca/n1.key" >"$dir/n1.conf"
out=$("$AVMD" --config "$dir/n1.conf" --data "$dir/n9" 2>&1)
rc=$?
case "$rc $out" in
  "2 "*"go together (missing: --tls-ca)"*) ok "the config file's tls-cert and tls-key without tls-ca: exit 2" ;;
  *) bad "config file with two TLS keys: $rc $out" ;;
esac
printf 'tls-ca = %s\n' "$dir/ca/ca.crt" >>"$dir/n1.conf"
out=$("$AVMD" --config "$dir/n1.conf" --data "$dir/n9" --tls-key "$dir/ca/n2.key" 2>&1)
rc=$?
case "$rc $out" in
  "2 "*"key $dir/ca/n2.key (of certificate $dir/ca/n1.crt): key values mismatch"*)
    ok "a flag overrides the config file's tls-key (another node's key: exit 2)" ;;
  *) bad "config file and --tls-key: $rc $out" ;;
esac

# --- 1. three TLS nodes, a replicated controller -----------------------------------
echo "--- 1. three nodes with mutual TLS, a replicated controller"
cat >"$dir/fwd.py" <<'EOF'
# A TCP forwarder that records the bytes it carries: fwd.py PORTFILE TARGET_PORT CAPTURE
import socket, sys, threading
portfile, target, capture = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lock = threading.Lock()
out = open(capture, "ab")
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(16)
open(portfile + ".tmp", "w").write(str(srv.getsockname()[1]))
import os
os.rename(portfile + ".tmp", portfile)
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            with lock:
                out.write(d)
                out.flush()
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
while True:
    c, _ = srv.accept()
    try:
        t = socket.create_connection(("127.0.0.1", target))
    except OSError:
        c.close()
        continue
    threading.Thread(target=pipe, args=(c, t), daemon=True).start()
    threading.Thread(target=pipe, args=(t, c), daemon=True).start()
EOF
p1=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 "$dir/fwd.py" "$dir/fwd.port" "$p1" "$dir/capture" &
fwd_pid=$!
wait_for 50 '[ -s "$dir/fwd.port" ]' || { echo "the forwarder did not start"; exit 1; }
fp=$(cat "$dir/fwd.port")
start n1 --listen "tcp://127.0.0.1:$p1" --advertise "tcp://127.0.0.1:$fp" $(tls_of ca n1)
start n2 --listen tcp://127.0.0.1:0 --join "ipc://$dir/n1.sock" $(tls_of ca n2)
start n3 --listen tcp://127.0.0.1:0 --join "ipc://$dir/n1.sock" $(tls_of ca n3)
up3() {
  [ "$(ctl n1 cluster status --json 2>/dev/null |
    jq '[.views[] | .[1] | select(type == "array") | .[] | select(.[1] == true)] | length' 2>/dev/null)" = 6 ]
}
if wait_for "$(tenths 10000)" up3; then ok "the three TLS nodes see each other up"; else
  bad "the three TLS nodes do not see each other: $(ctl n1 cluster status 2>&1)"; fi
out=$(ctl n1 controller create $G --replicas n1,n2,n3 --json 2>&1)
check "controller create $G --replicas n1,n2,n3" "$(echo "$out" | jq -r .name 2>/dev/null)" $G
leader() { ctl n1 controller status $G --json --timeout 2000 2>/dev/null | jq -r 'select(.quorum == true) | .leader // empty' 2>/dev/null; }
if wait_for "$(tenths 10000)" '[ -n "$(leader)" ]'; then ok "a leader ($(leader)) is elected over TLS"; else
  bad "no leader: $(ctl n1 controller status $G 2>&1)"; fi
okputs=0
for i in 1 2 3 4 5 6 7 8 9 10; do
  ctl n2 controller put $G "k$i" "$SECRET-$i" --timeout 5000 >/dev/null 2>&1 && okputs=$((okputs + 1))
done
check "10 puts through n2 are committed" "$okputs" 10
getv() { ctl "$1" controller get $G "$2" --timeout 5000 2>&1; }
case "$(getv n3 k10)" in
  *"$SECRET-10"*) ok "n3 reads k10 back" ;;
  *) bad "n3 reads k10: $(getv n3 k10)" ;;
esac

# --- 2. nothing in plaintext on the wire ---------------------------------------------
echo "--- 2. the bytes on n1's link port"
size=$(stat -c %s "$dir/capture" 2>/dev/null || echo 0)
if [ "$size" -gt 2000 ]; then ok "the forwarder carried n2's and n3's links to n1 ($size bytes)"; else
  bad "the forwarder carried only $size bytes"; fi
first=$(od -An -tx1 -N3 "$dir/capture" | tr -d ' ')
check "the first bytes are a TLS handshake record" "$first" 160301
if grep -a -q "$SECRET" "$dir/capture"; then bad "the put's value appears in plaintext on the link"; else
  ok "the put's value does not appear on the link"; fi
if grep -a -q "avm-link" "$dir/capture"; then bad "link frames appear in plaintext"; else
  ok "no link frame appears in plaintext"; fi
# Control: the value would be found if it were there (grep works on the capture).
printf 'xx%sxx' "$SECRET" >"$dir/control"
grep -a -q "$SECRET" "$dir/control" && ok "(control: grep finds the value in raw bytes)"

# --- 3. a node from another CA, and one without TLS ------------------------------------
echo "--- 3. n4 (another CA) and n5 (no TLS) are refused"
start n4 --listen tcp://127.0.0.1:0 --join "ipc://$dir/n1.sock" $(tls_of other n4)
start n5 --listen tcp://127.0.0.1:0 --join "ipc://$dir/n1.sock"
sleep $((3 * F))
unreach() {
  ctl "$1" cluster status --json 2>/dev/null |
    jq -r --arg f "$1" --arg m "$2" '.views[] | select(.[0] == $f) | .[1][] | select(.[0] == $m) | .[1]' 2>/dev/null
}
for n in n1 n2 n3; do
  for m in n4 n5; do
    check "$n reports $m unreachable" "$(unreach $n $m)" false
  done
done
refused() { grep '"event":"link.refused"' "$dir/$1.log" | grep -c -- "$2"; }
[ "$(refused n1 'n4 at tcp://127.0.0.1:[0-9]*: TLS handshake failed: certificate verify failed')" -ge 1 ] &&
  ok "n1 logs link.refused for n4: its certificate does not verify" ||
  bad "n1's log has no refusal of n4's certificate: $(grep link.refused "$dir/n1.log" | head -5)"
[ "$(refused n1 'connection from 127.0.0.1:[0-9]*: the peer speaks plaintext')" -ge 1 ] &&
  ok "n1 logs link.refused for a plaintext peer (n5 dialling it)" ||
  bad "n1's log has no refusal of a plaintext peer: $(grep link.refused "$dir/n1.log" | head -5)"
[ "$(refused n2 'n5 at tcp://')" -ge 1 ] &&
  ok "n2 logs link.refused dialling n5 (plaintext)" ||
  bad "n2's log has no refusal of n5: $(grep link.refused "$dir/n2.log" | head -5)"
[ "$(refused n4 'alert unknown ca\|certificate verify failed')" -ge 1 ] &&
  ok "n4 logs link.refused: the TLS nodes' CA is not its own" ||
  bad "n4's log: $(grep link.refused "$dir/n4.log" | head -5)"
[ "$(refused n5 'the peer speaks TLS\|sent a TLS alert\|does it require TLS')" -ge 1 ] &&
  ok "n5 logs link.refused: the peers speak TLS" ||
  bad "n5's log: $(grep link.refused "$dir/n5.log" | head -5)"
# A TLS client with an expired certificate from the cluster CA, and one with none
# (openssl s_client, straight to n1's link port).
sh "$SRC/deploy/make-certs.sh" --days 0 "$dir/ca" n6 >/dev/null
sleep 1
timeout 10 openssl s_client -connect "127.0.0.1:$p1" -tls1_3 -cert "$dir/ca/n6.crt" \
  -key "$dir/ca/n6.key" -CAfile "$dir/ca/ca.crt" </dev/null >/dev/null 2>&1
timeout 10 openssl s_client -connect "127.0.0.1:$p1" -tls1_3 -CAfile "$dir/ca/ca.crt" \
  </dev/null >/dev/null 2>&1
wait_for 30 '[ "$(refused n1 "certificate has expired (certificate CN=n6)")" -ge 1 ]' &&
  ok "n1 logs link.refused for an expired certificate" ||
  bad "n1's log has no refusal of an expired certificate: $(grep link.refused "$dir/n1.log" | tail -3)"
wait_for 30 '[ "$(refused n1 "peer did not return a certificate")" -ge 1 ]' &&
  ok "n1 logs link.refused for a client without a certificate" ||
  bad "n1's log has no refusal of a client without certificate: $(grep link.refused "$dir/n1.log" | tail -3)"
# Refusals are not logged on every redial (at most once per 10 s per host and reason).
lines=$(grep -c '"event":"link.refused"' "$dir/n1.log")
[ "$lines" -le 14 ] && ok "n1 logged $lines refusals in 4 s (not one per redial)" ||
  bad "n1 logged $lines refusals in 4 s"
for n in n4 n5; do
  ctl $n controller put $G "from-$n" "$SECRET-$n" --timeout 3000 >/dev/null 2>&1 &&
    bad "a put through $n succeeded" || ok "a put through $n fails"
  case "$(getv n1 "from-$n")" in
    *"$SECRET-$n"*) bad "the put through $n was applied" ;;
    *) ok "the put through $n is not applied (n1 has no from-$n)" ;;
  esac
done
# The TLS nodes go on serving each other.
ctl n3 controller put $G after "$SECRET-after" --timeout 5000 >/dev/null 2>&1
case "$(getv n2 after)" in
  *"$SECRET-after"*) ok "the TLS nodes still commit through n3" ;;
  *) bad "a put through n3 after the refusals: $(getv n2 after)" ;;
esac

for n in n1 n2 n3 n4 n5; do
  p=$(eval "echo \$pid_$n")
  kill -TERM "$p"
  wait "$p"
  check "$n stops cleanly on SIGTERM" "$?" 0
  eval "pid_$n="
  e=$(grep -E 'AddressSanitizer|LeakSanitizer|runtime error:' "$dir/$n.log" | head -3)
  [ -z "$e" ] || bad "$n: a sanitizer report in its log: $e"
done
echo "$pass passed, $fails failed"
[ "$fails" -eq 0 ]
