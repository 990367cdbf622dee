#!/bin/sh
# avmctl --json gives one well-formed JSON document for every outcome: ok, error
# (an AVM error), compile-error, refused (unsafe without the grant) and blocked; the
# exit codes are 0, 1, 2, 2 and 1. Checked with Python's json parser.
#
# usage: avmctl_json.sh AVMCTL PYTHON3 SOURCE_DIR
set -u
AVMCTL=$1
PY=$2
SRC=$3
dir=$(mktemp -d "${TMPDIR:-/tmp}/avm-json-XXXXXX") || exit 2
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 2
fails=0
# Runs are durable by default: keep their data in the scratch directory.
AVM_DATA="$dir/data"
export AVM_DATA

# check NAME EXPECTED_EXIT EXPECTED_STATUS PYTHON_ASSERTION -- avmctl args...
check() {
    name=$1 code=$2 status=$3 assertion=$4
    shift 5
    # Each check on a fresh ephemeral node (the durable default accumulates objects).
    "$AVMCTL" "$@" --ephemeral >out.json 2>err.txt
    rc=$?
    if [ "$rc" -ne "$code" ]; then
        echo "FAIL $name: exit $rc, expected $code"; cat err.txt; fails=$((fails + 1)); return
    fi
    if ! "$PY" -c "
import json, sys
d = json.load(open('out.json'))
assert d['status'] == '$status', d['status']
$assertion
" 2>py.txt; then
        echo "FAIL $name: not the expected JSON"; cat out.json py.txt; fails=$((fails + 1)); return
    fi
    echo "ok   $name"
}

cat >ok.avm <<'AVM'
(behavior echo (list (input)))
(main (call (createObj "echo" #ctl"main") (list 1 "a\n\"q\"" nil #t #tx"t")))
AVM
printf '(main\n  (destroyObj #obj"x"))\n' >err.avm
printf '(main\n  (foo))\n' >cerr.avm
printf '(main\n  (list (reflect #obj"x")))\n' >unsafe.avm
printf '(main (receive))\n' >rx.avm

check ok 0 ok "
assert d['result'] == [1, 'a\n\"q\"', None, True, {'tx': 't'}]
assert d['mode'] == 'default' and d['events'] == 2
assert [e['event'] for e in d['trace']] == ['ObjectCreated', 'ObjectCalled']
assert d['trace'][1]['output'] == {'just': d['result']}
assert d['store'][0]['currentController'] == {'controller': 'main'}" \
    -- run ok.avm --json --trace --store
check ok-strict 0 ok "
assert d['mode'] == 'spec-strict'
assert d['trace'][0]['object'] == {'object': 'obj-0'}" \
    -- run ok.avm --json --trace --spec-strict
check error 1 error "
assert d['error'] == {'family': 'ObjError', 'error': 'ErrObjectNotFound',
                      'args': [{'object': 'x'}],
                      'at': {'file': 'err.avm', 'line': 2, 'col': 3}}
assert d['trace'][-1]['event'] == 'ErrorOccurred'" \
    -- run err.avm --json --trace --store
check error-strict 1 error "
assert d['trace'] == []
assert d['error']['error'] == 'ErrObjectHasNoController'" \
    -- run "$SRC/examples/battleship.avm" --json --trace --spec-strict --entry play-full-game
check compile-error 2 compile-error "
assert (d['file'], d['line'], d['col']) == ('cerr.avm', 2, 4)
assert d['message'] == \"unknown function 'foo'\"" \
    -- run cerr.avm --json
check refused 2 refused "
assert d['message'].startswith(\"unsafe.avm:2:9: 'main' uses the unsafe instruction reflect\")" \
    -- run unsafe.avm --json
check granted 0 ok "assert d['result'] == [None]" -- run unsafe.avm --json --allow-unsafe
check blocked 1 blocked "assert d['waiting'] == {'object': 'root/orchestrator'}" \
    -- run rx.avm --json
check example 0 ok "
assert d['result'][1] == [['coord', 1, 1], ['coord', 0, 0], None, ['coord', 2, 2]]
assert len(d['trace']) == 20 and len(d['store']) == 2" \
    -- run "$SRC/examples/battleship.avm" --json --trace --store --entry play-full-game

echo "$fails failed"
[ "$fails" -eq 0 ]
