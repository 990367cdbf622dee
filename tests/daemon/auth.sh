#!/bin/sh
# Control authentication and authorization (avmd --auth-tokens, avmctl
# --token-file / AVM_TOKEN_FILE / AVM_TOKEN): token files with a loose mode or a
# malformed line are refused at start; requests without a token or with an unknown
# one get EAUTH and those the principal may not make EPERM (avmctl exit 3), with
# nothing done; every permission class works with a token that has it; the unsafe
# grant is enforced; executions and the pure registry record who did them; run --on
# carries the principal to another member (two nodes, n2 joining with a token);
# refusals are logged (rate-limited) and no log holds a token; a node without
# tokens warns about a non-loopback control address.
# A client claiming a principal (ctl_probe spoof) gets its own recorded instead.
# Usage: auth.sh AVMD AVMCTL SOURCE_DIR CTL_PROBE
set -u
AVMD=$1 AVMCTL=$2 SRC=$3 PROBE=$4
command -v jq >/dev/null 2>&1 || { echo "skip: no jq"; exit 77; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/avm-auth-XXXXXX") || exit 2
pids=""
cleanup() {
  for p in $pids; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$dir"
}
trap cleanup EXIT
pass=0 fails=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fails=$((fails + 1)); }
check() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got '$2', expected '$3'"; fi; }

T_ADMIN=admin-0123456789abcdef0123456789abcdef
T_RUN=runner-0123456789abcdef0123456789abcdef
T_READ=reader-0123456789abcdef0123456789abcdef
T_BAD=nobody-0123456789abcdef0123456789abcdef
cat >"$dir/tokens" <<EOF
# principal  token  permissions
admin   $T_ADMIN  read,run,unsafe,admin
runner  $T_RUN    read,run
reader  $T_READ   read
EOF
chmod 600 "$dir/tokens"
printf '%s\n' "$T_ADMIN" >"$dir/admin.tok"
chmod 600 "$dir/admin.tok"

# --- The token file is checked at start -------------------------------------------
cp "$dir/tokens" "$dir/loose"
chmod 640 "$dir/loose"
"$AVMD" --data "$dir/x" --control "ipc://$dir/x.sock" --auth-tokens "$dir/loose" \
  >/dev/null 2>"$dir/err.txt"
rc=$?
check "a group-readable token file: exit 2" "$rc" 2
grep -q "$dir/loose has mode 0640" "$dir/err.txt" && ok "the refusal names the file and its mode" ||
  bad "mode refusal: $(cat "$dir/err.txt")"
printf 'ok1 %s read\nok2 %s read,write\n' "$T_ADMIN" "$T_RUN" >"$dir/badperm"
printf 'short abc read\n' >"$dir/shorttok"
printf 'one %s\n' "$T_ADMIN" >"$dir/twofields"
printf '# nothing\n\n' >"$dir/empty"
for f in badperm:2 shorttok:1 twofields:1 empty; do
  chmod 600 "$dir/${f%%:*}"
  "$AVMD" --data "$dir/x" --control "ipc://$dir/x.sock" --auth-tokens "$dir/${f%%:*}" \
    >/dev/null 2>"$dir/err.txt"
  rc=$?
  check "malformed token file ${f%%:*}: exit 2" "$rc" 2
  grep -q "$dir/$f" "$dir/err.txt" && ok "the refusal names $f" ||
    bad "${f%%:*}: $(cat "$dir/err.txt")"
done
grep -q "$T_ADMIN" "$dir/err.txt" && bad "a refusal printed a token" || true
[ -e "$dir/x" ] && [ -e "$dir/x/data.mdb" ] && bad "a refused start created the store" || true

# --- Two nodes with tokens --------------------------------------------------------
# start NAME [flags]: the node, its logs in $dir/NAME.log; n2 joins n1 with a token.
start() {
  name=$1; shift
  "$AVMD" --name "$name" --controller "c$name" --data "$dir/$name" \
    --control "ipc://$dir/$name.sock" --control tcp://127.0.0.1:0 \
    --listen tcp://127.0.0.1:0 --auth-tokens "$dir/tokens" --log-format json "$@" \
    2>>"$dir/$name.log" &
  pids="$pids $!"
  i=0
  while [ $i -lt 100 ]; do
    AVM_TOKEN=$T_READ "$AVMCTL" status --node "ipc://$dir/$name.sock" --timeout 200 \
      >/dev/null 2>&1 && return 0
    sleep 0.1; i=$((i + 1))
  done
  echo "avmd $name did not come up:"; cat "$dir/$name.log"; exit 1
}
start n1
start n2 --join "ipc://$dir/n1.sock" --join-token-file "$dir/admin.tok"

# as TOKEN NODE args...: avmctl with that token ("" for none).
as() {
  tok=$1 node=$2; shift 2
  if [ -n "$tok" ]; then
    AVM_TOKEN=$tok "$AVMCTL" "$@" --node "ipc://$dir/$node.sock"
  else
    env -u AVM_TOKEN -u AVM_TOKEN_FILE "$AVMCTL" "$@" --node "ipc://$dir/$node.sock"
  fi
}
# refused DESC CODE MESSAGE TOKEN NODE args...: exit 3, the code in --json, the message.
refused() {
  desc=$1 code=$2 msg=$3; shift 3
  out=$(as "$@" --json 2>"$dir/err.txt"); rc=$?
  check "$desc: exit 3" "$rc" 3
  check "$desc: $code" "$(echo "$out" | jq -r .code)" "$code"
  grep -q -- "$msg" "$dir/err.txt" && ok "$desc: says '$msg'" ||
    bad "$desc: $(cat "$dir/err.txt")"
}
nexec() { as "$T_READ" n1 exec ls --json | jq '.executions | length'; }

cat >"$dir/reg.avm" <<'AVM'
(pure double (x) (* 2 x))
(main (registerPure "scale" double) (callPure "scale" (list 5)))
AVM
cat >"$dir/upd.avm" <<'AVM'
(pure triple (x) (* 3 x))
(main (updatePure "scale" triple) (callPure "scale" (list 5)))
AVM
cat >"$dir/safe.avm" <<'AVM'
(main (+ 40 2))
AVM

# --- Unauthenticated and unauthorized requests are refused, nothing done ---------------
refused "status without a token" EAUTH "unauthenticated: no token" "" n1 status
refused "status with an unknown token" EAUTH "unauthenticated: unknown token" "$T_BAD" n1 status
refused "run without a token" EAUTH "no token" "" n1 run "$dir/safe.avm"
refused "run with an unknown token" EAUTH "unknown token" "$T_BAD" n1 run "$dir/safe.avm"
refused "run as reader" EPERM "run needs the run permission" "$T_READ" n1 run "$dir/safe.avm"
refused "send as reader" EPERM "send needs the run permission" "$T_READ" n1 send n1/1 5
refused "run --allow-unsafe as runner" EPERM "unsafe instructions need the unsafe grant" \
  "$T_RUN" n1 run "$dir/reg.avm" --allow-unsafe
refused "controller create as runner" EPERM "ctrl.create needs the admin permission" \
  "$T_RUN" n1 controller create g1 --replicas n1,n2
refused "exec kill as reader" EPERM "exec.kill needs the run permission" "$T_READ" n1 exec kill n1/x1
check "no execution after the refused runs" "$(nexec)" 0
check "no pure function after the refused runs" \
  "$(as "$T_READ" n1 pure ls --json | jq '.functions | length')" 0
check "no controller after the refused create" \
  "$(as "$T_READ" n1 controller ls --json | jq '[.controllers[]? | select(.[0] == "g1")] | length')" 0
# The program without the grant is refused by the node itself (EUNSAFE, exit 2).
as "$T_RUN" n1 run "$dir/reg.avm" >/dev/null 2>&1
check "registerPure without --allow-unsafe: refused by the node" "$?" 2
check "still no execution" "$(nexec)" 0

# The TCP endpoint too.
port=$(jq -r 'select(.event == "node.ready") | .control' "$dir/n1.log" | sed -n 's/.*(port \([0-9]*\)).*/\1/p')
out=$(env -u AVM_TOKEN "$AVMCTL" status --node "127.0.0.1:$port" --json 2>/dev/null); rc=$?
check "tcp: no token: exit 3" "$rc" 3
check "tcp: no token: EAUTH" "$(echo "$out" | jq -r .code)" EAUTH
check "tcp: with a token" "$(AVM_TOKEN=$T_READ "$AVMCTL" status --node "127.0.0.1:$port" --json | jq -r .name)" n1

# --- Good tokens work for every class ---------------------------------------------
check "read: status" "$(as "$T_READ" n1 status --json | jq -r .name)" n1
as "$T_READ" n1 obj ls >/dev/null && ok "read: obj ls" || bad "read: obj ls"
as "$T_READ" n1 txs >/dev/null && ok "read: txs" || bad "read: txs"
as "$T_READ" n1 cluster status >/dev/null && ok "read: cluster status" || bad "read: cluster status"
check "run: run" "$(as "$T_RUN" n1 run "$dir/safe.avm")" 42
check "run: the execution records its principal" \
  "$(as "$T_READ" n1 exec ls --json | jq -r '.executions[0].by')" runner
id=$(as "$T_READ" n1 exec ls --json | jq -r '.executions[0].id')
check "read: exec show has by" "$(as "$T_READ" n1 exec show "$id" --json | jq -r .by)" runner
as "$T_ADMIN" n1 controller create g1 --replicas n1,n2 >/dev/null 2>"$dir/err.txt" &&
  ok "admin: controller create" || bad "admin: controller create: $(cat "$dir/err.txt")"
# A token file instead of the environment.
printf '# avmctl token\n%s\n' "$T_RUN" >"$dir/run.tok"
chmod 600 "$dir/run.tok"
check "--token-file" "$(env -u AVM_TOKEN "$AVMCTL" run "$dir/safe.avm" --node "ipc://$dir/n1.sock" --token-file "$dir/run.tok")" 42
check "AVM_TOKEN_FILE" "$(env -u AVM_TOKEN AVM_TOKEN_FILE="$dir/run.tok" "$AVMCTL" run "$dir/safe.avm" --node "ipc://$dir/n1.sock")" 42
chmod 644 "$dir/run.tok"
env -u AVM_TOKEN "$AVMCTL" status --node "ipc://$dir/n1.sock" --token-file "$dir/run.tok" \
  >/dev/null 2>"$dir/err.txt"
check "avmctl refuses a readable token file (exit 2)" "$?" 2
grep -q "mode 0644" "$dir/err.txt" && ok "... naming its mode" || bad "token file mode: $(cat "$dir/err.txt")"

# A client cannot claim a principal: the node records the one it authenticated.
sid=$("$PROBE" "ipc://$dir/n1.sock" spoof "$T_RUN" admin)
case "$sid" in n1/x*) ok "a run claiming principal admin with runner's token starts ($sid)" ;;
  *) bad "spoofed run: $sid" ;; esac
check "... and is recorded as runner's" "$(as "$T_READ" n1 exec show "$sid" --json | jq -r .by)" runner
out=$("$PROBE" "ipc://$dir/n1.sock" spoof - admin)
check "a claimed principal without a token: EAUTH" "${out%% *}" EAUTH

# --- The unsafe grant, and who registered and updated pure functions ------------------
check "unsafe: registerPure as admin" "$(as "$T_ADMIN" n1 run "$dir/reg.avm" --allow-unsafe)" 10
rid=$(as "$T_READ" n1 exec ls --json | jq -r '[.executions[] | select(.by == "admin")][0].id')
as "$T_READ" n1 pure ls --json >"$dir/pure.json"
check "pure ls: scale version 0 by admin" \
  "$(jq -r '.functions[] | select(.name == "scale") | "\(.version) \(.by) \(.exec) \(.machine.machine)"' "$dir/pure.json")" \
  "0 admin $rid n1"
check "pure ls: double (registered at the start) by admin" \
  "$(jq -r '.functions[] | select(.name == "double") | .by' "$dir/pure.json")" admin
check "updatePure as runner (safe)" "$(as "$T_RUN" n1 run "$dir/upd.avm")" 15
uid=$(as "$T_READ" n1 exec ls --json | jq -r '.executions[-1].id')
check "pure ls: scale version 1 by runner" \
  "$(as "$T_READ" n1 pure ls --json | jq -r '.functions[] | select(.name == "scale") | "\(.version) \(.by) \(.exec)"')" \
  "1 runner $uid"
as "$T_READ" n1 pure ls | grep -q "^scale  *1  *runner  *$uid  *n1" && ok "pure ls text" ||
  bad "pure ls text: $(as "$T_READ" n1 pure ls)"
# --- run --on: the forwarded request carries the principal, not the token ----------------
i=0
while [ $i -lt 100 ]; do
  as "$T_READ" n1 cluster status --json 2>/dev/null | jq -e '.members | length == 2' >/dev/null && break
  sleep 0.1; i=$((i + 1))
done
rid2=$(as "$T_RUN" n1 run "$dir/safe.avm" --on n2 --detach 2>&1)
case "$rid2" in n2/x*) ok "run --on n2 as runner ($rid2)" ;; *) bad "run --on n2: $rid2" ;; esac
i=0
while [ $i -lt 100 ]; do
  st=$(as "$T_READ" n2 exec show "$rid2" --json 2>/dev/null | jq -r .status)
  [ "$st" = terminated ] && break
  sleep 0.1; i=$((i + 1))
done
check "run --on: the execution on n2 records runner" \
  "$(as "$T_READ" n2 exec show "$rid2" --json | jq -r .by)" runner
refused "run --on n2 --allow-unsafe as runner" EPERM "unsafe grant" "$T_RUN" n1 run "$dir/reg.avm" --on n2 --allow-unsafe
check "run --on as admin with the grant" "$(as "$T_ADMIN" n1 run "$dir/reg.avm" --on n2 --allow-unsafe)" 10
check "n2's registry: scale by admin on n2" \
  "$(as "$T_READ" n2 pure ls --json | jq -r '.functions[] | select(.name == "scale") | "\(.by) \(.machine.machine)"')" \
  "admin n2"
refused "run --on n2 without a token" EAUTH "no token" "" n1 run "$dir/safe.avm" --on n2
check "n2 started nothing for the refused requests" \
  "$(as "$T_READ" n2 exec ls --json | jq '.executions | length')" 2

# --- The principal is in the execution's checkpoint: it survives a restart ------------
n1pid=$(echo $pids | awk '{print $1}')
kill -TERM "$n1pid"; wait "$n1pid" 2>/dev/null
pids=$(echo $pids | awk '{$1=""; print}')
start n1
check "after a restart: exec show by" "$(as "$T_READ" n1 exec show "$uid" --json | jq -r .by)" runner
check "after a restart: pure ls by" \
  "$(as "$T_READ" n1 pure ls --json | jq -r '.functions[] | select(.name == "scale") | .by')" runner

# --- Logs: refusals with endpoint and op, rate-limited, and never a token --------------
jq -c 'select(.event == "control.refused")' "$dir/n1.log" | head -1 | grep -q '"endpoint":"ipc://' &&
  ok "a refusal is logged with its endpoint" || bad "no control.refused with an endpoint"
jq -c 'select(.event == "control.refused" and .op == "status")' "$dir/n1.log" | grep -q . &&
  ok "a refusal is logged with its op" || bad "no control.refused for status"
before=$(grep -c '"control.refused"' "$dir/n1.log")
k=0
while [ $k -lt 40 ]; do
  env -u AVM_TOKEN "$AVMCTL" obj ls --node "ipc://$dir/n1.sock" >/dev/null 2>&1
  k=$((k + 1))
done
after=$(grep -c '"control.refused"' "$dir/n1.log")
[ $((after - before)) -le 20 ] && [ $((after - before)) -ge 1 ] &&
  ok "40 refusals in a burst: $((after - before)) logged (at most 20 per 10 s)" ||
  bad "refusal logs not limited: $((after - before)) for 40"
leak=0
for t in "$T_ADMIN" "$T_RUN" "$T_READ" "$T_BAD"; do
  grep -q -- "$t" "$dir/n1.log" "$dir/n2.log" && leak=1
done
check "no log holds a token" "$leak" 0

# --- Without tokens: a warning for a non-loopback control address ----------------------
"$AVMD" --data "$dir/open" --control "ipc://$dir/open.sock" --control tcp://0.0.0.0:0 \
  --log-format json 2>"$dir/open.log" &
op=$!
pids="$pids $op"
i=0
while [ $i -lt 50 ]; do
  grep -q '"node.ready"' "$dir/open.log" && break
  sleep 0.1; i=$((i + 1))
done
jq -r 'select(.event == "control.unauthenticated") | .control' "$dir/open.log" | grep -q '^tcp://0.0.0.0:0$' &&
  ok "no tokens, tcp://0.0.0.0: control.unauthenticated warning" ||
  bad "no warning: $(cat "$dir/open.log")"
jq -r 'select(.event == "control.unauthenticated") | .control' "$dir/open.log" | grep -q ipc &&
  bad "an ipc address was warned about" || ok "no warning for the ipc address"
check "no tokens: requests work as before" \
  "$(env -u AVM_TOKEN "$AVMCTL" run "$dir/safe.avm" --node "ipc://$dir/open.sock")" 42
check "no tokens: the execution is anonymous's" \
  "$(env -u AVM_TOKEN "$AVMCTL" exec ls --node "ipc://$dir/open.sock" --json | jq -r '.executions[0].by')" anonymous
check "no tokens: --allow-unsafe needs no grant" \
  "$(env -u AVM_TOKEN "$AVMCTL" run "$dir/reg.avm" --allow-unsafe --node "ipc://$dir/open.sock")" 10
check "no tokens: registered by anonymous" \
  "$(env -u AVM_TOKEN "$AVMCTL" pure ls --node "ipc://$dir/open.sock" --json | jq -r '.functions[] | select(.name == "scale") | .by')" anonymous
kill -TERM $op; wait $op 2>/dev/null

echo "auth: $pass passed, $fails failed"
[ "$fails" -eq 0 ]
