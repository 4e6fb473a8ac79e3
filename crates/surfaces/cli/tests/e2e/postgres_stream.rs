//! Large results stream through in bounded memory.

use airlock_testkit::psql;

use crate::Fixture;

#[test]
fn a_million_row_result_streams_with_bounded_gateway_memory() {
    let f = Fixture::new("stream");
    let before = f.gw.peak_rss_kib();
    let out = psql(
        &f.conn(),
        &["select g, repeat('x', 40) from generate_series(1, 1000000) g"],
    );
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 1_000_000);
    assert!(
        out.stdout
            .ends_with("1000000|xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n")
    );
    let peak = f.gw.peak_rss_kib();
    // About 50 MB of rows went through; the gateway must not have held them.
    assert!(
        peak < 64 * 1024,
        "gateway peak RSS {peak} KiB (before the query: {before} KiB)"
    );
    let s = f.gw.last_session_of("agent", "shop");
    let result = crate::events_of(&s, "result")[0];
    assert_eq!(result["detail"]["rows"], 1_000_000);
}
