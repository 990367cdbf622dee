#!/usr/bin/env python3
"""Elle-style isolation checker for list-append transaction histories.

Follows the list-append inference of Kingsbury and Alvaro, "Elle: Inferring
Isolation Anomalies from Experimental Observations" (VLDB 2020): every read of a
key returns the whole list, so reads reveal the order in which appends were
installed (the version order); appended values are unique per key, so each value
read names the transaction that wrote it. From that we derive write-write (ww),
write-read (wr) and read-write anti-dependency (rw) edges between committed
transactions, optionally real-time (rt) edges, and look for cycles, classified
as in Adya's thesis (G0, G1c, G-single, G2-item). Non-cycle anomalies (aborted
and intermediate reads, garbage, duplicates, incompatible orders, internal
inconsistency, lost appends) are found directly from the reads.

Usage: elle_check.py HISTORY.jsonl [--realtime] [--json] [--show N]
Exit status: 0 no anomaly, 1 anomalies found, 2 malformed input or usage error.
See README.md next to this file for the input format and every anomaly.
Standard library only.
"""

import argparse
import json
import sys
import time
from collections import deque

WW, WR, RW, RT = 1, 2, 4, 8
KIND_NAME = {WW: "ww", WR: "wr", RW: "rw", RT: "rt"}

# Edge visits allowed per (component, anomaly class) when searching for the
# shortest cycle; past it the best cycle found so far is reported.
SEARCH_BUDGET = 400000
# Explanations kept per anomaly type in the --json output (counts are exact).
JSON_MAX_EXPLANATIONS = 1000
# Edges of a cycle spelled out in its text explanation.
TEXT_MAX_CYCLE = 30

CYCLE_TYPES = ["G0", "G1c", "G-single", "G2-item"]
CYCLE_TYPES_RT = [t + "-realtime" for t in CYCLE_TYPES]
ANOMALY_ORDER = (["garbage-read", "duplicate-append", "incompatible-order",
                  "G1a", "G1b", "internal", "lost-append"]
                 + CYCLE_TYPES + CYCLE_TYPES_RT)


class Malformed(Exception):
    """The history cannot be checked: names the line and the cause."""

    def __init__(self, line, msg):
        super().__init__("line %d: %s" % (line, msg) if line else msg)


class Txn:
    __slots__ = ("id", "process", "inv_line", "comp_line", "inv_event",
                 "comp_event", "type", "ops", "appends")

    def __init__(self, tid, process, line, event, ops):
        self.id = tid
        self.process = process
        self.inv_line = line
        self.inv_event = event
        self.comp_line = None
        self.comp_event = None
        self.type = "pending"
        self.ops = ops  # the completion's ops when ok, else the invocation's
        self.appends = {}  # key -> [values appended, in txn order]


# ---------------------------------------------------------------- parsing


def _is_int(x):
    return type(x) is int  # bool is a subclass of int, but not an integer here


_INT_ONLY = {int}


def _is_int_list(v):
    return isinstance(v, list) and (not v or set(map(type, v)) == _INT_ONLY)


def _parse_ops(value, typ, line):
    if not isinstance(value, list):
        raise Malformed(line, "'value' must be a list of micro-operations")
    ops = []
    for i, op in enumerate(value):
        if not isinstance(op, list) or len(op) != 3:
            raise Malformed(line, "micro-op %d must be a list [f, key, value]" % i)
        f, k, v = op
        if not isinstance(k, str):
            raise Malformed(line, "micro-op %d: key must be a string" % i)
        if f == "append":
            if not _is_int(v):
                raise Malformed(line, "micro-op %d: appended value must be an integer" % i)
        elif f == "r":
            if typ == "invoke":
                if v is not None:
                    raise Malformed(line, "micro-op %d: a read in an invoke must be null" % i)
            elif typ == "ok":
                if not _is_int_list(v):
                    raise Malformed(line, "micro-op %d: a read in an ok completion "
                                    "must be a list of integers" % i)
            elif v is not None and not _is_int_list(v):
                raise Malformed(line, "micro-op %d: a read must be null or a list of "
                                "integers" % i)
        else:
            raise Malformed(line, "micro-op %d: unknown function %r (expected "
                            "\"append\" or \"r\")" % (i, f))
        ops.append((f, k, v))
    return ops


def parse_history(path):
    """Returns the list of transactions, in invocation order."""
    txns = []
    pending = {}  # process -> Txn
    retired = {}  # process -> line of its info completion
    appended = {}  # key -> {value: line}
    event = 0
    try:
        fh = open(path, "rb")
    except OSError as e:
        raise Malformed(0, "cannot open: %s" % e.strerror)
    with fh:
        for line, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                ev = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise Malformed(line, "not UTF-8: %s" % e)
            except ValueError as e:
                raise Malformed(line, "bad JSON: %s" % e)
            if not isinstance(ev, dict):
                raise Malformed(line, "an event must be a JSON object")
            for field in ("process", "type", "f", "value", "time"):
                if field not in ev:
                    raise Malformed(line, "missing field %r" % field)
            p = ev["process"]
            if not (_is_int(p) or isinstance(p, str)):
                raise Malformed(line, "'process' must be an integer or a string")
            typ = ev["type"]
            if typ not in ("invoke", "ok", "fail", "info"):
                raise Malformed(line, "unknown type %r (expected invoke, ok, fail or "
                                "info)" % (typ,))
            if ev["f"] != "txn":
                raise Malformed(line, "unknown f %r (expected \"txn\")" % (ev["f"],))
            if not _is_int(ev["time"]):
                raise Malformed(line, "'time' must be an integer (nanoseconds)")
            ops = _parse_ops(ev["value"], typ, line)
            if typ == "invoke":
                if p in pending:
                    raise Malformed(line, "process %r invokes while its transaction "
                                    "invoked on line %d is still pending"
                                    % (p, pending[p].inv_line))
                if p in retired:
                    raise Malformed(line, "process %r invokes after its transaction "
                                    "ended with info on line %d" % (p, retired[p]))
                t = Txn(len(txns), p, line, event, ops)
                for f, k, v in ops:
                    if f != "append":
                        continue
                    seen = appended.setdefault(k, {})
                    if v in seen:
                        raise Malformed(line, "value %d appended to key %r again (first "
                                        "on line %d): appended values must be unique "
                                        "per key" % (v, k, seen[v]))
                    seen[v] = line
                    t.appends.setdefault(k, []).append(v)
                txns.append(t)
                pending[p] = t
            else:
                t = pending.pop(p, None)
                if t is None:
                    raise Malformed(line, "%r completion of process %r without a pending "
                                    "invoke" % (typ, p))
                if len(ops) != len(t.ops):
                    raise Malformed(line, "completion has %d micro-ops but its invoke on "
                                    "line %d has %d" % (len(ops), t.inv_line, len(t.ops)))
                for i, (a, b) in enumerate(zip(t.ops, ops)):
                    if a[0] != b[0] or a[1] != b[1] or (a[0] == "append" and a[2] != b[2]):
                        raise Malformed(line, "micro-op %d of the completion does not "
                                        "match its invoke on line %d" % (i, t.inv_line))
                t.type = typ
                t.comp_line = line
                t.comp_event = event
                if typ == "ok":
                    t.ops = ops
                elif typ == "info":
                    retired[p] = line
            event += 1
    return txns


# ---------------------------------------------------------------- formatting


def fmt_list(vals, tail=6):
    if vals is None:
        return "null"
    if len(vals) <= tail + 1:
        return "[" + ", ".join(str(x) for x in vals) + "]"
    return "[... %d more, %s]" % (len(vals) - tail,
                                  ", ".join(str(x) for x in vals[-tail:]))


def txn_name(t):
    return "T%d" % t.id


def txn_where(t):
    if t.comp_line is None:
        lines = "line %d, never completed" % t.inv_line
    else:
        lines = "lines %d-%d" % (t.inv_line, t.comp_line)
    return "%s (process %s, %s, %s)" % (txn_name(t), json.dumps(t.process), lines, t.type)


def txn_detail(t):
    ops = " ".join("[%s %s %s]" % (f, json.dumps(k), v if f == "append" else fmt_list(v))
                   for f, k, v in t.ops)
    return "%s: %s" % (txn_where(t), ops)


def txn_json(t):
    return {"id": txn_name(t), "process": t.process, "type": t.type,
            "invoke_line": t.inv_line, "complete_line": t.comp_line,
            "value": [[f, k, v] for f, k, v in t.ops]}


# ---------------------------------------------------------------- graphs


def tarjan(nodes, succ):
    """Strongly connected components, iteratively (no recursion limit).
    succ(u) returns an iterable of successors. Returns components of size > 1
    (the graph has no self-loops)."""
    index = {}
    low = {}
    on_stack = set()
    stack = []
    comps = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(succ(root)))]
        while work:
            u, it = work[-1]
            descended = False
            for v in it:
                if v not in index:
                    index[v] = low[v] = counter
                    counter += 1
                    stack.append(v)
                    on_stack.add(v)
                    work.append((v, iter(succ(v))))
                    descended = True
                    break
                if v in on_stack and index[v] < low[u]:
                    low[u] = index[v]
            if descended:
                continue
            work.pop()
            if work:
                p = work[-1][0]
                if low[u] < low[p]:
                    low[p] = low[u]
            if low[u] == index[u]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == u:
                        break
                if len(comp) > 1:
                    comps.append(comp)
    return comps


def pick_kind(mask, allowed):
    """The label of an edge on a path: ww before wr before rt before rw, so a
    cycle is never called weaker than its edges allow."""
    m = mask & allowed
    for k in (WW, WR, RT, RW):
        if m & k:
            return k
    return 0


class Graph:
    def __init__(self, n):
        self.adj = [None] * n  # u -> {v: mask}
        self.why = {}  # (u, v, kind) -> (key, values...) evidence

    def add(self, a, b, kind, evidence):
        d = self.adj[a]
        if d is None:
            d = self.adj[a] = {}
        m = d.get(b, 0)
        if not m & kind:
            d[b] = m | kind
            self.why[(a, b, kind)] = evidence

    def succ(self, u):
        d = self.adj[u]
        return d.keys() if d is not None else ()


def bfs_path(g, src, dst, allowed, members, max_len, budget):
    """Shortest path src -> dst using only `allowed` edge kinds inside
    `members`, of at most max_len edges. Returns [(u, v, kind)] or None."""
    parent = {src: None}
    frontier = [src]
    depth = 0
    adj = g.adj
    while frontier and depth < max_len:
        depth += 1
        nxt = []
        for u in frontier:
            d = adj[u]
            if d is None:
                continue
            budget[0] -= len(d)
            for v, m in d.items():
                if not m & allowed or v in parent or v not in members:
                    continue
                parent[v] = (u, pick_kind(m, allowed))
                if v == dst:
                    path = []
                    while parent[v] is not None:
                        pu, k = parent[v]
                        path.append((pu, v, k))
                        v = pu
                    path.reverse()
                    return path
                nxt.append(v)
        if budget[0] <= 0:
            return None
        frontier = nxt
    return None


def bfs_path_rw2(g, src, dst, allowed, members, max_len, budget):
    """Shortest path src -> dst with at least one rw edge (the cycle's first rw
    edge is the start edge, so the cycle has two or more), never passing
    through dst on the way."""
    start = (src, 0)
    parent = {start: None}
    frontier = [start]
    depth = 0
    adj = g.adj
    base = allowed & ~RW
    while frontier and depth < max_len:
        depth += 1
        nxt = []
        for state in frontier:
            u, c = state
            d = adj[u]
            if d is None:
                continue
            budget[0] -= len(d)
            for v, m in d.items():
                if v not in members:
                    continue
                moves = []
                k = pick_kind(m, base)
                if k:
                    moves.append((c, k))
                # An edge that is also ww or wr counts as that, never as rw.
                if m & RW and allowed & RW and not m & (WW | WR):
                    moves.append((1, RW))
                for c2, k2 in moves:
                    s2 = (v, c2)
                    if s2 in parent:
                        continue
                    if v == dst:
                        if c2 == 0:
                            continue
                        parent[s2] = (state, k2)
                        path = []
                        s = s2
                        while parent[s] is not None:
                            ps, kk = parent[s]
                            path.append((ps[0], s[0], kk))
                            s = ps
                        path.reverse()
                        return path
                    parent[s2] = (state, k2)
                    nxt.append(s2)
        if budget[0] <= 0:
            return None
        frontier = nxt
    return None


# ---------------------------------------------------------------- checker


class Checker:
    def __init__(self, txns, realtime):
        self.txns = txns
        self.realtime = realtime
        self.anomalies = {}
        self.stats = {}
        self.truncated_searches = 0

    def report(self, typ, text, **fields):
        entry = {"text": text}
        entry.update(fields)
        self.anomalies.setdefault(typ, []).append(entry)

    def run(self):
        txns = self.txns
        n = len(txns)
        ok = [t for t in txns if t.type == "ok"]
        # key -> [(reader, op index, list)] for reads of ok transactions.
        reads = {}
        # key -> {value: writer id} over every invoked append (any outcome).
        writer = {}
        for t in txns:
            for k, vs in t.appends.items():
                wk = writer.setdefault(k, {})
                for v in vs:
                    wk[v] = t.id
        for t in ok:
            for i, (f, k, v) in enumerate(t.ops):
                if f == "r":
                    reads.setdefault(k, []).append((t.id, i, v))
        observed = {k: set().union(*(r[2] for r in rs)) for k, rs in reads.items()}

        # Committed: ok, or info/pending whose appends someone read.
        committed = [t.type == "ok" for t in txns]
        info_observed = 0
        for t in txns:
            if t.type in ("info", "pending"):
                for k, vs in t.appends.items():
                    obs = observed.get(k)
                    if obs and any(v in obs for v in vs):
                        committed[t.id] = True
                        info_observed += 1
                        break
        self.committed = committed

        self.check_internal(ok)
        g = Graph(n)
        self.graph = g
        for k in sorted(set(reads) | set(writer)):
            self.check_key(k, reads.get(k, []), writer.get(k, {}),
                           observed.get(k, set()), g)
        if self.realtime:
            self.add_realtime(g)
        self.find_cycles(g)

        counts = {}
        for t in txns:
            counts[t.type] = counts.get(t.type, 0) + 1
        ekinds = {"ww": 0, "wr": 0, "rw": 0, "rt": 0}
        for d in g.adj:
            if d:
                for m in d.values():
                    for k, name in KIND_NAME.items():
                        if m & k:
                            ekinds[name] += 1
        self.stats.update({
            "txns": n,
            "ok": counts.get("ok", 0),
            "fail": counts.get("fail", 0),
            "info": counts.get("info", 0),
            "pending": counts.get("pending", 0),
            "info_committed": info_observed,
            "committed": sum(committed),
            "keys": len(set(reads) | set(writer)),
            "appends": sum(len(vs) for t in txns for vs in t.appends.values()),
            "reads": sum(len(rs) for rs in reads.values()),
            "edges": ekinds,
            "realtime": self.realtime,
            "truncated_cycle_searches": self.truncated_searches,
        })

    # -- per transaction

    def check_internal(self, ok):
        """A read must agree with the transaction's own earlier read of that key
        and the appends it made since; a read may not show an append the
        transaction only makes later."""
        for t in ok:
            state = {}  # key -> [last read or None, appends since]
            done = {}  # key -> set of own values appended so far
            for i, (f, k, v) in enumerate(t.ops):
                st = state.setdefault(k, [None, []])
                if f == "append":
                    st[1].append(v)
                    done.setdefault(k, set()).add(v)
                    continue
                own = t.appends.get(k, ())
                mine = done.get(k, set())
                future = [x for x in v if x in own and x not in mine] if own else []
                problem = None
                if future:
                    problem = ("it contains %s, which this transaction appends only "
                               "later" % ", ".join(str(x) for x in future))
                elif st[0] is not None:
                    expect = st[0] + st[1]
                    if v != expect:
                        problem = ("its earlier read and own appends imply %s"
                                   % fmt_list(expect))
                elif st[1]:
                    if v[-len(st[1]):] != st[1]:
                        problem = ("it should end with its own appends %s"
                                   % fmt_list(st[1]))
                if problem:
                    self.report("internal", "%s read key %s = %s at micro-op %d, but %s"
                                % (txn_where(t), json.dumps(k), fmt_list(v), i, problem),
                                txns=[txn_json(t)], key=k)
                st[0] = v
                st[1] = []

    # -- per key

    def check_key(self, k, rs, wk, obs, g):
        txns = self.txns
        committed = self.committed
        kj = json.dumps(k)

        garbage = obs.difference(wk) if obs else set()
        failed = {v for v in obs if v in wk and txns[wk[v]].type == "fail"}
        for tid, i, vals in rs:
            t = txns[tid]
            if garbage:
                bad = [x for x in vals if x in garbage]
                if bad:
                    self.report("garbage-read", "%s read key %s = %s: %s %s never "
                                "appended to it by any transaction"
                                % (txn_where(t), kj, fmt_list(vals),
                                   ", ".join(str(x) for x in sorted(set(bad))),
                                   "was" if len(set(bad)) == 1 else "were"),
                                txns=[txn_json(t)], key=k, values=sorted(set(bad)))
            if len(set(vals)) != len(vals):
                seen = set()
                dup = sorted({x for x in vals if x in seen or seen.add(x)})
                self.report("duplicate-append", "%s read key %s = %s: %s appear%s more "
                            "than once" % (txn_where(t), kj, fmt_list(vals),
                                           ", ".join(str(x) for x in dup),
                                           "s" if len(dup) == 1 else ""),
                            txns=[txn_json(t)], key=k, values=dup)
            if failed:
                by_writer = {}
                for x in vals:
                    if x in failed:
                        by_writer.setdefault(wk[x], []).append(x)
                for w, xs in sorted(by_writer.items()):
                    wt = txns[w]
                    self.report("G1a", "%s read key %s = %s, including %s appended by "
                                "%s, which failed (aborted read)"
                                % (txn_where(t), kj, fmt_list(vals),
                                   ", ".join(str(x) for x in xs), txn_where(wt)),
                                txns=[txn_json(t), txn_json(wt)], key=k, values=xs)
            # Intermediate read: the last value not the reader's own is not the
            # final append of its writer to this key.
            own = t.appends.get(k)
            j = len(vals) - 1
            if own:
                while j >= 0 and vals[j] in own:
                    j -= 1
            if j >= 0:
                w = wk.get(vals[j])
                if w is not None and w != tid and txns[w].appends[k][-1] != vals[j]:
                    wt = txns[w]
                    self.report("G1b", "%s read key %s = %s, ending in %d, an "
                                "intermediate append of %s, which appended %s to it "
                                "(intermediate read)"
                                % (txn_where(t), kj, fmt_list(vals), vals[j],
                                   txn_where(wt), fmt_list(wt.appends[k])),
                                txns=[txn_json(t), txn_json(wt)], key=k)

        # Version order: every read must be a prefix of the longest.
        longest = None
        lt = None
        for tid, i, vals in rs:
            if longest is None or len(vals) > len(longest):
                longest, lt = vals, tid
        consistent = True
        bad_reads = []
        for tid, i, vals in rs:
            if vals != longest[:len(vals)]:
                consistent = False
                bad_reads.append((tid, vals))
        if not consistent:
            tid, vals = bad_reads[0]
            at = next(p for p in range(len(vals)) if vals[p] != longest[p])
            self.report("incompatible-order", "key %s: %s read %s but %s read %s; they "
                        "differ at position %d (%d vs %d), so no single order of appends "
                        "explains both%s"
                        % (kj, txn_where(txns[tid]), fmt_list(vals),
                           txn_where(txns[lt]), fmt_list(longest), at, vals[at],
                           longest[at],
                           "" if len(bad_reads) == 1 else
                           " (%d reads of this key disagree with the longest)"
                           % len(bad_reads)),
                        txns=[txn_json(txns[tid]), txn_json(txns[lt])], key=k)
        ordered = (consistent and longest is not None
                   and len(set(longest)) == len(longest))

        # Lost appends: an acknowledged append no read ever saw, although some
        # read saw a value appended by a transaction invoked after the ack.
        lost = [v for v, w in wk.items() if v not in obs and txns[w].type == "ok"]
        if lost and obs:
            best_v, best_inv = None, -1
            for v in obs:
                w = wk.get(v)
                if w is not None and committed[w] and txns[w].inv_event > best_inv:
                    best_v, best_inv = v, txns[w].inv_event
            if best_v is not None:
                later = txns[wk[best_v]]
                ev_tid, ev_vals = next((tid, vals) for tid, i, vals in rs
                                       if best_v in vals)
                for v in sorted(lost, key=lambda x: txns[wk[x]].comp_event):
                    wt = txns[wk[v]]
                    if wt.comp_event >= best_inv:
                        continue
                    self.report("lost-append", "%s appended %d to key %s and was "
                                "acknowledged, but no read ever saw %d, while %s read "
                                "%s = %s, which includes %d appended by %s, invoked "
                                "after the acknowledgement"
                                % (txn_where(wt), v, kj, v, txn_where(txns[ev_tid]), kj,
                                   fmt_list(ev_vals), best_v, txn_where(later)),
                                txns=[txn_json(wt), txn_json(txns[ev_tid]),
                                      txn_json(later)], key=k, value=v)

        if not ordered:
            # wr edges hold without an order; ww and rw need one.
            for tid, i, vals in rs:
                own = txns[tid].appends.get(k)
                j = len(vals) - 1
                while own and j >= 0 and vals[j] in own:
                    j -= 1
                if j >= 0:
                    w = wk.get(vals[j])
                    if w is not None and w != tid and committed[w]:
                        g.add(w, tid, WR, (k, vals[j]))
            return

        # ww: consecutive committed writers in the version order (values of
        # failed or unknown writers are skipped).
        L = longest
        wl = [wk.get(v) for v in L]
        prev, prev_v = None, None
        for v, w in zip(L, wl):
            if w is None or not committed[w]:
                continue
            if prev is not None and w != prev:
                g.add(prev, w, WW, (k, prev_v, v))
            prev, prev_v = w, v
        # wr and rw per read.
        nL = len(L)
        for tid, i, vals in rs:
            own = txns[tid].appends.get(k)
            j = len(vals) - 1
            while own and j >= 0 and vals[j] in own:
                j -= 1
            wj = None
            if j >= 0:
                wj = wl[j]
                if wj is not None and committed[wj]:
                    g.add(wj, tid, WR, (k, vals[j]))
            p = j + 1
            while p < nL:
                x = wl[p]
                if x is None or not committed[x] or x == wj:
                    p += 1
                    continue
                if x != tid:
                    g.add(tid, x, RW, (k, vals[j] if j >= 0 else None, L[p]))
                break

    # -- real time

    def add_realtime(self, g):
        """A -> B when A completed ok before B was invoked. Only ok
        transactions have a known completion; the frontier keeps the edges
        linear in history size (A -> C is implied by A -> B -> C)."""
        evs = []
        for t in self.txns:
            if not self.committed[t.id]:
                continue
            evs.append((t.inv_event, 0, t.id))
            if t.type == "ok":
                evs.append((t.comp_event, 1, t.id))
        evs.sort()
        frontier = set()
        snap = {}
        for _, kind, tid in evs:
            if kind == 0:
                for a in frontier:
                    g.add(a, tid, RT, None)
                snap[tid] = frozenset(frontier)
            else:
                frontier -= snap.pop(tid)
                frontier.add(tid)

    # -- cycles

    def find_cycles(self, g):
        nodes = [u for u in range(len(self.txns)) if g.adj[u]]
        comps = tarjan(nodes, g.succ)
        self.stats["cyclic_components"] = len(comps)
        self.stats["largest_component"] = max((len(c) for c in comps), default=0)
        comps.sort(key=lambda c: min(c))
        for comp in comps:
            self.classify(g, set(comp))

    def restricted_comp(self, g, members, allowed):
        """Node -> component id for the subgraph of `allowed` edges."""
        adj = g.adj

        def succ(u):
            d = adj[u]
            return [v for v, m in d.items() if m & allowed and v in members] if d else ()
        comp_of = {}
        for cid, c in enumerate(tarjan(sorted(members), succ)):
            for u in c:
                comp_of[u] = cid
        return comp_of

    def classify(self, g, members):
        found = set()
        adj = g.adj
        edges = [(u, v, m) for u in sorted(members) for v, m in adj[u].items()
                 if v in members]
        for rt in ([False, True] if self.realtime else [False]):
            extra = RT if rt else 0
            for cls in CYCLE_TYPES:
                if cls in found:
                    continue
                name = cls + ("-realtime" if rt else "")
                cyc = self.search(g, members, edges, cls, extra)
                if cyc:
                    found.add(cls)
                    self.report_cycle(name, cyc)
        if not found:
            # Every search ran out of budget: report any cycle, as classified.
            self.truncated_searches += 1
            start = min(members)
            budget = [1 << 62]
            allm = WW | WR | RW | RT
            for v in sorted(adj[start]):
                if v in members:
                    path = bfs_path(g, v, start, allm, members, len(members), budget)
                    if path:
                        cyc = [(start, v, pick_kind(adj[start][v], allm))] + path
                        self.report_cycle(self.cycle_class(cyc), cyc)
                        break

    @staticmethod
    def cycle_class(cyc):
        kinds = [k for _, _, k in cyc]
        nrw = kinds.count(RW)
        if nrw == 0:
            base = "G0" if all(k in (WW, RT) for k in kinds) else "G1c"
        else:
            base = "G-single" if nrw == 1 else "G2-item"
        return base + ("-realtime" if RT in kinds else "")

    def search(self, g, members, edges, cls, extra):
        """Shortest cycle of class cls through some start edge in the
        component; None if none (or budget exhausted with none found)."""
        if cls == "G0":
            allowed = WW | extra
            starts = [(u, v, WW) for u, v, m in edges if m & WW]
        elif cls == "G1c":
            allowed = WW | WR | extra
            starts = [(u, v, WR) for u, v, m in edges if m & WR and not m & WW]
        else:
            allowed = WW | WR | extra
            starts = [(u, v, RW) for u, v, m in edges if m & RW and not m & (WW | WR)]
        if not starts:
            return None
        if cls in ("G0", "G1c"):
            # The cycle lies inside one component of the restricted subgraph.
            comp_of = self.restricted_comp(g, members, allowed)
            starts = [s for s in starts
                      if s[0] in comp_of and comp_of[s[0]] == comp_of.get(s[1])]
            if not starts:
                return None
        best = None
        budget = [SEARCH_BUDGET]
        for u, v, k in starts:
            limit = len(members) if best is None else len(best) - 2
            if limit < 1:
                break
            if cls == "G2-item":
                path = bfs_path_rw2(g, v, u, allowed | RW, members, limit, budget)
                if path and len({a for a, _, _ in path}) != len(path):
                    path = None  # not a simple cycle
            else:
                path = bfs_path(g, v, u, allowed, members, limit, budget)
            if path is not None:
                cyc = [(u, v, k)] + path
                if best is None or len(cyc) < len(best):
                    best = cyc
                    if len(best) == 2:
                        break
            if budget[0] <= 0:
                if best is None:
                    self.truncated_searches += 1
                break
        if best is not None and extra and RT not in [kk for _, _, kk in best]:
            return None  # found without real time: reported as the plain class
        return best

    def report_cycle(self, name, cyc):
        txns = self.txns
        parts = [txn_name(txns[cyc[0][0]])]
        steps = []
        edges = []
        for a, b, k in cyc:
            why = self.graph.why.get((a, b, k))
            ta, tb = txns[a], txns[b]
            kn = KIND_NAME[k]
            e = {"from": txn_name(ta), "to": txn_name(tb), "kind": kn}
            if k == RT:
                parts.append("-rt-> %s" % txn_name(tb))
                steps.append("%s -rt-> %s: %s completed (line %d) before %s was "
                             "invoked (line %d)" % (txn_name(ta), txn_name(tb),
                                                    txn_name(ta), ta.comp_line,
                                                    txn_name(tb), tb.inv_line))
            else:
                key = why[0]
                kj = json.dumps(key)
                e["key"] = key
                parts.append("-%s %s-> %s" % (kn, kj, txn_name(tb)))
                if k == WW:
                    e["values"] = [why[1], why[2]]
                    steps.append("%s -ww %s-> %s: %s's append of %d follows %s's "
                                 "append of %d in the version order of %s"
                                 % (txn_name(ta), kj, txn_name(tb), txn_name(tb), why[2],
                                    txn_name(ta), why[1], kj))
                elif k == WR:
                    e["values"] = [why[1]]
                    steps.append("%s -wr %s-> %s: %s read %s ending in %d, appended by %s"
                                 % (txn_name(ta), kj, txn_name(tb), txn_name(tb), kj,
                                    why[1], txn_name(ta)))
                else:
                    e["values"] = [why[1], why[2]]
                    seen = ("the empty list" if why[1] is None
                            else "a list ending in %d" % why[1])
                    steps.append("%s -rw %s-> %s: %s read %s as %s, and %s appended %d, "
                                 "the next value in its version order"
                                 % (txn_name(ta), kj, txn_name(tb), txn_name(ta), kj,
                                    seen, txn_name(tb), why[2]))
            edges.append(e)
        members = []
        for a, _, _ in cyc:
            if a not in members:
                members.append(a)
        details = [txn_detail(txns[a]) for a in members[:TEXT_MAX_CYCLE]]
        if len(cyc) > TEXT_MAX_CYCLE:
            # A cycle through most of a history: the text shows its start, the
            # JSON fields (cycle, txns) hold all of it.
            parts = parts[:TEXT_MAX_CYCLE + 1] + ["... (%d edges in all)" % len(cyc)]
            steps = steps[:TEXT_MAX_CYCLE] + ["... %d more edges" % (len(cyc) - TEXT_MAX_CYCLE)]
            details.append("... %d more transactions" % (len(members) - len(details)))
        text = ("cycle " + " ".join(parts) + "\n      " + "\n      ".join(steps)
                + "\n      " + "\n      ".join(details))
        self.report(name, text, cycle=edges, txns=[txn_json(txns[a]) for a in members])


# ---------------------------------------------------------------- main

# The exit status once known, for when printing fails (a closed pipe).
_verdict = [2]


def main(argv):
    ap = argparse.ArgumentParser(
        description="Elle-style checker for list-append histories (JSON lines).",
        epilog="exit status: 0 no anomaly, 1 anomalies found, 2 malformed input")
    ap.add_argument("history", help="history file, one JSON event per line")
    ap.add_argument("--realtime", action="store_true",
                    help="add real-time edges (check strict serializability)")
    ap.add_argument("--json", action="store_true",
                    help="print one JSON object instead of the summary")
    ap.add_argument("--show", type=int, default=3, metavar="N",
                    help="explanations printed per anomaly type (default 3)")
    args = ap.parse_args(argv)

    t0 = time.monotonic()
    try:
        txns = parse_history(args.history)
    except Malformed as e:
        print("elle_check: %s: %s" % (args.history, e), file=sys.stderr)
        return 2
    ch = Checker(txns, args.realtime)
    ch.run()
    elapsed = time.monotonic() - t0
    an = ch.anomalies
    types = [t for t in ANOMALY_ORDER if t in an]
    valid = not types
    st = ch.stats
    st["seconds"] = round(elapsed, 3)
    st["anomaly_counts"] = {t: len(an[t]) for t in types}
    _verdict[0] = 0 if valid else 1

    if args.json:
        out = {"valid": valid,
               "anomalies": {t: an[t][:JSON_MAX_EXPLANATIONS] for t in types},
               "stats": st}
        json.dump(out, sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
    else:
        w = sys.stdout.write
        w("elle_check: %s (%s)\n" % (args.history, "strict serializability: real-time "
                                      "edges on" if args.realtime else "serializability"))
        w("  %d txns: %d ok, %d fail, %d info (%d of them seen committed), %d never "
          "completed\n" % (st["txns"], st["ok"], st["fail"], st["info"],
                           st["info_committed"], st["pending"]))
        e = st["edges"]
        w("  %d keys, %d appends, %d reads; graph: %d committed txns, edges ww %d, "
          "wr %d, rw %d, rt %d; %d cyclic component(s)\n"
          % (st["keys"], st["appends"], st["reads"], st["committed"], e["ww"],
             e["wr"], e["rw"], e["rt"], st["cyclic_components"]))
        if valid:
            w("  VALID: no anomalies (%.2f s)\n" % elapsed)
        else:
            w("  INVALID: %s (%.2f s)\n" % (", ".join("%s %d" % (t, len(an[t]))
                                                      for t in types), elapsed))
            for t in types:
                w("\n%s (%d):\n" % (t, len(an[t])))
                for i, x in enumerate(an[t][:max(args.show, 0)]):
                    w("  %d. %s\n" % (i + 1, x["text"]))
                if len(an[t]) > args.show:
                    w("  ... %d more\n" % (len(an[t]) - args.show))
    return 0 if valid else 1


if __name__ == "__main__":
    try:
        rc = main(sys.argv[1:])
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader (head, less) went away: the exit status still tells.
        devnull = open("/dev/null", "w")
        sys.stdout = devnull
        rc = _verdict[0]
    sys.exit(rc)
