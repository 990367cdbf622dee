#!/usr/bin/env python3
"""nemesis.sh's end-of-run checks, on its output directory OUT.

- Merges the list-append clients' histories (hist.*.jsonl) by time into
  OUT/history.jsonl (the checker's input) and counts invoke/ok/fail/info. An
  acknowledged append missing from the final read of its key is a lost commit; an
  append of a failed transaction present in it is an aborted write made visible.
- The bank (bank.*.jsonl, bank_final.json, the final states of the accounts, each
  [balance, transfer id, ...], 100 at the start): the total is conserved; every acknowledged transfer is
  applied on both of its accounts exactly once; no failed transfer is applied; a
  transfer is applied on both of its accounts or on neither; each balance is 100 plus
  the amounts of the transfers its list holds.
Prints the figures; exit 0 when all hold, 1 when one does not, 2 on unusable input.
"""
import glob
import json
import os
import sys
from collections import Counter, defaultdict


def load(paths):
    events = []
    for p in paths:
        with open(p) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    events.append(json.loads(line))
                except ValueError:
                    print(f"{p}:{n}: not JSON: {line[:200]}", file=sys.stderr)
                    sys.exit(2)
    return events


def pairs(events):
    """(invoke, completion) per operation, in each process's order."""
    open_ = {}
    out = []
    for e in events:
        p = e["process"]
        if e["type"] == "invoke":
            open_[p] = e
        else:
            out.append((open_.pop(p), e))
    for p, e in open_.items():
        out.append((e, None))
    return out


def main():
    out = sys.argv[1]
    bad = []
    # --- list-append ---
    ev = load(sorted(glob.glob(os.path.join(out, "hist.*.jsonl"))))
    ev.sort(key=lambda e: e["time"])
    with open(os.path.join(out, "history.jsonl"), "w") as f:
        for e in ev:
            f.write(json.dumps({k: e[k] for k in ("process", "type", "f", "value", "time")},
                               separators=(",", ":")) + "\n")
    final = [e for e in ev if e["process"] == 1000000 and e["type"] == "ok"]
    client = [e for e in ev if e["process"] != 1000000]
    c = Counter(e["type"] for e in client)
    ops = pairs(client)
    multi = sum(1 for i, _ in ops if len({m[1][0] for m in i["value"]}) > 1)
    print(f"list-append: {c['invoke']} invoked, {c['ok']} ok, {c['fail']} fail, "
          f"{c['info']} info ({multi} over both A and B)")
    lost_app = 0
    visible_failed = 0
    dup_app = 0
    if final:
        seen = {m[1]: set(m[2] or []) for m in final[-1]["value"]}
        for m in final[-1]["value"]:
            for v, n in Counter(m[2] or []).items():
                if n > 1:
                    dup_app += 1
                    bad.append(f"append {v} appears {n} times in the final read of {m[1]}")
        for inv, comp in ops:
            if comp is None:
                continue
            for m in inv["value"]:
                if m[0] != "append":
                    continue
                present = m[2] in seen.get(m[1], set())
                if comp["type"] == "ok" and not present:
                    lost_app += 1
                    if lost_app <= 5:
                        bad.append(f"acknowledged append lost: {m} of {comp}")
                if comp["type"] == "fail" and present:
                    visible_failed += 1
                    if visible_failed <= 5:
                        bad.append(f"append of a failed transaction visible: {m} of {comp}")
        print(f"list-append: acknowledged appends lost: {lost_app}; appends of failed "
              f"transactions visible: {visible_failed}; appends applied twice: {dup_app}")
    else:
        bad.append("no final list read")
        print("list-append: no final read: lost appends not counted")
    # --- bank ---
    bev = load(sorted(glob.glob(os.path.join(out, "bank.*.jsonl"))))
    bops = pairs(sorted(bev, key=lambda e: e["time"]))
    kinds = defaultdict(Counter)
    info = {}
    for inv, comp in bops:
        t = comp["type"] if comp else "open"
        kinds[inv["kind"]][t] += 1
        info[inv["value"][0]] = (inv["value"], t)
    for k, name in (("A", "within A"), ("B", "within B"), ("AB", "across A<->B"),
                    ("probe", "coordinator-kill probes (across A<->B)")):
        kc = kinds[k]
        print(f"bank {name}: {sum(kc.values())} invoked, {kc['ok']} ok, {kc['fail']} fail, "
              f"{kc['info'] + kc['open']} info")
    try:
        with open(os.path.join(out, "bank_final.json")) as f:
            res = json.loads(f.read() or "null")
    except (OSError, ValueError):
        res = None
    lost = partial = dup = failed_applied = mismatch = 0
    if not res or res[0] is not True or len(res) < 2:
        bad.append("no final bank read")
        print("bank: no final read")
    else:
        states = res[1:]
        applied = [Counter(s[1:]) for s in states]
        total = sum(s[0] for s in states)
        before = 100 * len(states)
        print(f"bank total before: {before}, after: {total}")
        if total != before:
            bad.append(f"bank total {total}, not {before}")
        for i, s in enumerate(states):
            exp = 100
            for tid, n in applied[i].items():
                if n > 1:
                    dup += 1
                    bad.append(f"transfer {tid} applied {n} times on account {i}")
                if tid not in info:
                    bad.append(f"account {i} holds transfer {tid}, never invoked")
                    continue
                (tid_, f_, t_, amt), _ = info[tid]
                exp += -amt if i == f_ else amt
            if exp != s[0]:
                mismatch += 1
                bad.append(f"account {i}: balance {s[0]}, its transfers make {exp}")
        applied_n = 0
        for tid, ((_, f_, t_, amt), t) in info.items():
            on = (tid in applied[f_], tid in applied[t_])
            if any(on):
                applied_n += 1
            if on[0] != on[1]:
                partial += 1
                bad.append(f"transfer {tid} ({f_}->{t_}) applied on one account only: {on}")
            if t == "ok" and not all(on):
                lost += 1
                bad.append(f"acknowledged transfer {tid} ({f_}->{t_}, {amt}) lost: {on}")
            if t == "fail" and any(on):
                failed_applied += 1
                bad.append(f"failed transfer {tid} applied: {on}")
        unknown = sum(1 for _, t in info.values() if t not in ("ok", "fail"))
        unknown_applied = sum(1 for tid, (_, t) in info.items()
                              if t not in ("ok", "fail") and tid in applied[info[tid][0][1]])
        print(f"bank: acknowledged transfers lost: {lost}; applied on one side only: {partial}; "
              f"applied twice: {dup}; failed but applied: {failed_applied}; balances not "
              f"matching their transfers: {mismatch}; unknown outcome: {unknown} "
              f"({unknown_applied} applied)")
    print(f"acknowledged commits lost: {lost + lost_app}")
    for b in bad[:20]:
        print("  problem:", b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
