"""A human approver, scripted: approves pending Airlock requests whose statement matches.

  AIRLOCK_API_URL=https://127.0.0.1:18080 APPROVER_TOKEN=alk_... python approve.py [options]

Polls `GET {api}/api/approvals?status=pending` with the approver's Airlock token (a member
of the group the policy holds for, e.g. "dba"; never the agent's own token: Airlock does
not let a principal decide its own request) and approves each pending request whose
statement matches --match with `POST {api}/api/approvals/{id}/approve`, printing what it
approved. Standard library only: runs with any python3.

Options:
  --match REGEX     statements to approve (default: ^\\s*DELETE\\b, case-insensitive)
  --comment TEXT    the approval's comment (default: "approved by the CrewAI demo's approver")
  --once            exit after the first approval
  --timeout SECS    give up after this long (default 600; 0 = never); exit 1 when nothing was approved
  --interval SECS   polling interval (default 1)

TLS: AIRLOCK_CA names the CA file for the API's certificate (e.g. <data_dir>/tls/server.crt);
without it verification is off (the generated certificate is self-signed), with a warning.
"""
import argparse
import json
import os
import re
import ssl
import sys
import time
import urllib.error
import urllib.request


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--match", default=r"^\s*DELETE\b")
    ap.add_argument("--comment", default="approved by the CrewAI demo's approver")
    ap.add_argument("--once", action="store_true")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--interval", type=float, default=1.0)
    a = ap.parse_args()

    api = (os.environ.get("AIRLOCK_API_URL") or "https://127.0.0.1:18080").rstrip("/")
    token = os.environ.get("APPROVER_TOKEN") or os.environ.get("AIRLOCK_APPROVER_TOKEN")
    if not token:
        print("approve.py: set APPROVER_TOKEN to an approver's Airlock token "
              "(airlock token create --name dana --group dba)", file=sys.stderr)
        return 2
    ca = os.environ.get("AIRLOCK_CA")
    if ca:
        ctx = ssl.create_default_context(cafile=ca)
    else:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if api.startswith("https://"):
            print("approve.py: WARNING: AIRLOCK_CA is not set: TLS verification is OFF", file=sys.stderr)
    pattern = re.compile(a.match, re.I)

    def request(method: str, path: str, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(api + path, data=data, method=method, headers={
            "Authorization": f"Bearer {token}", "Accept": "application/json",
            **({"Content-Type": "application/json"} if data is not None else {})})
        with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
            return json.loads(r.read() or b"null")

    deadline = time.time() + a.timeout if a.timeout > 0 else None
    approved = 0
    seen = set()
    print(f"approve.py: watching {api}/api/approvals for pending statements matching /{a.match}/", file=sys.stderr)
    while deadline is None or time.time() < deadline:
        try:
            pending = request("GET", "/api/approvals?status=pending").get("approvals", [])
        except (urllib.error.URLError, OSError, ValueError) as e:
            detail = e.read().decode(errors="replace")[:300] if isinstance(e, urllib.error.HTTPError) else ""
            print(f"approve.py: listing approvals failed: {e} {detail}", file=sys.stderr)
            if isinstance(e, urllib.error.HTTPError) and e.code in (401, 403):
                return 2
            time.sleep(a.interval)
            continue
        for item in pending:
            aid, stmt = item.get("id"), item.get("statement") or ""
            if aid in seen or item.get("status") != "pending":
                continue
            if not pattern.search(stmt):
                print(f"approve.py: leaving {aid} alone: {stmt!r}", file=sys.stderr)
                seen.add(aid)
                continue
            seen.add(aid)
            try:
                done = request("POST", f"/api/approvals/{aid}/approve", {"comment": a.comment})
            except urllib.error.HTTPError as e:
                print(f"approve.py: approving {aid} failed: {e.code} {e.read().decode(errors='replace')[:300]}",
                      file=sys.stderr)
                continue
            approved += 1
            print(json.dumps({"approved": aid, "principal": item.get("principal"), "target": item.get("target"),
                              "statement": stmt, "reason": item.get("reason"),
                              "decided_by": (done or {}).get("decided_by")}), flush=True)
            if a.once:
                return 0
        time.sleep(a.interval)
    print(f"approve.py: timed out after {a.timeout:.0f} s ({approved} approved)", file=sys.stderr)
    return 0 if approved else 1


if __name__ == "__main__":
    sys.exit(main())
