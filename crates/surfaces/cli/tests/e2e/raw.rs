//! A raw PostgreSQL protocol client over plain TCP, for what real clients never send:
//! malformed frames, fast-path calls, exact SQLSTATEs of startup failures.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub struct Raw {
    pub s: TcpStream,
}

/// A message read back: tag and body.
#[derive(Debug)]
pub struct Msg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Msg {
    /// The value of field `code` of an ErrorResponse/NoticeResponse.
    pub fn field(&self, code: u8) -> Option<String> {
        let mut i = 0;
        while i < self.body.len() && self.body[i] != 0 {
            let k = self.body[i];
            let end = i + 1 + self.body[i + 1..].iter().position(|&b| b == 0)?;
            if k == code {
                return Some(String::from_utf8_lossy(&self.body[i + 1..end]).into_owned());
            }
            i = end + 1;
        }
        None
    }
}

pub fn startup_packet(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196608i32.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut p = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    p.extend(body);
    p
}

pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Raw { s }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// Reads one message; `None` at end of stream.
    pub fn read(&mut self) -> Option<Msg> {
        let mut head = [0u8; 5];
        self.s.read_exact(&mut head).ok()?;
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        self.s.read_exact(&mut body).ok()?;
        Some(Msg { tag: head[0], body })
    }

    /// Reads until a message with `tag` (returned) or the end of stream.
    pub fn read_until(&mut self, tag: u8) -> Option<Msg> {
        loop {
            let m = self.read()?;
            if m.tag == tag {
                return Some(m);
            }
        }
    }

    /// True when the server closed the connection (read returns 0 bytes).
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b), Ok(0) | Err(_))
    }

    /// Startup with `user`/`database` and the token as password; returns the first
    /// message after the password (AuthenticationOk 'R' or an error 'E').
    pub fn login(port: u16, database: &str, token: &str) -> (Raw, Msg) {
        let mut r = Raw::connect(port);
        r.send(&startup_packet(&[
            ("user", "agent"),
            ("database", database),
        ]));
        let ask = r.read().expect("auth request");
        assert_eq!(ask.tag, b'R', "expected an authentication request");
        let mut pw = token.as_bytes().to_vec();
        pw.push(0);
        r.send(&message(b'p', &pw));
        let reply = r.read().expect("auth reply");
        (r, reply)
    }

    /// A session through to the first ReadyForQuery.
    pub fn ready(port: u16, database: &str, token: &str) -> Raw {
        let (mut r, m) = Raw::login(port, database, token);
        assert_eq!(m.tag, b'R', "login failed: {:?}", m.field(b'M'));
        r.read_until(b'Z').expect("ready for query");
        r
    }

    /// Sends a simple query and collects messages up to ReadyForQuery.
    pub fn query(&mut self, sql: &str) -> Vec<Msg> {
        let mut body = sql.as_bytes().to_vec();
        body.push(0);
        self.send(&message(b'Q', &body));
        let mut out = Vec::new();
        while let Some(m) = self.read() {
            let done = m.tag == b'Z';
            out.push(m);
            if done {
                break;
            }
        }
        out
    }
}

impl Raw {
    /// Reads until `readies` ReadyForQuery messages arrived; returns the errors seen on the
    /// way as (SQLSTATE, message).
    pub fn errors_until_ready(&mut self, readies: usize) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let mut seen = 0;
        while seen < readies {
            let m = self.read().expect("the server answers");
            match m.tag {
                b'E' => errors.push((
                    m.field(b'C').unwrap_or_default(),
                    m.field(b'M').unwrap_or_default(),
                )),
                b'Z' => seen += 1,
                _ => {}
            }
        }
        errors
    }
}
