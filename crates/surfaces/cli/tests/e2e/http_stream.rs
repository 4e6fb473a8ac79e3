//! Streaming through the HTTP listener: a 100 MB download in bounded memory with its
//! bytes intact, a chunked upload, a static file from nginx, and a WebSocket echo whose
//! text messages are recorded (masked).

use std::process::{Command, Stdio};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::http_proxy::HttpFixture;

fn sha256_of_download(url: &str, token: Option<&str>) -> (String, u64) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sk", "--fail"]);
    if let Some(t) = token {
        cmd.arg("-H").arg(format!("Authorization: Bearer {t}"));
    }
    let out = cmd.arg(url).stdout(Stdio::piped()).output().unwrap();
    assert!(
        out.status.success(),
        "download failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        hex::encode(Sha256::digest(&out.stdout)),
        out.stdout.len() as u64,
    )
}

#[test]
fn a_100_mb_download_streams_intact_in_bounded_memory() {
    let f = HttpFixture::new();
    let direct = format!("http://127.0.0.1:{}/api/v1/big?mb=100", f.api.port);
    let before = f.gw.rss_kib();
    let (through, n) = sha256_of_download(&f.url("/billing/v1/big?mb=100"), Some(&f.token));
    assert_eq!(n, 100 << 20);
    let out = Command::new("curl")
        .args(["-s", "-H"])
        .arg(format!(
            "Authorization: Bearer {}",
            airlock_testkit::UP_BEARER
        ))
        .arg(&direct)
        .output()
        .unwrap();
    assert_eq!(through, hex::encode(Sha256::digest(&out.stdout)));
    let peak = f.gw.peak_rss_kib();
    assert!(
        peak < before + 64 * 1024,
        "the gateway grew from {before} KiB to a peak of {peak} KiB for a 100 MB body"
    );
}

#[test]
fn a_chunked_upload_arrives_intact() {
    let f = HttpFixture::new();
    let data: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 251) as u8).collect();
    let file = airlock_testkit::scratch_dir("upload").join("blob");
    std::fs::write(&file, &data).unwrap();
    let out = Command::new("curl")
        .args([
            "-sk",
            "-X",
            "PUT",
            "-H",
            "Transfer-Encoding: chunked",
            "-H",
            "content-type: application/octet-stream",
            "-H",
        ])
        .arg(format!("Authorization: Bearer {}", f.token))
        .arg("-T")
        .arg(&file)
        .arg(f.url("/billing/v1/upload"))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{out:?}"));
    assert_eq!(v["len"], data.len());
    assert_eq!(v["sha256"], hex::encode(Sha256::digest(&data)));
}

#[test]
fn static_files_from_nginx_pass_through() {
    let root = airlock_testkit::scratch_dir("static");
    let data: Vec<u8> = (0..(3u32 << 20)).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(root.join("blob.bin"), &data).unwrap();
    std::fs::write(
        root.join("people.json"),
        br#"{"people":[{"email":"ada@example.com","password":"hunter2"}]}"#,
    )
    .unwrap();
    let Some(nginx) = airlock_testkit::Nginx::start(&root, None) else {
        panic!("nginx is not installed (scripts/test installs nginx-light)");
    };
    let f = HttpFixture::with(|b| {
        b.raw_target(&format!(
            "[[targets]]\nname = \"static\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{}\"\n",
            nginx.port
        ))
    });
    let (sum, n) = sha256_of_download(&f.url("/static/blob.bin"), Some(&f.token));
    assert_eq!(n, data.len() as u64);
    assert_eq!(sum, hex::encode(Sha256::digest(&data)));
    let (code, hdrs, body) = f.curl("/static/blob.bin", &["-I"]);
    assert_eq!(code, 200);
    assert!(
        hdrs.to_ascii_lowercase()
            .contains(&format!("content-length: {}", data.len())),
        "{hdrs}{body}"
    );
    let (code, _, body) = f.curl("/static/people.json", &[]);
    assert_eq!(code, 200);
    assert!(
        !body.contains("ada@example.com") && !body.contains("hunter2"),
        "{body}"
    );
}

#[test]
fn websocket_upgrades_are_decided_relayed_and_recorded() {
    let f = HttpFixture::new();
    let run = |path: &str| -> Value {
        crate::http_proxy::http_client(
            "websocket",
            &f.url(path),
            &[
                ("AIRLOCK_TOKEN", f.token.as_str()),
                ("WS_TEXT", "card 4111 1111 1111 1111 please"),
            ],
        )
    };
    let v = run("/billing/v1/ws");
    assert!(v["status"].as_str().unwrap().contains("101"), "{v}");
    assert_eq!(
        v["message"],
        "echo: card 4111 1111 1111 1111 please (ada@example.com)"
    );
    // Not permitted on another path.
    let v = run("/billing/v1/echo");
    assert!(v["status"].as_str().unwrap().contains("403"), "{v}");

    let sessions = crate::http_proxy::sessions_of(&f.gw, "crew", "billing");
    let s = sessions
        .iter()
        .find(|s| s["events"].to_string().contains("WEBSOCKET /billing/v1/ws"))
        .expect("the WebSocket session");
    let messages = crate::events_of(s, "message");
    assert_eq!(messages.len(), 2, "{s}");
    let recorded = serde_json::to_string(&messages).unwrap();
    assert!(recorded.contains("\"direction\":\"agent\""));
    assert!(
        !recorded.contains("4111 1111 1111 1111") && !recorded.contains("ada@example.com"),
        "{recorded}"
    );
    let requests = crate::events_of(s, "request");
    assert!(
        requests
            .iter()
            .any(|r| r["statement"] == "WEBSOCKET /billing/v1/ws" && r["decision"] == "allow")
    );
    let results = crate::events_of(s, "result");
    assert_eq!(results[0]["detail"]["status"], 101, "{s}");
}
