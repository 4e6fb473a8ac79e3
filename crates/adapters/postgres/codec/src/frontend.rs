//! Messages from the client that Airlock reads: the startup packet, the password, and
//! the statement-carrying messages of both query protocols.
#![deny(clippy::indexing_slicing)]

use super::{CodecError, Reader};

/// Protocol version 3.0 as sent in a startup packet.
pub const PROTOCOL_3_0: i32 = 196_608;
/// `SSLRequest` code.
pub const SSL_REQUEST: i32 = 80_877_103;
/// `GSSENCRequest` code.
pub const GSSENC_REQUEST: i32 = 80_877_104;
/// `CancelRequest` code.
pub const CANCEL_REQUEST: i32 = 80_877_102;

/// The first packet of a connection (no tag byte).
#[derive(Debug, PartialEq, Eq)]
pub enum StartupPacket {
    /// Asks to upgrade to TLS.
    SslRequest,
    /// Asks for GSSAPI encryption (declined).
    GssEncRequest,
    /// Asks to cancel the query of another connection.
    Cancel {
        /// Backend process id the client was given.
        pid: i32,
        /// Secret key it was given.
        secret: i32,
    },
    /// A protocol 3.x startup message with its parameters, in order.
    Startup {
        /// Minor protocol version requested.
        minor: u16,
        /// Parameters (`user`, `database`, `application_name`, ...).
        params: Vec<(String, String)>,
    },
    /// A protocol version Airlock does not speak.
    Unsupported {
        /// The version code sent.
        code: i32,
    },
}

/// Parses a startup packet's body (after its 4-byte length).
pub fn startup_packet(body: &[u8]) -> Result<StartupPacket, CodecError> {
    let mut r = Reader::new("startup", body);
    let code = r.i32()?;
    Ok(match code {
        SSL_REQUEST => StartupPacket::SslRequest,
        GSSENC_REQUEST => StartupPacket::GssEncRequest,
        CANCEL_REQUEST => {
            let pid = r.i32()?;
            let secret = r.i32()?;
            StartupPacket::Cancel { pid, secret }
        }
        c if c >> 16 == 3 => {
            let mut params = Vec::new();
            loop {
                let name = r.cstr()?;
                if name.is_empty() {
                    break;
                }
                let value = r.cstr()?;
                params.push((name.to_owned(), value.to_owned()));
            }
            StartupPacket::Startup {
                minor: (c & 0xffff) as u16,
                params,
            }
        }
        code => StartupPacket::Unsupported { code },
    })
}

/// A simple-protocol `Query` ('Q').
pub fn query(body: &[u8]) -> Result<&str, CodecError> {
    let mut r = Reader::new("Query", body);
    let text = r.cstr()?;
    r.finish()?;
    Ok(text)
}

/// A `PasswordMessage` ('p') carrying a cleartext password.
pub fn password(body: &[u8]) -> Result<&str, CodecError> {
    let mut r = Reader::new("PasswordMessage", body);
    let text = r.cstr()?;
    r.finish()?;
    Ok(text)
}

/// An extended-protocol `Parse` ('P').
#[derive(Debug, PartialEq, Eq)]
pub struct Parse<'a> {
    /// Prepared statement name; empty for the unnamed statement.
    pub name: &'a str,
    /// The statement text.
    pub text: &'a str,
    /// Parameter type OIDs the client specified (0 = unspecified).
    pub param_types: Vec<u32>,
}

/// Parses a `Parse` body.
pub fn parse(body: &[u8]) -> Result<Parse<'_>, CodecError> {
    let mut r = Reader::new("Parse", body);
    let name = r.cstr()?;
    let text = r.cstr()?;
    let n = r.i16()?;
    if n < 0 {
        return Err(CodecError::Malformed {
            what: "Parse",
            detail: "negative parameter count",
        });
    }
    let mut param_types = Vec::with_capacity(n as usize);
    for _ in 0..n {
        param_types.push(r.i32()? as u32);
    }
    r.finish()?;
    Ok(Parse {
        name,
        text,
        param_types,
    })
}

/// An extended-protocol `Bind` ('B').
#[derive(Debug, PartialEq, Eq)]
pub struct Bind<'a> {
    /// Destination portal; empty for the unnamed portal.
    pub portal: &'a str,
    /// Source prepared statement.
    pub statement: &'a str,
    /// Per-parameter format codes (0 text, 1 binary), as sent.
    pub param_formats: Vec<i16>,
    /// Parameter values; `None` is SQL NULL.
    pub params: Vec<Option<&'a [u8]>>,
    /// Result column format codes, as sent.
    pub result_formats: Vec<i16>,
}

impl Bind<'_> {
    /// The format of parameter `i`, applying the protocol's shorthand rules.
    pub fn param_format(&self, i: usize) -> i16 {
        match self.param_formats.len() {
            0 => 0,
            1 => self.param_formats.first().copied().unwrap_or(0),
            _ => self.param_formats.get(i).copied().unwrap_or(0),
        }
    }
}

fn count(r: &mut Reader<'_>, what: &'static str) -> Result<usize, CodecError> {
    let n = r.i16()?;
    if n < 0 {
        return Err(CodecError::Malformed {
            what,
            detail: "negative count",
        });
    }
    Ok(n as usize)
}

/// Parses a `Bind` body.
pub fn bind(body: &[u8]) -> Result<Bind<'_>, CodecError> {
    let mut r = Reader::new("Bind", body);
    let portal = r.cstr()?;
    let statement = r.cstr()?;
    let nf = count(&mut r, "Bind")?;
    let mut param_formats = Vec::with_capacity(nf);
    for _ in 0..nf {
        param_formats.push(r.i16()?);
    }
    let np = count(&mut r, "Bind")?;
    let mut params = Vec::with_capacity(np.min(r.remaining() / 4));
    for _ in 0..np {
        let len = r.i32()?;
        params.push(match len {
            -1 => None,
            l if l < 0 => {
                return Err(CodecError::Malformed {
                    what: "Bind",
                    detail: "negative parameter length",
                });
            }
            l => Some(r.bytes(l as usize)?),
        });
    }
    let nr = count(&mut r, "Bind")?;
    let mut result_formats = Vec::with_capacity(nr);
    for _ in 0..nr {
        result_formats.push(r.i16()?);
    }
    r.finish()?;
    Ok(Bind {
        portal,
        statement,
        param_formats,
        params,
        result_formats,
    })
}

/// An extended-protocol `Execute` ('E'): portal name and row limit (0 = all).
pub fn execute(body: &[u8]) -> Result<(&str, i32), CodecError> {
    let mut r = Reader::new("Execute", body);
    let portal = r.cstr()?;
    let max_rows = r.i32()?;
    r.finish()?;
    Ok((portal, max_rows))
}

/// A `Close` ('C'): `b'S'` statement or `b'P'` portal, and its name.
pub fn close(body: &[u8]) -> Result<(u8, &str), CodecError> {
    let mut r = Reader::new("Close", body);
    let kind = r.u8()?;
    let name = r.cstr()?;
    r.finish()?;
    if kind != b'S' && kind != b'P' {
        return Err(CodecError::Malformed {
            what: "Close",
            detail: "kind is neither 'S' nor 'P'",
        });
    }
    Ok((kind, name))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn startup_body(params: &[(&str, &str)]) -> Vec<u8> {
        let mut b = PROTOCOL_3_0.to_be_bytes().to_vec();
        for (k, v) in params {
            b.extend_from_slice(k.as_bytes());
            b.push(0);
            b.extend_from_slice(v.as_bytes());
            b.push(0);
        }
        b.push(0);
        b
    }

    #[test]
    fn startup_packet_kinds() {
        assert_eq!(
            startup_packet(&SSL_REQUEST.to_be_bytes()).unwrap(),
            StartupPacket::SslRequest
        );
        assert_eq!(
            startup_packet(&GSSENC_REQUEST.to_be_bytes()).unwrap(),
            StartupPacket::GssEncRequest
        );
        let mut c = CANCEL_REQUEST.to_be_bytes().to_vec();
        c.extend_from_slice(&7i32.to_be_bytes());
        c.extend_from_slice(&9i32.to_be_bytes());
        assert_eq!(
            startup_packet(&c).unwrap(),
            StartupPacket::Cancel { pid: 7, secret: 9 }
        );
        let s = startup_packet(&startup_body(&[("user", "u"), ("database", "shop")])).unwrap();
        assert_eq!(
            s,
            StartupPacket::Startup {
                minor: 0,
                params: vec![
                    ("user".into(), "u".into()),
                    ("database".into(), "shop".into())
                ]
            }
        );
        assert_eq!(
            startup_packet(&(2i32 << 16).to_be_bytes()).unwrap(),
            StartupPacket::Unsupported { code: 2 << 16 }
        );
    }

    #[test]
    fn every_truncation_of_a_startup_packet_is_an_error_not_a_panic() {
        let body = startup_body(&[("user", "u"), ("database", "shop")]);
        for cut in 0..body.len() {
            assert!(startup_packet(&body[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn bind_reads_params_and_formats() {
        let mut b = b"p1\0s1\0".to_vec();
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&2i16.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.push(b'7');
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        let bind = bind(&b).unwrap();
        assert_eq!(bind.portal, "p1");
        assert_eq!(bind.statement, "s1");
        assert_eq!(bind.params, vec![Some(&b"7"[..]), None]);
        assert_eq!(bind.param_format(1), 0);
        for cut in 0..b.len() {
            assert!(super::bind(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut neg = b"\0\0".to_vec();
        neg.extend_from_slice(&(-5i16).to_be_bytes());
        assert!(super::bind(&neg).is_err());
    }

    #[test]
    fn parse_execute_close_and_query() {
        let mut p = b"st\0select $1\0".to_vec();
        p.extend_from_slice(&1i16.to_be_bytes());
        p.extend_from_slice(&23i32.to_be_bytes());
        let parsed = parse(&p).unwrap();
        assert_eq!(
            (parsed.name, parsed.text, parsed.param_types),
            ("st", "select $1", vec![23])
        );
        let mut e = b"\0".to_vec();
        e.extend_from_slice(&0i32.to_be_bytes());
        assert_eq!(execute(&e).unwrap(), ("", 0));
        assert_eq!(close(b"Sst\0").unwrap(), (b'S', "st"));
        assert!(close(b"Xst\0").is_err());
        assert_eq!(query(b"select 1\0").unwrap(), "select 1");
        assert!(query(b"select 1").is_err());
        assert!(query(b"select 1\0extra").is_err());
        assert!(query(b"\xff\0").is_err());
    }
}
