"""psycopg 3 scenarios the end-to-end tests drive through Airlock.

Usage: pg_client.py SCENARIO   (connection string in $AIRLOCK_CONN)
Prints one JSON object on stdout; exits non-zero if the scenario's own checks fail.
"""
import json
import os
import sys
import threading
import time

import psycopg
from psycopg import errors, sql

CONN = os.environ["AIRLOCK_CONN"]


def out(obj):
    print(json.dumps(obj))


def prepared():
    with psycopg.connect(CONN) as c:
        counts = [
            c.execute("select count(*) from orders where customer_id = %s", (cid,), prepare=True).fetchone()[0]
            for cid in (1, 2, 1)
        ]
        with c.cursor(binary=True) as cur:
            cur.execute("select orders.id, name, total from orders join customers on customers.id = orders.customer_id where orders.id = %s", (7,))
            binary_row = cur.fetchone()
        with c.cursor() as cur:
            cur.executemany("insert into orders(customer_id, total) values (%s, %s)", [(1, 10), (2, 20), (1, 30)])
        c.commit()
        inserted = c.execute("select count(*) from orders where total in (10, 20, 30) and id > 100").fetchone()[0]
        # A server-side error in the extended protocol, then the connection keeps working.
        try:
            c.execute("select 1 / %s", (0,))
            err = None
        except errors.DivisionByZero as e:
            err = e.sqlstate
            c.rollback()
        after = c.execute("select %s::int + 1", (41,)).fetchone()[0]
    out({"counts": counts, "binary_row": [binary_row[0], binary_row[1], str(binary_row[2])],
         "inserted": inserted, "error": err, "after_error": after})


def copy():
    with psycopg.connect(CONN) as c:
        with c.cursor() as cur:
            rows = []
            with cur.copy("copy (select id, name from customers order by id) to stdout") as cp:
                for row in cp.rows():
                    rows.append(list(row))
            with cur.copy("copy orders (customer_id, total) from stdin") as cp:
                for i in range(5000):
                    cp.write_row((1 + i % 2, i))
            c.commit()
            n = cur.execute("select count(*) from orders").fetchone()[0]
    out({"copied_out": rows, "orders_after_copy_in": n})


def notify():
    notices = []
    with psycopg.connect(CONN, autocommit=True) as c:
        c.add_notice_handler(lambda d: notices.append(d.message_primary))
        c.execute("listen airlock_test")
        c.execute("notify airlock_test, 'hello'")
        c.execute("do $$ begin raise notice 'notice from plpgsql'; end $$")
        got = [(n.channel, n.payload) for n in c.notifies(timeout=5, stop_after=1)]
    out({"notifies": got, "notices": notices})


def cancel():
    with psycopg.connect(CONN) as c, psycopg.connect(CONN) as other:
        def fire():
            time.sleep(1.0)
            c.cancel_safe()
        t = threading.Thread(target=fire)
        t.start()
        started = time.monotonic()
        try:
            c.execute("select pg_sleep(60)")
            state = None
        except errors.QueryCanceled as e:
            state = e.sqlstate
        t.join()
        c.rollback()
        # The cancelled connection and another one both still work.
        alive = c.execute("select 1").fetchone()[0]
        other_alive = other.execute("select 2").fetchone()[0]
    out({"sqlstate": state, "seconds": time.monotonic() - started, "alive": alive, "other_alive": other_alive})


def lost():
    with psycopg.connect(CONN) as c:
        pid = c.execute("select pg_backend_pid()").fetchone()[0]
        print(json.dumps({"backend_pid": pid}), file=sys.stderr, flush=True)
        try:
            c.execute("select pg_sleep(60)")
            out({"error": None})
        except psycopg.Error as e:
            out({"error": type(e).__name__, "sqlstate": getattr(e, "sqlstate", None), "message": str(e)})


def direct_tls():
    try:
        with psycopg.connect(CONN + " sslnegotiation=direct") as c:
            out({"ok": c.execute("select 'direct'").fetchone()[0], "libpq": psycopg.pq.version()})
    except psycopg.ProgrammingError as e:
        # libpq older than 17 does not know sslnegotiation.
        out({"unsupported": str(e), "libpq": psycopg.pq.version()})


def session_alive():
    """Connects, then waits for a line on stdin between two queries (secret rotation)."""
    with psycopg.connect(CONN) as c:
        first = c.execute("select current_user").fetchone()[0]
        print("ready", flush=True)
        sys.stdin.readline()
        second = c.execute("select count(*) from customers").fetchone()[0]
    out({"first": first, "second": second})



def policy_extended():
    """Under a read-only policy: an allowed prepared SELECT, a denied prepared DELETE
    (42501), transaction state after a denial inside BEGIN, and a connection that
    keeps working."""
    from psycopg.pq import TransactionStatus
    out_ = {}
    with psycopg.connect(CONN) as c:
        out_["select"] = c.execute("select count(*) from orders where customer_id = %s", (1,), prepare=True).fetchone()[0]
        try:
            c.execute("delete from orders where id = %s", (7,), prepare=True)
            out_["delete"] = "ran"
        except errors.InsufficientPrivilege as e:
            out_["delete"] = e.sqlstate
            out_["delete_message"] = e.diag.message_primary
            out_["status_after_denial"] = c.info.transaction_status.name
            try:
                c.execute("select 1")
                out_["in_failed_tx"] = "ran"
            except errors.InFailedSqlTransaction as e2:
                out_["in_failed_tx"] = e2.sqlstate
            c.rollback()
        out_["after_rollback"] = c.execute("select count(*) from orders", prepare=False).fetchone()[0]
        out_["status"] = c.info.transaction_status.name
    out(out_)


ADDRESSES = "select array_agg(x order by x) from (values ('ada@example.com'), ('alan@example.org')) v(x)"


def masking():
    """Results under the default masking rule, in text and binary formats, through the
    extended protocol: plain columns, aliases, JSON, arrays, computed values."""
    res = {}
    with psycopg.connect(CONN) as c:
        q = "select id, name, email, ssn, card, password from customers order by id"
        res["text"] = [list(r) for r in c.execute(q).fetchall()]
        with c.cursor(binary=True) as cur:
            cur.execute(q)
            res["binary"] = [list(r) for r in cur.fetchall()]
            cur.execute("select password as p, id::int8 * 0 + 4111111111111111 as n from customers order by id")
            res["binary_alias_int8"] = [list(r) for r in cur.fetchall()]
            # Detectors inside array elements (values no column rule names).
            cur.execute(ADDRESSES)
            res["binary_array"] = cur.fetchone()[0]
            cur.execute("select jsonb_agg(c order by id) from customers c")
            res["binary_jsonb"] = cur.fetchone()[0]
        res["json"] = c.execute("select row_to_json(c) from customers c order by id").fetchall()[0][0]
        res["text_array"] = c.execute(ADDRESSES).fetchone()[0]
        res["prepared"] = [list(r) for r in c.execute("select email, password from customers where id = %s", (1,), prepare=True).fetchall()]
        res["prepared_again"] = [list(r) for r in c.execute("select email, password from customers where id = %s", (2,), prepare=True).fetchall()]
        res["unicode"] = c.execute("select 'Zoë Müller <' || x || '> 北京' from (values ('ada@example.com')) v(x)").fetchone()[0]
    out(res)


def held():
    """One statement that policy holds for approval: $AIRLOCK_SQL with $AIRLOCK_PARAMS
    (a JSON list, or absent), inside a transaction after a SELECT. Prints the rowcount,
    or the error with the transaction state after it; the notices; and the orders count
    at the end. $AIRLOCK_CANCEL_AFTER (seconds) cancels the wait from another thread."""
    q = os.environ["AIRLOCK_SQL"]
    params = json.loads(os.environ.get("AIRLOCK_PARAMS", "null"))
    cancel_after = float(os.environ.get("AIRLOCK_CANCEL_AFTER", "0"))
    res = {"notices": []}
    with psycopg.connect(CONN) as c:
        c.add_notice_handler(lambda d: res["notices"].append(d.message_primary))
        c.execute("select 1")
        if cancel_after:
            threading.Timer(cancel_after, c.cancel_safe).start()
        started = time.monotonic()
        try:
            cur = c.execute(q, params)
            res["rowcount"] = cur.rowcount
            c.commit()
        except psycopg.Error as e:
            res.update(sqlstate=e.sqlstate, message=e.diag.message_primary, hint=e.diag.message_hint)
            res["status_after_error"] = c.info.transaction_status.name
            try:
                c.execute("select 1")
                res["in_failed_tx"] = "ran"
            except errors.InFailedSqlTransaction as e2:
                res["in_failed_tx"] = e2.sqlstate
            c.rollback()
        res["seconds"] = time.monotonic() - started
        res["after"] = c.execute("select count(*) from orders").fetchone()[0]
        res["status"] = c.info.transaction_status.name
    out(res)


def second_statement():
    """Runs a statement, prints "ready", waits for a line on stdin, then tries another:
    prints what the second one got (the session may have been closed meanwhile: an
    expired or revoked credential)."""
    res = {}
    with psycopg.connect(CONN, autocommit=True) as c:
        res["first"] = c.execute("select count(*) from orders").fetchone()[0]
        print("ready", flush=True)
        sys.stdin.readline()
        try:
            res["second"] = c.execute("select count(*) from orders").fetchone()[0]
        except psycopg.Error as e:
            res.update(error=type(e).__name__, sqlstate=e.sqlstate, message=str(e))
        res["closed"] = c.closed
    out(res)


def syntax_errors():
    """Statements the grammar rejects, in the extended protocol (parameters) and the
    simple one, inside a transaction block: what psycopg reports of each error, and the
    transaction state after it."""
    res = []
    with psycopg.connect(CONN) as c:
        for text, params in [
            ("selec %s", (1,)),
            ("select %s::int +", (1,)),
            ("select * from orders where id = %s order by", (1,)),
            ("select 'unterminated", None),
            ("select 1 from orders limit all offset %s fetch first 1 rows only", (1,)),
        ]:
            c.execute("select 1")
            try:
                c.execute(text, params)
                res.append({"text": text, "ran": True})
                continue
            except psycopg.Error as e:
                d = e.diag
                item = {"text": text, "sqlstate": e.sqlstate, "message": d.message_primary,
                        "position": d.statement_position, "severity": d.severity}
            try:
                c.execute("select 2")
                item["after"] = "ran"
            except errors.InFailedSqlTransaction as e2:
                item["after"] = e2.sqlstate
            item["status"] = c.info.transaction_status.name
            c.rollback()
            res.append(item)
    out(res)


def insert_burst():
    """Autocommit INSERTs of unique values ('$AIRLOCK_TAG-N') into table burst, one
    statement each, as fast as they are answered, until the connection breaks (the
    gateway is killed) or $AIRLOCK_SECONDS (default 60) pass. Prints how many were
    acknowledged and what ended it."""
    tag = os.environ["AIRLOCK_TAG"]
    deadline = time.monotonic() + float(os.environ.get("AIRLOCK_SECONDS", "60"))
    res = {"acknowledged": 0, "error": None}
    try:
        with psycopg.connect(CONN, autocommit=True) as c:
            n = 0
            while time.monotonic() < deadline:
                c.execute(f"insert into burst values ('{tag}-{n}')")
                n += 1
                res["acknowledged"] = n
    except psycopg.Error as e:
        res["error"] = type(e).__name__
        res["message"] = str(e)
    out(res)


if __name__ == "__main__":
    globals()[sys.argv[1]]()
