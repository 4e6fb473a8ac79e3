//! Header hygiene in both directions (RFC 9110 section 7.6.1 and RFC 9112).
//!
//! Towards the upstream: hop-by-hop headers (and those a `Connection` header names) are
//! dropped, the agent's token is removed wherever it appears, the agent's own proxy and
//! forwarding headers are replaced by Airlock's (`X-Forwarded-For/Proto/Host`,
//! `Forwarded`), `Host` becomes the upstream's, the target's credential is injected, and
//! the body is asked for without content coding or ranges (so that what comes back can
//! be masked whole).
//!
//! Towards the agent: hop-by-hop headers are dropped, the credential is scrubbed from
//! every value, and a `Location` pointing into the upstream is rewritten to the same
//! place through Airlock.

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::scrub::Scrubber;

/// Headers that never cross a proxy, whatever `Connection` says.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Request headers Airlock sets itself, so the agent's values are dropped.
const REPLACED_ON_REQUEST: &[&str] = &[
    "host",
    "content-length",
    "authorization",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-real-ip",
    "accept-encoding",
    // Partial responses cannot be masked as a whole; Airlock always asks for all of it.
    "range",
    "if-range",
    // Answered by Airlock's listener; the upstream gets a body that is already there.
    "expect",
];

/// The names a `Connection` header lists (lower case).
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect()
}

/// What the agent's request carried and where it came from.
pub struct RequestFacts<'a> {
    /// The agent's token, removed wherever it appears.
    pub agent_token: &'a str,
    /// The agent's address.
    pub client_ip: String,
    /// The `Host` (or `:authority`) the agent used.
    pub agent_host: Option<String>,
    /// `Some` for a WebSocket upgrade: keep `Upgrade` and `Connection: upgrade`.
    pub upgrade: Option<HeaderValue>,
}

/// The headers to send upstream (without the credential, added by the caller).
pub fn upstream_request(
    agent: &HeaderMap,
    facts: &RequestFacts<'_>,
    upstream_authority: &str,
    injected: Option<&HeaderName>,
) -> Result<HeaderMap, String> {
    let listed = connection_listed(agent);
    let token = facts.agent_token.as_bytes();
    let mut out = HeaderMap::with_capacity(agent.len() + 6);
    for (name, value) in agent {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n)
            || REPLACED_ON_REQUEST.contains(&n)
            || listed.iter().any(|l| l == n)
            || injected.is_some_and(|i| i == name)
            || n.starts_with("sec-websocket") && facts.upgrade.is_none()
        {
            continue;
        }
        if n == "cookie" {
            if let Some(kept) = cookie_without(value, token) {
                out.append(name.clone(), kept);
            }
            continue;
        }
        if !token.is_empty() && contains(value.as_bytes(), token) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    let value = |text: &str| {
        HeaderValue::from_str(text).map_err(|_| format!("cannot send header value `{text}`"))
    };
    out.insert(header::HOST, value(upstream_authority)?);
    out.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    out.insert("x-forwarded-for", value(&facts.client_ip)?);
    out.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    let mut forwarded = format!("for=\"{}\";proto=https", forwarded_node(&facts.client_ip));
    if let Some(host) = &facts.agent_host
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    {
        out.insert("x-forwarded-host", value(host)?);
        forwarded.push_str(&format!(";host=\"{host}\""));
    }
    out.insert(header::FORWARDED, value(&forwarded)?);
    if let Some(upgrade) = &facts.upgrade {
        out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        out.insert(header::UPGRADE, upgrade.clone());
    }
    Ok(out)
}

/// An IPv6 address is quoted in brackets in `Forwarded` (RFC 7239 section 6).
fn forwarded_node(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    }
}

/// A `Cookie` header without the pairs that carry `token`; `None` when none is left.
fn cookie_without(value: &HeaderValue, token: &[u8]) -> Option<HeaderValue> {
    if token.is_empty() || !contains(value.as_bytes(), token) {
        return Some(value.clone());
    }
    let kept: Vec<&[u8]> = value
        .as_bytes()
        .split(|b| *b == b';')
        .map(trim)
        .filter(|pair| !pair.is_empty() && !contains(pair, token))
        .collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_bytes(&kept.join(&b"; "[..])).ok()
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    b.get(start..end).unwrap_or(&[])
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

/// Where the upstream is, for rewriting redirects.
pub struct LocationRewrite<'a> {
    /// The upstream's base URL without a trailing slash (`http://10.0.0.5:8080/api`).
    pub upstream_base: &'a str,
    /// The same place through Airlock (`https://airlock:8443/billing`).
    pub through_airlock: String,
}

/// The response headers for the agent. `decoded`: the body's content coding is undone
/// (drop `Content-Encoding`); `length_kept`: the body keeps its length (keep
/// `Content-Length`).
pub fn agent_response(
    upstream: &HeaderMap,
    scrubber: &Scrubber,
    location: &LocationRewrite<'_>,
    decoded: bool,
    length_kept: bool,
    upgrade: bool,
) -> (HeaderMap, usize) {
    let listed = connection_listed(upstream);
    let mut scrubbed = 0;
    let mut out = HeaderMap::with_capacity(upstream.len());
    for (name, value) in upstream {
        let n = name.as_str();
        if (HOP_BY_HOP.contains(&n) && !(upgrade && matches!(n, "upgrade" | "connection")))
            || listed.iter().any(|l| l == n) && !upgrade
            || (n == "content-length" && !length_kept)
            || (n == "content-encoding" && decoded)
            // Ranges were never asked for; an upstream that answers with one anyway
            // gets its header dropped with the rest of the range semantics.
            || n == "accept-ranges"
        {
            continue;
        }
        let mut bytes = value.as_bytes().to_vec();
        if n == "location"
            && let Some(rest) = bytes.strip_prefix(location.upstream_base.as_bytes())
            && (rest.is_empty() || matches!(rest.first(), Some(b'/' | b'?' | b'#')))
        {
            let mut rewritten = location.through_airlock.as_bytes().to_vec();
            rewritten.extend_from_slice(rest);
            bytes = rewritten;
        }
        let found = scrubber.scrub_in_place(&mut bytes);
        scrubbed += found;
        match HeaderValue::from_bytes(&bytes) {
            Ok(v) => {
                out.append(name.clone(), v);
            }
            Err(_) => continue,
        }
    }
    (out, scrubbed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(token: &str) -> RequestFacts<'_> {
        RequestFacts {
            agent_token: token,
            client_ip: "127.0.0.1".into(),
            agent_host: Some("127.0.0.1:18443".into()),
            upgrade: None,
        }
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn removes_the_agent_token_everywhere_and_hop_by_hop_headers() {
        let agent = map(&[
            ("authorization", "Bearer alk_secret_token"),
            ("proxy-authorization", "Bearer alk_secret_token"),
            ("cookie", "a=1; session=alk_secret_token; b=2"),
            ("x-debug", "token alk_secret_token"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("te", "trailers"),
            ("x-forwarded-for", "6.6.6.6"),
            ("range", "bytes=0-10"),
            ("accept-encoding", "gzip, br"),
            ("x-kept", "yes"),
        ]);
        let out = upstream_request(&agent, &facts("alk_secret_token"), "up:8080", None).unwrap();
        let all = format!("{out:?}");
        assert!(!all.contains("alk_secret_token"), "{all}");
        assert_eq!(out.get("cookie").unwrap(), "a=1; b=2");
        for gone in [
            "authorization",
            "proxy-authorization",
            "x-debug",
            "x-hop",
            "te",
            "connection",
            "range",
        ] {
            assert!(out.get(gone).is_none(), "{gone} must be dropped");
        }
        assert_eq!(out.get("x-forwarded-for").unwrap(), "127.0.0.1");
        assert_eq!(out.get("host").unwrap(), "up:8080");
        assert_eq!(out.get("accept-encoding").unwrap(), "identity");
        assert_eq!(out.get("x-kept").unwrap(), "yes");
        assert!(
            out.get("forwarded")
                .unwrap()
                .to_str()
                .unwrap()
                .contains("for=\"127.0.0.1\"")
        );
    }

    #[test]
    fn scrubs_and_rewrites_response_headers() {
        let scrubber = Scrubber::new(vec![b"bill-0123456789".to_vec()]);
        let upstream = map(&[
            (
                "location",
                "http://10.0.0.5:8080/api/v1/echo?access_token=bill-0123456789",
            ),
            ("x-debug-authorization", "Bearer bill-0123456789"),
            ("content-encoding", "gzip"),
            ("content-length", "10"),
            ("connection", "close"),
        ]);
        let rewrite = LocationRewrite {
            upstream_base: "http://10.0.0.5:8080/api",
            through_airlock: "https://127.0.0.1:18443/billing".into(),
        };
        let (out, scrubbed) = agent_response(&upstream, &scrubber, &rewrite, true, false, false);
        assert_eq!(scrubbed, 2);
        assert_eq!(
            out.get("location").unwrap(),
            "https://127.0.0.1:18443/billing/v1/echo?access_token=***************"
        );
        assert!(out.get("content-encoding").is_none());
        assert!(out.get("content-length").is_none());
        assert!(out.get("connection").is_none());
    }
}
