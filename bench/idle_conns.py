#!/usr/bin/env python3
"""Open N idle TLS connections to a PostgreSQL-protocol server and measure a process's RSS.

Standard library only. Each connection: SSLRequest, TLS (no verification), StartupMessage
(protocol 3.0), password authentication (cleartext, MD5 or SCRAM-SHA-256), read until
ReadyForQuery, then keep the socket open. With all of them open, reads VmRSS/VmHWM of
--pid from /proc, then closes every connection (Terminate) and prints one JSON line.

The password comes from the environment variable IDLE_PASSWORD (never the command line).
"""
import argparse
import base64
import concurrent.futures
import hashlib
import hmac
import json
import os
import socket
import ssl
import struct
import sys
import threading
import time


class PgError(Exception):
    pass


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise PgError("connection closed by the server")
        buf += chunk
    return bytes(buf)


def read_msg(sock):
    head = recv_exact(sock, 5)
    kind, length = head[:1], struct.unpack("!I", head[1:])[0]
    return kind, recv_exact(sock, length - 4)


def send_msg(sock, kind, payload):
    sock.sendall(kind + struct.pack("!I", len(payload) + 4) + payload)


def error_text(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[part[:1]] = part[1:].decode(errors="replace")
    return f"{fields.get(b'S', 'ERROR')} {fields.get(b'C', '')}: {fields.get(b'M', '')}"


def read_auth(sock, expected_code, name):
    """Reads an authentication message with `expected_code`; its body after the code."""
    kind, body = read_msg(sock)
    if kind == b"E":
        raise PgError(error_text(body))
    code = struct.unpack("!I", body[:4])[0]
    if kind != b"R" or code != expected_code:
        raise PgError(f"expected {name}, got {kind!r} {code}")
    return body


def scram_sha_256(sock, user, password, mechanisms):
    if "SCRAM-SHA-256" not in mechanisms:
        raise PgError(f"no supported SASL mechanism in {mechanisms}")
    nonce = base64.b64encode(os.urandom(18)).decode()
    client_first_bare = f"n=,r={nonce}"  # the server uses the startup user, like libpq
    gs2 = "n,,"
    first = (gs2 + client_first_bare).encode()
    send_msg(sock, b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first)
    body = read_auth(sock, 11, "SASLContinue")
    server_first = body[4:].decode()
    attrs = dict(item.split("=", 1) for item in server_first.split(","))
    if not attrs["r"].startswith(nonce):
        raise PgError("server nonce does not extend the client nonce")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    final_without_proof = f"c={base64.b64encode(gs2.encode()).decode()},r={attrs['r']}"
    auth_message = f"{client_first_bare},{server_first},{final_without_proof}".encode()
    signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    final = f"{final_without_proof},p={base64.b64encode(proof).decode()}".encode()
    send_msg(sock, b"p", final)
    body = read_auth(sock, 12, "SASLFinal")
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    expected = base64.b64encode(hmac.new(server_key, auth_message, hashlib.sha256).digest()).decode()
    if body[4:].decode() != f"v={expected}":
        raise PgError("server signature does not match")


def connect(host, port, user, database, password, ctx, timeout):
    raw = socket.create_connection((host, port), timeout=timeout)
    try:
        raw.sendall(struct.pack("!II", 8, 80877103))
        if recv_exact(raw, 1) != b"S":
            raise PgError("server refused TLS")
        sock = ctx.wrap_socket(raw)
    except BaseException:
        raw.close()
        raise
    try:
        params = b"".join(k.encode() + b"\0" + v.encode() + b"\0"
                          for k, v in (("user", user), ("database", database),
                                       ("application_name", "airlock-bench-idle")))
        payload = struct.pack("!I", 196608) + params + b"\0"
        sock.sendall(struct.pack("!I", len(payload) + 4) + payload)
        while True:
            kind, body = read_msg(sock)
            if kind == b"E":
                raise PgError(error_text(body))
            if kind == b"R":
                code = struct.unpack("!I", body[:4])[0]
                if code == 0:
                    continue
                if code == 3:
                    send_msg(sock, b"p", password.encode() + b"\0")
                elif code == 5:
                    salt = body[4:8]
                    inner = hashlib.md5(password.encode() + user.encode()).hexdigest()
                    send_msg(sock, b"p", b"md5" + hashlib.md5(inner.encode() + salt).hexdigest().encode() + b"\0")
                elif code == 10:
                    mechs = [m.decode() for m in body[4:].split(b"\0") if m]
                    scram_sha_256(sock, user, password, mechs)
                else:
                    raise PgError(f"unsupported authentication request {code}")
            elif kind == b"Z":
                sock.settimeout(None)
                return sock
            # S (ParameterStatus), K (BackendKeyData), N (notice): ignore
    except BaseException:
        sock.close()
        raise


def proc_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return out.get("VmRSS", 0), out.get("VmHWM", 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--database", required=True)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--pid", type=int, required=True, help="process whose RSS is measured")
    ap.add_argument("--label", default="")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--settle", type=float, default=2.0, help="seconds to wait before reading RSS")
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()
    if args.host != "127.0.0.1":
        sys.exit("idle_conns.py: only 127.0.0.1 is allowed")
    password = os.environ.get("IDLE_PASSWORD", "")

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    rss_before, _ = proc_status(args.pid)
    socks, errors = [], []
    lock = threading.Lock()

    def one(_):
        try:
            s = connect(args.host, args.port, args.user, args.database, password, ctx, args.timeout)
            with lock:
                socks.append(s)
        except Exception as e:  # noqa: BLE001 - every failure is counted and reported
            with lock:
                errors.append(f"{type(e).__name__}: {e}")

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.workers) as pool:
        list(pool.map(one, range(args.n)))
    open_s = time.monotonic() - t0
    time.sleep(args.settle)
    # Are they still alive? A closed socket reads b"" at once; an idle one would block.
    alive = 0
    for s in socks:
        s.setblocking(False)
        try:
            alive += 0 if s.recv(1) == b"" else 1
        except (ssl.SSLWantReadError, BlockingIOError):
            alive += 1
        except OSError:
            pass
    rss_after, hwm = proc_status(args.pid)
    for s in socks:
        try:
            s.setblocking(True)
            s.settimeout(2)
            send_msg(s, b"X", b"")
        except OSError:
            pass
        try:
            s.close()
        except OSError:
            pass
    print(json.dumps({
        "label": args.label, "requested": args.n, "opened": len(socks), "alive": alive,
        "failed": len(errors), "open_seconds": round(open_s, 2),
        "rss_before_kb": rss_before, "rss_after_kb": rss_after, "hwm_kb": hwm,
        "first_error": errors[0] if errors else "",
    }))


if __name__ == "__main__":
    main()
