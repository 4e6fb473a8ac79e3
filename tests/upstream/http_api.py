#!/usr/bin/env python3
"""A small upstream HTTP API for Airlock's HTTP end-to-end tests (Python stdlib only).

usage: http_api.py PORT DIR    credentials from env UP_BEARER, UP_APIKEY, UP_BASIC

Mounts: /api wants `Authorization: Bearer $UP_BEARER`, /key `X-Api-Key: $UP_APIKEY`,
/basic Basic `svc:$UP_BASIC`; anything else is 401. Every request is appended to
DIR/requests.jsonl as it arrived (request target, headers, body length and digest), so a
test can assert on what reached the upstream. Prints "ready" once listening.
"""
import base64, gzip, hashlib, json, os, struct, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, DIR = int(sys.argv[1]), sys.argv[2]
BEARER = os.environ["UP_BEARER"]
APIKEY = os.environ.get("UP_APIKEY", "")
BASIC = os.environ.get("UP_BASIC", "")
LOG, LOCK = open(os.path.join(DIR, "requests.jsonl"), "a"), threading.Lock()
PEOPLE = [
    {"id": 1, "name": "Ada Lovelace", "email": "ada@example.com", "password": "hunter2",
     "profile": {"ssn": "078-05-1120", "cards": [{"card": "4111 1111 1111 1111"}, {"number": 5500000000000004}]},
     "notes": ["call ada@example.com", "ok"], "session_token": "tok-9f8e7d6c5b4a", "Secret_Key": {"k": 1}},
    {"id": 2, "name": "Alan Turing", "email": "alan\\u0040example.org", "pass\\u0077ord": "s3cret-escaped"},
]


class Api(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def __getattr__(self, name):
        if name.startswith("do_"):
            return self.serve
        raise AttributeError(name)

    def body(self):
        digest, n = hashlib.sha256(), 0
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                data = self.rfile.read(size)
                digest.update(data)
                n += len(data)
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length", "0") or 0)
            while left:
                data = self.rfile.read(min(left, 1 << 16))
                if not data:
                    break
                digest.update(data)
                n += len(data)
                left -= len(data)
        return n, digest.hexdigest()

    def serve(self):
        n, digest = self.body()
        raw, _, query = self.path.partition("?")
        rec = {"method": self.command, "target": self.path, "path": raw, "query": query,
               "headers": list(self.headers.items()), "body_len": n, "body_sha256": digest}
        with LOCK:
            LOG.write(json.dumps(rec) + "\n")
            LOG.flush()
        auth = self.headers.get_all("Authorization", [])
        parts = raw.split("/")
        mount, route = (parts[1] if len(parts) > 1 else ""), "/".join(parts[2:])
        ok = {"api": auth == ["Bearer " + BEARER],
              "key": self.headers.get_all("X-Api-Key", []) == [APIKEY],
              "basic": auth == ["Basic " + base64.b64encode(("svc:" + BASIC).encode()).decode()]}
        if not ok.get(mount):
            return self.send(401, "application/json", b'{"error":"unauthorized"}')
        if route == "v1/echo":
            return self.send(200, "application/json", json.dumps(rec).encode())
        if route == "v1/people":
            return self.send(200, "application/json; charset=utf-8", self.people())
        if route == "v1/people.ndjson":
            return self.chunked("application/x-ndjson", [json.dumps(p).encode() + b"\n" for p in json.loads(self.people())["people"]], 0.1)
        if route == "v1/events":
            return self.chunked("text/event-stream", [
                b'event: person\ndata: {"id":1,"email":"ada@example.com","password":"hunter2"}\n\n',
                b"event: note\ndata: mail alan@example.org card 4111 1111 1111 1111\n\n"], 1.0)
        if route == "v1/gzip":
            return self.send(200, "application/json", gzip.compress(self.people()), [("Content-Encoding", "gzip")])
        if route == "v1/brotli":
            return self.send(200, "application/json", b"\x0b\x02\x80{}\x03", [("Content-Encoding", "br")])
        if route == "v1/not-json":
            return self.send(200, "application/json", b'{"email": "ada@example.com", oops')
        if route == "v1/not-json-stream":
            return self.chunked("application/json", [b'{"people": [', b'{"name": "Ada"}, ', b'oops alan@example.org'], 0.1)
        if route == "v1/truncated":
            # Promises 100 KiB, sends 1 KiB with an e-mail in it, and hangs up.
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(100 << 10))
            self.end_headers()
            self.wfile.write(b"x" * 1000 + b" ada@example.com\n")
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if route == "v1/big":
            mb = int(dict(p.split("=") for p in query.split("&") if "=" in p).get("mb", "1"))
            return self.big(mb)
        if route == "v1/debug":
            page = ("<pre>Authorization: %s</pre>" % ", ".join(auth)).encode()
            return self.send(500, "text/html", page, [("X-Debug", ", ".join(auth))])
        if route == "v1/redirect":
            return self.send(302, "text/plain", b"", [("Location", "http://127.0.0.1:%d/api/v1/echo?token=%s" % (PORT, BEARER))])
        if route == "v1/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            return self.websocket()
        if route in ("v1/upload", "v1/refunds", "v1/invoices"):
            return self.send(201, "application/json", json.dumps({"len": n, "sha256": digest}).encode())
        return self.send(404, "application/json", b'{"error":"not found"}')

    def people(self):
        text = json.dumps({"people": PEOPLE, "count": 2})
        # Keep the JSON escapes of the second person literally in the document.
        return text.replace("\\\\u0040", "\\u0040").replace("\\\\u0077", "\\u0077").encode()

    def send(self, code, ctype, body, extra=()):
        self.send_response(code)
        for k, v in [("Content-Type", ctype), ("Content-Length", str(len(body)))] + list(extra):
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def chunked(self, ctype, chunks, pause):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i, c in enumerate(chunks):
            if i and pause:
                time.sleep(pause)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def big(self, mb):
        block = hashlib.sha256(b"airlock").digest() * 2048  # 64 KiB
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(mb << 20))
        self.end_headers()
        for _ in range(mb * 16):
            self.wfile.write(block)

    def websocket(self):
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            opcode, length = head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                length = struct.unpack(">H", self.rfile.read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))
            if opcode == 8:
                self.wfile.write(b"\x88\x00")
                return
            if opcode == 1:
                reply = b"echo: " + data + b" (ada@example.com)"
                self.wfile.write(bytes([0x81, len(reply)]) + reply if len(reply) < 126 else bytes([0x81, 126]) + struct.pack(">H", len(reply)) + reply)
                self.wfile.flush()
        self.close_connection = True


ThreadingHTTPServer.daemon_threads = True
server = ThreadingHTTPServer(("127.0.0.1", PORT), Api)
print("ready", flush=True)
server.serve_forever()
