//! Routing: the first path segment names the target, the rest is the path under it,
//! normalised before anything is decided.
//!
//! The target segment is taken from the raw path and must be a plain name (no
//! percent-escapes, no dot segments), and the rest is normalised on its own: so no
//! spelling of the path can reach another target (`/billing/../payroll/x` climbs above
//! `billing` and is refused, not re-routed).

use airlock_engine::http::path::{NormalisedPath, PathRefusal, normalise};

/// Where a request goes.
#[derive(Debug)]
pub struct Route {
    /// The target's name.
    pub target: String,
    /// The path under the target, normalised.
    pub path: NormalisedPath,
}

/// Why a request could not be routed.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// `/` or a path whose first segment is empty.
    #[error("the path names no target")]
    NoTarget,
    /// A name Airlock keeps for itself (`mcp`, `_...`).
    #[error("`/{0}` is reserved for Airlock itself")]
    Reserved(String),
    /// The first segment is not a plain target name.
    #[error(
        "the first path segment `{0}` is not a target name (letters, digits, '-', '_', '.'; no escapes)"
    )]
    BadName(String),
    /// The rest of the path cannot be normalised unambiguously.
    #[error(transparent)]
    Path(#[from] PathRefusal),
}

/// Splits and normalises the path of a request target (the part before `?`).
pub fn route(raw_path: &str) -> Result<Route, RouteError> {
    let Some(rest) = raw_path.strip_prefix('/') else {
        return Err(RouteError::Path(normalise(raw_path).err().unwrap_or(
            PathRefusal::NotOriginForm {
                got: raw_path.chars().take(64).collect(),
            },
        )));
    };
    let (name, under) = match rest.find('/') {
        Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("/")),
        None => (rest, "/"),
    };
    if name.is_empty() {
        return Err(RouteError::NoTarget);
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        || name == "."
        || name == ".."
    {
        return Err(RouteError::BadName(name.chars().take(64).collect()));
    }
    if name == "mcp" || name.starts_with('_') {
        return Err(RouteError::Reserved(name.to_owned()));
    }
    Ok(Route {
        target: name.to_owned(),
        path: normalise(under)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> (String, String) {
        match route(raw) {
            Ok(r) => (r.target, r.path.as_str().to_owned()),
            Err(e) => panic!("{raw}: {e}"),
        }
    }

    #[test]
    fn routes_by_the_first_segment() {
        assert_eq!(
            ok("/billing/v1/echo"),
            ("billing".into(), "/v1/echo".into())
        );
        assert_eq!(ok("/billing"), ("billing".into(), "/".into()));
        assert_eq!(ok("/billing/"), ("billing".into(), "/".into()));
        assert_eq!(
            ok("/billing/v1/../admin"),
            ("billing".into(), "/admin".into())
        );
        assert_eq!(ok("/billing//v1///x/"), ("billing".into(), "/v1/x/".into()));
    }

    #[test]
    fn never_escapes_the_target() {
        for raw in [
            "/billing/../payroll/x",
            "/billing/%2e%2e/payroll",
            "/billing/v1/../../payroll",
            "/%62illing/v1",
            "/../billing",
            "/./billing",
            "/billing%2fv1",
            "/billing/v1%2f..%2f..%2fpayroll",
        ] {
            assert!(route(raw).is_err(), "{raw} must be refused");
        }
    }

    #[test]
    fn keeps_reserved_names() {
        assert!(matches!(route("/mcp"), Err(RouteError::Reserved(_))));
        assert!(matches!(route("/_airlock/x"), Err(RouteError::Reserved(_))));
        assert!(matches!(route("/"), Err(RouteError::NoTarget)));
        assert!(matches!(route("//billing"), Err(RouteError::NoTarget)));
    }
}
