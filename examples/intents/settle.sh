#!/bin/sh
# Intent matching on a running cluster: several parties' executions join one
# composed commit (a bundle); each states its choices (choose) and requirements
# (require); the bundle's home settles all of them at once with the solver, or
# nothing commits.
#
#   examples/intents/settle.sh SCENARIO NODE1 NODE2 [NODE3]
#
# NODEn: the members' control addresses as avmctl --node takes them; the cluster
# must replicate controllers A and B (avmctl controller create A ..., see
# docs/operations in the README). avmctl is $AVMCTL (default: avmctl on PATH).
# Scenarios (each makes fresh accounts with setup.avm first):
#   swap          Alice (NODE1) sells 10 X on A for at least 18 Y on B; Bob (NODE2)
#                 pays at most 2.2 Y per X: they settle atomically across A and B
#   swap-refused  Bob pays at most 1.5 Y per X: no price suits both; nothing moves
#   ring          A (X->C), B (Y->A), C (Z->B) on NODE1..3 and a matcher: a ring
#                 trade that settles only with all three
#   ring-pair     only A and B and the matcher: no pair can settle the ring alone;
#                 nothing moves
# Prints each party's result and the balances after; exits 0 when the outcome is
# the scenario's (settled with every requirement and token totals kept, or refused
# with nothing moved), 1 otherwise, 2 on bad usage.
set -u
here=$(cd "$(dirname "$0")" && pwd)
AVMCTL=${AVMCTL:-avmctl}
[ $# -ge 3 ] || { sed -n '2,24p' "$0" >&2; exit 2; }
scenario=$1 n1=$2 n2=$3 n3=${4:-$3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ctl() { node=$1; shift; "$AVMCTL" "$@" --node "$node"; }
fail() { echo "settle: $*" >&2; exit 1; }

# prog NAME: the program NAME.avm with common.avm and the ids substituted.
prog() {
  cat "$here/common.avm" "$here/$1.avm" | sed \
    -e "s|@ALICE_X@|$AX|g; s|@BOB_X@|$BX|g; s|@ALICE_Y@|$AY|g; s|@BOB_Y@|$BY|g" \
    -e "s|@DEAL@|$DEAL|g; s|@PRICE@|$PRICE|g" \
    -e "s|@A_X@|$RAX|g; s|@C_X@|$RCX|g; s|@B_Y@|$RBY|g; s|@A_Y@|$RAY|g" \
    -e "s|@C_Z@|$RCZ|g; s|@B_Z@|$RBZ|g; s|@RING@|$RING|g" >"$tmp/$1.avm"
  echo "$tmp/$1.avm"
}

ids=$(cat "$here/common.avm" "$here/setup.avm" >"$tmp/setup.avm" &&
  ctl "$n1" run "$tmp/setup.avm") || fail "setup: $ids"
set -- $(echo "$ids" | tr -d '()')
[ $# -eq 12 ] || fail "setup printed $ids"
AX=$1 BX=$2 AY=$3 BY=$4 DEAL=$5 RAX=$6 RCX=$7 RBY=$8 RAY=$9
shift 9
RCZ=$1 RBZ=$2 RING=$3
PRICE=22

bal() { ctl "$n1" run "$(printf '%s\n(main (list %s))' "$(cat "$here/common.avm")" \
  "$(for a in "$@"; do printf '(balance %s) ' "$a"; done)" >"$tmp/bal.avm"; echo "$tmp/bal.avm")"; }

# newbundle NAME MEMBERS: a bundle homed on NODE1 (unique name); prints its id.
newbundle() {
  out=$(ctl "$n1" bundle create "$1-$$-$(date +%s%N)" "$2" --json) || fail "bundle create: $out"
  echo "$out" | sed -n 's/.*"bundle": *"\([^"]*\)".*/\1/p'
}

# join NODE PROG BUNDLE N: starts a member (the Nth) and waits until its segment is
# in (members start one after the other: each reads what the earlier ones wrote).
join() {
  id=$(ctl "$1" run "$(prog "$2")" --bundle "$3" --detach) || fail "$2: $id"
  i=0
  while [ "$(ctl "$1" bundle status "$3" --json | sed -n 's/.*"joined": *\([0-9]*\).*/\1/p')" != "$4" ]; do
    i=$((i + 1))
    [ $i -lt 200 ] || break # the last member's segment ends the bundle
    st=$(ctl "$1" bundle status "$3" --json | sed -n 's/.*"state": *"\([a-z]*\)".*/\1/p')
    [ "$st" = open ] || break
    sleep 0.05
  done
  echo "$1 $id"
}
result() { # result NODE ID
  i=0
  while :; do
    out=$(ctl "$1" exec result "$2" 2>&1) && break
    case "$out" in *running*|*blocked*) ;; *) break ;; esac
    i=$((i + 1)); [ $i -lt 300 ] || break; sleep 0.05
  done
  echo "$out"
}

case $scenario in
swap | swap-refused)
  [ "$scenario" = swap-refused ] && PRICE=15
  b=$(newbundle "$scenario" 2)
  before=$(bal "$AX" "$BX" "$AY" "$BY")
  set -- $(join "$n1" alice "$b" 1) $(join "$n2" bob "$b" 2)
  ra=$(result "$1" "$2") rb=$(result "$3" "$4")
  after=$(bal "$AX" "$BX" "$AY" "$BY")
  echo "alice: $ra"
  echo "bob:   $rb"
  echo "balances alice-x bob-x alice-y bob-y: $before -> $after"
  set -- $(echo "$after" | tr -d '()')
  if [ "$scenario" = swap ]; then
    case "$ra" in "(#t 10 "*")") ;; *) fail "alice's commit did not settle: $ra" ;; esac
    get=$(echo "$ra" | tr -d '()' | awk '{print $3}')
    [ "$1" = 90 ] && [ "$2" = 10 ] && [ "$3" = "$get" ] && [ "$4" = $((100 - get)) ] ||
      fail "balances after do not match the settlement"
    [ "$get" -ge 18 ] && [ $((10 * get)) -le 220 ] || fail "price $get breaks a bound"
    echo "settled: 10 X for $get Y"
  else
    [ "$ra" = "(#f)" ] && [ "$rb" = "(#f)" ] || fail "the refused swap committed"
    [ "$after" = "$before" ] || fail "the refused swap moved tokens"
    echo "refused: no price suits both; nothing moved"
  fi
  ;;
ring | ring-pair)
  m=4
  [ "$scenario" = ring-pair ] && m=3
  b=$(newbundle "$scenario" $m)
  before=$(bal "$RAX" "$RCX" "$RBY" "$RAY" "$RCZ" "$RBZ")
  set -- $(join "$n1" ring_a "$b" 1) $(join "$n2" ring_b "$b" 2)
  ja="$1 $2" jb="$3 $4"
  jc=""
  [ "$scenario" = ring ] && jc=$(join "$n3" ring_c "$b" 3)
  jm=$(join "$n1" matcher "$b" $m)
  ra=$(result $ja) rb=$(result $jb) rm=$(result $jm)
  rc=""
  [ -n "$jc" ] && rc=$(result $jc)
  after=$(bal "$RAX" "$RCX" "$RBY" "$RAY" "$RCZ" "$RBZ")
  echo "A: $ra"; echo "B: $rb"; [ -n "$rc" ] && echo "C: $rc"; echo "matcher: $rm"
  echo "balances a-x c-x b-y a-y c-z b-z: $before -> $after"
  if [ "$scenario" = ring ]; then
    case "$ra" in "(#t "*) ;; *) fail "A's commit did not settle: $ra" ;; esac
    set -- $(echo "$ra" | tr -d '()')
    x=$2 y=$3 z=$4
    [ "$x" -ge 7 ] && [ "$x" -le 10 ] && [ "$y" -ge 5 ] && [ "$y" -le 8 ] &&
      [ "$z" -ge 4 ] && [ "$z" -le 6 ] || fail "legs $x $y $z break a bound"
    [ "$after" = "($((100 - x)) $x $((100 - y)) $y $((100 - z)) $z)" ] ||
      fail "balances after do not match the legs"
    echo "settled: $x X A->C, $y Y B->A, $z Z C->B"
  else
    [ "$ra" = "(#f)" ] && [ "$rb" = "(#f)" ] && [ "$rm" = "#f" ] ||
      fail "the pair settled the ring"
    [ "$after" = "$before" ] || fail "the pair moved tokens"
    echo "refused: the ring needs all three parties; nothing moved"
  fi
  ;;
*) sed -n '2,24p' "$0" >&2; exit 2 ;;
esac
