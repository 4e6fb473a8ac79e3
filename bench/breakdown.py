#!/usr/bin/env python3
"""Fold a proxy's perf profile into where its CPU goes per transaction.

Usage: breakdown.py PERF.data {airlock,pgbouncer} [US_PER_TX]

Reads `perf script` of a `perf record --call-graph dwarf` profile of one proxy process
(bench/profile makes one) and files every sample under the first category, in the
order below, that one of its stack frames matches. The categories are the same for
both proxies where they do the same work (the socket sends and reads of both legs,
TLS included, and waiting for the next event), so that the two can be set side by side;
Airlock's own work (inspection, masking, recording) has its own rows. With US_PER_TX
(the proxy's CPU per transaction from bench/run's log) each row is also shown in µs.
Prints a markdown table.
"""
import collections
import subprocess
import sys


def airlock_categories():
    return [
        ("recording: ingest thread (SQLite)", lambda c, f: c == "airlock-ingest"),
        ("recording: recorder thread (journal fdatasync)", lambda c, f: c.startswith("airlock-recorde")),
        ("recording: journal pwrite", lambda c, f: "Journal::write" in f),
        ("recording: chain, encode, queue (session side)",
         lambda c, f: "write_now" in f or "record_later" in f or "Recorder::" in f or "to_records" in f),
        ("recording: event details", lambda c, f: "verdict_detail" in f or "result_draft" in f or "statement_draft" in f),
        ("socket sends, both legs (TLS included)",
         lambda c, f: "ChunkVecBuffer::write_to" in f or "__GI___writev" in f or "send_appdata" in f or "send_plaintext" in f),
        ("socket reads, both legs (TLS included)",
         lambda c, f: "read_io" in f or "recvfrom" in f or "__libc_recv" in f or "process_new_packets" in f or "DeframerVecBuffer" in f),
        ("masking", lambda c, f: "masking" in f or "Masker" in f),
        ("inspection: parse, classify, decide",
         lambda c, f: "ClientSide::inspect" in f or "understand" in f or "Classifier" in f or "decide" in f),
        # Parking a runtime worker, not `parking_lot` mutexes (those count where taken).
        ("waiting for the next event (epoll, futex, parking)",
         lambda c, f: "epoll_wait" in f or "futex" in f or ("park" in f and "parking_lot" not in f)),
    ]


def pgbouncer_categories():
    return [
        ("socket sends, both legs (TLS included)", lambda c, f: "SSL_write" in f or "__GI___libc_write" in f),
        ("socket reads, both legs (TLS included)", lambda c, f: "SSL_read" in f or "__GI___libc_read" in f),
        ("waiting for the next event (epoll, futex, parking)", lambda c, f: "epoll_wait" in f),
    ]


def samples(perf_data):
    out = subprocess.run(
        ["perf", "script", "-i", perf_data, "-F", "comm,tid,ip,sym,dso"],
        capture_output=True, text=True, check=True,
    ).stdout
    cur = None
    for line in out.splitlines():
        if not line.strip():
            if cur:
                yield cur
            cur = None
        elif not line.startswith(("\t", " ")):
            cur = (line.split()[0], [])
        elif cur is not None:
            parts = line.strip().split(None, 1)
            if len(parts) == 2:
                cur[1].append(parts[1].rsplit(" (", 1)[0])
    if cur:
        yield cur


def main():
    if len(sys.argv) < 3 or sys.argv[2] not in ("airlock", "pgbouncer"):
        sys.exit(__doc__)
    cats = airlock_categories() if sys.argv[2] == "airlock" else pgbouncer_categories()
    per_tx = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    counts = collections.Counter()
    total = 0
    for comm, frames in samples(sys.argv[1]):
        total += 1
        for name, match in cats:
            if any(match(comm, f) for f in frames):
                counts[name] += 1
                break
        else:
            counts["other (protocol framing, scheduling, allocation)"] += 1
    if not total:
        sys.exit("no samples")
    print(f"| where ({sys.argv[2]}, {total} samples) | share |" + (" µs/tx |" if per_tx else ""))
    print("|---|---:|" + ("---:|" if per_tx else ""))
    for name, n in counts.most_common():
        row = f"| {name} | {100 * n / total:.0f}% |"
        if per_tx:
            row += f" {per_tx * n / total:.1f} |"
        print(row)


if __name__ == "__main__":
    main()
