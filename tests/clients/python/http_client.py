#!/usr/bin/env python3
"""HTTP clients for Airlock's HTTP end-to-end tests. Prints one JSON object.

usage: http_client.py SCENARIO URL   (token in env AIRLOCK_TOKEN)

  requests URL        GET with `requests`: status, JSON body
  httpx URL           GET with `httpx` (HTTP/1.1 and, if h2 is installed, HTTP/2): status, JSON body
  raw HOST:PORT       send the bytes of env RAW_REQUEST (with \\r\\n) over TLS; the whole answer
  websocket URL       a WebSocket over TLS: send env WS_TEXT, read one text message
  kubernetes KUBECONFIG  the `kubernetes` client: namespaces, and secret env SECRET in namespace env NS
"""
import base64, json, os, socket, ssl, struct, sys

scenario, url = sys.argv[1], sys.argv[2]
token = os.environ.get("AIRLOCK_TOKEN", "")
headers = {"Authorization": f"Bearer {token}"} if token else {}


def tls(host, port):
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx.wrap_socket(socket.create_connection((host, int(port)), timeout=15), server_hostname=host)


if scenario == "requests":
    import requests
    r = requests.get(url, headers=headers, verify=False, timeout=30)
    print(json.dumps({"status": r.status_code, "body": r.json() if r.content else None,
                      "content_type": r.headers.get("content-type")}))
elif scenario == "httpx":
    import httpx
    with httpx.Client(verify=False, http2=True, timeout=30) as c:
        r = c.get(url, headers=headers)
        print(json.dumps({"status": r.status_code, "body": r.json() if r.content else None,
                          "http_version": r.http_version}))
elif scenario == "raw":
    host, port = url.split(":")
    s = tls(host, port)
    s.sendall(os.environ["RAW_REQUEST"].encode("latin-1"))
    chunks = []
    try:
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    except (socket.timeout, ConnectionResetError, ssl.SSLError):
        pass
    print(json.dumps({"answer": b"".join(chunks).decode("latin-1")}))
elif scenario == "websocket":
    rest = url.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, port = hostport.split(":")
    s = tls(host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    req = (f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
    for k, v in headers.items():
        req += f"{k}: {v}\r\n"
    s.sendall((req + "\r\n").encode())
    f = s.makefile("rb")
    status = f.readline().decode().strip()
    while f.readline() not in (b"\r\n", b""):
        pass
    out = {"status": status}
    if " 101 " in status + " ":
        text = os.environ.get("WS_TEXT", "hello").encode()
        mask = os.urandom(4)
        frame = bytes([0x81, 0x80 | len(text)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(text))
        s.sendall(frame)
        head = f.read(2)
        length = head[1] & 0x7F
        if length == 126:
            length = struct.unpack(">H", f.read(2))[0]
        out["message"] = f.read(length).decode()
        s.sendall(bytes([0x88, 0x80]) + os.urandom(4))
    print(json.dumps(out))
elif scenario == "kubernetes":
    from kubernetes import client, config
    config.load_kube_config(config_file=url)
    v1 = client.CoreV1Api()
    names = [n.metadata.name for n in v1.list_namespace().items]
    secret = v1.read_namespaced_secret(os.environ["SECRET"], os.environ["NS"])
    try:
        v1.delete_namespace(os.environ["NS"])
        refused = None
    except client.exceptions.ApiException as e:
        refused = {"status": e.status, "reason": e.reason, "body": json.loads(e.body)}
    print(json.dumps({"namespaces": names, "data": secret.data, "refused": refused}))
else:
    sys.exit(f"unknown scenario {scenario}")
