//! Malformed and truncated frames: an error or a closed connection, never a panic, and
//! other sessions carry on.

use airlock_testkit::psql;

use crate::raw::{Raw, message, startup_packet};
use crate::{Fixture, events_of};

#[test]
fn malformed_and_truncated_frames_do_not_disturb_other_sessions() {
    let f = Fixture::with("malformed", |b| {
        b.listener("allow_plaintext_loopback = true")
    });
    let port = f.gw.port;
    let mut healthy = Raw::ready(port, "shop", &f.token);
    assert!(healthy.query("select 1").iter().any(|m| m.tag == b'D'));

    // Startup length below the minimum, above the maximum, negative.
    for len in [3i32, 100_000, -1] {
        let mut r = Raw::connect(port);
        r.send(&len.to_be_bytes());
        r.send(&[0u8; 8]);
        assert!(r.closed(), "length {len}");
    }
    // A startup packet cut short, then the client leaves.
    let mut r = Raw::connect(port);
    let p = startup_packet(&[("user", "agent"), ("database", "shop")]);
    r.send(&p[..p.len() - 5]);
    drop(r);
    // Garbage that claims to be a startup packet.
    let mut r = Raw::connect(port);
    r.send(&[0, 0, 0, 12, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4]);
    let m = r.read();
    assert!(m.is_none() || m.unwrap().tag == b'E');
    // A password message that is not one.
    let mut r = Raw::connect(port);
    r.send(&p);
    r.read().unwrap();
    r.send(&message(b'Q', b"select 1\0"));
    let m = r.read().unwrap();
    assert_eq!((m.tag, m.field(b'C').as_deref()), (b'E', Some("08P01")));

    // After login: a frame whose length is impossible.
    let mut r = Raw::ready(port, "shop", &f.token);
    r.send(&[b'Q', 0, 0, 0, 2]);
    let m = r.read().unwrap();
    assert_eq!((m.tag, m.field(b'C').as_deref()), (b'E', Some("08P01")));
    assert!(r.closed());
    // A message type no client sends.
    let mut r = Raw::ready(port, "shop", &f.token);
    r.send(&message(b'Z', b"I"));
    let m = r.read().unwrap();
    assert_eq!(m.field(b'C').as_deref(), Some("08P01"));
    // A Query without its terminator, and a Bind that lies about its parameters.
    let mut r = Raw::ready(port, "shop", &f.token);
    r.send(&message(b'Q', b"select 1"));
    assert_eq!(r.read().unwrap().field(b'C').as_deref(), Some("08P01"));
    let mut r = Raw::ready(port, "shop", &f.token);
    r.send(&message(b'B', &[0, 0, 0, 0, 0, 5, 0, 0, 0, 99]));
    assert_eq!(r.read().unwrap().field(b'C').as_deref(), Some("08P01"));
    // A statement larger than Airlock inspects: one clear error, then the end.
    let mut r = Raw::ready(port, "shop", &f.token);
    r.send(&[b'Q', 0x05, 0, 0, 0]);
    let m = r.read().unwrap();
    assert_eq!((m.tag, m.field(b'C').as_deref()), (b'E', Some("54000")));
    assert!(r.closed(), "only one error is sent");
    // A client that never finishes its handshake is dropped after handshake_timeout.
    let mut idle = Raw::connect(port);
    assert!(idle.closed());
    // A Query announced long and cut off.
    let mut r = Raw::ready(port, "shop", &f.token);
    r.send(&[b'Q', 0, 0, 1, 0]);
    r.send(b"select");
    drop(r);

    // The healthy session and new ones still work.
    assert!(healthy.query("select 2").iter().any(|m| m.tag == b'D'));
    let out = psql(&f.conn(), &["select 'fine'"]);
    assert_eq!(out.stdout, "fine\n", "{out:?}");
    assert!(!f.gw.log().contains("panicked"), "{}", f.gw.log());

    // Protocol violations after login end the session with a recorded reason.
    let reasons: Vec<String> =
        f.gw.sessions()
            .iter()
            .map(|s| f.gw.session(s["id"].as_str().unwrap()))
            .flat_map(|s| {
                events_of(&s, "disconnect")
                    .iter()
                    .map(|e| e["detail"]["reason"].as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
    let violated = reasons.iter().filter(|r| r.contains("protocol")).count();
    assert!(violated >= 4, "violations recorded: {reasons:?}");
}
