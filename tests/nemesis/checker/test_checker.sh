#!/usr/bin/env bash
# Tests elle_check.py: every hand-made history in histories/ against the
# manifest histories/expected.json (anomaly types compared exactly, exit
# codes, malformed-input messages), then a generated 30,000-transaction
# history from a simulated serializable execution (valid, with and without
# real-time edges; the time is printed) and the same history with a lost append
# and a G-single injected (both found, naming the injected transactions).
# Registered with ctest as nemesis_checker.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
CHECK="$HERE/elle_check.py"
GEN="$HERE/gen_history.py"
HIST="$HERE/histories"
MANIFEST="$HIST/expected.json"
TXNS="${ELLE_TEST_TXNS:-30000}"
# Generous bound on a loaded shared machine; the time is printed either way.
MAX_SECONDS="${ELLE_TEST_MAX_SECONDS:-120}"

TMP="$(mktemp -d /tmp/elle_test.XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fails=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }

# The checker runs with python3 -S in this test: it needs only the standard
# library, and skipping site-packages start-up saves a lot on a loaded machine.
PY="python3 -S"

# --- hand-made histories: one driver runs the checker (as a separate process,
# with --json and without) on every manifest entry and prints ok/FAIL lines.
python3 -S - "$MANIFEST" "$HIST" "$CHECK" >"$TMP/manifest.out" <<'EOF'
import json, os, subprocess, sys
manifest, hist, check = sys.argv[1:]
m = json.load(open(manifest))
entries = [k for k in m if not k.startswith("_")]
named = {k.split(" ")[0] for k in entries}
missing = []
for root, _, files in os.walk(hist):
    for f in files:
        if f.endswith(".jsonl"):
            rel = os.path.relpath(os.path.join(root, f), hist)
            if rel not in named:
                missing.append(rel)
missing += ["(listed but absent) " + n for n in sorted(named)
            if not os.path.exists(os.path.join(hist, n))]
if missing:
    print("FAIL manifest and histories/ disagree: %s" % ", ".join(sorted(missing)))
else:
    print("ok   every history in histories/ has a manifest entry (%d entries)"
          % len(entries))


def run(args):
    p = subprocess.run([sys.executable, "-S", check] + args, capture_output=True,
                       text=True)
    return p.returncode, p.stdout, p.stderr


for entry in entries:
    exp = m[entry]
    parts = entry.split(" ")
    path, flags = os.path.join(hist, parts[0]), parts[1:]
    rc, out, err = run([path] + flags + ["--json"])
    rc_text, text, _ = run([path] + flags)
    problems = []
    if rc != rc_text:
        problems.append("exit %d with --json but %d without" % (rc, rc_text))
    if isinstance(exp, dict):
        if rc != 2:
            problems.append("exit %d, expected 2 (malformed)" % rc)
        if exp["malformed"] not in err:
            problems.append("stderr %r lacks %r" % (err.strip(), exp["malformed"]))
        if out:
            problems.append("printed on stdout for malformed input")
    else:
        try:
            got = json.loads(out)
        except ValueError as e:
            got = None
            problems.append("--json output is not JSON (%s); stderr: %s" % (e, err))
        if got is not None:
            types = sorted(got["anomalies"])
            if types != sorted(exp):
                problems.append("anomalies %s, expected %s" % (types, sorted(exp)))
            if got["valid"] != (not exp):
                problems.append("valid=%s" % got["valid"])
            for t, xs in got["anomalies"].items():
                if not xs or not all(x.get("text") for x in xs):
                    problems.append("%s has no explanation" % t)
                if t.startswith("G") and t not in ("G1a", "G1b"):
                    for x in xs:
                        cyc = x.get("cycle") or []
                        if len(cyc) < 2 or cyc[0]["from"] != cyc[-1]["to"] or any(
                                a["to"] != b["from"] for a, b in zip(cyc, cyc[1:])):
                            problems.append("%s: not a closed cycle: %s" % (t, cyc))
        want = 1 if exp else 0
        if rc != want:
            problems.append("exit %d, expected %d" % (rc, want))
        for t in exp:
            if "\n%s (" % t not in text:
                problems.append("summary does not explain %s" % t)
        verdict = "INVALID" if exp else "VALID:"
        if "  %s" % verdict not in text:
            problems.append("summary verdict is not %s" % verdict)
    if problems:
        print("FAIL %s: %s" % (entry, "; ".join(problems)))
    else:
        print("ok   %s" % entry)
EOF
driver_rc=$?
cat "$TMP/manifest.out"
[ $driver_rc -eq 0 ] || fail "manifest driver exited $driver_rc"
n=$(grep -c '^FAIL' "$TMP/manifest.out")
fails=$((fails + n))

# --- usage errors exit 2
$PY "$CHECK" >/dev/null 2>&1
[ $? -eq 2 ] && pass "no argument: exit 2" || fail "no argument: exit not 2"
$PY "$CHECK" "$TMP/absent.jsonl" >/dev/null 2>"$TMP/err"
rc=$?
if [ $rc -eq 2 ] && grep -q "cannot open" "$TMP/err"; then
  pass "absent file: exit 2, cause named"
else
  fail "absent file: exit $rc, stderr: $(cat "$TMP/err")"
fi

# --- generated history: valid
# One simulation gives both: valid.jsonl as recorded, bad.jsonl corrupted.
if ! python3 "$GEN" "$TMP/valid.jsonl" --txns "$TXNS" --seed 7 \
    --inject lost-append,g-single --injected-out "$TMP/bad.jsonl" >"$TMP/gen.json"; then
  fail "gen_history.py failed"
else
  echo "     generated: $(cat "$TMP/gen.json") ($(wc -c <"$TMP/valid.jsonl") bytes)"
  for flags in "" "--realtime"; do
    start=$(date +%s.%N)
    # shellcheck disable=SC2086
    $PY "$CHECK" "$TMP/valid.jsonl" $flags --json >"$TMP/big.json" 2>"$TMP/err"
    rc=$?
    end=$(date +%s.%N)
    secs=$(python3 -c "print('%.2f' % ($end - $start))")
    summary="$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
s = d["stats"]
print("valid=%s txns=%d committed=%d edges=%s anomalies=%s" % (
    d["valid"], s["txns"], s["committed"], s["edges"], sorted(d["anomalies"])))' \
      "$TMP/big.json" 2>&1)"
    label="generated $TXNS txns ${flags:-(serializability)}"
    if [ $rc -eq 0 ] && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["valid"] and d["stats"]["txns"] == int(sys.argv[2]) else 1)' "$TMP/big.json" "$TXNS" \
        && python3 -c "import sys; sys.exit(0 if $secs <= $MAX_SECONDS else 1)"; then
      pass "$label: valid in $secs s wall ($summary)"
    else
      fail "$label: exit $rc in $secs s (limit $MAX_SECONDS s): $summary $(head -c 2000 "$TMP/err")"
    fi
  done
fi

# --- generated history with a lost append and a G-single injected
if [ ! -s "$TMP/bad.jsonl" ]; then
  fail "no injected history generated"
else
  start=$(date +%s.%N)
  $PY "$CHECK" "$TMP/bad.jsonl" --json >"$TMP/bad.out" 2>"$TMP/err"
  rc=$?
  end=$(date +%s.%N)
  secs=$(python3 -c "print('%.2f' % ($end - $start))")
  verdict="$(python3 - "$TMP/gen.json" "$TMP/bad.out" <<'EOF'
import json, sys
inj = json.load(open(sys.argv[1]))["injected"]
got = json.load(open(sys.argv[2]))
an = got["anomalies"]
problems = []
if sorted(an) != ["G-single", "lost-append"]:
    problems.append("anomalies %s, expected exactly G-single and lost-append" % sorted(an))
la = inj["lost-append"]
if not any(x["key"] == la["key"] and x["value"] == la["value"]
           and x["txns"][0]["id"] == la["writer"] for x in an.get("lost-append", [])):
    problems.append("lost-append does not name %s" % la)
gs = inj["g-single"]
want = {(gs["reader"], gs["writer"], "rw", gs["stale_key"]),
        (gs["writer"], gs["reader"], "wr", gs["wr_key"])}
if not any({(e["from"], e["to"], e["kind"], e.get("key")) for e in x["cycle"]} == want
           for x in an.get("G-single", [])):
    problems.append("no G-single cycle %s" % sorted(want))
print("; ".join(problems))
EOF
)"
  if [ $rc -eq 1 ] && [ -z "$verdict" ]; then
    pass "generated $TXNS txns with injected lost-append and G-single: both found, exit 1, in $secs s"
  else
    fail "injected history: exit $rc: $verdict $(head -c 2000 "$TMP/err")"
  fi
fi

if [ $fails -ne 0 ]; then
  echo "nemesis_checker: $fails failure(s)"
  exit 1
fi
echo "nemesis_checker: all passed"
