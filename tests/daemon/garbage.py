#!/usr/bin/env python3
"""Bad input for avmd's ports (tests/daemon/garbage.sh).

  garbage.py proxy PORTFILE UPSTREAMFILE RECORDDIR   a TCP proxy (runs until killed):
      listens on a free port (written to PORTFILE), forwards each connection to the
      port in UPSTREAMFILE (read at each accept) and records what the client sends
      in RECORDDIR/conn-N
  garbage.py link PORT CASE [ARG]     one bad input on a link port (CASE below)
  garbage.py raw PORT                 random bytes to any TCP port
Prints one line: what was sent and how the connection ended."""
import os
import random
import socket
import struct
import sys
import threading

HOST = "127.0.0.1"
SP_PUSH0 = bytes([0, ord("S"), ord("P"), 0, 0, 0x50, 0, 0])


def mp(v):
    """Canonical msgpack for None, bool, int, str and lists."""
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if v < 0 and v >= -32:
            return struct.pack("b", v)
        if v >= 0:
            for fmt, tag in (("B", 0xCC), ("H", 0xCD), ("I", 0xCE), ("Q", 0xCF)):
                if v < 1 << (8 * struct.calcsize(fmt)):
                    return bytes([tag]) + struct.pack(">" + fmt, v)
        for fmt, tag in (("b", 0xD0), ("h", 0xD1), ("i", 0xD2), ("q", 0xD3)):
            if v >= -(1 << (8 * struct.calcsize(fmt) - 1)):
                return bytes([tag]) + struct.pack(">" + fmt, v)
    if isinstance(v, str):
        b = v.encode()
        if len(b) < 32:
            return bytes([0xA0 | len(b)]) + b
        if len(b) < 256:
            return b"\xd9" + bytes([len(b)]) + b
        return b"\xda" + struct.pack(">H", len(b)) + b
    if isinstance(v, list):
        n = len(v)
        head = bytes([0x90 | n]) if n < 16 else b"\xdc" + struct.pack(">H", n)
        return head + b"".join(mp(x) for x in v)
    raise TypeError(v)


def frame(sender, kind, seq, body, version=1, word="", ack=0, corr=0):
    return mp(["avm-link", version, sender, kind, seq, ack, corr, word, body])


def lenpfx(b):
    return struct.pack(">Q", len(b)) + b


def ending(s):
    """How the connection ended: 'closed by the node' or 'still open'."""
    s.settimeout(0.5)
    try:
        while True:
            d = s.recv(4096)
            if not d:
                return "closed by the node"
    except socket.timeout:
        return "still open"
    except OSError as e:
        return "closed by the node (%s)" % e.strerror


def link_conn(port):
    s = socket.create_connection((HOST, port), timeout=5)
    s.sendall(SP_PUSH0)
    hdr = b""
    while len(hdr) < 8:
        d = s.recv(8 - len(hdr))
        if not d:
            break
        hdr += d
    if hdr != bytes([0, ord("S"), ord("P"), 0, 0, 0x51, 0, 0]):
        raise SystemExit("the link port answered %r, not an SP pull0 header" % hdr)
    return s


def link(port, case, arg):
    rnd = random.Random(1234)
    if case == "random":  # no handshake at all
        s = socket.create_connection((HOST, port), timeout=5)
        try:
            s.sendall(bytes(rnd.getrandbits(8) for _ in range(4096)))
        except (BrokenPipeError, ConnectionResetError):
            return "closed by the node (while sending)"
        return ending(s)
    s = link_conn(port)
    try:
        send_case(s, case, arg, rnd)
    except (BrokenPipeError, ConnectionResetError):
        return "closed by the node (while sending)"
    return ending(s)


def send_case(s, case, arg, rnd):
    if case == "garbage-frame":
        s.sendall(lenpfx(bytes(rnd.getrandbits(8) for _ in range(200))))
    elif case == "truncated-frame":  # a whole frame whose msgpack is cut short
        f = frame("n2", 0, 1, ["x" * 20])
        s.sendall(lenpfx(f[: len(f) // 2]))
    elif case == "truncated-stream":  # the length says 500, 100 bytes come, then EOF
        s.sendall(struct.pack(">Q", 500) + bytes(100))
        s.shutdown(socket.SHUT_WR)
    elif case == "huge-length":
        s.sendall(b"\xff" * 8)
    elif case == "over-max-frame":  # 16 MiB + 1, the data starting to flow
        s.sendall(struct.pack(">Q", 16 * 1024 * 1024 + 1) + bytes(65536))
    elif case == "wrong-version":
        s.sendall(lenpfx(frame("n2", 0, 1, None, version=2)))
    elif case == "unknown-kind":
        s.sendall(lenpfx(frame("n2", 9, 1, None)))
    elif case == "unknown-peer":
        s.sendall(lenpfx(frame("n9", 1, 1, ["obj.fetch"], word="obj.fetch", corr=1)))
    elif case == "wrong-session":
        # A heartbeat in n2's name without a session, then a sequenced frame in its
        # name with a seq n1 already had from n2. (A heartbeat with another nonzero
        # session is not sent: links are not authenticated, and n1 would take it
        # for a restart of n2 and reset the pair; see the report of this test.)
        s.sendall(lenpfx(frame("n2", 4, 0, [0, 0, 1 << 20])))
        s.sendall(lenpfx(frame("n2", 0, 1, ["forged"])))
    elif case == "replay":  # a recorded connection sent again, bytes as they were
        data = open(arg, "rb").read()
        if data.startswith(SP_PUSH0):
            data = data[8:]
        s.sendall(data)
    else:
        raise SystemExit("unknown case " + case)


def pipe(src, dst, rec):
    try:
        while True:
            d = src.recv(65536)
            if not d:
                break
            if rec is not None:
                rec.write(d)
                rec.flush()
            dst.sendall(d)
    except OSError:
        pass
    for x in (src, dst):
        try:
            x.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def proxy(portfile, upfile, recdir):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((HOST, 0))
    ls.listen(16)
    with open(portfile + ".tmp", "w") as f:
        f.write(str(ls.getsockname()[1]))
    os.rename(portfile + ".tmp", portfile)
    n = 0
    while True:
        c, _ = ls.accept()
        try:
            up = int(open(upfile).read().strip())
            u = socket.create_connection((HOST, up))
        except (OSError, ValueError):
            c.close()
            continue
        n += 1
        rec = open(os.path.join(recdir, "conn-%d" % n), "wb")
        threading.Thread(target=pipe, args=(c, u, rec), daemon=True).start()
        threading.Thread(target=pipe, args=(u, c, None), daemon=True).start()


def main():
    a = sys.argv[1:]
    if a and a[0] == "proxy":
        proxy(a[1], a[2], a[3])
    elif a and a[0] == "link":
        print("link %s: %s" % (a[2], link(int(a[1]), a[2], a[3] if len(a) > 3 else None)))
    elif a and a[0] == "raw":
        s = socket.create_connection((HOST, int(a[1])), timeout=5)
        s.sendall(bytes(random.Random(99).getrandbits(8) for _ in range(8192)))
        print("raw: %s" % ending(s))
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
