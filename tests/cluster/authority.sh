#!/bin/sh
# The authority rule at process level (replicas.c, authority()): only an object's
# current controller commits changes to it, checked by the controller's state
# machine in log order. One avmd with a replicated controller `probeg` on itself
# and an object under its own controller cn1; link_probe joins as a member and
# proposes to probeg's log a write set that sets that object's state: the state
# machine refuses it (committed false, logged "(authority)") and the object keeps
# its state and version.
# Usage: authority.sh AVMD AVMCTL LINK_PROBE
set -u
AVMD=$1 AVMCTL=$2 PROBE=$3
command -v jq >/dev/null 2>&1 || { echo "skip: no jq"; exit 77; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/avm-authority-XXXXXX") || exit 2
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
ctl() { "$AVMCTL" "$@" --node "ipc://$dir/n1.sock"; }

"$AVMD" --name n1 --controller cn1 --data "$dir/n1" --control "ipc://$dir/n1.sock" \
  --listen tcp://127.0.0.1:0 --log-format json 2>>"$dir/n1.log" &
pid=$!
i=0
while [ $i -lt 100 ]; do
  ctl status --timeout 200 >/dev/null 2>&1 && break
  sleep 0.1; i=$((i + 1))
done
cat >"$dir/mk.avm" <<'AVM'
(behavior counter
  (let ((st (getState)) (n (if (= (length st) 0) 0 (nth st 0))))
    (setState (list (+ n (input))))
    (list (+ n (input)))))
(main (let ((tx (beginTx)) (c (createObj "counter"))) (commitTx tx) (call c 7) c))
AVM
oid=$(ctl run "$dir/mk.avm" 2>&1 | sed 's/#obj"\(.*\)"/\1/')
case "$oid" in n1/*) ok "an object under cn1 ($oid)" ;; *) bad "object: $oid"; exit 1 ;; esac
before=$(ctl obj show "$oid" --json | jq -c '[.current, .version, .state]')
check "a controller replicated on n1 alone is created" \
  "$(ctl controller create probeg --replicas n1 --json 2>&1 | jq -r .name)" probeg
i=0
while [ $i -lt 50 ]; do
  [ "$(ctl controller status probeg --json 2>/dev/null | jq -r .leader)" = n1 ] && break
  sleep 0.1; i=$((i + 1))
done
out=$(timeout 60 "$PROBE" "ipc://$dir/n1.sock" probeg "$oid" 2>&1)
code=$?
echo "$out" | sed 's/^/  probe: /'
echo "$out" | grep -q '^ok   a proposal writing the state of an object of another controller is refused' &&
  ok "probeg's state machine refuses a write to cn1's object" ||
  bad "the foreign write was not refused"
check "link_probe: every check holds" "$code" 0
grep '"raft.apply"' "$dir/n1.log" | grep -q 'a change to an object of another controller (authority)' &&
  ok "the refusal is logged with the authority reason" || bad "no authority log line"
check "the object kept its controller, version and state" \
  "$(ctl obj show "$oid" --json | jq -c '[.current, .version, .state]')" "$before"

kill -TERM "$pid"; wait "$pid" 2>/dev/null; pid=
echo "authority: $pass passed, $fails failed"
[ "$fails" -eq 0 ]
