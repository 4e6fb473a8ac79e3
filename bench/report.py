#!/usr/bin/env python3
"""Turn bench/run's raw results (a TSV file) into a markdown report.

Usage: report.py RESULTS.tsv META.env OUT.md  -- prints the report and writes it to OUT.md.

Rows of RESULTS.tsv (tab-separated):
  pgbench TEST PATH ROUND TPS LATENCY_MS TRANSACTIONS PROXY_TICKS
  bigrow  PATH ROUND WALL_SECONDS OK [PROXY_TICKS]
  peak    PATH VMHWM_KB
  idle    PATH JSON
Missing or unparsable numbers count as 0; a path with no result shows "–".
"""
import json
import statistics
import sys

PATHS = ["direct", "pgbouncer", "airlock", "airlock-b", "airlock-nomask"]
TESTS = [
    ("select", "select-only `-S`"),
    ("tpcb", "TPC-B-like (default script)"),
    ("connect", "select-only, new connection per transaction `-S -C`"),
]


def num(s, kind=float):
    try:
        v = kind(s)
        return v if v == v else 0  # NaN -> 0
    except (TypeError, ValueError):
        return 0


def median(xs):
    return statistics.median(xs) if xs else 0.0


def fmt(v, digits=0, dash_if_zero=True):
    if v is None or (dash_if_zero and not v):
        return "–"
    return f"{v:,.{digits}f}"


def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "–"


def side_by_side(pg, hz, a, b):
    """Per pgbench test run through both paths `a` and `b`: (label, runs of a, runs of b,
    median tps of a and of b, proxy CPU µs per transaction of a and of b)."""
    def cpu(runs):
        tx = sum(r[2] for r in runs)
        return sum(r[3] for r in runs) / hz * 1e6 / tx if tx else 0
    for t, label in TESTS:
        runs_a, runs_b = pg.get((t, a)), pg.get((t, b))
        if runs_a and runs_b:
            yield (label, runs_a, runs_b, median([r[0] for r in runs_a]),
                   median([r[0] for r in runs_b]), cpu(runs_a), cpu(runs_b))


def main():
    results_path, meta_path, out_path = sys.argv[1:4]
    meta = {}
    with open(meta_path) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                meta[k] = v
    hz = num(meta.get("clk_tck", "100"), int) or 100

    pg = {}      # (test, path) -> list of (tps, lat, tx, ticks)
    big = {}     # path -> list of (wall, ok, ticks)
    peak = {}    # path -> kB
    idle = {}    # path -> dict
    with open(results_path) as f:
        for line in f:
            c = line.rstrip("\n").split("\t")
            if c[0] == "pgbench" and len(c) >= 8:
                pg.setdefault((c[1], c[2]), []).append(
                    (num(c[4]), num(c[5]), num(c[6], int), num(c[7], int)))
            elif c[0] == "bigrow" and len(c) >= 5:
                big.setdefault(c[1], []).append(
                    (num(c[3]), num(c[4], int), num(c[5], int) if len(c) >= 6 else 0))
            elif c[0] == "peak" and len(c) >= 3:
                peak[c[1]] = num(c[2], int)
            elif c[0] == "idle" and len(c) >= 3:
                try:
                    idle[c[1]] = json.loads(c[2])
                except ValueError:
                    idle[c[1]] = {"first_error": "unparsable output: " + c[2][:200]}

    out = []
    w = out.append
    w("# Airlock benchmark")
    w("")
    w(f"- date: {meta.get('date', '?')}")
    w(f"- machine: kernel {meta.get('kernel', '?')}, {meta.get('nproc', '?')} CPUs, "
      f"{meta.get('memory', '?')} memory")
    w(f"- PostgreSQL: {meta.get('pg_version', '?')}; pgbouncer: {meta.get('pgbouncer_version', '?')}")
    if meta.get("bin_built", "1") == "0":
        w(f"- airlock: binary `{meta.get('airlock_bin', '?')}` ({meta.get('airlock_version', '?')}), "
          f"given with AIRLOCK_BIN; bench/run from commit {meta.get('commit', '?')}")
    else:
        w(f"- airlock: commit {meta.get('commit', '?')}, binary `{meta.get('airlock_bin', '?')}` "
          f"({meta.get('airlock_version', '?')})")
    if meta.get("airlock_bin_b"):
        w(f"- airlock-b: binary `{meta['airlock_bin_b']}` ({meta.get('airlock_version_b', '?')}), "
          "given with AIRLOCK_BIN_B, configured like airlock")
    extra = meta.get("extra_target_toml", "")
    if extra:
        w(f"- extra `[[targets]]` lines: `{extra}`")
    w(f"- command: `{meta.get('command', '?')}`")
    if meta.get("masking_check"):
        w(f"- masking (an e-mail address in a result, as the client sees it): {meta['masking_check']}")
    w(f"- settings: ROUNDS={meta.get('rounds')} T={meta.get('t')}s SCALE={meta.get('scale')}, "
      "TLS on every client leg (`sslmode=require`) and from both proxies to PostgreSQL; "
      "pgbouncer in session mode; airlock records every statement; airlock masks results with "
      "the built-in default rule (`default_masking`, on unless the extra target lines turn it off); "
      "airlock-nomask is a second gateway, the same but with `default_masking = false`")
    w("")

    ran_pg = [(t, label) for t, label in TESTS if any((t, p) in pg for p in PATHS)]
    if ran_pg:
        w(f"## pgbench `-c 8 -j 2 -T {meta.get('t')}`, median of {meta.get('rounds')} round(s), paths alternated")
        w("")
        w("| test | path | tps | latency avg (ms) | tps vs direct | proxy CPU µs/tx | tps per round |")
        w("|---|---|---:|---:|---:|---:|---|")
        for t, label in ran_pg:
            runs_d = pg.get((t, "direct"), [])
            d_tps = median([r[0] for r in runs_d])
            for p in PATHS:
                runs = pg.get((t, p))
                if runs is None:
                    continue
                tps = median([r[0] for r in runs])
                lat = median([r[1] for r in runs])
                tx = sum(r[2] for r in runs)
                ticks = sum(r[3] for r in runs)
                cpu = "–" if p == "direct" else (f"{ticks / hz * 1e6 / tx:.1f}" if tx else "–")
                rounds = ", ".join(f"{r[0]:.0f}" for r in runs)
                bad = sum(1 for r in runs if not r[0])
                if bad:
                    rounds += f" ({bad} failed)"
                w(f"| {label} | {p} | {fmt(tps)} | {fmt(lat, 3)} | {ratio(tps, d_tps) if p != 'direct' else '1.00' if tps else '–'} "
                  f"| {cpu} | {rounds} |")
        w("")
        w("Proxy CPU is the proxy process's user+system time (`/proc/PID/stat`) over all rounds "
          "divided by the transactions pgbench processed through it.")
        w("")

    if big:
        w(f"## 1,000,000-row SELECT (`psql -X -At`, wall time), median of {meta.get('rounds')} round(s)")
        w("")
        w(f"`{meta.get('bigrow_sql', 'select g, md5(g::text) from generate_series(1,1000000) g')}`")
        w("")
        w("| path | wall (s) | vs direct | proxy CPU (s) | peak RSS of the proxy (VmHWM) | wall per round (s) |")
        w("|---|---:|---:|---:|---:|---|")
        d_wall = median([r[0] for r in big.get("direct", []) if r[1]])
        for p in PATHS:
            runs = big.get(p)
            if runs is None:
                continue
            ok = [r[0] for r in runs if r[1]]
            wall = median(ok)
            rss = f"{peak[p] / 1024:.1f} MB" if peak.get(p) else "–"
            cpu = "–" if p == "direct" else fmt(median([r[2] / hz for r in runs if r[1]]), 2)
            rounds = ", ".join(f"{r[0]:.2f}" if r[1] else "failed" for r in runs)
            w(f"| {p} | {fmt(wall, 2)} | {ratio(wall, d_wall) if p != 'direct' else '1.00' if wall else '–'} "
              f"| {cpu} | {rss} | {rounds} |")
        w("")
        w("Proxy CPU is the proxy process's user+system time over one SELECT (median); peak RSS "
          "is its VmHWM over its whole life up to the end of this test.")
        w("")

    # The cost of default masking: airlock against airlock-nomask, same run, same rounds.
    cost = []
    for label, _, _, t_on, t_off, c_on, c_off in side_by_side(pg, hz, "airlock", "airlock-nomask"):
        cost.append(f"| {label} | {fmt(t_on)} tps | {fmt(t_off)} tps | {ratio(t_on, t_off)} "
                    f"| {c_on:.1f} | {c_off:.1f} | {c_on - c_off:+.1f} |")
    if cost:
        w("## Cost of default masking (airlock against airlock-nomask)")
        w("")
        w("| test | masking on | masking off | on / off | CPU µs/tx on | CPU µs/tx off | difference |")
        w("|---|---:|---:|---:|---:|---:|---:|")
        out.extend(cost)
        w("")
    # An A/B of two builds: airlock (AIRLOCK_BIN) against airlock-b (AIRLOCK_BIN_B), same
    # configuration, adjacent in every round; the per-round ratios pair runs made moments
    # apart, which is what a change of a few percent needs on a noisy machine.
    ab = []
    for label, a, b, t_a, t_b, c_a, c_b in side_by_side(pg, hz, "airlock", "airlock-b"):
        pairs = ", ".join(ratio(rb[0], ra[0]) for ra, rb in zip(a, b))
        ab.append(f"| {label} | {fmt(t_a)} | {fmt(t_b)} | {ratio(t_b, t_a)} | {pairs} "
                  f"| {c_a:.1f} | {c_b:.1f} | {c_b - c_a:+.1f} |")
    if ab:
        w("## A/B: airlock (AIRLOCK_BIN) against airlock-b (AIRLOCK_BIN_B)")
        w("")
        w("| test | airlock tps | airlock-b tps | b / a | b / a per round | CPU µs/tx a | CPU µs/tx b | difference |")
        w("|---|---:|---:|---:|---|---:|---:|---:|")
        out.extend(ab)
        w("")
    b_on = [r for r in big.get("airlock", []) if r[1]]
    b_off = [r for r in big.get("airlock-nomask", []) if r[1]]
    if b_on and b_off:
        w_on, w_off = median([r[0] for r in b_on]), median([r[0] for r in b_off])
        c_on, c_off = median([r[2] / hz for r in b_on]), median([r[2] / hz for r in b_off])
        w(f"1,000,000-row SELECT: masking on {w_on:.2f} s, off {w_off:.2f} s "
          f"(on / off {ratio(w_on, w_off)}); gateway CPU on {c_on:.2f} s, off {c_off:.2f} s "
          f"(on / off {ratio(c_on, c_off)}); peak RSS on "
          f"{fmt(peak.get('airlock', 0) / 1024, 1)} MB, off {fmt(peak.get('airlock-nomask', 0) / 1024, 1)} MB.")
        w("")

    if idle:
        w("## Idle TLS connections")
        w("")
        w("| path | requested | open and alive | failed | RSS before | RSS with them open | per connection | time to open |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|")
        notes = []
        for p in PATHS:
            r = idle.get(p)
            if r is None:
                continue
            opened, before, after = r.get("alive", 0), r.get("rss_before_kb", 0), r.get("rss_after_kb", 0)
            per = f"{(after - before) / opened:.1f} kB" if opened and after else "–"
            w(f"| {p} | {r.get('requested', '?')} | {opened} | {r.get('failed', '?')} "
              f"| {fmt(before / 1024, 1)} MB | {fmt(after / 1024, 1)} MB | {per} | {fmt(r.get('open_seconds', 0), 1)} s |")
            if r.get("first_error"):
                notes.append(f"- {p}: first error: `{r['first_error']}`")
        w("")
        w("Airlock holds one upstream PostgreSQL connection per client session; pgbouncer in session "
          "mode assigns a server connection only when a client sends its first query, so its idle "
          "clients hold none.")
        if notes:
            w("")
            out.extend(notes)
        w("")

    text = "\n".join(out)
    with open(out_path, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
