//! Targets that are down or die mid-query: the agent gets an error it can act on and the
//! session is closed and recorded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use airlock_testkit::{AirlockBuilder, Postgres, free_port, psql};

use crate::{Fixture, bin, events_of};

#[test]
fn target_down_at_connect_gives_08001_and_a_recorded_failure() {
    let dead_port = free_port();
    let gw = AirlockBuilder::new(bin())
        .raw_target(&format!(
            "[[targets]]\nname = \"down\"\nkind = \"postgres\"\nhost = \"127.0.0.1\"\nport = {dead_port}\ndatabase = \"x\"\nuser = \"app\"\npassword = \"env:DOWN_PW\"\nsslmode = \"disable\"\nconnect_timeout = \"3s\"\n"
        ))
        .env("DOWN_PW", "x")
        .start();
    let token = gw.token("agent", &["g"]);
    let out = psql(&gw.conn("down", &token), &["select 1"]);
    assert!(
        !out.ok && out.stderr.contains("could not connect to target \"down\""),
        "{out:?}"
    );
    let s = gw.last_session_of("agent", "down");
    assert_eq!(events_of(&s, "connect_failure").len(), 1, "{s}");
    assert_eq!(
        events_of(&s, "disconnect")[0]["detail"]["reason"],
        "target_unavailable"
    );
    assert!(s["ended_at"].is_string());
}

#[test]
fn backend_terminated_mid_query_reaches_the_agent_and_closes_the_session() {
    let f = Fixture::new("fail_terminate");
    let script = airlock_testkit::workspace_root().join("tests/clients/python/pg_client.py");
    let mut child = Command::new(airlock_testkit::python())
        .arg(script)
        .arg("lost")
        .env("AIRLOCK_CONN", f.conn())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid: serde_json::Value = serde_json::from_str(&line).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    Postgres::shared()
        .superuser_sql(
            "postgres",
            &format!("select pg_terminate_backend({})", pid["backend_pid"]),
        )
        .unwrap();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child.wait().unwrap();
    let r: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(r["error"].is_string(), "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("terminating connection"),
        "{r}"
    );
    let s = f.gw.last_session_of("agent", "shop");
    let results = events_of(&s, "result");
    assert_eq!(
        results.last().unwrap()["detail"]["error"]["code"],
        "57P01",
        "{s}"
    );
    assert_eq!(
        events_of(&s, "disconnect")[0]["detail"]["reason"],
        "target_closed"
    );
}

/// A TCP relay between the gateway and PostgreSQL that the test can cut.
struct Cuttable {
    port: u16,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Cuttable {
    fn new(target_port: u16) -> Cuttable {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let streams = Arc::new(Mutex::new(Vec::new()));
        let keep = streams.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let server = TcpStream::connect(("127.0.0.1", target_port)).unwrap();
                keep.lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                for (mut a, mut b) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = a.read(&mut buf) {
                            if n == 0 || b.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = b.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Cuttable { port, streams }
    }

    fn cut(&self) {
        for s in self.streams.lock().unwrap().iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

#[test]
fn connection_to_target_lost_mid_query_gives_08006() {
    let pg = Postgres::shared();
    let db = pg.create_database("fail_cut");
    let relay = Cuttable::new(pg.port);
    let gw = AirlockBuilder::new(bin())
        .raw_target(&format!(
            "[[targets]]\nname = \"shop\"\nkind = \"postgres\"\nhost = \"127.0.0.1\"\nport = {}\ndatabase = \"{db}\"\nuser = \"app\"\npassword = \"env:PW\"\nsslmode = \"disable\"\n",
            relay.port
        ))
        .env("PW", "apppw")
        .start();
    let token = gw.token("agent", &["g"]);
    let conn = gw.conn("shop", &token);
    let runner = std::thread::spawn(move || psql(&conn, &["select pg_sleep(30)"]));
    std::thread::sleep(std::time::Duration::from_millis(1500));
    relay.cut();
    let out = runner.join().unwrap();
    assert!(!out.ok, "{out:?}");
    assert!(
        out.stderr
            .contains("connection to target \"shop\" was lost"),
        "{out:?}"
    );
    let s = gw.last_session_of("agent", "shop");
    assert_eq!(
        events_of(&s, "disconnect")[0]["detail"]["reason"],
        "target_closed"
    );
    assert!(s["ended_at"].is_string());
    // The gateway itself is fine.
    let out = psql(&gw.conn("nosuch", &token), &["select 1"]);
    assert!(out.stderr.contains("does not exist"));
}

#[test]
fn shutdown_tells_open_sessions_and_records_their_end() {
    let mut f = Fixture::with("fail_shutdown", |b| {
        b.listener("allow_plaintext_loopback = true")
    });
    let mut r = crate::raw::Raw::ready(f.gw.port, "shop", &f.token);
    assert!(r.query("select 1").iter().any(|m| m.tag == b'D'));
    f.gw.stop();
    let m = r.read().expect("a goodbye before the connection closes");
    assert_eq!((m.tag, m.field(b'C').as_deref()), (b'E', Some("57P01")));
    // A clean stop: the recorder drained and synced (nothing held it open until the
    // gateway gave up on it).
    let log = f.gw.log();
    assert!(
        log.contains("stopped; every record is in the journal and synced"),
        "{log}"
    );
    let s = f.gw.last_session_of("agent", "shop");
    assert_eq!(
        events_of(&s, "disconnect")[0]["detail"]["reason"],
        "gateway_shutdown"
    );
    assert!(s["ended_at"].is_string());
    let out = f.gw.cli(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
