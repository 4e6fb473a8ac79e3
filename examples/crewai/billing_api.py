"""A stand-in billing API for the demo (the upstream of Airlock's `billing` target).

  BILLING_TOKEN=... python3 billing_api.py [PORT]      # default 18081, on 127.0.0.1

GET /api/invoices/<id> returns an invoice as JSON, with the customer's e-mail and card
number in it (Airlock masks both on the way to the agent). Every request must carry
`Authorization: Bearer $BILLING_TOKEN`: the key only Airlock holds. Standard library only.
"""
import json
import os
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = os.environ.get("BILLING_TOKEN", "")
CUSTOMERS = {1: ("Ada Lovelace", "ada@example.com"), 2: ("Grace Hopper", "grace@example.com"),
             3: ("Alan Turing", "alan@example.com")}


class Handler(BaseHTTPRequestHandler):
    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if not TOKEN or self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.reply(401, {"error": "this API wants its own key (only Airlock has it)"})
        m = re.fullmatch(r"/api/invoices/(\d+)", self.path.split("?")[0])
        if not m:
            return self.reply(404, {"error": "no such resource"})
        n = int(m.group(1))
        name, email = CUSTOMERS.get(n, ("Unknown", "billing@example.com"))
        self.reply(200, {"id": n, "customer": name, "email": email, "card": "4111 1111 1111 1111",
                         "amount": 42.50 * n, "currency": "EUR", "status": "open"})

    def log_message(self, fmt, *args) -> None:
        sys.stderr.write("billing_api: " + fmt % args + "\n")


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 18081
    print(f"billing_api on http://127.0.0.1:{port}/api", file=sys.stderr, flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
