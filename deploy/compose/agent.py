"""The quick start's example agent: takes a client-credentials token from the IdP (its
own identity, no database password), reads customers through Airlock (PII comes back
masked), then asks to delete an order, which waits for a DBA's approval in the console."""
import os
import time

import psycopg
import requests

token = requests.post(
    os.environ["OIDC_TOKEN_URL"],
    data={"grant_type": "client_credentials", "resource": "urn:airlock"},
    auth=(os.environ["OIDC_CLIENT_ID"], os.environ["OIDC_CLIENT_SECRET"]),
    timeout=10,
).json()["access_token"]
host, port = os.environ["AIRLOCK_ADDRESS"].rsplit(":", 1)
conninfo = dict(host=host, port=int(port),
                dbname="shop", user="agent-1", password=token, sslmode="require")
for attempt in range(30):
    try:
        conn = psycopg.connect(**conninfo, autocommit=True)
        break
    except psycopg.OperationalError as e:
        print(f"waiting for Airlock: {e}")
        time.sleep(2)
else:
    raise SystemExit("Airlock did not answer")
with conn:
    for row in conn.execute("select id, name, email, card from customers order by id"):
        print("customer:", row)
    print("asking to delete order 7; a DBA approves it in the console (Approvals)...")
    try:
        print(conn.execute("delete from orders where id = 7").statusmessage)
    except psycopg.Error as e:
        print("not done:", e)
