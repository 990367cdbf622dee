#!/bin/sh
# avmctl's node commands without a node: every command answers --help (exit 0), and
# `avmctl help` and the commands' helps list every command and subcommand;
# send and status without --node exit 2 with a message; a node that does not answer
# gives "no answer" and exit 2 within the timeout (5 s by default, --timeout MS);
# exec suspend/kill need a node; exec trace --format renders an embedded execution's
# trace log as a sequence chart (text, mermaid, json), and exec trace without it is
# unchanged.
#
# usage: avmctl_node_cli.sh AVMCTL SOURCE_DIR
set -u
AVMCTL=$1
SRC=$2
dir=$(mktemp -d "${TMPDIR:-/tmp}/avm-node-cli-XXXXXX") || exit 2
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 2
unset AVM_NODE
AVM_DATA="$dir/default-data"
export AVM_DATA
fails=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; fails=$((fails + 1)); }

# expect NAME CODE -- avmctl args...: the exit code; out.txt and err.txt hold the output.
expect() {
    name=$1 code=$2
    shift 3
    "$AVMCTL" "$@" >out.txt 2>err.txt
    rc=$?
    if [ "$rc" -eq "$code" ]; then
        ok "$name"
        return 0
    fi
    bad "$name: exit $rc, expected $code"
    cat out.txt err.txt
    return 1
}

expect "--help" 0 -- --help && grep -q "^usage: avmctl" out.txt ||
    bad "--help prints the usage"
expect "exec --help" 0 -- exec --help && grep -q "exec trace ID" out.txt ||
    bad "exec --help lists exec trace"
for c in "run" "check" "obj" "obj ls" "obj show" "exec ls" "exec show" "exec result" \
    "exec trace" "exec resume" "exec suspend" "exec kill" "exec constraints" "send" \
    "status" "txs" "solve" "cluster" "controller" "bundle" "pure" "pure ls"; do
    # shellcheck disable=SC2086
    expect "$c --help" 0 -- $c --help && grep -q "^usage: avmctl $c" out.txt ||
        bad "$c --help: usage of $c"
done
# Every command is in the overview, and every controller and bundle subcommand is in
# its command's help.
"$AVMCTL" help >help.txt
for c in run check obj exec solve send status txs cluster controller bundle pure help; do
    grep -q "^  $c " help.txt && ok "avmctl help lists $c" || bad "avmctl help misses $c"
done
# The token option (avmd --auth-tokens) and its exit code, in the overview and in
# the help of every command that talks to a node.
grep -q -- "^  --token-file FILE" help.txt && ok "avmctl help lists --token-file" ||
    bad "avmctl help misses --token-file"
grep -q "3 the node refused the request" help.txt && ok "avmctl help gives exit code 3" ||
    bad "avmctl help misses exit code 3"
for c in "run" "obj" "exec ls" "exec kill" "send" "status" "txs" "cluster" "controller" \
    "bundle" "pure"; do
    # shellcheck disable=SC2086
    "$AVMCTL" $c --help | grep -q -- "--token-file FILE" && ok "$c --help lists --token-file" ||
        bad "$c --help misses --token-file"
done
expect "pure without ls" 2 -- pure
expect "pure ls of an ephemeral node" 2 -- pure ls --ephemeral
for s in create ls status add remove transfer latency put get bench; do
    "$AVMCTL" controller --help | grep -q "^  $s " && ok "controller --help lists $s" ||
        bad "controller --help misses $s"
done
for s in create status; do
    "$AVMCTL" bundle --help | grep -q "^  $s " && ok "bundle --help lists $s" ||
        bad "bundle --help misses $s"
done
expect "an unknown command" 2 -- frobnicate
expect "an unknown exec subcommand" 2 -- exec frob node1/e1 && grep -q "unknown subcommand" err.txt ||
    bad "the unknown subcommand is named"
expect "exec constraints without --node" 2 -- exec constraints node1/e1 &&
    grep -q -- "--node" err.txt || bad "exec constraints without --node names --node"
expect "solve of a missing file" 2 -- solve "$dir/none.smt2" && grep -q "cannot read" err.txt ||
    bad "solve names the unreadable file"
printf '(declare-const x Int)\n(assert (> x 2))\n(check-sat)\n' >p.smt2
expect "solve runs a script" 0 -- solve p.smt2 && grep -q "^sat" out.txt ||
    bad "solve prints sat"
expect "status --help with --node" 0 -- status --node ipc:///nowhere --help

expect "status without --node" 2 -- status && grep -q -- "--node" err.txt ||
    bad "status without --node names --node"
expect "send without --node" 2 -- send node1/1 42 && grep -q -- "--node" err.txt ||
    bad "send without --node names --node"
expect "exec kill without --node" 2 -- exec kill node1/e1
expect "exec suspend without --node" 2 -- exec suspend node1/e1

# A node that is not there: "no answer", exit 2, within the timeout.
sock="ipc://$dir/nonexistent.sock"
t0=$(date +%s)
expect "status: no node (--timeout 300)" 2 -- status --node "$sock" --timeout 300 &&
    grep -q "no answer" err.txt || bad "status --timeout 300: no answer"
t1=$(date +%s)
[ $((t1 - t0)) -le 2 ] && ok "--timeout 300 honoured" || bad "--timeout 300 took $((t1 - t0)) s"
t0=$(date +%s)
expect "status: no node (default timeout)" 2 -- status --node "$sock" &&
    grep -q "no answer" err.txt || bad "status: no answer"
t1=$(date +%s)
[ $((t1 - t0)) -ge 4 ] && [ $((t1 - t0)) -le 7 ] && ok "default status timeout 5 s" ||
    bad "default status timeout took $((t1 - t0)) s"
AVM_NODE="$sock"
export AVM_NODE
expect "AVM_NODE: no node" 2 -- status --timeout 300 &&
    grep -q "no answer" err.txt || bad "AVM_NODE is used"
unset AVM_NODE
expect "status --json: no node" 2 -- status --node "$sock" --timeout 300 --json &&
    grep -q '^{"status":"node-error","code":"EIO","message":"no answer' out.txt ||
    bad "status --json: a node-error document"
expect "run --data with --node" 2 -- run "$SRC/examples/ping_pong.avm" --node "$sock" \
    --data "$dir/d"

# Embedded: exec trace --format.
expect "run ping_pong" 0 -- run --data "$dir/d" "$SRC/examples/ping_pong.avm"
id=$("$AVMCTL" exec ls --data "$dir/d" | tail -n 1 | awk '{print $1}')
[ -n "$id" ] && ok "exec ls gives the id" || bad "exec ls gives no id"
expect "exec trace --format mermaid" 0 -- exec trace "$id" --format mermaid --data "$dir/d" &&
    grep -q "^sequenceDiagram" out.txt || bad "mermaid chart starts with sequenceDiagram"
grep -q -- "->>" out.txt && grep -q -- "-->>" out.txt && ok "mermaid has calls and returns" ||
    bad "mermaid has no call or return arrows"
expect "exec trace --format text" 0 -- exec trace "$id" --format text --data "$dir/d" &&
    grep -q "== ExecutionStarted $id ==" out.txt && grep -q " -> .*: call " out.txt ||
    bad "text chart has the start and the calls"
expect "exec trace --format json" 0 -- exec trace "$id" --data "$dir/d" --format json &&
    grep -q "^{\"execution\":\"$id\",\"entries\":\[" out.txt || bad "json chart"
if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import json,sys; d=json.load(open("out.txt")); assert d["entries"]' &&
        ok "json chart parses" || bad "json chart does not parse"
fi
expect "exec trace (unchanged)" 0 -- exec trace "$id" --data "$dir/d" &&
    head -n 1 out.txt | grep -q "^  0 TransactionStarted" ||
    bad "exec trace prints the log entries as before"
expect "exec trace --format bogus" 2 -- exec trace "$id" --format bogus --data "$dir/d"
expect "exec trace --format: unknown id" 2 -- exec trace nosuch --format text --data "$dir/d"

if [ "$fails" -ne 0 ]; then
    echo "$fails failed"
    exit 1
fi
echo "all passed"
