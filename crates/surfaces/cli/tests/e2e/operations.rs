//! Operations surfaces of one gateway: `/metrics` counts what a real psql session did,
//! and `/healthz` and `/readyz` answer without a token (`/readyz` says why when the
//! gateway cannot serve).

use std::process::Command;
use std::time::Duration;

use airlock_testkit::{AirlockBuilder, Postgres, free_port, psql};

use crate::bin;
use crate::postgres_policy::READ_ONLY;

fn get(url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sk", "-w", "\n%{http_code}", url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_owned())
}

/// The value of the sample `name{labels}` (labels as printed), or 0.
fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn metrics_move_with_the_traffic_and_probes_need_no_token() {
    let pg = Postgres::shared();
    let db = pg.create_database("ops");
    let api = free_port();
    let gw = AirlockBuilder::new(bin())
        .policy(Some(READ_ONLY))
        .target("shop", pg, &db)
        .extra(&format!("\n[api]\nlisten = \"127.0.0.1:{api}\"\n"))
        .start();
    airlock_testkit::wait_port(api, Duration::from_secs(10)).unwrap();
    let base = format!("https://127.0.0.1:{api}");
    assert_eq!(get(&format!("{base}/healthz")), (200, "ok".into()));
    assert_eq!(get(&format!("{base}/readyz")).0, 200);
    let (code, before) = get(&format!("{base}/metrics"));
    assert_eq!(code, 200, "{before}");
    let token = gw.token("agent", &["ai-agents"]);
    let out = psql(
        &gw.conn("shop", &token),
        &["select * from customers", "delete from orders"],
    );
    assert!(out.stdout.contains("Lovelace"), "{out:?}");
    let (_, after) = get(&format!("{base}/metrics"));
    let sessions = r#"airlock_sessions_total{target="shop",protocol="postgres"}"#;
    assert!(
        sample(&after, sessions) >= sample(&before, sessions) + 1.0,
        "{after}"
    );
    let allowed = r#"airlock_decisions_total{target="shop",protocol="postgres",decision="allow"}"#;
    let denied = r#"airlock_decisions_total{target="shop",protocol="postgres",decision="deny"}"#;
    assert!(
        sample(&after, allowed) >= 1.0 && sample(&after, denied) >= 1.0,
        "{after}"
    );
    assert!(
        after.contains("airlock_masked_values_total{rule=\"default\""),
        "{after}"
    );
    // Labels never carry a principal, a statement or a value.
    for leak in ["agent", "customers", "ada@example.com", &token] {
        assert!(!after.contains(leak), "`{leak}` in /metrics");
    }
    assert!(after.ends_with("# EOF\n"));
}

#[test]
fn readyz_says_why_a_gateway_cannot_serve() {
    let pg = Postgres::shared();
    let db = pg.create_database("ops_ready");
    let api = free_port();
    let _gw = AirlockBuilder::new(bin())
        .policy(None)
        .target("shop", pg, &db)
        .extra(&format!("\n[api]\nlisten = \"127.0.0.1:{api}\"\n"))
        .start();
    airlock_testkit::wait_port(api, Duration::from_secs(10)).unwrap();
    let (code, body) = get(&format!("https://127.0.0.1:{api}/readyz"));
    assert_eq!(code, 503);
    assert!(body.contains("no policy is loaded"), "{body}");
    assert_eq!(get(&format!("https://127.0.0.1:{api}/healthz")).0, 200);
}
