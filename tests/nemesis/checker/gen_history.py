#!/usr/bin/env python3
"""Generates a list-append history from a simulated strictly serializable
database, for testing elle_check.py at scale.

Processes run transactions concurrently; each transaction takes effect
atomically at one instant between its invocation and its completion (so the
history is serializable and strictly serializable). Some transactions fail
(never applied), some end with info (applied or not, at random); a process
that got info never issues again and a fresh process takes its place. Keys
rotate: once a key has had enough appends it is replaced by a new key, so
reads stay short and every key sees contention.

Usage: gen_history.py OUT.jsonl [--txns N] [--seed S] [--inject LIST
                                [--injected-out BAD.jsonl]]
  --inject lost-append,g-single  corrupts the recorded reads afterwards
    (written to OUT.jsonl, or with --injected-out, OUT.jsonl gets the
    uncorrupted history and BAD.jsonl the corrupted one):
    lost-append: one acknowledged single-append transaction's value is
      removed from every read of its key (its append was "lost");
    g-single: one read-only transaction's read of a key loses its last value
      (a stale read), while its read of another key ends with a value from
      the same writer, giving a cycle R -rw-> W -wr-> R.
  What was injected is printed on stdout as one JSON object (transaction
  ids are "T<n>", n the invocation index, as elle_check.py names them).
Standard library only.
"""

import argparse
import heapq
import json
import random
import sys


class Txn:
    __slots__ = ("id", "process", "ops", "result", "outcome", "inv", "comp")

    def __init__(self, process, ops):
        self.id = None
        self.process = process
        self.ops = ops  # [[f, k, v]] as invoked (reads None)
        self.result = None  # ops with reads filled, when applied
        self.outcome = None  # "ok" | "fail" | "info"
        self.inv = None  # (time, seq) of the events
        self.comp = None


def simulate(n_txns, seed, procs=24, active_keys=8, per_key=40):
    rng = random.Random(seed)
    state = {}  # key -> list
    keys = ["k%d" % i for i in range(active_keys)]
    next_key = active_keys
    key_appends = {k: 0 for k in keys}
    key_next_val = {k: 1 for k in keys}
    next_pid = procs
    invoked = 0
    events = []  # (time, seq, "invoke"|"complete", txn)
    seq = 0
    q = []  # (time, seq, action, payload)

    def push(t, action, payload):
        nonlocal seq
        seq += 1
        heapq.heappush(q, (t, seq, action, payload))

    for p in range(procs):
        push(rng.randint(0, 50), "invoke", p)

    while q:
        t, s, action, payload = heapq.heappop(q)
        if action == "invoke":
            p = payload
            if invoked >= n_txns:
                continue
            invoked += 1
            ops = []
            for _ in range(rng.randint(1, 4)):
                i = rng.randrange(len(keys))
                k = keys[i]
                if rng.random() < 0.5:
                    v = key_next_val[k]
                    key_next_val[k] += 1
                    key_appends[k] += 1
                    ops.append(["append", k, v])
                    if key_appends[k] >= per_key:
                        nk = "k%d" % next_key
                        next_key += 1
                        keys[i] = nk
                        key_appends[nk] = 0
                        key_next_val[nk] = 1
                else:
                    ops.append(["r", k, None])
            txn = Txn(p, ops)
            txn.inv = (t, s)
            events.append((t, s, "invoke", txn))
            push(t + rng.randint(1, 40), "apply", txn)
        elif action == "apply":
            txn = payload
            r = rng.random()
            if r < 0.03:
                txn.outcome = "fail"
                applied = False
            elif r < 0.045:
                txn.outcome = "info"
                applied = rng.random() < 0.5
            else:
                txn.outcome = "ok"
                applied = True
            if applied:
                res = []
                for f, k, v in txn.ops:
                    lst = state.setdefault(k, [])
                    if f == "append":
                        lst.append(v)
                        res.append([f, k, v])
                    else:
                        res.append([f, k, list(lst)])
                txn.result = res
            push(t + rng.randint(1, 40), "complete", txn)
        else:
            txn = payload
            txn.comp = (t, s)
            events.append((t, s, "complete", txn))
            p = txn.process
            if txn.outcome == "info":
                p = next_pid
                next_pid += 1
            push(t + rng.randint(0, 10), "invoke", p)
    events.sort(key=lambda e: (e[0], e[1]))
    txns = []
    for _, _, kind, txn in events:
        if kind == "invoke":
            txn.id = len(txns)
            txns.append(txn)
    return events, txns


def event_json(kind, txn, t):
    if kind == "invoke":
        typ, value = "invoke", txn.ops
    elif txn.outcome == "ok":
        typ, value = "ok", txn.result
    else:
        typ, value = txn.outcome, txn.ops
    return json.dumps({"process": txn.process, "type": typ, "f": "txn",
                       "value": value, "time": t * 1000}, separators=(",", ":"))


def write_history(path, events):
    with open(path, "w") as fh:
        for t, _, kind, txn in events:
            fh.write(event_json(kind, txn, t))
            fh.write("\n")


def inject_lost_append(events, txns, avoid_keys):
    """An ok txn with a single append to k whose value some read contains,
    together with a value appended by a txn invoked after the ack."""
    pos = {}  # (kind, txn id) -> position in the event order
    for i, (_, _, kind, txn) in enumerate(events):
        pos[(kind, txn.id)] = i
    writer = {}
    for t in txns:
        for f, k, v in t.ops:
            if f == "append":
                writer[(k, v)] = t
    for w in txns:
        if w.outcome != "ok" or len(w.ops) != 1 or w.ops[0][1] in avoid_keys:
            continue
        _, k, v = w.ops[0]
        ack = pos[("complete", w.id)]
        seen_after = False
        for r in txns:
            if r.outcome != "ok" or r is w:
                continue
            for f, rk, vals in r.result:
                if f == "r" and rk == k and v in vals and any(
                        pos[("invoke", writer[(k, x)].id)] > ack for x in vals):
                    seen_after = True
        if not seen_after:
            continue
        for r in txns:
            if r.result is None:
                continue
            for op in r.result:
                if op[0] == "r" and op[1] == k and v in op[2]:
                    op[2] = [x for x in op[2] if x != v]
        return {"writer": "T%d" % w.id, "key": k, "value": v}
    return None


def inject_g_single(txns):
    writer = {}
    for t in txns:
        for f, k, v in t.ops:
            if f == "append":
                writer[(k, v)] = t
    readers = {}  # (k, v) -> number of reads containing it
    for t in txns:
        if t.outcome == "ok":
            for f, k, vals in t.result:
                if f == "r":
                    for x in vals:
                        readers[(k, x)] = readers.get((k, x), 0) + 1
    for r in txns:
        if r.outcome != "ok" or any(f != "r" for f, _, _ in r.ops):
            continue
        last = {}
        for f, k, vals in r.result:
            if vals:
                last[k] = (vals[-1], vals)
        for k1, (v1, vals1) in last.items():
            w = writer[(k1, v1)]
            if w.outcome != "ok":
                continue
            if sum(1 for f, k, _ in w.ops if f == "append" and k == k1) != 1:
                continue
            if readers[(k1, v1)] < 2:
                continue  # keep v1 visible elsewhere: not a lost append
            for k2, (v2, _) in last.items():
                if k2 != k1 and writer[(k2, v2)] is w:
                    for op in r.result:
                        if op[1] == k1:
                            op[2] = op[2][:-1]
                    return {"reader": "T%d" % r.id, "writer": "T%d" % w.id,
                            "stale_key": k1, "dropped": v1, "wr_key": k2}
    return None


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--txns", type=int, default=30000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--inject", default="")
    ap.add_argument("--injected-out", default=None)
    args = ap.parse_args(argv)
    events, txns = simulate(args.txns, args.seed)
    out = args.out
    if args.injected_out:
        write_history(args.out, events)
        out = args.injected_out
    injected = {}
    kinds = [x for x in args.inject.split(",") if x]
    for kind in kinds:
        if kind not in ("lost-append", "g-single"):
            print("gen_history: unknown injection %r" % kind, file=sys.stderr)
            return 2
    if "g-single" in kinds:
        injected["g-single"] = inject_g_single(txns)
    if "lost-append" in kinds:
        avoid = set()
        if injected.get("g-single"):
            avoid = {injected["g-single"]["stale_key"], injected["g-single"]["wr_key"]}
        injected["lost-append"] = inject_lost_append(events, txns, avoid)
    for kind in kinds:
        if injected[kind] is None:
            print("gen_history: found no place to inject %s" % kind, file=sys.stderr)
            return 1
    write_history(out, events)
    counts = {}
    for t in txns:
        counts[t.outcome] = counts.get(t.outcome, 0) + 1
    json.dump({"txns": len(txns), "outcomes": counts, "injected": injected},
              sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
